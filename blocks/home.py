"""The App Home tab: an AE's accounts above the threshold, their state and the card's actions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

# The Home tab shows the DM's own actions block (same action and block ids), so a click there
# reaches the same listeners as a click on the DM.
from blocks.alert import SECTION_LIMIT, Card, _controls
from blocks.text import days_ago, escape_mrkdwn, format_day, format_usage, truncate

PAGE_SIZE = 20  # 3 blocks an account: 60 + 5 around them, well inside Slack's 100 for Home
PREVIOUS = "nudge_home_previous"
NEXT = "nudge_home_next"
PAGER_BLOCK = "home_pager"
CALLBACK_ID = "nudge_home"
TITLE = "Your accounts above the threshold"
EMPTY = (
    "No accounts of yours are above the threshold right now. Nudge will DM you when one crosses it."
)
SETTLED = ("snoozed", "contacted")


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text, verbatim=True)


def page_count(total: int) -> int:
    """How many Home pages `total` accounts take (at least one, for the empty state)."""
    return max(1, -(-total // PAGE_SIZE))


def page_of(view: Mapping[str, Any] | None) -> int:
    """The page a published Home view shows (its private_metadata), 0 when unknown."""
    try:
        page = json.loads((view or {}).get("private_metadata") or "{}").get("page", 0)
    except (ValueError, AttributeError):
        return 0
    return page if isinstance(page, int) and page >= 0 else 0


def _as_of(card: Card, now: datetime) -> Card:
    """The card as Home shows it: no re-routing select, and an ended snooze is actionable."""
    snooze_over = card.state == "snoozed" and (card.until is None or card.until <= now)
    state = card.state if card.state in SETTLED and not snooze_over else "alerted"
    return replace(card, state=state, fallback_reason="")


def _status(card: Card, now: datetime) -> str:
    detected = card.detected_at.astimezone(now.tzinfo) if now.tzinfo else card.detected_at
    age = days_ago(detected.date(), now.date())
    if card.state == "snoozed" and card.until:
        return f"Snoozed until {format_day(card.until)} · alerted {age}"
    if card.state == "contacted":
        return f"Contacted · alerted {age}"
    return f"Alerted {age}"


def _entry(card: Card, now: datetime) -> list[Block]:
    shown = _as_of(card, now)
    usage = format_usage(card.numerator, card.denominator, escape_mrkdwn(card.unit), card.usage_pct)
    line = f"*{escape_mrkdwn(card.account_name)}* — {usage}\n{_status(shown, now)}"
    return [DividerBlock(), SectionBlock(text=_md(truncate(line, SECTION_LIMIT))), _controls(shown)]


def _pager(page: int, pages: int) -> list[Block]:
    buttons = []
    if page > 0:
        buttons.append(ButtonElement(text="Previous", action_id=PREVIOUS, value=str(page - 1)))
    if page < pages - 1:
        buttons.append(ButtonElement(text="Next", action_id=NEXT, value=str(page + 1)))
    return [
        ContextBlock(elements=[_md(f"Page {page + 1} of {pages}")]),
        ActionsBlock(block_id=PAGER_BLOCK, elements=buttons),
    ]


def _intro(total: int) -> ContextBlock:
    accounts = "1 account of yours is" if total == 1 else f"{total} accounts of yours are"
    return ContextBlock(
        elements=[
            _md(f"{accounts} above the threshold, highest usage first. Actions here update the DM.")
        ]
    )


def _view(blocks: list[Block], page: int) -> dict[str, Any]:
    view = View(
        type="home",
        callback_id=CALLBACK_ID,
        private_metadata=json.dumps({"page": page}),
        blocks=blocks,
    )
    return view.to_dict()  # validates Slack's limits, 100 blocks included


def home_view(cards: list[Card], *, page: int = 0, now: datetime) -> dict[str, Any]:
    """The Home tab: one page of the AE's accounts above the threshold, with their actions."""
    pages = page_count(len(cards))
    page = min(max(page, 0), pages - 1)
    blocks: list[Block] = [HeaderBlock(text=TITLE)]
    if not cards:
        blocks.append(SectionBlock(text=_md(EMPTY)))
        return _view(blocks, 0)
    # A stable order, so a page shows the same accounts whatever order the store returned.
    ordered = sorted(cards, key=lambda c: (-c.usage_pct, c.account_name.casefold(), c.alert_id))
    blocks.append(_intro(len(cards)))
    for card in ordered[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]:
        blocks += _entry(card, now)
    if pages > 1:
        blocks += _pager(page, pages)
    return _view(blocks, page)


def refusal_view(reason: str) -> dict[str, Any]:
    """The Home tab for someone Nudge does not serve (guests, unknown accounts)."""
    return _view([HeaderBlock(text="Nudge"), SectionBlock(text=_md(escape_mrkdwn(reason)))], 0)
