"""The pure lifecycle, table-tested with an injected clock (SPEC 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.lifecycle import Episode, decide_episode, digest_mode, plan_open_episodes

NOW = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
D = Decimal


@pytest.mark.parametrize(
    ("episode", "usage", "rearm_below", "expected"),
    [
        # still above: nothing more
        (Episode("a", "alerted"), D(85), D(75), "keep"),
        # falling below the re-arm level closes the episode
        (Episode("a", "alerted"), D(60), D(75), "rearm"),
        (Episode("a", "contacted"), D("74.99"), D(75), "rearm"),
        (Episode("a", "snoozed", NOW + timedelta(days=1)), D(10), D(75), "rearm"),
        # a re-arm band: 72 % is inside the band, the episode stays open
        (Episode("a", "alerted"), D(72), D(70), "keep"),
        (Episode("a", "alerted"), D(69), D(70), "rearm"),
        # missing or insufficient data never re-arms
        (Episode("a", "alerted"), None, D(75), "keep"),
        (Episode("a", "snoozed", NOW - timedelta(hours=1)), None, D(75), "keep"),
        # a snooze that ended while above: one reminder
        (Episode("a", "snoozed", NOW - timedelta(minutes=1)), D(90), D(75), "remind"),
        (Episode("a", "snoozed", NOW), D(75), D(75), "remind"),
        # a snooze still running: nothing
        (Episode("a", "snoozed", NOW + timedelta(minutes=1)), D(90), D(75), "keep"),
        # contacted ends the episode's DMs
        (Episode("a", "contacted"), D(99), D(75), "keep"),
        # never delivered: retried until the attempts run out
        (Episode("a", "alerted", delivered=False, attempts=1), D(90), D(75), "retry"),
        (Episode("a", "alerted", delivered=False, attempts=5), D(90), D(75), "keep"),
        (Episode("a", "contacted", delivered=False, attempts=1), D(90), D(75), "keep"),
    ],
)
def test_decide_episode(
    episode: Episode, usage: Decimal | None, rearm_below: Decimal, expected: str
) -> None:
    fate = decide_episode(
        episode, usage, threshold=D(75), rearm_below=rearm_below, now=NOW, max_attempts=5
    )
    assert fate == expected


@pytest.mark.parametrize(
    ("first_poll", "threshold", "last", "expected"),
    [
        (True, D(75), None, True),
        (False, D(75), D(75), False),
        (False, D(60), D(75), True),  # lowered: the newly covered accounts come as a digest
        (False, D(80), D(75), False),
        (False, D(75), None, False),
    ],
)
def test_digest_mode(
    first_poll: bool, threshold: Decimal, last: Decimal | None, expected: bool
) -> None:
    assert digest_mode(first_poll, threshold, last) is expected


def test_raising_the_threshold_rearms_accounts_now_below() -> None:
    episodes = {"acme": Episode("1", "alerted"), "globex": Episode("2", "alerted")}
    plan = plan_open_episodes(
        episodes,
        {"acme": D(78), "globex": D(92)},
        threshold=D(80),
        rearm_below=None,
        now=NOW,
        max_attempts=5,
    )
    assert plan.rearm == ["acme"]
    assert plan.kept == ["globex"]


def test_rearm_band_never_above_the_threshold() -> None:
    plan = plan_open_episodes(
        {"acme": Episode("1", "alerted")},
        {"acme": D(78)},
        threshold=D(75),
        rearm_below=D(90),
        now=NOW,
        max_attempts=5,
    )
    assert plan.rearm == []


def test_missing_row_keeps_the_episode() -> None:
    plan = plan_open_episodes(
        {"acme": Episode("1", "snoozed", NOW - timedelta(days=1))},
        {},
        threshold=D(75),
        rearm_below=None,
        now=NOW,
        max_attempts=5,
    )
    assert plan.kept == ["acme"] and plan.rearm == [] and plan.reminders == []
