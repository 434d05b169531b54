"""Owner resolution: CRM owner -> email -> Slack user, the territory CSV, first names, caching."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path

import pytest

from bot.crmid import to_18
from bot.delivery import SlackWeb, web_client
from bot.errors import ConfigError, DeliveryError
from bot.store import Store
from bot.territory import CrmUser, Owner, Territory, Unresolved, read_territory
from tests.conftest import BOT_TOKEN, Clock
from tests.fakes.slack import DEFAULT_SCOPES, FakeSlack

# Owner ids enter Nudge normalised to their 18-character form (SPEC 4).
DANA = to_18("005A0000001Dana")
GONE = to_18("005A0000001Gone")
NOBODY = to_18("005A0000001Nobd")
HEADER = "crm_user_id,email,slack_user_id\n"


class FakeCrm:
    """A CrmDirectory over a dict, recording each batched call."""

    def __init__(self, users: Iterable[CrmUser]) -> None:
        self.by_id = {user.id: user for user in users}
        self.calls: list[list[str]] = []

    def users(self, ids: Iterable[str]) -> Mapping[str, CrmUser]:
        wanted = list(ids)
        self.calls.append(wanted)
        return {i: self.by_id[i] for i in wanted if i in self.by_id}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    yield store
    store.engine.dispose()


def slack_web(fake: FakeSlack) -> SlackWeb:
    return SlackWeb(web_client(BOT_TOKEN, fake.url))


def write_csv(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "territory.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def lookups(fake: FakeSlack) -> list[str]:
    return [call.params["email"] for call in fake.calls_to("users.lookupByEmail")]


# ------------------------------------------------------------------ F06


def test_messy_crm_email_resolves_and_the_batch_goes_on(
    slack: FakeSlack, store: Store, clock: Clock
) -> None:
    slack.add_user("U0DANA", "dana.owner@example.com", first_name="Dana")
    slack.add_user("U0GONE", "gone@example.com", first_name="Gone", deleted=True)
    crm = FakeCrm(
        [
            CrmUser(DANA, " Dana.Owner@Example.com ", first_name="Dana"),
            CrmUser(GONE, "Gone@Example.com"),
            CrmUser(NOBODY, "nobody@example.com"),
        ]
    )
    territory = Territory(slack_web(slack), crm=crm, store=store, clock=clock)

    result = territory.resolve_many([DANA, GONE, NOBODY, None, DANA])

    assert list(result) == [DANA, GONE, NOBODY, None]
    assert result[DANA] == Owner(DANA, "U0DANA", "Dana", "America/New_York")
    assert result[GONE] == Unresolved(GONE, "the Slack account of gone@example.com is deactivated")
    assert result[NOBODY] == Unresolved(NOBODY, "no Slack user has the email nobody@example.com")
    assert result[None] == Unresolved(None, "the account has no owner in the CRM")
    assert lookups(slack) == ["dana.owner@example.com", "gone@example.com", "nobody@example.com"]
    assert crm.calls == [[DANA, GONE, NOBODY]]


def test_messy_csv_email_resolves(slack: FakeSlack, tmp_path: Path, clock: Clock) -> None:
    slack.add_user("U0DANA", "dana.owner@example.com", first_name="Dana")
    path = write_csv(tmp_path, f'{DANA}," Dana.Owner@Example.com ",\n')
    territory = Territory(slack_web(slack), overrides=read_territory(path), clock=clock)

    result = territory.resolve_many([DANA])

    assert result[DANA] == Owner(DANA, "U0DANA", "Dana", "America/New_York")
    assert lookups(slack) == ["dana.owner@example.com"]


def test_deactivated_owner_stays_deactivated_when_read_from_the_cache(
    slack: FakeSlack, store: Store, clock: Clock
) -> None:
    slack.add_user("U0GONE", "gone@example.com", deleted=True)
    crm = FakeCrm([CrmUser(GONE, "gone@example.com"), CrmUser(NOBODY, "nobody@example.com")])
    first = Territory(slack_web(slack), crm=crm, store=store, clock=clock)
    first_result = first.resolve_many([GONE, NOBODY])
    clock.advance(hours=1)
    second = Territory(slack_web(slack), crm=crm, store=store, clock=clock)

    second_result = second.resolve_many([GONE, NOBODY])

    assert second_result == first_result
    assert second_result[GONE] == Unresolved(
        GONE, "the Slack account of gone@example.com is deactivated"
    )
    assert second.lookups == 0
    assert len(lookups(slack)) == 2


def test_missing_email_scope_is_a_fatal_error(tmp_path: Path, clock: Clock) -> None:
    scopes = DEFAULT_SCOPES.replace(",users:read.email", "")
    assert "users:read.email" not in scopes.split(",")
    with FakeSlack(token=BOT_TOKEN, scopes=scopes) as fake:
        fake.add_user("U0DANA", "dana.owner@example.com")
        web = slack_web(fake)
        store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
        crm = FakeCrm([CrmUser(DANA, "dana.owner@example.com")])
        territory = Territory(web, crm=crm, store=store, clock=clock)

        with pytest.raises(DeliveryError) as raised:
            territory.resolve_many([DANA, NOBODY])

        assert raised.value.fatal is True
        assert raised.value.code == "missing_scope"
        assert "users:read.email" not in web.scopes()
        # Nothing was cached as "not found": once the scope is granted, the owner resolves.
        assert store.cached_user("dana.owner@example.com", clock(), timedelta(days=1)) is None
        store.engine.dispose()


# ------------------------------------------------------------------ the territory CSV


def test_csv_slack_user_id_wins_over_email(slack: FakeSlack, tmp_path: Path, clock: Clock) -> None:
    slack.add_user("U0DANA", "dana.owner@example.com", first_name="Dana")
    slack.add_user("U0COVER", "cover@example.com", first_name="Casey")
    path = write_csv(tmp_path, f"{DANA},dana.owner@example.com,U0COVER\n")
    crm = FakeCrm([CrmUser(DANA, "dana.owner@example.com")])
    territory = Territory(slack_web(slack), overrides=read_territory(path), crm=crm, clock=clock)

    result = territory.resolve_many([DANA])

    assert result[DANA] == Owner(DANA, "U0COVER", "Casey", "America/New_York")
    assert [call.params["user"] for call in slack.calls_to("users.info")] == ["U0COVER"]
    assert lookups(slack) == []
    assert crm.calls == []  # the CSV row overrides the CRM chain


def test_csv_slack_user_id_of_a_deleted_user_is_unresolved(
    slack: FakeSlack, tmp_path: Path, clock: Clock
) -> None:
    slack.add_user("U0GONE", "gone@example.com", deleted=True)
    path = write_csv(tmp_path, f"{GONE},,U0GONE\n{NOBODY},,U0NOBODY\n")
    territory = Territory(slack_web(slack), overrides=read_territory(path), clock=clock)

    result = territory.resolve_many([GONE, NOBODY])

    assert result[GONE] == Unresolved(GONE, "the Slack account of U0GONE is deactivated")
    assert result[NOBODY] == Unresolved(
        NOBODY, "Slack user U0NOBODY is not a member of this Slack workspace"
    )


def test_csv_15_char_ids_match_18_char_owner_ids(
    slack: FakeSlack, tmp_path: Path, clock: Clock
) -> None:
    slack.add_user("U0DANA", "dana.owner@example.com", first_name="Dana")
    short, full = "005A0000006Vm9r", "005A0000006Vm9rIAC"
    assert to_18(short) == full
    path = write_csv(tmp_path, f" {short} ,dana.owner@example.com,\n")
    overrides = read_territory(path)
    assert list(overrides) == [full]
    territory = Territory(slack_web(slack), overrides=overrides, clock=clock)

    assert territory.resolve_many([full])[full] == Owner(full, "U0DANA", "Dana", "America/New_York")


def test_csv_with_bom_and_extra_columns_is_read(tmp_path: Path) -> None:
    path = tmp_path / "territory.csv"
    path.write_text(
        "\ufeffname,crm_user_id,email,slack_user_id\nDana,005A0000006Vm9r,Dana@Example.com, U0D \n",
        encoding="utf-8",
    )
    row = read_territory(path)["005A0000006Vm9rIAC"]
    assert (row.email, row.slack_user_id) == ("dana@example.com", "U0D")


def test_csv_missing_a_column_is_a_config_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"{DANA},dana@example.com\n", header="crm_user_id,email\n")
    with pytest.raises(ConfigError) as raised:
        read_territory(path)
    assert raised.value.problems == [f"{path}: missing column(s) slack_user_id"]


def test_unreadable_csv_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="territory: cannot read"):
        read_territory(tmp_path / "absent.csv")


# ------------------------------------------------------------------ first names


@pytest.mark.parametrize(
    ("crm_first", "slack_first", "real_name", "expected"),
    [
        ("Dana", "Danielle", "Danielle Owner", "Dana"),
        ("  ", "Danielle", "Danielle Owner", "Danielle"),
        ("", "Danielle", "Dani Owner", "Danielle"),
        ("", "", "Dani Owner", "Dani"),
    ],
)
def test_first_name_precedence(
    slack: FakeSlack,
    store: Store,
    clock: Clock,
    crm_first: str,
    slack_first: str,
    real_name: str,
    expected: str,
) -> None:
    slack.add_user("U0DANA", "dana@example.com", first_name=slack_first, real_name=real_name)
    crm = FakeCrm([CrmUser(DANA, "dana@example.com", first_name=crm_first)])
    for _run in range(2):  # the second run reads the Slack user from the cache
        territory = Territory(slack_web(slack), crm=crm, store=store, clock=clock)
        owner = territory.resolve_many([DANA])[DANA]
        assert isinstance(owner, Owner)
        assert owner.first_name == expected
    assert len(lookups(slack)) == 1


# ------------------------------------------------------------------ caching (F05, F06)


def forty_owners(slack: FakeSlack) -> tuple[FakeCrm, list[str]]:
    """40 CRM owners with Slack accounts, and the owner ids of 120 accounts."""
    owners = [to_18(f"005A00000{i:06d}") for i in range(40)]
    for i in range(40):
        slack.add_user(f"U{i:04d}", f"ae{i}@example.com", first_name=f"Ae{i}")
    crm = FakeCrm(CrmUser(owner, f"AE{i}@Example.com ") for i, owner in enumerate(owners))
    accounts = [owners[n % 40] for n in range(120)]
    return crm, accounts


def test_one_lookup_per_owner_cached_across_runs_until_the_ttl(
    slack: FakeSlack, store: Store, clock: Clock
) -> None:
    crm, accounts = forty_owners(slack)
    ttl = timedelta(hours=6)

    def run() -> dict[str | None, Owner | Unresolved]:
        territory = Territory(slack_web(slack), crm=crm, store=store, cache_ttl=ttl, clock=clock)
        return territory.resolve_many(accounts)

    first = run()
    assert len(first) == 40
    assert all(isinstance(r, Owner) for r in first.values())
    seventh = to_18("005A00000000007")
    assert first[seventh] == Owner(seventh, "U0007", "Ae7", "America/New_York")
    assert len(lookups(slack)) == 40
    assert len(set(lookups(slack))) == 40
    assert crm.calls == [list(dict.fromkeys(accounts))]

    clock.advance(hours=5, minutes=59)
    assert run() == first
    assert len(lookups(slack)) == 40  # a new run within the TTL: no look-up at all

    clock.advance(minutes=2)
    run()
    assert len(lookups(slack)) == 80  # past the TTL: looked up again, once per owner


def test_same_territory_does_not_look_up_twice(slack: FakeSlack, clock: Clock) -> None:
    crm, accounts = forty_owners(slack)
    territory = Territory(slack_web(slack), crm=crm, clock=clock)
    territory.resolve_many(accounts)
    territory.resolve_many(accounts)
    assert territory.lookups == 40
    assert len(lookups(slack)) == 40


# ------------------------------------------------------------------ unresolvable owners


def test_inactive_crm_user_is_unresolved(slack: FakeSlack, clock: Clock) -> None:
    slack.add_user("U0DANA", "dana@example.com")
    crm = FakeCrm([CrmUser(DANA, "dana@example.com", first_name="Dana", active=False)])
    territory = Territory(slack_web(slack), crm=crm, clock=clock)

    result = territory.resolve_many([DANA])[DANA]

    assert isinstance(result, Unresolved)
    assert "inactive" in result.reason
    assert result.reason == f"CRM user {DANA} is inactive"
    assert lookups(slack) == []


def test_owner_missing_from_csv_without_crm_names_the_territory_file(
    slack: FakeSlack, tmp_path: Path, clock: Clock
) -> None:
    slack.add_user("U0DANA", "dana@example.com")
    path = write_csv(tmp_path, f"{DANA},dana@example.com,\n")
    territory = Territory(slack_web(slack), overrides=read_territory(path), clock=clock)

    result = territory.resolve_many([DANA, NOBODY])

    assert isinstance(result[DANA], Owner)
    assert result[NOBODY] == Unresolved(
        NOBODY, f"owner {NOBODY} is not in the territory file and no CRM is configured"
    )


def test_owner_unknown_to_the_crm_is_unresolved(slack: FakeSlack, clock: Clock) -> None:
    territory = Territory(slack_web(slack), crm=FakeCrm([]), clock=clock)
    result = territory.resolve_many([NOBODY])[NOBODY]
    assert isinstance(result, Unresolved)
    assert result.crm_id == NOBODY
    assert NOBODY in result.reason
