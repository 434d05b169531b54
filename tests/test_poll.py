"""The main job end to end, in process: warehouse -> lifecycle -> territory -> fake Slack."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from blocks.ids import parse_actions_block_id
from bot.schema import alerts, deliveries, poll_runs
from tests.conftest import Clock
from tests.fakes.slack import FakeSlack
from tests.harness import Harness, owner_user
from tests.warehouses import account


def _table_counts(h: Harness) -> tuple[int, int, int]:
    with h.store.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(select(func.count()).select_from(t)).scalar()
            for t in (alerts, deliveries, poll_runs)
        )


def test_first_poll_sends_one_digest_per_owner_and_a_card_for_a_single_account(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.set_rows(
        [
            account(1, 40, 50, owner=1),
            account(2, 45, 50, owner=1),
            account(3, 90, 100, owner=1),
            account(4, 38, 50, owner=2),
            account(5, 10, 50, owner=3),
        ]
    )
    report = h.poll()
    assert report.ran and report.first_poll
    posts = h.posts()
    assert len(posts) == 2
    by_channel = {p["channel"]: p for p in posts}
    digest = by_channel["D0OWNER0001"]
    assert digest["blocks"][0]["text"]["text"] == "3 accounts at or above 75 %"
    listed = [
        parse_actions_block_id(b["block_id"]) for b in digest["blocks"] if b["type"] == "actions"
    ]
    assert len(listed) == 3
    card = by_channel["D0OWNER0002"]
    assert card["blocks"][0]["text"]["text"] == "Account 4 is at 76 %"
    assert "Hi Owner2!" in card["blocks"][1]["text"]["text"]
    assert sorted(a.kind for a in report.alerts) == ["alert", "digest", "digest", "digest"]
    assert all(a.sent for a in report.alerts)


def test_second_poll_sends_nothing_and_a_restart_changes_nothing(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.set_rows([account(1, 40, 50, owner=1), account(2, 45, 50, owner=2)])
    h.poll()
    clock.advance(minutes=15)
    again = h.poll()
    assert len(h.posts()) == 2
    assert again.alerts == [] and again.above == 2


def test_a_crossing_after_the_first_poll_is_one_card_on_the_dm_channel(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.set_rows([account(1, 20, 50, owner=1)])
    assert h.poll().alerts == []
    h.set_rows([account(1, 41, 50, owner=1)])
    clock.advance(minutes=15)
    report = h.poll()
    assert [(a.kind, a.owner, a.channel, a.sent) for a in report.alerts] == [
        ("alert", "U0OWNER0001", "D0OWNER0001", True)
    ]
    post = h.posts()[0]
    assert post["params"].get("unfurl_links") in (False, "false", "0", 0)
    assert post["metadata"]["event_type"] == "nudge_alert"
    fields = post["blocks"][2]["fields"]
    assert fields[0]["text"] == "*Usage*\n41 / 50 h (82 %)"


def test_f17_one_dm_per_crossing_across_days_restarts_and_a_new_period(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    sent_after_each = []
    for used in [35, 40, 42, 42, 42, 42, 30, 39]:  # 70 %, 80 %, 85 % for days, 60 %, 78 %
        h.set_rows([account(1, used, 50, owner=1)])
        h.poll()
        sent_after_each.append(len(h.posts()))
        clock.advance(hours=9)
    assert sent_after_each == [0, 1, 1, 1, 1, 1, 1, 2]
    with h.store.engine.connect() as conn:
        episodes = conn.execute(select(alerts.c.is_open).order_by(alerts.c.opened_at)).all()
    assert [row.is_open for row in episodes] == [False, True]


def test_a_snooze_that_ends_while_above_sends_one_reminder(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.set_rows([account(1, 20, 50, owner=1)])
    h.poll()
    h.set_rows([account(1, 41, 50, owner=1)])
    h.poll()
    record = next(iter(h.store.open_alerts().values()))
    assert h.store.update_alert(
        record.id,
        record.version,
        clock(),
        state="snoozed",
        snoozed_until=clock() + timedelta(days=1),
    )
    clock.advance(hours=12)
    assert h.poll().alerts == []
    clock.advance(hours=13)
    report = h.poll()
    assert [a.kind for a in report.alerts] == ["reminder"]
    clock.advance(hours=1)
    assert h.poll().alerts == []
    assert len(h.posts()) == 2
    assert "snooze ended" in h.posts()[1]["text"]
    assert len(slack.calls_to("chat.update")) == 1


def test_dry_run_sends_nothing_and_records_nothing(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.set_rows([account(1, 40, 50, owner=1), account(2, 45, 50, owner=2)])
    before = _table_counts(h)
    report = h.poll(dry_run=True)
    assert [(a.owner, a.sent) for a in report.alerts] == [
        ("U0OWNER0002", False),
        ("U0OWNER0001", False),
    ]
    assert _table_counts(h) == before
    assert slack.calls_to("chat.postMessage") == [] and slack.calls_to("conversations.open") == []
    preview = h.poll(dry_run=True, threshold=Decimal(85))
    assert [a.account_name for a in preview.alerts] == ["Account 2"]


def test_f05_120_accounts_40_owners_a_429_and_a_failure(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock, owners=40)
    h.after_a_quiet_first_poll([account(n, 40, 50, owner=n % 40 + 1) for n in range(120)])
    slack.fail("chat.postMessage", error="ratelimited", status=429, retry_after=1)
    slack.fail("chat.postMessage", error="internal_error", status=500)
    report = h.poll()
    assert report.ran
    assert sum(a.sent for a in report.alerts) == 119
    failed = [a for a in report.alerts if not a.sent]
    assert len(failed) == 1 and failed[0].error
    assert len(slack.calls_to("users.lookupByEmail")) == 40
    assert len(slack.calls_to("conversations.open")) == 40
    assert sorted(h.sleeps) and max(h.sleeps) <= 1.0  # pacing: 3 messages per DM, 1 per second
    clock.advance(minutes=15)
    retry = h.poll()
    assert [(a.account_id, a.sent) for a in retry.alerts] == [(failed[0].account_id, True)]
    texts = [p["text"] for p in h.posts()]
    assert len(texts) == 120 and len(set(texts)) == 120
    clock.advance(minutes=15)
    assert h.poll().alerts == []
    assert len(slack.calls_to("users.lookupByEmail")) == 40  # cached across runs


def test_unresolved_owner_goes_to_the_fallback_channel_with_the_reason(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    slack.add_channel("C0TRIAGE", "nudge-triage")
    h = Harness(tmp_path, slack, clock, settings={"territory": {"fallback_channel": "C0TRIAGE"}})
    h.set_rows([account(1, 45, 50, owner=99)])
    report = h.poll()
    assert [(a.kind, a.channel, a.sent) for a in report.alerts] == [("fallback", "C0TRIAGE", True)]
    card = slack.messages("C0TRIAGE")[0]
    assert "is not in the territory file" in card["blocks"][1]["text"]["text"]
    assert any(e["type"] == "users_select" for e in card["blocks"][-1]["elements"])


def test_unresolved_owner_without_fallback_is_kept_undeliverable(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    _, user, email = owner_user(2)
    h = Harness(tmp_path, slack, clock, owners=1)
    slack.add_user(user, email, first_name="Gone", deleted=True)
    h.set_rows([account(1, 45, 50, owner=99)])
    report = h.poll()
    assert [(a.kind, a.sent, a.channel) for a in report.alerts] == [("undeliverable", False, None)]
    problems = h.store.deliveries_by_status(["undeliverable"])
    assert len(problems) == 1 and "territory file" in (problems[0].error or "")
    assert h.posts() == []


def test_a_post_whose_connection_dropped_is_found_in_history_not_resent(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.after_a_quiet_first_poll([account(1, 45, 50, owner=1)])
    slack.drop("chat.postMessage", after_effect=True)
    first = h.poll()
    assert [(a.sent, a.error) for a in first.alerts] == [(False, "connection")]
    assert len(h.posts()) == 1  # Slack did get it
    clock.advance(minutes=15)
    assert h.poll().alerts == []
    assert len(h.posts()) == 1
    history = slack.calls_to("conversations.history")
    assert history and history[0].params.get("include_all_metadata") in (True, "true", "1", 1)
    assert h.store.deliveries_by_status(["sent"])[0].ts == h.posts()[0]["ts"]


def test_a_post_lost_before_slack_got_it_is_sent_again_next_poll(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.after_a_quiet_first_poll([account(1, 45, 50, owner=1)])
    slack.drop("chat.postMessage", after_effect=False)
    h.poll()
    assert h.posts() == []
    clock.advance(minutes=15)
    retry = h.poll()
    assert [(a.kind, a.sent) for a in retry.alerts] == [("alert", True)]
    assert len(h.posts()) == 1


def test_a_lease_held_elsewhere_skips_the_poll(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.set_rows([account(1, 45, 50, owner=1)])
    assert h.store.acquire_lease("poll", "other-replica", clock(), timedelta(minutes=5))
    report = h.poll()
    assert report.skipped == "lease held" and report.to_json()["evaluated"] == 0
    assert h.posts() == []
    clock.advance(minutes=6)  # the other holder's lease expired with its budget
    assert h.poll().skipped is None
    assert len(h.posts()) == 1


def test_two_pollers_at_once_send_one_dm_per_crossing(
    tmp_path: Path, slack: FakeSlack, clock: Clock, state_url: str
) -> None:
    import threading

    h = Harness(tmp_path, slack, clock, state_url=state_url)
    h.after_a_quiet_first_poll([account(n, 45, 50, owner=n % 3 + 1) for n in range(6)])
    threads = [threading.Thread(target=h.poll) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(h.posts()) == 6
    assert len({p["text"] for p in h.posts()}) == 6


def test_a_failed_owner_lookup_fails_that_owner_only_and_is_retried(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.after_a_quiet_first_poll([account(1, 45, 50, owner=1), account(2, 45, 50, owner=2)])
    slack.fail("users.lookupByEmail", error="internal_error", status=500)
    report = h.poll()
    assert report.ran
    outcome = sorted((a.account_name, a.sent, a.error is not None) for a in report.alerts)
    assert outcome == [("Account 1", False, True), ("Account 2", True, False)]
    clock.advance(minutes=15)
    retry = h.poll()
    assert [(a.account_name, a.sent) for a in retry.alerts] == [("Account 1", True)]
    assert len(h.posts()) == 2


def test_rows_repeating_an_account_id_alert_once_and_say_so(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.after_a_quiet_first_poll([account(1, 45, 50, owner=1), account(1, 48, 50, owner=1)])
    report = h.poll()
    assert report.ran and len(report.alerts) == 1 and len(h.posts()) == 1
    assert "repeat an account_id" in report.errors[0]


def test_a_run_past_its_budget_stops_sending_and_the_next_run_sends_the_rest(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock, settings={"schedule": {"budget": "2m"}})
    h.after_a_quiet_first_poll([account(n, 45, 50, owner=n % 3 + 1) for n in range(6)])
    ticks = iter(range(0, 10_000, 40))  # every look at the clock is 40 s later
    report = h.poll(monotonic=lambda: float(next(ticks)))
    sent = [a for a in report.alerts if a.sent]
    held = [a for a in report.alerts if not a.sent]
    assert sent and held and all("budget" in (a.error or "") for a in held)
    clock.advance(minutes=15)
    h.poll()
    texts = [p["text"] for p in h.posts()]
    assert len(texts) == 6 and len(set(texts)) == 6


def test_unreadable_numbers_are_skipped_and_the_batch_goes_on(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.after_a_quiet_first_poll(
        [
            account(1, "40abc", 50, owner=1),
            account(2, 45, "lots", owner=1),
            account(3, 9e999, 50, owner=1),
            account(4, "1e30", 50, owner=1),
            account(5, 45, 50, owner=2, name="Fine\x00 & <Co>"),
            (None, "No id", "noid.example", "005", 45, 50, "starter"),
        ]
    )
    report = h.poll()
    assert report.ran, report.errors
    names = sorted(a.account_name for a in report.alerts if a.sent)
    assert names == ["Account 4", "Fine & <Co>"]
    assert "No id" not in json.dumps([p["text"] for p in h.posts()])


def test_a_reminder_still_goes_out_when_the_card_cannot_be_updated(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    h = Harness(tmp_path, slack, clock)
    h.after_a_quiet_first_poll([account(1, 45, 50, owner=1)])
    h.poll()
    record = next(iter(h.store.open_alerts().values()))
    h.store.update_alert(record.id, record.version, clock(), state="snoozed", snoozed_until=clock())
    slack.fail("chat.update", error="message_not_found", status=200)
    clock.advance(minutes=15)
    report = h.poll()
    assert report.ran and [(a.kind, a.sent) for a in report.alerts] == [("reminder", True)]


def test_an_unexpected_failure_fails_the_run_and_is_recorded(
    tmp_path: Path, slack: FakeSlack, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.usage import Warehouse

    def broken(self: Warehouse, threshold: Decimal) -> None:
        raise RuntimeError("driver bug")

    h = Harness(tmp_path, slack, clock)
    h.set_rows([account(1, 45, 50, owner=1)])
    monkeypatch.setattr(Warehouse, "counts", broken)
    report = h.poll()
    assert not report.ran and report.errors == ["internal error: RuntimeError (see the log)"]
    assert h.store.recent_runs(1)[0]["status"] == "failed"
    assert not h.store.has_history()  # the next poll is still the first one: a digest
