"""The alert DM, its updated states, the fallback-channel card and the first-poll digest."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
    UserSelectElement,
)

from blocks import ids
from blocks.text import (
    escape_mrkdwn,
    format_day,
    format_moment,
    format_percent,
    format_threshold,
    format_usage,
    truncate,
)

MAX_BLOCKS = 50
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
HEADER_LIMIT = 150
TEXT_LIMIT = 3000
DIGEST_LIMIT = 15


@dataclass(frozen=True)
class Card:
    """Everything one alert card shows. Strings are untrusted (raw) unless named *_mrkdwn."""

    alert_id: str
    account_name: str
    domain: str
    usage_pct: Decimal
    numerator: Decimal
    denominator: Decimal
    threshold: Decimal
    detected_at: datetime
    unit: str = "h"
    plan: str = ""
    first_name: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    summary_mrkdwn: str = ""
    record_url: str = ""
    quota_label: str = "free hours quota"
    pitch: str = "a good time to check in and discuss an Enterprise plan"
    state: str = "alerted"
    actor_id: str = ""
    until: datetime | None = None
    fallback_reason: str = ""
    assignee_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """A Slack message: the plain-text fallback and the blocks as dicts."""

    text: str
    blocks: list[dict[str, Any]]


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text, verbatim=True)


def _render(text: str, blocks: list[Block]) -> Message:
    if len(blocks) > MAX_BLOCKS:
        raise ValueError(f"{len(blocks)} blocks: Slack accepts at most {MAX_BLOCKS}")
    return Message(text=truncate(text, TEXT_LIMIT), blocks=[b.to_dict() for b in blocks])


def _usage(card: Card) -> str:
    return format_usage(card.numerator, card.denominator, escape_mrkdwn(card.unit), card.usage_pct)


def _reason(card: Card) -> str:
    plan = f"{escape_mrkdwn(card.plan)} " if card.plan else ""
    article = "an" if (card.plan or "account")[:1].lower() in "aeiou" else "a"
    return (
        f"{article.capitalize()} {plan}account you own has used *{format_percent(card.usage_pct)}*"
        f" of its {escape_mrkdwn(card.quota_label)} — {escape_mrkdwn(card.pitch)}."
    )


def _greeting(card: Card) -> str:
    if card.fallback_reason:
        reason = f"*Owner not found* — {escape_mrkdwn(card.fallback_reason)}."
        if card.state != "alerted":  # acted on or assigned: the picker is gone
            return reason
        return f"{reason} Pick an owner below to route this alert to them."
    name = escape_mrkdwn(card.first_name) if card.first_name else "there"
    return f"Hi {name}! {_reason(card)}"


def _fields(card: Card) -> list[MarkdownTextObject]:
    items = [("Usage", _usage(card))]
    items += [(escape_mrkdwn(k), escape_mrkdwn(v)) for k, v in card.fields if v != ""]
    return [_md(truncate(f"*{label}*\n{value}", FIELD_LIMIT)) for label, value in items[:10]]


def _snooze_select(card: Card) -> StaticSelectElement:
    return StaticSelectElement(
        placeholder=PlainTextObject(text="Snooze…"),
        action_id=ids.SNOOZE,
        options=[Option(text=label, value=f"{days}d") for label, days in ids.SNOOZE_CHOICES],
    )


def _actions(card: Card) -> ActionsBlock:
    elements: list[Any] = [
        _snooze_select(card),
        ButtonElement(
            text="Mark contacted", action_id=ids.CONTACTED, value=card.alert_id, style="primary"
        ),
    ]
    if card.record_url:
        elements.append(
            ButtonElement(
                text="Open in Salesforce",
                action_id=ids.OPEN_SALESFORCE,
                value=card.alert_id,
                url=card.record_url,
            )
        )
    if card.fallback_reason:
        elements.append(
            UserSelectElement(placeholder=PlainTextObject(text="Assign to…"), action_id=ids.ASSIGN)
        )
    return ActionsBlock(block_id=ids.actions_block_id(card.alert_id), elements=elements)


def outcome_line(card: Card) -> str:
    """Who did what and until when, shown once the card is acted on."""
    who = f"<@{card.actor_id}>" if card.actor_id else "someone"
    if card.state == "snoozed" and card.until:
        return f":zzz: Snoozed until {format_day(card.until)} by {who}"
    if card.state == "contacted":
        return f":white_check_mark: Marked contacted by {who}"
    if card.state == "reassigned":
        return f":arrow_right: Sent to {who}, the account's new owner"
    if card.state == "assigned" and card.assignee_id:
        return f":arrow_right: Assigned to <@{card.assignee_id}> by {who}; it's in their DMs now"
    if card.state == "closed":
        return ":arrow_down: Usage fell back below the threshold; this alert is closed"
    return ""


def _controls(card: Card) -> Block:
    line = outcome_line(card)
    if line:
        return ContextBlock(elements=[_md(line)])
    return _actions(card)


def _context(card: Card) -> ContextBlock:
    domain = escape_mrkdwn(card.domain.replace("`", ""))
    hint = f"`/usage-summary {domain}`" if domain else "`/usage-summary`"
    line = (
        f"Threshold {format_threshold(card.threshold)} · detected "
        f"{format_moment(card.detected_at)} · {hint} for a fresh summary"
    )
    return ContextBlock(elements=[_md(truncate(line, TEXT_LIMIT))])


def fallback_text(card: Card) -> str:
    """The notification / screen-reader text of a card."""
    who = f"{escape_mrkdwn(card.first_name)}, " if card.first_name else ""
    return (
        f"{who}{escape_mrkdwn(card.account_name)} has used {_usage(card)} "
        f"of its {escape_mrkdwn(card.quota_label)}."
    )


def alert_message(card: Card) -> Message:
    """The DM (or fallback-channel card) for one account that crossed the threshold."""
    header = f"{card.account_name} is at {format_percent(card.usage_pct)}"
    blocks: list[Block] = [
        HeaderBlock(text=truncate(escape_mrkdwn(header), HEADER_LIMIT)),
        SectionBlock(text=_md(truncate(_greeting(card), SECTION_LIMIT))),
        SectionBlock(fields=_fields(card)),
    ]
    if card.summary_mrkdwn:
        summary = "Here's a summary created by a bot:\n" + card.summary_mrkdwn
        blocks.append(SectionBlock(text=_md(truncate(summary, SECTION_LIMIT))))
    blocks += [_context(card), _controls(card)]
    return _render(fallback_text(card), blocks)


def reminder_message(card: Card, permalink: str, why: str) -> Message:
    """A short DM pointing back to an existing card (snooze ended, higher tier)."""
    name = escape_mrkdwn(card.account_name)
    link = f"<{permalink}|the alert>" if permalink else "the alert above"
    text = f"{why}: *{name}* is at {format_percent(card.usage_pct)}. See {link}."
    return _render(text, [SectionBlock(text=_md(truncate(text, SECTION_LIMIT)))])


def _digest_entry(card: Card) -> list[Block]:
    details = " · ".join(f"{escape_mrkdwn(k)}: {escape_mrkdwn(v)}" for k, v in card.fields[:2] if v)
    line = f"*{escape_mrkdwn(card.account_name)}* — {_usage(card)}"
    if details:
        line += f" · {details}"
    return [SectionBlock(text=_md(truncate(line, SECTION_LIMIT))), _controls(card)]


def digest_message(cards: list[Card], first_name: str, threshold: Decimal) -> Message:
    """One DM listing an owner's accounts already above the threshold (first poll)."""
    shown, hidden = cards[:DIGEST_LIMIT], len(cards) - DIGEST_LIMIT
    name = escape_mrkdwn(first_name) if first_name else "there"
    count = f"{len(cards)} accounts you own are"
    intro = (
        f"Hi {name}! {count} at or above *{format_threshold(threshold)}* of their "
        f"{escape_mrkdwn(cards[0].quota_label)} — a good time to check in with each."
    )
    blocks: list[Block] = [
        HeaderBlock(text=f"{len(cards)} accounts at or above {format_threshold(threshold)}"),
        SectionBlock(text=_md(truncate(intro, SECTION_LIMIT))),
    ]
    for card in shown:
        blocks += _digest_entry(card)
    tail = f"…and {hidden} more in the app's Home tab. · " if hidden > 0 else ""
    blocks.append(
        ContextBlock(elements=[_md(f"{tail}`/usage-summary &lt;domain&gt;` for a fresh summary")])
    )
    names = "; ".join(escape_mrkdwn(c.account_name) for c in shown)
    return _render(f"{name}, {count} above the threshold: {names}", blocks)
