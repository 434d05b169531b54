"""The `/usage-summary` answers: one account, a short list to choose from, no match, usage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from blocks import ids
from blocks.alert import FIELD_LIMIT, HEADER_LIMIT, MAX_BLOCKS, SECTION_LIMIT, TEXT_LIMIT, Message
from blocks.text import (
    escape_mrkdwn,
    format_day,
    format_percent,
    format_threshold,
    format_usage,
    truncate,
)
from blocks.threshold import mention

CMD = ids.SUMMARY_COMMAND
USAGE = (
    f"Tell me which account: `{CMD} acme.com` — a domain, a URL, an email address, "
    "or at least 2 characters of the account's name."
)
MAX_FIELDS = 10
_SAFE_URL = re.compile(r"^https://[^\s|<>]+$")


@dataclass(frozen=True)
class Usage:
    """`41 / 50 h (82 %)`."""

    numerator: Decimal
    denominator: Decimal
    pct: Decimal
    unit: str


@dataclass(frozen=True)
class AlertState:
    """The account's open alert, as stored."""

    state: str
    since: datetime
    until: datetime | None = None
    by: str = ""


@dataclass(frozen=True)
class AccountView:
    """One account's answer. Strings are untrusted (raw) unless named *_mrkdwn."""

    name: str
    domain: str
    usage: Usage | None
    threshold: Decimal
    owner_id: str = ""
    owner_problem: str = ""
    alert: AlertState | None = None
    fields: tuple[tuple[str, str], ...] = ()
    summary_mrkdwn: str = ""
    record_url: str = ""


@dataclass(frozen=True)
class Match:
    """One entry of the list to choose from."""

    name: str
    domain: str
    pct: Decimal | None


def _md(text: str, limit: int = SECTION_LIMIT) -> MarkdownTextObject:
    return MarkdownTextObject(text=truncate(text, limit), verbatim=True)


def _render(text: str, blocks: list[Block]) -> Message:
    if len(blocks) > MAX_BLOCKS:
        raise ValueError(f"{len(blocks)} blocks: Slack accepts at most {MAX_BLOCKS}")
    return Message(text=truncate(text, TEXT_LIMIT), blocks=[b.to_dict() for b in blocks])


def _line(text: str) -> Message:
    return _render(text, [SectionBlock(text=_md(text))])


def _code(value: str) -> str:
    """An untrusted value inside a code span: escaped, and backticks cannot end the span."""
    return f"`{escape_mrkdwn(value.replace('`', ''))}`"


def looking_up(value: str) -> str:
    """The immediate acknowledgement: `Looking up acme.com…`."""
    return truncate(f"Looking up {escape_mrkdwn(value)}…", TEXT_LIMIT)


def usage_message(text: str = "") -> Message:
    """Empty or unusable text: how to use the command (the text echoed, escaped)."""
    shown = truncate(escape_mrkdwn(" ".join(text.split())), 80)
    intro = f"I can't look up “{shown}”. " if shown else ""
    return _line(f"{intro}{USAGE}")


def problem_message(line_mrkdwn: str) -> Message:
    """A refusal or a failure, one short line."""
    return _line(line_mrkdwn)


def no_match_message(kind: str, value: str) -> Message:
    """Nothing found (and no summary asked of anyone)."""
    if kind == "domain":
        what = f"No account has the domain {_code(value)}."
    else:
        what = f"No account name contains “{escape_mrkdwn(value)}”."
    return _line(f"{what} Try its domain, its website or part of its name.")


def _match_line(match: Match) -> str:
    pct = f" — {format_percent(match.pct)}" if match.pct is not None else " — no usage data"
    rerun = (
        f"`{CMD} {escape_mrkdwn(match.domain.replace('`', ''))}`"
        if match.domain
        else "no domain: type more of its name"
    )
    return f"• *{escape_mrkdwn(match.name)}*{pct} · {rerun}"


def matches_message(value: str, matches: list[Match], more: bool) -> Message:
    """Several accounts match: a short list, each with the command that shows it."""
    shown = matches[:10]
    intro = f"*{len(shown)}{'+' if more else ''} accounts* match “{escape_mrkdwn(value)}”. "
    intro += "Run the command shown next to the one you mean:"
    blocks: list[Block] = [SectionBlock(text=_md(intro))]
    blocks += [SectionBlock(text=_md(_match_line(m))) for m in shown]
    if more:
        blocks.append(ContextBlock(elements=[_md("More match: type more of the name.")]))
    names = ", ".join(escape_mrkdwn(m.name) for m in shown)
    return _render(f"{len(shown)} accounts match: {names}", blocks)


def _alert_text(view: AccountView, now: datetime) -> str:
    alert, at = view.alert, format_threshold(view.threshold)
    if alert is None:
        above = view.usage is not None and view.usage.pct >= view.threshold
        return f"None yet — above {at}: alerted at the next poll" if above else f"None — below {at}"
    by = f" by {mention(alert.by)}" if alert.by else ""
    if alert.state == "snoozed" and alert.until is not None:
        verb = "Snoozed until" if alert.until > now else "Snooze ended"
        return f"{verb} {format_day(alert.until)}{by}"
    if alert.state == "contacted":
        return f"Marked contacted{by}"
    return f"Alerted since {format_day(alert.since)}"


def _owner_text(view: AccountView) -> str:
    if view.owner_id:
        return mention(view.owner_id)
    reason = view.owner_problem or "not known"
    return f"Unknown — {escape_mrkdwn(reason)}"


def _fields(view: AccountView, now: datetime) -> list[MarkdownTextObject]:
    if view.usage is None:
        usage = "No usage data (quota missing or zero)"
    else:
        u = view.usage
        usage = format_usage(u.numerator, u.denominator, escape_mrkdwn(u.unit), u.pct)
    items = [
        ("Usage", usage),
        ("Owner", _owner_text(view)),
        ("Alert", _alert_text(view, now)),
        ("Domain", escape_mrkdwn(view.domain) or "—"),
    ]
    items += [(escape_mrkdwn(k), escape_mrkdwn(v)) for k, v in view.fields if v != ""]
    return [_md(f"*{label}*\n{value}", FIELD_LIMIT) for label, value in items[:MAX_FIELDS]]


def account_message(view: AccountView, now: datetime) -> Message:
    """One account: usage, owner, alert state, key fields and a fresh summary."""
    pct = format_percent(view.usage.pct) if view.usage else "no usage data"
    header = truncate(escape_mrkdwn(f"{view.name} — {pct}"), HEADER_LIMIT)
    blocks: list[Block] = [HeaderBlock(text=header), SectionBlock(fields=_fields(view, now))]
    if view.summary_mrkdwn:
        summary = "Here's a fresh summary created by a bot:\n" + view.summary_mrkdwn
    else:
        summary = "No summary: there is no usage data to summarise."
    blocks.append(SectionBlock(text=_md(summary)))
    context = f"Threshold {format_threshold(view.threshold)}"
    if _SAFE_URL.match(view.record_url):
        context += f" · <{escape_mrkdwn(view.record_url)}|Open in Salesforce>"
    blocks.append(ContextBlock(elements=[_md(context)]))
    text = f"{escape_mrkdwn(view.name)}: {pct}; owner {_owner_text(view)}"
    return _render(text, blocks)
