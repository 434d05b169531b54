"""The slash commands through signed HTTP, as Slack sends them (SPEC 1.2, 6, 7; F01, F07).

Every answer goes to the command's response_url (the fake's sink `cmd`); state changes are
read back from the state database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from blocks.text import format_day
from bot.errors import WarehouseError
from bot.lookup import Query, parse_query
from bot.schema import audit, threshold_changes
from bot.usage import Warehouse
from tests.conftest import Clock
from tests.fakes.slack import FakeSlack
from tests.slackapp import SlackApp, sign
from tests.test_usage import bound_values, make_warehouse
from tests.warehouses import account, create_usage_table, sf_id

THRESHOLD = "/usage-threshold"
SUMMARY = "/usage-summary"
ADMIN = "U0ADMIN0001"
WORKSPACE_ADMIN = "U0WSADMIN01"
GUEST = "U0GUEST0001"
OWNER = "U0OWNER0001"
OTHER = "U0OWNER0002"
ROWS = [
    account(1, 41, 50, owner=1, plan="pro", name="Acme Corp"),
    account(2, 10, 50, owner=2, name="Globex"),
    account(3, 45, 50, owner=1, name="Initech"),
]
HOSTILE = ("<!channel>", "<!here", "<script>", "<https://evil")


@pytest.fixture
def make_app(tmp_path: Path, slack: FakeSlack, clock: Clock) -> Iterator[Callable[..., SlackApp]]:
    """Start the Slack app (NUDGE_ADMINS = ADMIN unless overridden) over the standard rows."""
    slack.add_user(ADMIN, "admin@example.com", first_name="Ada")
    slack.add_user(WORKSPACE_ADMIN, "boss@example.com", first_name="Bo", is_admin=True)
    slack.add_user(GUEST, "guest@partner.example", first_name="Gus", is_restricted=True)
    started: list[SlackApp] = []

    def start(**settings: Any) -> SlackApp:
        app = SlackApp(tmp_path, slack, clock, settings={"admins": ADMIN, **settings})
        app.__enter__()
        app.set_rows(ROWS)
        started.append(app)
        return app

    yield start
    for app in started:
        app.__exit__(None, None, None)


@pytest.fixture
def app(make_app: Callable[..., SlackApp]) -> SlackApp:
    return make_app()


def run(app: SlackApp, command: str, text: str, user: str = OWNER) -> tuple[Any, dict[str, Any]]:
    """Send a command; return (the ack's body, the one answer that reached the response_url)."""
    before = len(app.slack.responses.get("cmd", []))
    status, body, _ = app.command(command, text, user)
    assert status == 200
    app.slack.wait_for(
        lambda: len(app.slack.responses.get("cmd", [])) > before, timeout=10, message="no answer"
    )
    reply = app.slack.responses["cmd"][before]
    assert_valid_ephemeral(reply)
    return (json.loads(body) if body else None), reply


def assert_valid_ephemeral(reply: dict[str, Any]) -> None:
    """Ephemeral, a plain-text fallback, Block Kit within limits, nothing Nudge did not build."""
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] and reply["blocks"] and len(reply["blocks"]) <= 50
    assert reply.get("unfurl_links") is False and reply.get("unfurl_media") is False
    for block in reply["blocks"]:
        assert block["type"] in ("header", "section", "context")
    whole = json.dumps(reply)
    assert not any(bad in whole for bad in HOSTILE), whole


def shown(reply: dict[str, Any]) -> str:
    """Every text of an answer, fallback and blocks, as one string."""
    return reply["text"] + "\n" + json.dumps(reply["blocks"], ensure_ascii=False)


def changes(app: SlackApp) -> list[Any]:
    with app.store.engine.connect() as conn:
        return list(conn.execute(select(threshold_changes)))


def audits(app: SlackApp) -> list[Any]:
    with app.store.engine.connect() as conn:
        return list(conn.execute(select(audit)))


# --- /usage-threshold ----------------------------------------------------------------------


def test_show_is_the_default_and_tells_value_source_last_poll_and_accounts_above(
    app: SlackApp,
) -> None:
    ack, reply = run(app, THRESHOLD, "")
    assert ack is None  # a plain ack: the answer needs the warehouse, after it
    text = shown(reply)
    assert "Usage threshold: 75 %" in text and "Nudge's default" in text
    assert "None yet" in text  # no poll so far
    assert "2 of 3 accounts" in text  # 82 % and 90 % are above 75 %
    assert "No changes yet" in text

    app.poll()
    _, reply = run(app, THRESHOLD, "show")
    assert "ran fine" in shown(reply) and "14:00 UTC" in shown(reply)


def test_show_after_a_change_names_who_changed_it_and_that_it_applies_next_poll(
    app: SlackApp,
) -> None:
    app.poll()
    run(app, THRESHOLD, "set 85", user=ADMIN)
    _, reply = run(app, THRESHOLD, "show")
    text = shown(reply)
    assert "Usage threshold: 85 %" in text
    assert f"set with `/usage-threshold set` by <@{ADMIN}>" in text
    assert "applies from the next poll (the last one used 75 %)" in text
    assert f"<@{ADMIN}>: 75 % → 85 %" in text
    assert "1 of 3 accounts" in text  # only the 90 % one


def test_show_says_where_a_configured_threshold_comes_from(
    make_app: Callable[..., SlackApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(rule={"threshold": 80})
    assert "80 %" in shown(run(app, THRESHOLD, "")[1])
    assert "[rule] threshold" in shown(run(app, THRESHOLD, "")[1])

    monkeypatch.setenv("NUDGE_RULE__THRESHOLD", "90")
    app = make_app()
    text = shown(run(app, THRESHOLD, "show")[1])
    assert "Usage threshold: 90 %" in text and "NUDGE_RULE__THRESHOLD" in text


def test_show_still_answers_when_the_warehouse_fails(
    app: SlackApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Warehouse, threshold: Decimal) -> Any:
        raise WarehouseError("warehouse query failed: OperationalError: SELECT secret FROM x")

    monkeypatch.setattr(Warehouse, "counts", broken)
    text = shown(run(app, THRESHOLD, "")[1])
    assert "Unknown: the warehouse did not answer" in text
    assert "SELECT" not in text and "OperationalError" not in text


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("set 80", "80"),
        ("set 80%", "80"),
        ("set 80 %", "80"),
        ("set 62.5", "62.5"),
        ("set 100", "100"),
        ("set 080", "80"),
        ("SET 70", "70"),
        ("  set   0.01  ", "0.01"),
    ],
)
def test_an_admin_sets_the_threshold_audited_and_used_by_the_next_poll(
    app: SlackApp, text: str, stored: str
) -> None:
    _, reply = run(app, THRESHOLD, text, user=ADMIN)
    assert "applies from the next poll" in shown(reply)
    assert app.store.stored_threshold() == Decimal(stored)
    [change] = app.store.threshold_history()
    assert (change["user_id"], change["old"], change["new"]) == (ADMIN, 75, Decimal(stored))
    assert change["at"] == app.clock()
    assert app.poll().threshold == Decimal(stored)


def test_a_workspace_admin_may_set_too(app: SlackApp) -> None:
    run(app, THRESHOLD, "set 90", user=WORKSPACE_ADMIN)
    assert app.store.stored_threshold() == Decimal(90)


def test_setting_the_current_value_changes_nothing(app: SlackApp) -> None:
    _, reply = run(app, THRESHOLD, "set 75%", user=ADMIN)
    assert "already *75 %*: nothing changed" in shown(reply)
    assert changes(app) == []


@pytest.mark.parametrize(
    "text",
    [
        "set abc",
        "set 0",
        "set 101",
        "set -5",
        "set +75",
        "set 62,5",
        "set 62.555",
        "set 75 80",
        "set",
        "set %",
        "set ７５",  # full-width digits
        "set ٧٥",  # Arabic-Indic digits
        "set 75; drop table threshold_changes",
        "show extra",
        "help me",
        "raise it",
        "réglage 80",
    ],
)
def test_malformed_threshold_text_gets_the_usage_line_and_changes_nothing(
    app: SlackApp, text: str
) -> None:
    _, reply = run(app, THRESHOLD, text, user=ADMIN)
    assert "Usage:" in reply["text"] and "`/usage-threshold set 75`" in reply["text"]
    assert app.store.stored_threshold() is None and changes(app) == []


def test_the_usage_line_echoes_the_text_escaped(app: SlackApp) -> None:
    _, reply = run(app, THRESHOLD, "set <!channel> & <@U0ADMIN0001>", user=ADMIN)
    assert "“set &lt;!channel&gt; &amp; &lt;@U0ADMIN0001&gt;”" in reply["text"]
    assert changes(app) == []


def test_a_non_admin_cannot_set(app: SlackApp) -> None:
    _, reply = run(app, THRESHOLD, "set 80", user=OWNER)
    assert "Only Nudge admins can change the threshold" in reply["text"]
    assert app.store.stored_threshold() is None and changes(app) == []


@pytest.mark.parametrize("text", ["", "show", "help", "set 80", "nonsense"])
def test_guests_are_refused_every_subcommand(app: SlackApp, text: str) -> None:
    _, reply = run(app, THRESHOLD, text, user=GUEST)
    assert reply["text"] == "Sorry, Nudge isn't available to guest accounts."
    assert app.store.stored_threshold() is None and changes(app) == []


def test_unknown_slack_users_are_refused(app: SlackApp) -> None:
    _, reply = run(app, THRESHOLD, "set 80", user="U0NOBODY001")
    assert "doesn't know your Slack account" in reply["text"]
    assert changes(app) == []


def test_help_explains_the_subcommands_and_the_precedence(app: SlackApp) -> None:
    text = shown(run(app, THRESHOLD, "help")[1])
    assert "`/usage-threshold set N`" in text and "admins only" in text
    assert "NUDGE_RULE__THRESHOLD" in text and "75 %" in text


# --- /usage-summary ------------------------------------------------------------------------


def test_summary_acks_at_once_then_answers_usage_owner_alert_state_and_summary(
    app: SlackApp,
) -> None:
    ack, reply = run(app, SUMMARY, "account1.example")
    assert ack == {"text": "Looking up account1.example…", "response_type": "ephemeral"}
    text = shown(reply)
    assert "Acme Corp — 82 %" in text
    assert "41 / 50 h (82 %)" in text
    assert f"<@{OWNER}>" in text
    assert "None yet — above 75 %: alerted at the next poll" in text
    assert "Pro" in text  # the key field `plan`
    assert "Here's a fresh summary created by a bot" in text and "Used 41 of 50 h" in text
    assert "Open in Salesforce" in text
    [row] = audits(app)
    assert (row.user_id, row.action) == (OWNER, "usage-summary")
    assert row.detail["query"] == "account1.example" and row.detail["matches"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "https://www.Account1.example/pricing",
        "jane@account1.example",
        "ACCOUNT1.EXAMPLE",
        "<https://account1.example|account1.example>",
        "acme",
        "ACME corp",
    ],
)
def test_a_domain_url_email_or_name_finds_the_account(app: SlackApp, text: str) -> None:
    assert "Acme Corp — 82 %" in shown(run(app, SUMMARY, text)[1])


def test_the_answer_shows_the_alert_state_and_its_owner(app: SlackApp, clock: Clock) -> None:
    app.poll()
    alert = app.store.open_alerts()[sf_id("001", 1)]
    assert "Alerted since" in shown(run(app, SUMMARY, "account1.example")[1])

    until = clock() + timedelta(days=7)
    app.store.update_alert(
        alert.id, alert.version, clock(), state="snoozed", snoozed_until=until, acted_by=OTHER
    )
    text = shown(run(app, SUMMARY, "account1.example")[1])
    assert f"Snoozed until {format_day(until)} by <@{OTHER}>" in text

    alert = app.store.open_alerts()[sf_id("001", 1)]
    app.store.update_alert(alert.id, alert.version, clock(), state="contacted", acted_by=OWNER)
    assert f"Marked contacted by <@{OWNER}>" in shown(run(app, SUMMARY, "acme corp")[1])


def test_below_the_threshold_says_no_alert(app: SlackApp) -> None:
    text = shown(run(app, SUMMARY, "globex")[1])
    assert "10 / 50 h (20 %)" in text and "None — below 75 %" in text


def test_several_matches_give_a_short_list_to_choose_from(app: SlackApp) -> None:
    app.set_rows([account(n, n, 50, name=f"Northwind {n}") for n in range(1, 13)])
    _, reply = run(app, SUMMARY, "northwind")
    text = shown(reply)
    assert "*10+ accounts* match “northwind”" in text and "type more of the name" in text
    assert text.count("• *Northwind") == 10
    assert "`/usage-summary account1.example`" in text
    assert "Here's a fresh summary" not in text
    assert audits(app)[0].detail == {
        "query": "northwind",
        "kind": "name",
        "matches": 10,
        "more": True,
    }

    _, reply = run(app, SUMMARY, "northwind 1")  # Northwind 1, 10, 11, 12
    assert "*4 accounts*" in shown(reply)


def test_no_match_says_so_and_summarises_nothing(app: SlackApp) -> None:
    _, reply = run(app, SUMMARY, "nosuch.example")
    assert reply["text"].startswith("No account has the domain `nosuch.example`.")
    _, reply = run(app, SUMMARY, "Umbrella")
    assert reply["text"].startswith("No account name contains “Umbrella”.")
    assert [a.detail["matches"] for a in audits(app)] == [0, 0]


def test_an_account_without_usage_data_gets_no_summary(app: SlackApp) -> None:
    app.set_rows([account(1, 5, 0, name="Zero Quota"), account(2, None, 40, name="No Hours")])
    for text in ("zero quota", "no hours"):
        answer = shown(run(app, SUMMARY, text)[1])
        assert "No usage data (quota missing or zero)" in answer
        assert "No summary: there is no usage data to summarise." in answer


def test_an_unknown_owner_is_explained(app: SlackApp) -> None:
    app.set_rows([account(1, 41, 50, owner=9, name="Orphan Inc")])
    text = shown(run(app, SUMMARY, "orphan")[1])
    assert "Unknown — owner" in text and "is not in the territory file" in text


@pytest.mark.parametrize("text", ["", "   ", "a", "é", "https://", "x" * 300])
def test_unusable_text_gets_the_usage_line_and_looks_nothing_up(app: SlackApp, text: str) -> None:
    ack, reply = run(app, SUMMARY, text)
    assert ack is None
    assert "`/usage-summary acme.com`" in reply["text"]
    assert audits(app) == []


def test_unicode_and_extra_words_are_just_names(app: SlackApp) -> None:
    app.set_rows([account(1, 41, 50, name="Café Ünïcode"), *ROWS[1:]])
    assert "Café Ünïcode — 82 %" in shown(run(app, SUMMARY, "café")[1])
    assert "Café Ünïcode — 82 %" in shown(run(app, SUMMARY, "Ünïcode")[1])
    _, reply = run(app, SUMMARY, "account1.example please")
    assert reply["text"].startswith("No account name contains “account1.example please”")
    _, reply = run(app, SUMMARY, "😀😀")
    assert reply["text"].startswith("No account name contains “😀😀”")


def test_guests_cannot_look_accounts_up(app: SlackApp) -> None:
    for text in ("account1.example", ""):
        _, reply = run(app, SUMMARY, text, user=GUEST)
        assert reply["text"] == "Sorry, Nudge isn't available to guest accounts."
    assert audits(app) == []


def test_with_nudge_viewers_set_only_its_members_and_admins_may_look_up(
    make_app: Callable[..., SlackApp], slack: FakeSlack
) -> None:
    slack.add_usergroup("S0VIEWERS", [OWNER])
    app = make_app(viewers="S0VIEWERS")
    assert "Acme Corp" in shown(run(app, SUMMARY, "acme", user=OWNER)[1])
    assert "Acme Corp" in shown(run(app, SUMMARY, "acme", user=ADMIN)[1])
    _, reply = run(app, SUMMARY, "acme", user=OTHER)
    assert "limited to the Nudge viewers group" in reply["text"]
    assert [a.user_id for a in audits(app)] == [OWNER, ADMIN]


# --- F01: ack well inside 3 s, one final answer, failures are a short line -------------------


def slow(monkeypatch: pytest.MonkeyPatch, seconds: float, fail: Exception | None = None) -> None:
    """Fault injection: the real Warehouse.find, after `seconds` (or failing after them)."""
    real = Warehouse.find

    def find(self: Warehouse, query: Query, limit: int = 10) -> Any:
        time.sleep(seconds)
        if fail is not None:
            raise fail
        return real(self, query, limit)

    monkeypatch.setattr(Warehouse, "find", find)


def test_f01_a_slow_warehouse_and_crm_never_delay_the_ack(
    app: SlackApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow(monkeypatch, 2.5)
    app.slack.hang("users.lookupByEmail", 0.8)  # the owner chain
    status, body, _ = app.command(SUMMARY, "account1.example")
    # The HTTP response (the ack) came back while the lookup was still running.
    assert app.slack.responses.get("cmd") is None
    assert status == 200 and json.loads(body) == {
        "text": "Looking up account1.example…",
        "response_type": "ephemeral",
    }
    app.slack.wait_for(lambda: app.slack.responses.get("cmd"), timeout=10)
    time.sleep(0.5)
    [reply] = app.slack.responses["cmd"]
    assert "Acme Corp — 82 %" in shown(reply) and f"<@{OWNER}>" in shown(reply)


@pytest.mark.parametrize(
    ("failure", "line"),
    [
        (WarehouseError("warehouse query failed: OperationalError: SELECT 1"), "couldn't read"),
        (RuntimeError("boom"), "something went wrong"),
    ],
)
def test_f01_a_failing_warehouse_gives_one_short_ephemeral_line(
    app: SlackApp, monkeypatch: pytest.MonkeyPatch, failure: Exception, line: str
) -> None:
    slow(monkeypatch, 0.5, fail=failure)
    status, body, _ = app.command(SUMMARY, "account1.example")
    assert status == 200 and json.loads(body) == {
        "text": "Looking up account1.example…",
        "response_type": "ephemeral",
    }
    app.slack.wait_for(lambda: app.slack.responses.get("cmd"), timeout=10)
    time.sleep(0.3)
    [reply] = app.slack.responses["cmd"]
    assert reply["response_type"] == "ephemeral"
    text = shown(reply) if reply.get("blocks") else reply["text"]
    assert line in text and len(reply["text"]) < 200
    for leak in ("operation_timeout", "SELECT", "OperationalError", "Traceback", "boom"):
        assert leak not in text


# --- F07: untrusted text shown literally, never a mention or link ---------------------------


def test_f07_the_command_text_is_shown_escaped(app: SlackApp) -> None:
    ack, reply = run(app, SUMMARY, "<script>.example")
    assert ack == {"text": "Looking up &lt;script&gt;.example…", "response_type": "ephemeral"}
    assert "“&lt;script&gt;.example”" in reply["text"]
    ack, reply = run(app, SUMMARY, "<!channel> acme")  # Slack sends these as entities too
    assert ack == {"text": "Looking up &lt;!channel&gt; acme…", "response_type": "ephemeral"}


def test_f07_hostile_account_names_are_shown_literally(app: SlackApp) -> None:
    name = "Smith & Sons <EMEA> <!channel> O'Brien"
    app.set_rows([account(1, 41, 50, name=name), account(2, 41, 50, name=f"{name} 2")])
    text = shown(run(app, SUMMARY, "account1.example")[1])
    assert "Smith &amp; Sons &lt;EMEA&gt; &lt;!channel&gt; O'Brien — 82 %" in text
    text = shown(run(app, SUMMARY, "smith")[1])  # the list
    assert "*Smith &amp; Sons &lt;EMEA&gt; &lt;!channel&gt; O'Brien*" in text


# --- signatures: forged or stale requests change nothing ------------------------------------


@pytest.mark.parametrize(("command", "text"), [(THRESHOLD, "set+80"), (SUMMARY, "acme")])
def test_a_wrong_signature_or_a_stale_timestamp_gets_401_and_nothing_runs(
    app: SlackApp, command: str, text: str
) -> None:
    form = (
        f"command={command}&text={text}&user_id={ADMIN}&response_url="
        f"{app.slack.response_url('cmd')}"
    ).encode()
    now = int(time.time())
    assert app.post(form, signature="v0=" + "0" * 64)[0] == 401
    assert app.post(form, signature=sign(form, now, secret="another-secret"))[0] == 401
    stale = now - 600
    assert app.post(form, timestamp=stale, signature=sign(form, stale))[0] == 401
    time.sleep(0.3)
    assert app.slack.responses.get("cmd") is None and app.slack.calls_to("users.info") == []
    assert changes(app) == [] and audits(app) == []
    assert app.post(form, timestamp=now)[0] == 200  # the same request, signed: it runs
    app.slack.wait_for(lambda: app.slack.responses.get("cmd"), timeout=10)
    time.sleep(0.3)
    assert len(app.slack.responses["cmd"]) == 1  # only the signed one ran
    assert len(app.slack.calls_to("users.info")) == 1


# --- bot/lookup.py: the matching table (SPEC 7) --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://www.Acme.com/pricing", Query("domain", "acme.com")),
        ("jane@acme.com", Query("domain", "acme.com")),
        ("ACME.COM", Query("domain", "acme.com")),
        ("acme.com.", Query("domain", "acme.com")),
        ("www.acme.com", Query("domain", "acme.com")),
        ("www.acme.com:8443/login?next=/", Query("domain", "acme.com")),
        ("http://user:pw@Shop.Acme.co.uk:8080/x", Query("domain", "shop.acme.co.uk")),
        ("mailto:Jane@ACME.com", Query("domain", "acme.com")),
        ("<mailto:jane@acme.com|jane@acme.com>", Query("domain", "acme.com")),
        ("<https://acme.com|acme.com>", Query("domain", "acme.com")),
        ("www.com", Query("domain", "www.com")),
        ("acme", Query("name", "acme")),
        ("  Acme   Corp ", Query("name", "Acme Corp")),
        ("Smith &amp; Sons", Query("name", "Smith & Sons")),
        ("<script>.example", Query("name", "<script>.example")),
        ("62.5", Query("name", "62.5")),
        ("acme.com please", Query("name", "acme.com please")),
        ("ab", Query("name", "ab")),
        ("", None),
        ("a", None),
        ("  ", None),
        ("https://", None),
        ("https://-/x", None),
        ("x" * 201, None),
    ],
)
def test_lookup_normalises_the_text(text: str, expected: Query | None) -> None:
    assert parse_query(text) == expected


def test_lookup_name_patterns_escape_like_wildcards() -> None:
    assert Query("name", "Acme").pattern == "%acme%"
    assert Query("name", "50%_Off!").pattern == "%50!%!_off!!%"
    assert Query("name", "back\\slash").pattern == "%back\\slash%"
    assert Query("name", "Ünï").typed_pattern == "%Ünï%"


# --- Warehouse.find on every backend --------------------------------------------------------


def _row(n: int, name: str, domain: str) -> tuple[Any, ...]:
    return (sf_id("001", n), name, domain, sf_id("005", 1), 41, 50, "pro")


FIND_ROWS = [
    _row(1, "Acme Corp", "acme.com"),
    _row(2, "ACME Labs", " Acme.IO "),
    _row(3, "50% Off Shop", "fifty.example"),
    _row(4, "500 Offices", "offices.example"),
    _row(5, "Under_score Ltd", "under.example"),
    _row(6, "Underscore Inc", "underscore.example"),
    _row(7, "Back\\slash", "back.example"),
    _row(9, "Yahoo! Inc", "yahoo.example"),
    _row(8, "Legacy", "www.legacy.example"),
]


def found(warehouse: Warehouse, text: str, limit: int = 10) -> list[str]:
    query = parse_query(text)
    assert query is not None
    return [row.account_name for row in warehouse.find(query, limit)]


def test_find_matches_domains_exactly_and_names_as_literal_substrings(
    warehouse_url: str,
) -> None:
    create_usage_table(warehouse_url, FIND_ROWS)
    warehouse = make_warehouse(warehouse_url)
    assert found(warehouse, "https://www.ACME.com/pricing") == ["Acme Corp"]
    assert found(warehouse, "ops@acme.io") == ["ACME Labs"]  # stored case and spaces ignored
    assert found(warehouse, "legacy.example") == ["Legacy"]  # a stored `www.` too
    assert found(warehouse, "acme.co") == []  # exact, not a prefix
    assert found(warehouse, "acme") == ["Acme Corp", "ACME Labs"]
    assert found(warehouse, "acme", limit=1) == ["Acme Corp"]
    assert found(warehouse, "50%") == ["50% Off Shop"]  # `%` is not a wildcard
    assert found(warehouse, "under_") == ["Under_score Ltd"]  # nor is `_`
    assert found(warehouse, "k\\s") == ["Back\\slash"]
    assert found(warehouse, "%%") == []
    assert found(warehouse, "o! i") == ["Yahoo! Inc"]
    assert found(warehouse, "o!") == ["Yahoo! Inc"]
    [row] = warehouse.find(Query("domain", "acme.com"))
    assert (row.account_id, row.numerator, row.usage_pct) == (sf_id("001", 1), 41, Decimal(82))


def test_find_binds_the_text_and_never_builds_sql_from_it(warehouse_url: str) -> None:
    create_usage_table(warehouse_url, FIND_ROWS)
    warehouse = make_warehouse(warehouse_url)
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(warehouse.engine, "before_cursor_execute", record)
    hostile = "x' OR '1'='1"
    assert found(warehouse, hostile) == []
    assert found(warehouse, "evil.example'--") == []
    for statement, _params in seen:
        assert "OR '1'" not in statement and "evil" not in statement
    assert any("%x' or '1'='1%" in str(v) for _, p in seen for v in bound_values(p))


def test_a_threshold_is_shown_exactly_as_set(app: SlackApp) -> None:
    _, reply = run(app, THRESHOLD, "set 74.99", user=ADMIN)
    assert "*74.99 %*" in shown(reply)
    _, shown_now = run(app, THRESHOLD, "show")
    assert "74.99 %" in shown(shown_now) and "74.9 %" not in shown(shown_now)


def test_usage_summary_answers_within_its_deadline_when_slack_hangs(
    app: SlackApp, slack: FakeSlack
) -> None:
    slack.hang("users.info", 9.5)
    _, reply = run(app, SUMMARY, "account1.example")
    assert "within 10 seconds" in shown(reply)
    assert len(slack.responses["cmd"]) == 1  # one answer: the late work never answers too


def test_forged_requests_never_reach_a_listener_or_the_response_url(
    app: SlackApp, slack: FakeSlack
) -> None:
    from urllib.parse import urlencode

    sink = slack.response_url("forged")
    body = urlencode({"command": THRESHOLD, "text": "", "user_id": OWNER, "response_url": sink})
    for timestamp in ("not-a-number", "1796322911.0", "", "9" * 40):
        status, _, _ = app.post(
            body.encode(), signature="v0=garbage", headers={"X-Slack-Request-Timestamp": timestamp}
        )
        assert status == 401
    for junk in (b"payload={bad", b"payload=[1]", b"payload=null", b"\xff\xfe"):
        assert app.post(junk, signature="v0=" + "0" * 64)[0] == 401
    assert slack.responses.get("forged") is None
