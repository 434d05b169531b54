"""Listeners: `/usage-threshold` and `/usage-summary`.

Slack gives a command 3 seconds: each listener acks first, then does the slow work (Slack user
look-ups, the warehouse, the owner chain) and answers with one ephemeral `respond()`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from slack_bolt import Ack, App, Respond

from blocks import ids
from blocks import summary as summary_blocks
from blocks import threshold as threshold_blocks
from blocks.alert import Message
from blocks.text import humanize_field
from bot.cards import record_url
from bot.config import parse_threshold
from bot.errors import ConfigError, DeliveryError, NudgeError, WarehouseError
from bot.lookup import MAX_RESULTS, Query, parse_query, unescape_slack
from bot.services import Services
from bot.store import AlertRecord
from bot.summary import SummaryInput, display_value
from bot.territory import Owner
from bot.timebox import within
from bot.usage import UsageRow

log = logging.getLogger(__name__)
ANSWER_WITHIN_S = 9.0
TOO_SLOW = (
    "Nudge couldn't get the usage data, owner and summary within 10 seconds. "
    "Please try again in a minute."
)

WAREHOUSE_DOWN = (
    "Sorry, Nudge couldn't read the usage data just now. Try again in a minute; "
    "if it keeps failing, tell your Nudge admin."
)
SETUP_BROKEN = "Nudge's warehouse settings need fixing: ask your Nudge admin to run `nudge check`."
SLACK_DOWN = "Sorry, Nudge couldn't check your Slack account just now. Try again in a minute."
HISTORY = 5


def register(app: App, services: Services) -> None:
    """Register the two slash commands."""
    app.command(ids.THRESHOLD_COMMAND)(threshold_listener(services))
    app.command(ids.SUMMARY_COMMAND)(summary_listener(services))


def _send(respond: Respond, message: Message) -> None:
    respond(
        text=message.text,
        blocks=message.blocks,
        response_type="ephemeral",
        unfurl_links=False,
        unfurl_media=False,
    )


# -- /usage-threshold ------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdCommand:
    """What `/usage-threshold <text>` asks for; `usage` for anything not understood."""

    action: Literal["show", "set", "help", "usage"]
    value: Decimal | None = None


def parse_threshold_command(text: str) -> ThresholdCommand:
    """`` / `show` / `help` / `set N` (SPEC 7 grammar for N); anything else is `usage`."""
    words = text.split()
    if not words:
        return ThresholdCommand("show")
    verb = words[0].lower()
    if verb in ("show", "help") and len(words) == 1:
        return ThresholdCommand("show" if verb == "show" else "help")
    rest = text.strip()[len(words[0]) :]
    # ASCII only: `\d` would also accept other scripts' digits (`٧٥`, `７５`).
    if verb == "set" and rest.strip() and rest.isascii():
        try:
            return ThresholdCommand("set", parse_threshold(rest))
        except ValueError:
            pass
    return ThresholdCommand("usage")


def threshold_listener(services: Services) -> Any:
    """`/usage-threshold`: show (default), set N (admins), help."""

    def usage_threshold(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        ack()
        user_id, text = str(command.get("user_id", "")), str(command.get("text") or "")
        _send(respond, threshold_answer(services, user_id, text))

    return usage_threshold


def threshold_answer(services: Services, user_id: str, text: str) -> Message:
    """The one answer to a `/usage-threshold` command."""
    parsed = parse_threshold_command(text)
    access = services.access
    try:
        verdict = access.admin(user_id) if parsed.action == "set" else access.member(user_id)
    except DeliveryError as exc:
        log.warning("/usage-threshold: cannot check %s: %s", user_id, exc)
        return threshold_blocks.notice_message(SLACK_DOWN)
    if not verdict.allowed:
        return threshold_blocks.notice_message(verdict.reason)
    if parsed.action == "show":
        return threshold_blocks.threshold_message(threshold_view(services))
    if parsed.action == "help":
        return threshold_blocks.help_message()
    if parsed.action == "set" and parsed.value is not None:
        return set_threshold(services, user_id, parsed.value)
    return threshold_blocks.usage_message(unescape_slack(text))


def set_threshold(services: Services, user_id: str, value: Decimal) -> Message:
    """Store an admin's new threshold (its row is the audit entry); the next poll uses it."""
    current = services.threshold()
    if value == current.value:
        return threshold_blocks.threshold_unchanged_message(value)
    services.store.set_threshold(value, current.value, user_id, services.clock())
    log.info("threshold changed from %s to %s by %s", current.value, value, user_id)
    return threshold_blocks.threshold_set_message(current.value, value)


def threshold_view(services: Services) -> threshold_blocks.ThresholdView:
    """Value and source, the last poll, accounts above now (the warehouse), recent changes."""
    setting = services.threshold()
    runs = services.store.recent_runs(1)
    last = None
    if runs:
        run = runs[0]
        at = run["finished_at"] or run["started_at"]
        last = threshold_blocks.LastPoll(at, str(run["status"]), Decimal(run["threshold"]))
    above = evaluated = None
    try:
        counts = services.warehouse().counts(setting.value)
        above, evaluated = counts.above, counts.evaluated
    except (WarehouseError, ConfigError) as exc:
        log.warning("/usage-threshold: the warehouse did not answer: %s", exc)
    changes = tuple(
        threshold_blocks.Change(str(c["user_id"]), c["old"], c["new"], c["at"])
        for c in services.store.threshold_history(HISTORY)
    )
    return threshold_blocks.ThresholdView(
        setting.value, setting.source, last, above, evaluated, changes
    )


# -- /usage-summary --------------------------------------------------------------------------


def acknowledgement(text: str) -> str | dict[str, str]:
    """The ack's body: `Looking up acme.com…` for a usable text; empty otherwise (answered next)."""
    query = parse_query(text)
    if query is None:
        return ""
    return {"text": summary_blocks.looking_up(query.value), "response_type": "ephemeral"}


def summary_listener(services: Services) -> Any:
    """`/usage-summary <domain | URL | email | name>`."""

    def usage_summary(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        ack(acknowledgement(str(command.get("text") or "")))
        user_id, text = str(command.get("user_id", "")), str(command.get("text") or "")
        # SPEC 1.2: answered within 10 s, whatever Slack, the warehouse or the CRM are doing.
        answer = within(
            ANSWER_WITHIN_S,
            lambda: summary_answer(services, user_id, text),
            lambda: summary_blocks.problem_message(TOO_SLOW),
        )
        _send(respond, answer)

    return usage_summary


def summary_answer(services: Services, user_id: str, text: str) -> Message:
    """The one answer to a `/usage-summary` command: an account, a list, none, or why not."""
    try:
        verdict = services.access.viewer(user_id)
    except DeliveryError as exc:
        log.warning("/usage-summary: cannot check %s: %s", user_id, exc)
        return summary_blocks.problem_message(SLACK_DOWN)
    if not verdict.allowed:
        return summary_blocks.problem_message(verdict.reason)
    query = parse_query(text)
    if query is None:
        return summary_blocks.usage_message(unescape_slack(text))
    try:
        rows = services.warehouse().find(query, MAX_RESULTS + 1)
    except ConfigError as exc:
        log.error("/usage-summary: warehouse configuration: %s", exc)
        return summary_blocks.problem_message(SETUP_BROKEN)
    except WarehouseError as exc:
        log.warning("/usage-summary: %s", exc)
        return summary_blocks.problem_message(WAREHOUSE_DOWN)
    _audit(services, user_id, query, rows)
    if not rows:
        return summary_blocks.no_match_message(query.kind, query.value)
    if len(rows) > 1:
        matches = [summary_blocks.Match(r.account_name, r.domain, r.usage_pct) for r in rows]
        return summary_blocks.matches_message(
            query.value, matches[:MAX_RESULTS], len(rows) > MAX_RESULTS
        )
    return summary_blocks.account_message(account_view(services, rows[0]), services.clock())


def _audit(services: Services, user_id: str, query: Query, rows: list[UsageRow]) -> None:
    detail = {
        "query": query.value,
        "kind": query.kind,
        "matches": min(len(rows), MAX_RESULTS),
        "more": len(rows) > MAX_RESULTS,
    }
    services.store.add_audit(user_id, "usage-summary", services.clock(), detail=detail)


def account_view(services: Services, row: UsageRow) -> summary_blocks.AccountView:
    """One account's usage, owner, alert state, fields and a fresh summary."""
    now, unit = services.clock(), services.settings.columns.unit
    alert = services.store.open_alerts().get(row.account_id)
    owner_id, problem = account_owner(services, row, alert)
    pct = row.usage_pct
    usage = None
    summary = ""
    if pct is not None and row.numerator is not None and row.denominator is not None:
        usage = summary_blocks.Usage(row.numerator, row.denominator, pct, unit)
        # Only when there is data to summarise (no data: no summary, no LLM call).
        threshold = services.threshold().value
        summary = services.summariser.summarise(SummaryInput(row, unit, now.date(), threshold))
    state = None
    if alert is not None:
        state = summary_blocks.AlertState(
            alert.state, alert.opened_at, alert.snoozed_until, alert.acted_by or ""
        )
    return summary_blocks.AccountView(
        name=row.account_name,
        domain=row.domain,
        usage=usage,
        threshold=services.threshold().value,
        owner_id=owner_id,
        owner_problem=problem,
        alert=state,
        fields=tuple(
            (humanize_field(k), display_value(v, now.date())) for k, v in row.fields.items()
        ),
        summary_mrkdwn=summary,
        record_url=record_url(services.settings, row.account_id),
    )


def account_owner(services: Services, row: UsageRow, alert: AlertRecord | None) -> tuple[str, str]:
    """(Slack user id, "") of the owner — the open alert's first — or ("", why it is unknown)."""
    if alert is not None and alert.owner_slack_id:
        return alert.owner_slack_id, ""
    try:
        resolution = services.territory().resolve_many([row.owner_id])[row.owner_id]
    except NudgeError as exc:  # a broken territory file or a refused token: say so, go on
        log.warning("/usage-summary: owner of %s: %s", row.account_id, exc)
        return "", "the owner look-up failed"
    if isinstance(resolution, Owner):
        return resolution.slack_user_id, ""
    return "", resolution.reason
