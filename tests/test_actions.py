"""The card's actions through the running app: signed clicks in, chat.update on the fake Slack.

Each test waits on what reaches the fake Slack (with a deadline), never on time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from blocks import ids
from blocks.alert import Message
from blocks.text import format_day
from bot import actions as engine
from bot.schema import audit, deliveries
from bot.store import AlertRecord, Store
from tests.conftest import Clock
from tests.fakes.slack import FakeSlack
from tests.slackapp import SlackApp, block_actions
from tests.warehouses import account

OWNER, DM = "U0OWNER0001", "D0OWNER0001"
OTHER, OTHER_DM = "U0OWNER0002", "D0OWNER0002"
GUEST = "U0GUEST0001"
TRIAGE = "C0TRIAGE"


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path, slack: FakeSlack, clock: Clock) -> Iterator[SlackApp]:
    """The running app after an ordinary crossing: owner 1 has one card in their DM."""
    with SlackApp(tmp_path, slack, clock) as running:
        running.after_a_quiet_first_poll([account(1, 41, 50, owner=1)])
        running.poll()
        yield running


def actions_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The actions blocks of a message that belong to an alert card."""
    return [b for b in message["blocks"] if ids.parse_actions_block_id(b.get("block_id", ""))]


def card_block_id(message: dict[str, Any], n: int = 0) -> str:
    """The block id of the n-th alert's actions in a message."""
    return str(actions_blocks(message)[n]["block_id"])


def alert_id_of(block_id: str) -> str:
    parsed = ids.parse_actions_block_id(block_id)
    assert parsed is not None
    return parsed[1]


def snooze(block_id: str, value: str = "7d", label: str = "1 week") -> dict[str, Any]:
    """The static_select action Slack sends for a snooze choice."""
    return {
        "type": "static_select",
        "action_id": ids.SNOOZE,
        "block_id": block_id,
        "selected_option": {"text": {"type": "plain_text", "text": label}, "value": value},
        "action_ts": "1700000000.000200",
    }


def button(action_id: str, block_id: str) -> dict[str, Any]:
    """A button click (Mark contacted, Open in Salesforce)."""
    return {
        "type": "button",
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": "…"},
        "value": alert_id_of(block_id) if ids.parse_actions_block_id(block_id) else "x",
        "action_ts": "1700000000.000300",
    }


def pick_user(block_id: str, user: str) -> dict[str, Any]:
    """The users_select action of the fallback card's "Assign to…"."""
    return {
        "type": "users_select",
        "action_id": ids.ASSIGN,
        "block_id": block_id,
        "selected_user": user,
        "action_ts": "1700000000.000400",
    }


def payload(
    app: SlackApp,
    message: dict[str, Any],
    channel: str,
    action: dict[str, Any],
    user: str = OWNER,
    response_key: str | None = "act",
) -> dict[str, Any]:
    """A block_actions payload for a stored message; its response_url is the fake's sink."""
    body = block_actions(message, channel, action, user_id=user)
    body["response_url"] = app.slack.response_url(response_key) if response_key else ""
    return body


def click(app: SlackApp, body: dict[str, Any]) -> None:
    """Send a click; Slack needs the 200 (the ack) at once, the work follows it."""
    status, _, _ = app.interaction(body)
    assert status == 200


def updates(slack: FakeSlack, channel: str | None = None) -> list[dict[str, Any]]:
    """The parameters of every chat.update call (to one channel)."""
    calls = [c.params for c in slack.calls_to("chat.update")]
    return [p for p in calls if channel is None or p["channel"] == channel]


def last_message(slack: FakeSlack, channel: str) -> dict[str, Any]:
    return slack.messages(channel)[-1]


def controls_text(message: dict[str, Any]) -> str:
    """The text of the card's last block (its outcome line once acted on)."""
    block = message["blocks"][-1]
    return str(block["elements"][0]["text"]) if block["type"] == "context" else ""


def audit_rows(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(audit).order_by(audit.c.id)))


def ephemeral(slack: FakeSlack, key: str = "act") -> list[dict[str, Any]]:
    return slack.responses.get(key, [])


def the_alert(app: SlackApp, message: dict[str, Any], n: int = 0) -> AlertRecord:
    record = app.store.alert(alert_id_of(card_block_id(message, n)))
    assert record is not None
    return record


# -- snooze, contacted, F02, F04 ---------------------------------------------------------------


def test_snooze_one_week_updates_the_same_dm_message_with_until_and_who(
    app: SlackApp, slack: FakeSlack, clock: Clock
) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    click(app, payload(app, card, DM, snooze(card_block_id(card))))
    slack.wait_for(lambda: updates(slack, DM), message="the card was never updated")
    update = updates(slack)[0]
    assert (update["channel"], update["ts"]) == (DM, card["ts"])
    until = clock.now + timedelta(days=7)
    shown = last_message(slack, DM)
    assert controls_text(shown) == f":zzz: Snoozed until {format_day(until)} by <@{OWNER}>"
    assert not actions_blocks(shown)
    assert shown["blocks"][0] == card["blocks"][0]  # the same card, re-rendered
    after = app.store.alert(record.id)
    assert after is not None
    assert (after.state, after.snoozed_until, after.acted_by) == ("snoozed", until, OWNER)
    assert after.version == record.version + 1
    rows = audit_rows(app.store)
    assert [(r.user_id, r.action, r.alert_id) for r in rows] == [(OWNER, "snooze", record.id)]
    assert rows[0].detail == {"days": 7, "until": until.isoformat()}


def test_mark_contacted_updates_the_card_and_the_state(app: SlackApp, slack: FakeSlack) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    click(app, payload(app, card, DM, button(ids.CONTACTED, card_block_id(card))))
    slack.wait_for(lambda: updates(slack, DM))
    assert (
        controls_text(last_message(slack, DM))
        == f":white_check_mark: Marked contacted by <@{OWNER}>"
    )
    after = app.store.alert(record.id)
    assert after is not None and (after.state, after.acted_by) == ("contacted", OWNER)
    assert [(r.action, r.alert_id) for r in audit_rows(app.store)] == [("contacted", record.id)]
    assert ephemeral(slack) == []  # the card says it; nothing else to tell


def test_f04_updates_go_to_the_dm_channel_from_the_payload_never_the_user_id(
    app: SlackApp, slack: FakeSlack
) -> None:
    card = last_message(slack, DM)
    click(app, payload(app, card, DM, button(ids.CONTACTED, card_block_id(card))))
    slack.wait_for(lambda: updates(slack))
    channels = {p["channel"] for p in updates(slack)}
    assert channels == {DM}
    assert not any(c.startswith("U") for c in channels)


def test_f02_a_double_click_changes_the_state_once_and_audits_once(
    app: SlackApp, slack: FakeSlack
) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    body = payload(app, card, DM, snooze(card_block_id(card)))
    clicks = [threading.Thread(target=click, args=(app, body)) for _ in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join()
    slack.wait_for(lambda: len(updates(slack, DM)) >= 2, message="each click updates the card")
    after = app.store.alert(record.id)
    assert after is not None and after.version == record.version + 1
    assert len(audit_rows(app.store)) == 1
    first, second = updates(slack, DM)[:2]
    assert first["blocks"] == second["blocks"]  # the second click sees the same state
    assert controls_text(last_message(slack, DM)).startswith(":zzz: Snoozed until")


def test_f02_a_retried_click_and_a_later_snooze_to_the_same_day_change_nothing(
    app: SlackApp, slack: FakeSlack, clock: Clock
) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    body = payload(app, card, DM, snooze(card_block_id(card)))
    click(app, body)
    slack.wait_for(lambda: len(updates(slack, DM)) == 1)
    shown = last_message(slack, DM)
    click(app, body)  # Slack's retry of a click whose ack was slow: the same payload
    slack.wait_for(lambda: len(updates(slack, DM)) == 2)
    clock.advance(minutes=30)
    click(app, body)  # the same choice again later that day: the same resulting day
    slack.wait_for(lambda: len(updates(slack, DM)) == 3)
    after = app.store.alert(record.id)
    assert after is not None and after.version == record.version + 1
    assert [r.action for r in audit_rows(app.store)] == ["snooze"]
    assert last_message(slack, DM)["blocks"] == shown["blocks"]


def test_a_snooze_to_another_day_is_a_new_change(app: SlackApp, slack: FakeSlack) -> None:
    card = last_message(slack, DM)
    click(app, payload(app, card, DM, snooze(card_block_id(card))))
    slack.wait_for(lambda: len(updates(slack, DM)) == 1)
    click(app, payload(app, card, DM, snooze(card_block_id(card), "14d", "2 weeks")))
    slack.wait_for(lambda: len(updates(slack, DM)) == 2)
    assert [r.detail["days"] for r in audit_rows(app.store)] == [7, 14]


# -- F03: two replicas, two different clicks ------------------------------------------------------


def test_f03_two_replicas_handling_two_clicks_at_once_both_apply(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    with SlackApp(tmp_path, slack, clock) as first:
        first.after_a_quiet_first_poll([account(1, 41, 50, owner=1)])
        first.poll()
        with SlackApp(tmp_path, slack, clock) as second:  # same state database, own process
            card = last_message(slack, DM)
            record = the_alert(first, card)
            block_id = card_block_id(card)
            start = threading.Barrier(2)

            def send(app: SlackApp, action: dict[str, Any]) -> None:
                start.wait()
                click(app, payload(app, card, DM, action))

            clicks = [
                threading.Thread(target=send, args=(first, snooze(block_id))),
                threading.Thread(target=send, args=(second, button(ids.CONTACTED, block_id))),
            ]
            for thread in clicks:
                thread.start()
            for thread in clicks:
                thread.join()
            slack.wait_for(lambda: len(audit_rows(first.store)) == 2, message="both apply")
            after = first.store.alert(record.id)
            assert after is not None and after.version == record.version + 2
            last = audit_rows(first.store)[-1].action
            assert after.state == {"snooze": "snoozed", "contacted": "contacted"}[last]
            final = ":zzz: Snoozed" if last == "snooze" else ":white_check_mark: Marked contacted"
            slack.wait_for(lambda: controls_text(last_message(slack, DM)).startswith(final))
            assert {p["channel"] for p in updates(slack)} == {DM}


class RacingStore(Store):
    """A store where another replica changes the alert just before our first write."""

    def __init__(self, store: Store, rival: engine.Change, clock: Clock) -> None:
        super().__init__(store.engine)
        self.rival, self.clock, self.raced = rival, clock, False

    def update_alert_audited(
        self, alert_id: str, version: int, now: Any, audit_entry: Any, **changes: Any
    ) -> bool:
        if not self.raced:
            self.raced = True
            block_id = ids.actions_block_id(alert_id)
            assert engine.apply(Store(self.engine), self.clock, block_id, OTHER, self.rival).applied
        return super().update_alert_audited(alert_id, version, now, audit_entry, **changes)


def test_f03_a_lost_race_is_re_read_and_re_applied_never_undone(
    app: SlackApp, slack: FakeSlack, clock: Clock
) -> None:
    record = the_alert(app, last_message(slack, DM))
    racing = RacingStore(app.store, engine.Change(engine.CONTACTED), clock)
    change = engine.Change(engine.SNOOZE, days=3)
    result = engine.apply(racing, clock, ids.actions_block_id(record.id), OWNER, change)
    assert result.status == "changed" and racing.raced
    after = app.store.alert(record.id)
    assert after is not None and after.version == record.version + 2
    assert (after.state, after.acted_by) == ("snoozed", OWNER)
    assert [(r.user_id, r.action) for r in audit_rows(app.store)] == [
        (OTHER, "contacted"),
        (OWNER, "snooze"),
    ]


class ChangingGateway:
    """A Slack gateway whose first chat.update lands after another replica changed the alert."""

    def __init__(self, store: Store, alert_id: str, clock: Clock) -> None:
        self.store, self.alert_id, self.clock = store, alert_id, clock
        self.updates: list[Message] = []

    def update(self, channel: str, ts: str, message: Message) -> None:
        self.updates.append(message)
        if len(self.updates) == 1:
            change = engine.Change(engine.CONTACTED)
            block_id = ids.actions_block_id(self.alert_id)
            assert engine.apply(self.store, self.clock, block_id, OTHER, change).applied


def test_f03_a_card_rendered_before_another_change_is_rendered_again(
    app: SlackApp, slack: FakeSlack, clock: Clock
) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    gateway = ChangingGateway(app.store, record.id, clock)
    engine.refresh_message(app.store, gateway, DM, card["ts"], record.id)  # type: ignore[arg-type]
    assert len(gateway.updates) == 2
    last = gateway.updates[-1].blocks[-1]["elements"][0]["text"]
    assert last == f":white_check_mark: Marked contacted by <@{OTHER}>"


# -- digest, stale cards, guests ------------------------------------------------------------------


def test_an_action_on_a_digest_entry_re_renders_the_whole_digest(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    with SlackApp(tmp_path, slack, clock) as app:
        app.set_rows([account(n, 40 + n, 50, owner=1) for n in (1, 2, 3)])
        app.poll()  # the first poll: one digest DM listing the three accounts
        digest = last_message(slack, DM)
        assert len(actions_blocks(digest)) == 3
        acted = card_block_id(digest, 1)
        click(app, payload(app, digest, DM, button(ids.CONTACTED, acted)))
        slack.wait_for(lambda: updates(slack, DM))
        shown = last_message(slack, DM)
        assert shown["ts"] == digest["ts"] and len(shown["blocks"]) == len(digest["blocks"])
        kept = [b["block_id"] for b in actions_blocks(shown)]
        assert kept == [card_block_id(digest, 0), card_block_id(digest, 2)]
        assert actions_blocks(shown) == [actions_blocks(digest)[i] for i in (0, 2)]
        position = digest["blocks"].index(actions_blocks(digest)[1])
        line = shown["blocks"][position]["elements"][0]["text"]
        assert line == f":white_check_mark: Marked contacted by <@{OWNER}>"
        assert shown["blocks"][:position] == digest["blocks"][:position]


def test_a_card_of_an_older_version_gets_an_ephemeral_explanation_and_changes_nothing(
    app: SlackApp, slack: FakeSlack
) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    old = f"alert:v0:{record.id}"
    click(app, payload(app, card, DM, button(ids.CONTACTED, old)))
    slack.wait_for(lambda: ephemeral(slack), message="never silence")
    answer = ephemeral(slack)[0]
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert "older version of Nudge" in answer["text"]
    assert app.store.alert(record.id) == record
    assert audit_rows(app.store) == [] and updates(slack) == []


def test_an_unknown_alert_without_a_response_url_gets_an_ephemeral_message(
    app: SlackApp, slack: FakeSlack
) -> None:
    card = last_message(slack, DM)
    stranger = ids.actions_block_id("0" * 32)
    click(app, payload(app, card, DM, snooze(stranger), response_key=None))
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"), message="never silence")
    sent = slack.calls_to("chat.postEphemeral")[0].params
    assert (sent["channel"], sent["user"]) == (DM, OWNER)
    assert "no longer knows this alert" in sent["text"]
    assert audit_rows(app.store) == [] and updates(slack) == []


def test_a_closed_alert_says_so_and_its_card_shows_it_closed(
    app: SlackApp, slack: FakeSlack, clock: Clock
) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    app.store.close_alerts([record.id], clock.now)
    click(app, payload(app, card, DM, button(ids.CONTACTED, card_block_id(card))))
    slack.wait_for(lambda: ephemeral(slack) and updates(slack, DM))
    assert "This alert is closed" in ephemeral(slack)[0]["text"]
    assert "this alert is closed" in controls_text(last_message(slack, DM))
    assert audit_rows(app.store) == []


def test_an_unknown_snooze_choice_changes_nothing(app: SlackApp, slack: FakeSlack) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    click(app, payload(app, card, DM, snooze(card_block_id(card), "99d", "99 days")))
    slack.wait_for(lambda: ephemeral(slack))
    assert "snooze choice" in ephemeral(slack)[0]["text"]
    assert app.store.alert(record.id) == record and updates(slack) == []


def test_a_guest_is_refused_and_nothing_changes(app: SlackApp, slack: FakeSlack) -> None:
    slack.add_user(GUEST, "guest@partner.example", first_name="Gus", is_restricted=True)
    card = last_message(slack, DM)
    record = the_alert(app, card)
    click(app, payload(app, card, DM, button(ids.CONTACTED, card_block_id(card)), user=GUEST))
    slack.wait_for(lambda: ephemeral(slack))
    assert "guest" in ephemeral(slack)[0]["text"]
    assert ephemeral(slack)[0]["response_type"] == "ephemeral"
    assert app.store.alert(record.id) == record
    assert audit_rows(app.store) == [] and updates(slack) == []


def test_open_in_salesforce_is_acknowledged_and_changes_nothing(
    app: SlackApp, slack: FakeSlack
) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    link = next(e for e in actions_blocks(card)[0]["elements"] if e.get("url"))
    assert link["action_id"] == ids.OPEN_SALESFORCE
    click(app, payload(app, card, DM, button(ids.OPEN_SALESFORCE, card_block_id(card))))
    assert app.store.alert(record.id) == record
    assert audit_rows(app.store) == [] and updates(slack) == [] and ephemeral(slack) == []


def test_the_ack_is_sent_before_the_slow_work(app: SlackApp, slack: FakeSlack) -> None:
    slack.hang("users.info", 3)  # the guest check, the listener's first call after ack()
    card = last_message(slack, DM)
    click(app, payload(app, card, DM, button(ids.CONTACTED, card_block_id(card))))
    assert updates(slack) == []  # the 200 came back while the work was still waiting on Slack
    slack.wait_for(lambda: updates(slack, DM), timeout=10)


# -- App Home, Assign to… -------------------------------------------------------------------------


def home_click(action: dict[str, Any]) -> dict[str, Any]:
    """A click in OWNER's App Home tab: no message and no response_url."""
    return {
        "type": "block_actions",
        "user": {"id": OWNER, "username": "owner", "team_id": "T0FAKE"},
        "api_app_id": "A0NUDGE",
        "token": "legacy",
        "trigger_id": "1.2.3",
        "team": {"id": "T0FAKE"},
        "container": {"type": "view", "view_id": "V0OWNER0001"},
        "view": {"id": "V0OWNER0001", "type": "home", "blocks": []},
        "actions": [action],
    }


def test_a_click_in_app_home_updates_the_dm_card_and_republishes_home(
    app: SlackApp, slack: FakeSlack
) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    body = home_click(snooze(ids.actions_block_id(record.id), "1d", "1 day"))
    click(app, body)
    slack.wait_for(lambda: updates(slack, DM) and OWNER in slack.views)
    assert updates(slack)[0]["ts"] == card["ts"]
    assert controls_text(last_message(slack, DM)).startswith(":zzz: Snoozed until")
    after = app.store.alert(record.id)
    assert after is not None and after.state == "snoozed"


def test_a_click_in_app_home_that_fails_is_answered_in_the_messages_tab(
    app: SlackApp, slack: FakeSlack
) -> None:
    card = last_message(slack, DM)
    record = the_alert(app, card)
    slack.fail("users.info", error="internal_error", status=500, times=5)
    body = home_click(button(ids.CONTACTED, ids.actions_block_id(record.id)))
    click(app, body)
    slack.wait_for(
        lambda: any(p["channel"] == DM and "Sorry" in p["text"] for p in slack.all_posts())
    )
    after = app.store.alert(record.id)
    assert after is not None and after.state == "alerted"


@pytest.fixture
def triage(tmp_path: Path, slack: FakeSlack, clock: Clock) -> Iterator[SlackApp]:
    """The running app with one alert whose owner is unknown, posted to the fallback channel."""
    slack.add_channel(TRIAGE, "nudge-triage")
    settings = {"territory": {"fallback_channel": TRIAGE}}
    with SlackApp(tmp_path, slack, clock, settings=settings) as running:
        running.after_a_quiet_first_poll([account(1, 45, 50, owner=99)])
        running.poll()
        yield running


def test_assign_dms_the_chosen_owner_a_card_and_marks_the_fallback_card(
    triage: SlackApp, slack: FakeSlack
) -> None:
    fallback = last_message(slack, TRIAGE)
    record = the_alert(triage, fallback)
    body = payload(triage, fallback, TRIAGE, pick_user(card_block_id(fallback), OTHER))
    click(triage, body)
    slack.wait_for(lambda: slack.messages(OTHER_DM) and updates(slack, TRIAGE))
    dm = last_message(slack, OTHER_DM)
    assert "Hi Owner2!" in dm["blocks"][1]["text"]["text"]
    elements = actions_blocks(dm)[0]["elements"]
    assert card_block_id(dm) == ids.actions_block_id(record.id)
    assert [e["type"] for e in elements] == ["static_select", "button", "button"]  # no picker
    shown = last_message(slack, TRIAGE)
    assert controls_text(shown).startswith(f":arrow_right: Assigned to <@{OTHER}> by <@{OWNER}>")
    assert not actions_blocks(shown)
    after = triage.store.alert(record.id)
    assert after is not None and after.owner_slack_id == OTHER
    assert [(r.action, r.detail) for r in audit_rows(triage.store)] == [("assign", {"to": OTHER})]
    with triage.store.engine.connect() as conn:
        sent = conn.execute(select(deliveries).where(deliveries.c.recipient == OTHER)).all()
    assert [(d.kind, d.status, d.channel) for d in sent] == [("alert", "sent", OTHER_DM)]
    click(triage, body)  # the same choice again: no second DM
    slack.wait_for(lambda: len(updates(slack, TRIAGE)) >= 2)
    assert len(slack.messages(OTHER_DM)) == 1 and len(audit_rows(triage.store)) == 1
    click(triage, payload(triage, dm, OTHER_DM, button(ids.CONTACTED, card_block_id(dm)), OTHER))
    slack.wait_for(lambda: updates(slack, OTHER_DM))  # the routed card is a live card
    assert controls_text(last_message(slack, OTHER_DM)).startswith(":white_check_mark:")


def test_assigning_to_a_guest_is_refused(triage: SlackApp, slack: FakeSlack) -> None:
    slack.add_user(GUEST, "guest@partner.example", first_name="Gus", is_restricted=True)
    fallback = last_message(slack, TRIAGE)
    record = the_alert(triage, fallback)
    click(triage, payload(triage, fallback, TRIAGE, pick_user(card_block_id(fallback), GUEST)))
    slack.wait_for(lambda: ephemeral(slack))
    assert "can't receive Nudge alerts" in ephemeral(slack)[0]["text"]
    assert triage.store.alert(record.id) == record
    assert slack.messages(GUEST) == [] and updates(slack) == []


def test_an_assignment_whose_dm_fails_leaves_the_alert_in_the_fallback_channel(
    triage: SlackApp, slack: FakeSlack
) -> None:
    fallback = last_message(slack, TRIAGE)
    record = the_alert(triage, fallback)
    slack.fail("chat.postMessage", error="cannot_dm_bot", status=200)
    click(triage, payload(triage, fallback, TRIAGE, pick_user(card_block_id(fallback), OTHER)))
    slack.wait_for(lambda: ephemeral(slack) and updates(slack, TRIAGE))
    assert "couldn't DM" in ephemeral(slack)[0]["text"]
    after = triage.store.alert(record.id)
    assert after is not None and after.owner_slack_id is None
    assert [r.action for r in audit_rows(triage.store)] == ["assign", "unassign"]
    shown = last_message(slack, TRIAGE)
    assert any(e["type"] == "users_select" for e in actions_blocks(shown)[0]["elements"])
    assert slack.messages(OTHER_DM) == []


def test_an_assigned_alert_cannot_be_taken_by_a_second_pick_or_a_race(
    triage: SlackApp, slack: FakeSlack
) -> None:
    fallback = last_message(slack, TRIAGE)
    record = the_alert(triage, fallback)
    picks = [
        payload(triage, fallback, TRIAGE, pick_user(card_block_id(fallback), who))
        for who in (OTHER, "U0OWNER0003")
    ]
    threads = [threading.Thread(target=click, args=(triage, body)) for body in picks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slack.wait_for(lambda: slack.responses.get("act"), message="the losing pick is told why")
    slack.wait_for(lambda: slack.messages(OTHER_DM) or slack.messages("D0OWNER0003"))
    assert "already went to" in json.dumps(slack.responses["act"])
    dms = slack.messages(OTHER_DM) + slack.messages("D0OWNER0003")
    assert len(dms) == 1
    owner = triage.store.alert(record.id).owner_slack_id  # type: ignore[union-attr]
    assert [r.action for r in audit_rows(triage.store)] == ["assign"]
    assert owner is not None and dms[0]["channel"] == "D" + owner[1:]
