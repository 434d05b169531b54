"""App Home through the running app: signed Events API deliveries and clicks, the fake Slack."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from blocks.home import EMPTY, NEXT, PAGE_SIZE, PREVIOUS, home_view
from blocks.ids import parse_actions_block_id
from blocks.text import format_day
from bot.cards import card_from_json
from tests.conftest import Clock
from tests.fakes.slack import FakeSlack
from tests.slackapp import SlackApp
from tests.warehouses import account

OWNER, OTHER, GUEST = "U0OWNER0001", "U0OWNER0002", "U0GUEST0001"
HOSTILE = "Smith & Sons <EMEA> <!channel> <@U0BOSS>"


@pytest.fixture
def app(tmp_path: Path, slack: FakeSlack, clock: Clock) -> Iterator[SlackApp]:
    """The running app; owner 1 has accounts 1-3 above the threshold, owner 2 accounts 4-5."""
    with SlackApp(tmp_path, slack, clock) as running:
        running.after_a_quiet_first_poll(
            [account(n, 41, 50, owner=1) for n in (1, 2, 3)]
            + [account(n, 45, 50, owner=2) for n in (4, 5)]
            + [account(6, 10, 50, owner=1)]  # below the threshold: never on Home
        )
        running.poll()
        yield running


def opened(user: str = OWNER, tab: str = "home") -> dict[str, Any]:
    """The app_home_opened event Slack sends when `user` opens a tab of the app."""
    return {"type": "app_home_opened", "user": user, "channel": "D" + user[1:], "tab": tab}


def publishes(slack: FakeSlack, user: str) -> list[dict[str, Any]]:
    """The views published to one user's Home tab, in order."""
    return [
        c.params["view"] for c in slack.calls_to("views.publish") if c.params["user_id"] == user
    ]


def open_home(app: SlackApp, user: str = OWNER, event_id: str = "Ev0001") -> dict[str, Any]:
    """Deliver app_home_opened and wait (with a deadline) for the view it publishes."""
    before = len(publishes(app.slack, user))
    status, _, _ = app.event(opened(user), event_id)
    assert status == 200
    app.slack.wait_for(lambda: len(publishes(app.slack, user)) > before, timeout=5)
    return publishes(app.slack, user)[-1]


def click(app: SlackApp, view: dict[str, Any], action_id: str, user: str = OWNER) -> None:
    """Click a button of a published Home view, as Slack sends it (container type "view")."""
    button = next(
        {**element, "block_id": block["block_id"]}
        for block in view["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == action_id
    )
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0FAKE"},
        "api_app_id": "A0NUDGE",
        "token": "legacy",
        "trigger_id": "1.2.3",
        "team": {"id": "T0FAKE"},
        "container": {"type": "view", "view_id": "V" + user[1:]},
        "view": {**view, "id": "V" + user[1:], "team_id": "T0FAKE"},
        "actions": [{**button, "action_ts": "1700000000.000200"}],
    }
    status, _, _ = app.interaction(payload)
    assert status == 200


def alert_ids(view: dict[str, Any]) -> list[str]:
    """The alert ids of the actions blocks of a view (the DM's own block ids)."""
    parsed = [parse_actions_block_id(b.get("block_id", "")) for b in view["blocks"]]
    return [p[1] for p in parsed if p]


def entries(view: dict[str, Any]) -> list[str]:
    """The text of each account entry of a Home view."""
    return [
        b["text"]["text"]
        for b in view["blocks"]
        if b["type"] == "section" and "—" in b["text"]["text"]
    ]


def owned(app: SlackApp, user: str) -> set[str]:
    return {r.id for r in app.store.open_alerts_for_owner(user)}


def test_home_lists_the_owners_accounts_above_the_threshold_with_the_dm_actions(
    app: SlackApp,
) -> None:
    view = open_home(app)
    assert view["type"] == "home"
    assert set(alert_ids(view)) == owned(app, OWNER) and len(owned(app, OWNER)) == 3
    assert len(entries(view)) == 3
    assert all("41 / 50 h (82 %)" in text and "Alerted today" in text for text in entries(view))
    actions = [b for b in view["blocks"] if parse_actions_block_id(b.get("block_id", ""))]
    labels = {(e.get("text") or e["placeholder"])["text"] for e in actions[0]["elements"]}
    assert labels == {"Snooze…", "Mark contacted", "Open in Salesforce"}
    assert "Account 6" not in json.dumps(view)


def test_another_owner_sees_only_their_accounts(app: SlackApp) -> None:
    view = open_home(app, OTHER)
    assert set(alert_ids(view)) == owned(app, OTHER) and len(owned(app, OTHER)) == 2
    assert not set(alert_ids(view)) & owned(app, OWNER)
    assert OWNER not in app.slack.views


def test_an_owner_with_nothing_above_the_threshold_is_told_why_the_tab_is_empty(
    app: SlackApp,
) -> None:
    view = open_home(app, "U0OWNER0003")
    assert EMPTY in json.dumps(view)
    assert not alert_ids(view)


def test_state_and_age_are_shown_and_settled_alerts_show_their_outcome(
    app: SlackApp, clock: Clock
) -> None:
    records = sorted(app.store.open_alerts_for_owner(OWNER), key=lambda r: r.account_name)
    clock.advance(days=3)
    until = clock.now + timedelta(days=7)
    snoozed, contacted, alerted = records
    app.store.update_alert(
        snoozed.id, snoozed.version, clock.now, state="snoozed", snoozed_until=until, acted_by=OWNER
    )
    app.store.update_alert(contacted.id, contacted.version, clock.now, state="contacted")
    view = open_home(app)
    text = json.dumps(view, ensure_ascii=False)
    assert f"Snoozed until {format_day(until)} · alerted 3 days ago" in text
    assert f":zzz: Snoozed until {format_day(until)} by <@{OWNER}>" in text
    assert "Contacted · alerted 3 days ago" in text and "Marked contacted" in text
    assert "Alerted 3 days ago" in text
    assert alert_ids(view) == [alerted.id]  # only the actionable one keeps its actions


def test_an_ended_snooze_shows_the_actions_again(app: SlackApp, clock: Clock) -> None:
    record = app.store.open_alerts_for_owner(OWNER)[0]
    until = clock.now + timedelta(days=1)
    app.store.update_alert(
        record.id, record.version, clock.now, state="snoozed", snoozed_until=until
    )
    clock.advance(days=2)
    assert set(alert_ids(open_home(app))) == owned(app, OWNER)


def test_45_accounts_are_paginated_within_the_home_block_limit(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    with SlackApp(tmp_path, slack, clock) as app:
        app.after_a_quiet_first_poll([account(n, 40, 50, owner=1) for n in range(1, 46)])
        app.poll()
        first = open_home(app)
        assert len(alert_ids(first)) == PAGE_SIZE and len(first["blocks"]) <= 100
        assert "Page 1 of 3" in json.dumps(first)
        click(app, first, NEXT)
        slack.wait_for(lambda: len(publishes(slack, OWNER)) == 2, timeout=5)
        second = publishes(slack, OWNER)[-1]
        assert "Page 2 of 3" in json.dumps(second) and len(second["blocks"]) <= 100
        click(app, second, NEXT)
        slack.wait_for(lambda: len(publishes(slack, OWNER)) == 3, timeout=5)
        third = publishes(slack, OWNER)[-1]
        assert "Page 3 of 3" in json.dumps(third)
        shown = alert_ids(first) + alert_ids(second) + alert_ids(third)
        assert len(shown) == 45 and set(shown) == owned(app, OWNER)
        click(app, third, PREVIOUS)
        slack.wait_for(lambda: len(publishes(slack, OWNER)) == 4, timeout=5)
        assert alert_ids(publishes(slack, OWNER)[-1]) == alert_ids(second)


def test_hostile_account_names_are_shown_literally_never_as_mentions(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    with SlackApp(tmp_path, slack, clock) as app:
        app.after_a_quiet_first_poll([account(1, 41, 50, owner=1, name=HOSTILE)])
        app.poll()
        view = open_home(app)
    text = json.dumps(view)
    assert "Smith &amp; Sons &lt;EMEA&gt; &lt;!channel&gt; &lt;@U0BOSS&gt;" in text
    assert "<!channel>" not in text and "<@U0BOSS>" not in text
    mrkdwn = [b["text"] for b in view["blocks"] if b["type"] == "section"]
    assert mrkdwn and all(t["type"] == "mrkdwn" and t["verbatim"] is True for t in mrkdwn)


def test_a_guest_is_told_nudge_is_not_available_to_them(app: SlackApp) -> None:
    app.slack.add_user(GUEST, "guest@partner.example", first_name="Gus", is_restricted=True)
    view = open_home(app, GUEST)
    assert "isn't available to guest accounts" in json.dumps(view)
    assert not alert_ids(view)


def test_f03_a_redelivered_event_is_handled_once(app: SlackApp) -> None:
    open_home(app, OWNER, event_id="Ev0F03")
    status, _, _ = app.event(opened(OWNER), "Ev0F03", retry_num=1)
    assert status == 200
    # A later event for someone else, fully handled, bounds when a duplicate would have shown.
    open_home(app, OTHER, event_id="Ev0LATER")
    assert len(publishes(app.slack, OWNER)) == 1


def test_f03_a_first_delivery_carrying_retry_headers_is_handled(app: SlackApp) -> None:
    status, _, _ = app.event(opened(OWNER), "Ev0FIRSTRETRY", retry_num=1)
    assert status == 200
    app.slack.wait_for(lambda: len(publishes(app.slack, OWNER)) == 1, timeout=5)
    assert set(alert_ids(publishes(app.slack, OWNER)[0])) == owned(app, OWNER)


def test_opening_the_messages_tab_publishes_nothing(app: SlackApp) -> None:
    app.event(opened(OWNER, tab="messages"), "Ev0MSGTAB")
    open_home(app, OTHER, event_id="Ev0LATER")
    assert publishes(app.slack, OWNER) == []


def test_a_page_past_the_end_shows_the_last_page(app: SlackApp, clock: Clock) -> None:
    cards = [card_from_json(r.card) for r in app.store.open_alerts_for_owner(OWNER)]
    view = home_view(cards, page=7, now=clock.now)
    assert set(alert_ids(view)) == owned(app, OWNER)
    assert json.loads(view["private_metadata"]) == {"page": 0}
