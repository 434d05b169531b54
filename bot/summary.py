"""Account summaries: the Summariser port and the deterministic template (SPEC 5).

The LLM summary (`bot.llm.OpenAISummariser`) sits in front of the template and falls back to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from blocks.text import (
    days_ago,
    escape_mrkdwn,
    format_day,
    format_number,
    format_percent,
    format_threshold,
)
from bot.usage import UsageRow

MAX_WORDS = 100
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class SummaryInput:
    """What a summary is made from: the usage row and the derived values."""

    row: UsageRow
    unit: str
    today: date
    threshold: Decimal | None = None
    # CRM Account fields (Salesforce API names, e.g. "Industry"), when the CRM gave them.
    account: Mapping[str, Any] = field(default_factory=dict)


class Summariser(Protocol):
    """Turns one account's data into at most 100 words of Slack mrkdwn bullets."""

    def summarise(self, data: SummaryInput) -> str:
        """One summary; never raises for a dependency failure (the template stands in)."""
        ...

    def summarise_many(
        self,
        inputs: Sequence[SummaryInput],
        *,
        concurrency: int = 8,
        budget_s: float | None = None,
    ) -> list[str]:
        """One summary per input, in order, as one run.

        A failure that stops the LLM (a timeout, no quota), or the end of `budget_s` seconds,
        leaves the rest of the run to the template.
        """
        ...


def as_date(value: Any) -> date | None:
    """A date from a date, datetime or ISO string value; None otherwise."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def display_value(value: Any, today: date) -> str:
    """A field value as an AE reads it (dates as `Mon 1 Dec (2 days ago)`), unescaped."""
    if value is None:
        return ""
    day = as_date(value)
    if day is not None:
        return f"{format_day(day)} ({days_ago(day, today)})"
    if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        return format_number(value)
    text = str(value).strip()
    return text[:1].upper() + text[1:] if text.islower() and len(text) < 20 else text


def _usage_bullet(data: SummaryInput) -> str:
    row = data.row
    assert row.numerator is not None and row.denominator is not None
    pct = row.usage_pct or Decimal(0)
    unit = f" {escape_mrkdwn(data.unit)}" if data.unit else ""
    used = f"Used {format_number(row.numerator)} of {format_number(row.denominator)}{unit}"
    left = row.denominator - row.numerator
    if left >= 0:
        return f"{used} ({format_percent(pct)}); {format_number(left)}{unit} left in the quota."
    return f"{used} ({format_percent(pct)}): {format_number(-left)}{unit} over the quota."


def _activity_bullets(data: SummaryInput) -> list[str]:
    """Recency, when the row has an activity date (the card already shows the other fields)."""
    bullets = []
    for name, value in data.row.fields.items():
        day = as_date(value)
        if day is not None and "activ" in name.lower():
            days = (data.today - day).days
            busy = "still in active use" if days <= 7 else "quieter lately"
            bullets.append(f"Last active {days_ago(day, data.today)}: {busy}.")
    return bullets


def fit_bullets(bullets: Sequence[str], limit: int = MAX_WORDS) -> str:
    """`• ` lines, whole bullets only, at most `limit` words in all."""
    kept: list[str] = []
    words = 0
    for bullet in bullets:
        count = len(bullet.split())
        if words + count > limit:
            break
        kept.append(f"• {bullet}")
        words += count
    return "\n".join(kept)


class TemplateSummariser:
    """The deterministic summary: always available, built only from the account's own data."""

    def summarise(self, data: SummaryInput) -> str:
        """Slack mrkdwn bullets, escaped, at most 100 words."""
        bullets = [_usage_bullet(data), *_activity_bullets(data)]
        pct = data.row.usage_pct or Decimal(0)
        if pct >= 100:
            bullets.append("Over quota now: a natural moment to talk about a bigger plan.")
        elif data.threshold is not None and pct < data.threshold:
            bullets.append(f"Below the {format_threshold(data.threshold)} alert threshold for now.")
        else:
            bullets.append("Close to the quota: a good moment to check in about an upgrade.")
        return fit_bullets(bullets)

    def summarise_many(
        self,
        inputs: Sequence[SummaryInput],
        *,
        concurrency: int = 8,
        budget_s: float | None = None,
    ) -> list[str]:
        """The template is local and fast: one after the other."""
        return [self.summarise(data) for data in inputs]
