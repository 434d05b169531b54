"""What a click on a card does (SPEC 1.2, 6, 7): a compare-and-set state change, audited, and
the card re-rendered from the state database. Knows nothing of Bolt."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from blocks import ids
from blocks.alert import Card, Message, alert_message, digest_message
from blocks.text import escape_mrkdwn
from bot.cards import card_from_json, card_to_json
from bot.delivery import Dispatcher, Pacer, SlackGateway
from bot.store import AlertRecord, DeliveryRecord, Store, new_id

log = logging.getLogger(__name__)

SNOOZE = "snooze"
CONTACTED = "contacted"
ASSIGN = "assign"
UNASSIGN = "unassign"
CAS_ATTEMPTS = 5
REFRESH_ROUNDS = 3
USER_IDS = ("U", "W")
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
# The poller keeps the fallback reason in the message only; a re-render says it generally.
OWNER_NOT_FOUND = "Nudge could not match this account's owner to a Slack user"

UNKNOWN = (
    "Nudge no longer knows this alert, so nothing was changed. "
    "Your current alerts are in Nudge's Home tab."
)
OUTDATED = (
    "This card comes from an older version of Nudge and can't be used any more; "
    "nothing was changed. Act on the account from Nudge's Home tab."
)
BUSY = "Someone else is changing this alert right now; nothing was changed. Please try again."

Status = Literal[
    "changed", "unchanged", "unknown", "outdated", "closed", "refused", "failed", "busy"
]
Snapshot = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Change:
    """What a click asks for: snooze N days, mark contacted, or assign to a Slack user."""

    action: str
    days: int = 0
    assignee: str = ""
    first_name: str = ""


@dataclass(frozen=True)
class Result:
    """What a click did; `note` is the short line the clicker sees (empty when the card says it)."""

    status: Status
    record: AlertRecord | None = None
    note: str = ""

    @property
    def applied(self) -> bool:
        """The alert is in the state the click asked for (now, or already)."""
        return self.status in ("changed", "unchanged")


def snooze_days(value: str) -> int | None:
    """Days of a snooze option value ("7d"), or None when it is not one the card offers."""
    offered = {f"{days}d": days for _, days in ids.SNOOZE_CHOICES}
    return offered.get(value)


def locate(store: Store, block_id: str) -> AlertRecord | Result:
    """The open alert a card's actions block is about, or the reason there is none."""
    parsed = ids.parse_actions_block_id(block_id)
    if parsed is None:
        return Result("unknown", note=UNKNOWN)
    version, alert_id = parsed
    if version != ids.CARD_VERSION:
        return Result("outdated", note=OUTDATED)
    record = store.alert(alert_id)
    if record is None:
        return Result("unknown", note=UNKNOWN)
    if not record.is_open:
        name = escape_mrkdwn(record.account_name)
        note = f"This alert is closed ({name} fell back below the threshold); nothing to do."
        return Result("closed", record, note)
    return record


def changes_for(
    record: AlertRecord, change: Change, user_id: str, now: datetime
) -> dict[str, Any] | None:
    """The columns a click changes, or None when it would not change the alert's state (F02)."""
    if change.action == SNOOZE:
        until = now + timedelta(days=change.days)
        current = record.snoozed_until
        if record.state == "snoozed" and current and current.date() == until.date():
            return None
        return {"state": "snoozed", "snoozed_until": until, "acted_by": user_id}
    if change.action == CONTACTED:
        if record.state == "contacted":
            return None
        return {"state": "contacted", "snoozed_until": None, "acted_by": user_id}
    if change.action == ASSIGN:
        if record.owner_slack_id == change.assignee:
            return None
        card = card_from_json(record.card)
        extra = {**card.extra, "assigned_by": user_id}
        card = replace(card, first_name=change.first_name, extra=extra, fallback_reason="")
        # The new owner decides what to do with it: their card comes with its actions.
        return {
            "owner_slack_id": change.assignee,
            "state": "alerted",
            "snoozed_until": None,
            "acted_by": user_id,
            "card": card_to_json(card),
        }
    raise ValueError(f"unknown action {change.action!r}")


def _detail(change: Change, changes: dict[str, Any]) -> dict[str, Any]:
    if change.action == SNOOZE:
        return {"days": change.days, "until": changes["snoozed_until"].isoformat()}
    if change.action == ASSIGN:
        return {"to": change.assignee}
    return {}


def apply(
    store: Store, clock: Callable[[], datetime], block_id: str, user_id: str, change: Change
) -> Result:
    """Apply a click with compare-and-set on the alert's version, audited.

    A lost race (another replica changed the alert between our read and our write) is re-read
    and re-applied, so two different clicks both apply and neither undoes the other (F03); a
    repeat that would change nothing writes nothing (F02).
    """
    for _ in range(CAS_ATTEMPTS):
        found = locate(store, block_id)
        if isinstance(found, Result):
            return found
        owner = found.owner_slack_id
        if change.action == ASSIGN and owner and owner != change.assignee:
            # Only an alert nobody owns can be routed, once: a second pick (or a race between
            # two triagers) must not take it from its owner or reopen a settled episode.
            return Result("refused", found, f"This alert already went to <@{owner}>.")
        now = clock()
        changes = changes_for(found, change, user_id, now)
        if changes is None:
            return Result("unchanged", found)
        entry = (user_id, change.action, _detail(change, changes))
        if store.update_alert_audited(found.id, found.version, now, entry, **changes):
            return Result("changed", store.alert(found.id))
        log.info("alert %s changed under this click: re-reading it", found.id)
    return Result("busy", note=BUSY)


def assign(
    store: Store,
    slack: SlackGateway,
    clock: Callable[[], datetime],
    block_id: str,
    user_id: str,
    assignee: str,
    pacer: Pacer | None = None,
) -> Result:
    """Route a fallback-channel alert to `assignee`: owner set, the card DMed through the ledger.

    Only the click that wins the compare-and-set sends, so a double click DMs once; a DM that
    fails puts the alert back in the fallback channel, to be assigned again.
    """
    if not SLACK_USER_ID.fullmatch(assignee):
        return Result("refused", note="Pick a person to assign this alert to.")
    user = slack.user_info(assignee)
    if user is None or user.deleted or user.is_restricted:
        note = f"<@{assignee}> can't receive Nudge alerts (a guest or deactivated account)."
        return Result("refused", note=note)
    first_name = user.first_name or (user.real_name.split() or [""])[0]
    change = Change(ASSIGN, assignee=assignee, first_name=first_name)
    result = apply(store, clock, block_id, user_id, change)
    if result.status != "changed" or result.record is None:
        return result
    card = card_of(result.record)
    dispatcher = Dispatcher(store, slack, clock, pacer)
    outcome = dispatcher.send(new_id(), [result.record.id], "alert", assignee, alert_message(card))
    if outcome.sent:
        return result
    record = _unassign(store, clock, result.record.id, assignee, user_id, outcome.error or "")
    note = f"Nudge couldn't DM <@{assignee}> ({outcome.error}); the alert stays here. Pick again."
    return Result("failed", record, note)


def _unassign(
    store: Store,
    clock: Callable[[], datetime],
    alert_id: str,
    assignee: str,
    user_id: str,
    error: str,
) -> AlertRecord | None:
    """Undo an assignment whose DM failed, unless someone re-assigned the alert meanwhile."""
    for _ in range(CAS_ATTEMPTS):
        record = store.alert(alert_id)
        if record is None or record.owner_slack_id != assignee:
            return record
        now = clock()
        entry = (user_id, UNASSIGN, {"from": assignee, "error": error})
        if store.update_alert_audited(record.id, record.version, now, entry, owner_slack_id=None):
            return store.alert(alert_id)
    return store.alert(alert_id)


# -- the card, re-rendered from the state database ------------------------------------------


def card_of(record: AlertRecord, delivery: DeliveryRecord | None = None) -> Card:
    """The alert's card as the state database says it is now, as shown where `delivery` put it."""
    card = card_from_json(record.card)
    state = record.state if record.is_open else "closed"
    card = replace(card, state=state, actor_id=record.acted_by or "", until=record.snoozed_until)
    if delivery is None:
        return card
    if delivery.kind == "fallback":
        card = replace(card, fallback_reason=card.fallback_reason or OWNER_NOT_FOUND, first_name="")
        if record.is_open and record.owner_slack_id:
            by = str(card.extra.get("assigned_by", ""))
            card = replace(card, state="assigned", assignee_id=record.owner_slack_id, actor_id=by)
        return card
    recipient, owner = delivery.recipient or "", record.owner_slack_id
    if record.is_open and owner and recipient.startswith(USER_IDS) and recipient != owner:
        return replace(card, state="reassigned", actor_id=owner)  # the alert went to its new owner
    return card


Shown = list[tuple[AlertRecord, DeliveryRecord | None]]


def _contents(store: Store, channel: str, ts: str, alert_id: str) -> tuple[str, Shown]:
    """The kind of message at (channel, ts) and the alerts in it, per the delivery ledger.

    A message the ledger does not know is taken to be the clicked alert's own card.
    """
    rows = [d for d in store.deliveries_for_message(channel, ts) if d.kind != "reminder"]
    if not rows:
        record = store.alert(alert_id)
        return "alert", [(record, None)] if record else []
    records = store.alerts_by_id(d.alert_id for d in rows)
    return rows[0].kind, [(records[d.alert_id], d) for d in rows if d.alert_id in records]


def render_message(
    store: Store, channel: str, ts: str, alert_id: str
) -> tuple[Message, Snapshot] | None:
    """The message at (channel, ts) re-rendered, with the alert versions it shows.

    A digest is rendered whole, from every alert the ledger has in it, so the other entries
    keep their actions.
    """
    kind, shown = _contents(store, channel, ts, alert_id)
    if not shown:
        return None
    snapshot = tuple(sorted((record.id, record.version) for record, _ in shown))
    cards = [card_of(record, delivery) for record, delivery in shown]
    if kind != "digest":
        return alert_message(cards[0]), snapshot
    cards.sort(key=lambda c: (-c.usage_pct, c.account_name.casefold(), c.alert_id))
    return digest_message(cards, cards[0].first_name, shown[0][0].threshold), snapshot


def refresh_message(
    store: Store, slack: SlackGateway, channel: str, ts: str, alert_id: str
) -> bool:
    """chat.update the message from the state database until it shows the current state.

    Two replicas may render concurrently and their updates land in either order; each re-reads
    after its own update and renders again if the alerts moved on, so the update that lands
    last always shows the final state (F03). False when there is nothing to render.
    """
    for _ in range(REFRESH_ROUNDS):
        rendered = render_message(store, channel, ts, alert_id)
        if rendered is None:
            return False
        message, snapshot = rendered
        slack.update(channel, ts, message)
        current = store.alerts_by_id(shown_id for shown_id, _ in snapshot)
        if tuple(sorted((r.id, r.version) for r in current.values())) == snapshot:
            return True
    return True


def card_location(store: Store, record: AlertRecord) -> tuple[str, str] | None:
    """(channel, ts) of the message carrying the alert's card: its owner's DM when it has one."""
    cards = [
        d
        for d in store.deliveries_of_alert(record.id)
        if d.status == "sent" and d.channel and d.ts and d.kind != "reminder"
    ]
    owned = [d for d in cards if d.recipient == record.owner_slack_id]
    where = (owned or cards)[-1:]
    if not where or not where[0].channel or not where[0].ts:
        return None
    return where[0].channel, where[0].ts
