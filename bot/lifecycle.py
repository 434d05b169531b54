"""Pure alert lifecycle: (usage, stored episodes, now) -> what to do this poll (SPEC 3).

An account is `below` when it has no open episode. Crossing opens one (`alerted`); it stays
open while the account is above, whatever the AE does (`snoozed`, `contacted`), and closes
only when usage falls below `rearm_below` — so an account hovering around the threshold
alerts once, and missing or broken data never re-arms it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class Episode:
    """What the lifecycle needs to know of one open alert."""

    alert_id: str
    state: str
    snoozed_until: datetime | None = None
    delivered: bool = True
    attempts: int = 1


@dataclass
class Plan:
    """The decisions of one poll."""

    rearm: list[str] = field(default_factory=list)
    reminders: list[str] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def digest_mode(first_poll: bool, threshold: Decimal, last_threshold: Decimal | None) -> bool:
    """Accounts already above go out as one digest per owner: first poll, or threshold lowered."""
    return first_poll or (last_threshold is not None and threshold < last_threshold)


def snooze_ended(episode: Episode, now: datetime) -> bool:
    """A snooze whose end has passed."""
    return episode.state == "snoozed" and (
        episode.snoozed_until is None or episode.snoozed_until <= now
    )


def decide_episode(
    episode: Episode,
    usage_pct: Decimal | None,
    *,
    threshold: Decimal,
    rearm_below: Decimal,
    now: datetime,
    max_attempts: int,
) -> str:
    """One open episode's fate: "rearm", "remind", "retry" or "keep"."""
    if usage_pct is None:
        return "keep"  # missing or insufficient data never re-arms
    if usage_pct < rearm_below:
        return "rearm"
    if snooze_ended(episode, now) and usage_pct >= threshold:
        return "remind"
    if not episode.delivered and episode.attempts < max_attempts and episode.state == "alerted":
        return "retry"
    return "keep"


def plan_open_episodes(
    episodes: Mapping[str, Episode],
    usage: Mapping[str, Decimal | None],
    *,
    threshold: Decimal,
    rearm_below: Decimal | None,
    now: datetime,
    max_attempts: int,
) -> Plan:
    """Decide every open episode; `usage` maps account id -> percent (absent: no row)."""
    plan = Plan()
    floor = threshold if rearm_below is None else min(rearm_below, threshold)
    buckets = {
        "rearm": plan.rearm,
        "remind": plan.reminders,
        "retry": plan.retries,
        "keep": plan.kept,
    }
    for account_id, episode in episodes.items():
        fate = decide_episode(
            episode,
            usage.get(account_id),
            threshold=threshold,
            rearm_below=floor,
            now=now,
            max_attempts=max_attempts,
        )
        buckets[fate].append(account_id)
    return plan
