"""Salesforce: log-in modes, batched and paged look-ups, session renewal, timeouts, links."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest
from simple_salesforce.format import format_soql

from bot.config import Settings
from bot.crmid import to_18
from bot.delivery import SlackWeb, web_client
from bot.errors import ConfigError, OwnerLookupError
from bot.salesforce import MAX_IDS_PER_QUERY, SalesforceCRM, auth_mode, connect
from bot.territory import Owner, Territory, Unresolved
from tests.conftest import BOT_TOKEN, Clock
from tests.fakes.salesforce import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    PASSWORD,
    SECURITY_TOKEN,
    USERNAME,
    FakeSalesforce,
)
from tests.fakes.slack import FakeSlack

_IN_LIST = re.compile(r"\bIN \((.*)\)", re.DOTALL)


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    """The fake Salesforce on a random local port (2 000 records per page, as Salesforce)."""
    with FakeSalesforce() as server:
        yield server


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def client_credentials(domain: str = "acme", **extra: Any) -> Settings:
    return Settings(
        salesforce_domain=domain,
        salesforce_consumer_key=CONSUMER_KEY,
        salesforce_consumer_secret=CONSUMER_SECRET,
        **extra,
    )


def crm_for(settings: Settings, fake: FakeSalesforce) -> SalesforceCRM:
    crm = SalesforceCRM.from_settings(settings, session=fake.session())
    assert crm is not None
    return crm


def user_ids(count: int) -> list[str]:
    """`count` distinct 15-character User ids."""
    return [f"005{n:012d}" for n in range(1, count + 1)]


def in_list_sizes(queries: list[str]) -> list[int]:
    sizes = []
    for soql in queries:
        match = _IN_LIST.search(soql)
        assert match, soql
        sizes.append(len(match.group(1).split(",")))
    return sizes


# ------------------------------------------------------------------ F15


@pytest.mark.parametrize("page_size", [2000, 120])
def test_f15_3500_owners_batched_by_200_and_every_page_followed(page_size: int) -> None:
    ids = user_ids(3500)
    with FakeSalesforce(page_size=page_size) as fake:
        for n, user_id in enumerate(ids):
            fake.add_user(user_id, f"rep{n}@example.com", first_name=f"Rep{n}")
        crm = crm_for(client_credentials(), fake)

        users = crm.users(ids)

        assert set(users) == {to_18(i) for i in ids}
        assert users[to_18(ids[41])].email == "rep41@example.com"
        sizes = in_list_sizes(fake.queries)
        assert max(sizes) <= MAX_IDS_PER_QUERY
        assert sum(sizes) == 3500
        assert len(fake.queries) == crm.queries == math.ceil(3500 / MAX_IDS_PER_QUERY)
        extra_pages = sum(math.ceil(size / page_size) - 1 for size in sizes)
        assert len(fake.page_requests) == crm.pages == extra_pages
        assert crm.logins == 1


def test_f15_account_owners_for_3500_accounts(fake: FakeSalesforce) -> None:
    owner = fake.add_user("005000000000001", "dana@example.com")
    accounts = [f"001{n:012d}" for n in range(1, 3501)]
    for account in accounts:
        fake.add_account(account, owner, Name=f"Account {account}")
    crm = crm_for(client_credentials(), fake)

    owners = crm.account_owners(accounts)

    assert owners == {to_18(a): owner for a in accounts}
    assert max(in_list_sizes(fake.queries)) <= MAX_IDS_PER_QUERY
    assert crm.queries == 18


# ------------------------------------------------------------------ F14


def test_f14_session_expiring_mid_run_is_renewed_once_and_owners_resolve(
    fake: FakeSalesforce,
) -> None:
    ids = user_ids(1000)
    for n, user_id in enumerate(ids):
        fake.add_user(user_id, f"rep{n}@example.com")
    crm = crm_for(client_credentials(), fake)
    fake.expire_after(2)  # the third query finds its session expired

    users = crm.users(ids)

    assert len(users) == 1000
    assert len(fake.logins) == crm.logins == 2
    assert len(fake.queries) == 5 + 1  # the interrupted query was re-run after the log-in


def test_f14_session_expiring_between_runs_is_renewed(fake: FakeSalesforce) -> None:
    owner = fake.add_user("005000000000001", "dana@example.com", first_name="Dana")
    crm = crm_for(client_credentials(), fake)
    assert crm.users([owner])[owner].first_name == "Dana"
    fake.expire_sessions()

    assert crm.users([owner])[owner].first_name == "Dana"
    assert crm.logins == 2


def test_f14_session_rejected_again_after_a_new_log_in_is_a_clear_error(
    fake: FakeSalesforce,
) -> None:
    owner = fake.add_user("005000000000001", "dana@example.com")
    crm = crm_for(client_credentials(), fake)
    fake.invalid_session(times=2)

    with pytest.raises(OwnerLookupError, match="again right after a new log-in"):
        crm.users([owner])
    assert len(fake.logins) == 2  # exactly one re-authentication, no loop


def test_access_token_expiry_says_it_cannot_be_renewed(fake: FakeSalesforce) -> None:
    owner = fake.add_user("005000000000001", "dana@example.com", first_name="Dana")
    token = fake.issue_token()
    settings = Settings(salesforce_instance_url=fake.instance_url, salesforce_access_token=token)
    crm = crm_for(settings, fake)
    assert crm.users([owner])[owner].first_name == "Dana"
    fake.expire_sessions()

    with pytest.raises(OwnerLookupError) as caught:
        crm.users([owner])
    assert "SALESFORCE_ACCESS_TOKEN" in str(caught.value)
    assert "cannot be renewed" in str(caught.value)
    assert token not in str(caught.value)
    assert fake.logins == []


# ------------------------------------------------------------------ ids


def test_15_character_ids_in_18_character_ids_out(fake: FakeSalesforce) -> None:
    owner = fake.add_user("005A0000001Dana", "dana@example.com")
    account = fake.add_account("001A0000006Vm9r", "005A0000001Dana", Name="Acme")
    crm = crm_for(client_credentials(), fake)

    assert list(crm.users(["005A0000001Dana", owner])) == [owner] == [to_18("005A0000001Dana")]
    assert crm.account_owners(["001A0000006Vm9r"]) == {"001A0000006Vm9rIAC": owner}
    assert account == "001A0000006Vm9rIAC"
    assert in_list_sizes(fake.queries)[0] == 1  # the 15- and 18-character forms: one id


def test_malformed_ids_are_unknown_and_never_fail_the_batch(fake: FakeSalesforce) -> None:
    owner = fake.add_user("005000000000001", "dana@example.com")
    crm = crm_for(client_credentials(), fake)
    hostile = "x') OR Id != ('"

    users = crm.users([owner, hostile, "", "not-an-id"])

    assert list(users) == [owner]
    assert fake.queries == [
        f"SELECT Id, Email, FirstName, IsActive FROM User WHERE Id IN ('{owner}')"
    ]


def test_format_soql_keeps_a_hostile_value_one_literal(fake: FakeSalesforce) -> None:
    """The fake parses SOQL strictly: an escaped quote stays inside its literal."""
    sf = Salesforce(
        instance_url=fake.instance_url, session_id=fake.issue_token(), session=fake.session()
    )
    hostile = "a' OR Id != 'b\\"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query(format_soql("SELECT Id FROM User WHERE Id IN {ids}", ids=[hostile]))
    assert caught.value.content[0]["errorCode"] == "INVALID_QUERY_FILTER_OPERATOR"
    assert caught.value.content[0]["message"] == f"invalid ID field: {hostile}"


def test_hostile_record_values_come_back_verbatim(fake: FakeSalesforce) -> None:
    owner = fake.add_user("005000000000001", "o'brien@example.com", first_name="O'Brien <!here>")
    account = fake.add_account(
        "001000000000001", owner, Name='Robert\'); DROP "Accounts" \\ <!channel>'
    )
    crm = crm_for(client_credentials(), fake)

    assert crm.users([owner])[owner].first_name == "O'Brien <!here>"
    fields = crm.account_fields([account])[account]
    assert fields["Name"] == 'Robert\'); DROP "Accounts" \\ <!channel>'


# ------------------------------------------------------------------ account fields


def test_account_fields_flatten_parent_name_and_keep_custom_fields(fake: FakeSalesforce) -> None:
    owner = fake.add_user("005000000000001", "dana@example.com")
    parent = fake.add_account("001000000000001", owner, Name="Globex Holdings")
    child = fake.add_account(
        "001000000000002",
        owner,
        Name="Globex",
        ParentId="001000000000001",
        Industry="Logistics",
        NumberOfEmployees=1200,
        Plan__c="starter",
    )
    settings = client_credentials(
        salesforce={"account_fields": ["Name", "Parent.Name", "Industry", "Plan__c"]}
    )
    crm = crm_for(settings, fake)

    fields = crm.account_fields([child, parent, "001000000000404"])

    assert fields[child] == {
        "Name": "Globex",
        "Parent.Name": "Globex Holdings",
        "Industry": "Logistics",
        "Plan__c": "starter",
    }
    assert fields[parent]["Parent.Name"] is None
    assert set(fields) == {child, parent}


def test_default_account_fields_are_fetched_in_one_query(fake: FakeSalesforce) -> None:
    account = fake.add_account("001000000000001", None, Name="Acme", AnnualRevenue=5.0e6)
    crm = crm_for(client_credentials(), fake)

    fields = crm.account_fields([account])[account]

    assert fields["Name"] == "Acme"
    assert fields["AnnualRevenue"] == 5.0e6
    assert list(fields) == Settings().salesforce.account_fields
    assert crm.queries == 1


def test_bad_account_field_names_are_a_config_error() -> None:
    settings = client_credentials(salesforce={"account_fields": ["Name", "Name FROM User --"]})
    with pytest.raises(ConfigError, match="account_fields"):
        SalesforceCRM.from_settings(settings)


def test_a_field_salesforce_does_not_know_is_an_owner_lookup_error(fake: FakeSalesforce) -> None:
    account = fake.add_account("001000000000001", None, Name="Acme")
    crm = crm_for(client_credentials(salesforce={"account_fields": ["Nmae"]}), fake)

    with pytest.raises(OwnerLookupError, match="INVALID_FIELD"):
        crm.account_fields([account])


# ------------------------------------------------------------------ log-in modes


@pytest.mark.parametrize(
    "domain",
    ["acme", "acme.my", "acme.my.salesforce.com", "https://acme.my.salesforce.com/", "ACME"],
)
def test_client_credentials_ask_the_my_domain_for_a_token(
    fake: FakeSalesforce, domain: str
) -> None:
    owner = fake.add_user("005000000000001", "dana@example.com")
    crm = crm_for(client_credentials(domain), fake)

    assert owner in crm.users([owner])
    (login,) = fake.logins
    assert login.host == "acme.my.salesforce.com"
    assert login.path == "/services/oauth2/token"
    assert login.form["grant_type"] == "client_credentials"
    assert login.form["client_id"] == CONSUMER_KEY


@pytest.mark.parametrize(
    ("domain", "token_host", "audience"),
    [
        ("", "login.salesforce.com", "https://login.salesforce.com"),
        ("test", "test.salesforce.com", "https://test.salesforce.com"),
        ("acme", "acme.my.salesforce.com", "https://login.salesforce.com"),
    ],
)
def test_jwt_bearer_signs_an_assertion_the_fake_verifies(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, domain: str, token_host: str, audience: str
) -> None:
    key_file = tmp_path / "server.key"
    key_file.write_bytes(_pem(rsa_key))
    settings = Settings(
        salesforce_domain=domain,
        salesforce_username=USERNAME,
        salesforce_consumer_key=CONSUMER_KEY,
        salesforce_private_key_file=str(key_file),
    )
    with FakeSalesforce(jwt_public_key=_public_pem(rsa_key)) as fake:
        owner = fake.add_user("005000000000001", "dana@example.com")
        crm = crm_for(settings, fake)

        assert owner in crm.users([owner])
        (login,) = fake.logins
        assert login.host == token_host
        claims = jwt.decode(login.form["assertion"], options={"verify_signature": False})
        assert claims["aud"] == audience
        assert claims["sub"] == USERNAME


def test_jwt_signed_with_another_key_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "server.key"
    key_file.write_bytes(_pem(other))
    settings = Settings(
        salesforce_username=USERNAME,
        salesforce_consumer_key=CONSUMER_KEY,
        salesforce_private_key_file=str(key_file),
    )
    with FakeSalesforce(jwt_public_key=_public_pem(rsa_key)) as fake:
        crm = crm_for(settings, fake)
        with pytest.raises(OwnerLookupError, match=r"JWT bearer.*refused.*invalid_grant"):
            crm.users(["005000000000001"])


def test_access_token_mode_never_logs_in(fake: FakeSalesforce) -> None:
    owner = fake.add_user("005000000000001", "dana@example.com")
    settings = Settings(
        salesforce_instance_url=fake.instance_url, salesforce_access_token=fake.issue_token()
    )
    crm = crm_for(settings, fake)

    assert owner in crm.users([owner])
    assert fake.logins == []
    assert crm.renewable is False


@pytest.mark.parametrize(
    ("domain", "login_host"),
    [("", "login.salesforce.com"), ("test", "test.salesforce.com")],
)
def test_legacy_password_login_uses_soap_and_test_means_sandbox(
    fake: FakeSalesforce, domain: str, login_host: str
) -> None:
    owner = fake.add_user("005000000000001", "dana@example.com")
    settings = Settings(
        salesforce_domain=domain,
        salesforce_username=USERNAME,
        salesforce_password=PASSWORD,
        salesforce_security_token=SECURITY_TOKEN,
    )
    crm = crm_for(settings, fake)

    assert owner in crm.users([owner])
    (login,) = fake.logins
    assert login.host == login_host
    assert login.path.startswith("/services/Soap/u/")


def test_connect_returns_a_client_and_none_without_settings(fake: FakeSalesforce) -> None:
    assert connect(Settings()) is None
    assert SalesforceCRM.from_settings(Settings()) is None
    assert auth_mode(Settings()) is None

    sf = connect(client_credentials(), session=fake.session())

    assert sf is not None
    assert sf.sf_instance == "acme.my.salesforce.com"
    assert sf.sf_version == Settings().salesforce.api_version


def test_client_credentials_win_when_several_modes_are_complete() -> None:
    settings = client_credentials(
        salesforce_username=USERNAME,
        salesforce_password=PASSWORD,
        salesforce_security_token=SECURITY_TOKEN,
    )
    assert auth_mode(settings) == "client_credentials"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"salesforce_domain": "acme", "salesforce_consumer_key": CONSUMER_KEY},
            "OAuth client credentials): SALESFORCE_CONSUMER_SECRET not set",
        ),
        (
            {
                "salesforce_domain": "test",
                "salesforce_consumer_key": CONSUMER_KEY,
                "salesforce_consumer_secret": CONSUMER_SECRET,
            },
            "SALESFORCE_DOMAIN must be your My Domain",
        ),
        (
            {"salesforce_username": USERNAME, "salesforce_consumer_key": CONSUMER_KEY},
            "JWT bearer): SALESFORCE_PRIVATE_KEY_FILE not set",
        ),
        (
            {"salesforce_instance_url": "https://acme.my.salesforce.com"},
            "access token): SALESFORCE_ACCESS_TOKEN not set",
        ),
        (
            {"salesforce_access_token": "00Dsecret-token-value"},
            "access token): SALESFORCE_INSTANCE_URL not set",
        ),
        (
            {"salesforce_username": USERNAME, "salesforce_password": PASSWORD},
            "(legacy)): SALESFORCE_SECURITY_TOKEN not set",
        ),
        (
            {"salesforce_domain": "test", "salesforce_username": USERNAME},
            "(legacy)): SALESFORCE_PASSWORD and SALESFORCE_SECURITY_TOKEN not set",
        ),
        (
            {"salesforce_instance_url": "http://acme.my.salesforce.com"},
            "SALESFORCE_ACCESS_TOKEN not set",
        ),
        (
            {
                "salesforce_instance_url": "acme.my.salesforce.com",
                "salesforce_access_token": "00Dsecret-token-value",
            },
            "SALESFORCE_INSTANCE_URL must be an https URL",
        ),
        (
            {
                "salesforce_domain": "acme corp!",
                "salesforce_consumer_key": CONSUMER_KEY,
                "salesforce_consumer_secret": CONSUMER_SECRET,
            },
            "is not a My Domain",
        ),
    ],
)
def test_partial_or_invalid_settings_name_what_is_missing(
    values: dict[str, str], expected: str
) -> None:
    settings = Settings(**values)
    with pytest.raises(ConfigError) as caught:
        SalesforceCRM.from_settings(settings)
    assert expected in str(caught.value)
    for secret in (CONSUMER_SECRET, PASSWORD, "00Dsecret-token-value"):
        assert secret not in str(caught.value)
    with pytest.raises(ConfigError):
        connect(settings)


@pytest.mark.parametrize(
    ("content", "expected"), [(None, "cannot read"), (b"not a key", "not an RSA private key")]
)
def test_unusable_private_key_file_is_a_config_error(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    key_file = tmp_path / "server.key"
    if content is not None:
        key_file.write_bytes(content)
    settings = Settings(
        salesforce_username=USERNAME,
        salesforce_consumer_key=CONSUMER_KEY,
        salesforce_private_key_file=str(key_file),
    )
    with pytest.raises(ConfigError, match=expected):
        SalesforceCRM.from_settings(settings)


# ------------------------------------------------------------------ failures, secrets


def test_refused_log_in_names_the_mode_but_never_the_secret(
    fake: FakeSalesforce, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-5e1d"
    settings = Settings(
        salesforce_domain="acme",
        salesforce_consumer_key=CONSUMER_KEY,
        salesforce_consumer_secret=wrong,
    )
    crm = crm_for(settings, fake)

    with pytest.raises(OwnerLookupError) as caught:
        crm.users(["005000000000001"])

    message = str(caught.value)
    assert "OAuth client credentials" in message
    assert "invalid_client" in message
    assert wrong not in message
    assert wrong not in caplog.text


def test_no_secret_reaches_the_logs_of_a_working_run(
    fake: FakeSalesforce, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    owner = fake.add_user("005000000000001", "dana@example.com")
    crm = crm_for(client_credentials(), fake)
    crm.users([owner])
    fake.expire_sessions()
    crm.users([owner])

    assert "acme.my.salesforce.com" in caplog.text
    assert CONSUMER_SECRET not in caplog.text
    assert "00Dfake!session" not in caplog.text


def test_a_server_error_is_an_owner_lookup_error(fake: FakeSalesforce) -> None:
    crm = crm_for(client_credentials(), fake)
    fake.fail("query", status=503, code="SERVER_UNAVAILABLE", message="try later")

    with pytest.raises(OwnerLookupError, match="SERVER_UNAVAILABLE: try later"):
        crm.users(["005000000000001"])


@pytest.mark.parametrize("route", ["query", "token"])
def test_a_hung_salesforce_fails_within_the_timeout(fake: FakeSalesforce, route: Any) -> None:
    crm = crm_for(client_credentials(salesforce={"timeout_s": 0.3}), fake)
    fake.hang(route, seconds=5)

    started = time.monotonic()
    with pytest.raises(OwnerLookupError, match=r"0\.3 s"):
        crm.users(["005000000000001"])
    assert time.monotonic() - started < 2


def test_nothing_is_asked_for_no_ids(fake: FakeSalesforce) -> None:
    crm = crm_for(client_credentials(), fake)

    assert crm.users([]) == {}
    assert crm.account_owners(["", "  "]) == {}
    assert fake.calls == []


def test_check_logs_in_and_names_the_instance(fake: FakeSalesforce) -> None:
    crm = crm_for(client_credentials(), fake)

    assert crm.check() == "acme.my.salesforce.com"
    assert fake.queries == ["SELECT Id FROM User LIMIT 1"]


# ------------------------------------------------------------------ record URL


def test_record_url_is_the_lightning_page_with_the_18_character_id(fake: FakeSalesforce) -> None:
    crm = crm_for(client_credentials(), fake)

    assert crm.record_url("001A0000006Vm9r") == (
        "https://acme.my.salesforce.com/lightning/r/Account/001A0000006Vm9rIAC/view"
    )
    assert fake.calls == []  # known from the My Domain: no log-in just for a link


def test_record_url_prefers_the_configured_instance_url() -> None:
    settings = client_credentials(salesforce={"instance_url": "https://acme.lightning.force.com/"})
    crm = SalesforceCRM.from_settings(settings)
    assert crm is not None

    assert crm.record_url("001A0000006Vm9rIAC") == (
        "https://acme.lightning.force.com/lightning/r/Account/001A0000006Vm9rIAC/view"
    )


def test_record_url_after_a_password_log_in_uses_the_instance(fake: FakeSalesforce) -> None:
    settings = Settings(
        salesforce_username=USERNAME,
        salesforce_password=PASSWORD,
        salesforce_security_token=SECURITY_TOKEN,
    )
    crm = crm_for(settings, fake)
    assert crm.record_url("001A0000006Vm9r") == ""  # not known before the log-in

    crm.users(["005000000000001"])

    assert crm.record_url("001A0000006Vm9r").startswith("https://acme.my.salesforce.com/lightning")


# ------------------------------------------------------------------ territory


def test_territory_resolves_salesforce_owners_through_slack(
    fake: FakeSalesforce, slack: FakeSlack, clock: Clock
) -> None:
    dana = fake.add_user("005A0000001Dana", "  Dana.Smith@Example.COM ", first_name="Dana")
    gone = fake.add_user("005A0000001Gone", "gone@example.com", active=False)
    slack.add_user("U0DANA", "dana.smith@example.com", first_name="Danielle")
    crm = crm_for(client_credentials(), fake)
    territory = Territory(SlackWeb(web_client(BOT_TOKEN, slack.url)), crm=crm, clock=clock)

    owners = territory.resolve_many([dana, gone, dana, to_18("005A0000001Nobd")])

    assert owners[dana] == Owner(dana, "U0DANA", "Dana", "America/New_York")
    assert isinstance(owners[gone], Unresolved)
    assert "inactive" in owners[gone].reason
    assert isinstance(owners[to_18("005A0000001Nobd")], Unresolved)
    assert crm.queries == 1
    assert [c.params["email"] for c in slack.calls_to("users.lookupByEmail")] == [
        "dana.smith@example.com"
    ]


def test_a_next_page_link_that_never_ends_is_abandoned_not_followed_forever(
    fake: FakeSalesforce,
) -> None:
    ids = user_ids(3)
    for n, user_id in enumerate(ids):
        fake.add_user(user_id, f"u{n}@example.com")
    fake.page_size = 1
    real_page = fake._page
    fake._page = lambda where: {**real_page(where), "done": False}  # type: ignore[method-assign]
    crm = crm_for(client_credentials(), fake)
    with pytest.raises(OwnerLookupError, match="kept paging"):
        crm.users(ids)
    assert crm.pages <= 100
