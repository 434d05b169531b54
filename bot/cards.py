"""From engine data to the card the blocks render, and to/from its stored JSON form."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from blocks.alert import Card
from blocks.text import humanize_field
from bot.config import Settings
from bot.crmid import to_18
from bot.summary import display_value
from bot.usage import UsageRow

_DECIMALS = ("usage_pct", "numerator", "denominator", "threshold")
_MOMENTS = ("detected_at", "until")


def record_url(settings: Settings, account_id: str) -> str:
    """The Lightning record page of the account, or "" when no instance is known."""
    base = settings.salesforce.instance_url.rstrip("/")
    record = quote(to_18(account_id), safe="")
    return f"{base}/lightning/r/Account/{record}/view" if base else ""


def build_card(
    settings: Settings,
    row: UsageRow,
    *,
    alert_id: str,
    threshold: Decimal,
    now: datetime,
    first_name: str,
    summary_mrkdwn: str,
) -> Card:
    """The card for a row that crossed the threshold."""
    today: date = now.date()
    fields = tuple(
        (humanize_field(name), display_value(value, today)) for name, value in row.fields.items()
    )
    plan = row.fields.get("plan")
    assert row.numerator is not None and row.denominator is not None
    return Card(
        alert_id=alert_id,
        account_name=row.account_name,
        domain=row.domain,
        usage_pct=row.usage_pct or Decimal(0),
        numerator=row.numerator,
        denominator=row.denominator,
        threshold=threshold,
        detected_at=now,
        unit=settings.columns.unit,
        plan=display_value(plan, today) if plan else "",
        first_name=first_name,
        fields=fields,
        summary_mrkdwn=summary_mrkdwn,
        record_url=record_url(settings, row.account_id),
        quota_label=settings.rule.quota_label,
        pitch=settings.rule.pitch,
    )


def card_to_json(card: Card) -> dict[str, Any]:
    """A JSON-safe dict of the card (stored with the alert, so actions can re-render it)."""
    data = dataclasses.asdict(card)
    for name in _DECIMALS:
        data[name] = str(data[name])
    for name in _MOMENTS:
        data[name] = data[name].isoformat() if data[name] else None
    data["fields"] = [list(pair) for pair in card.fields]
    return data


def card_from_json(data: dict[str, Any]) -> Card:
    """The inverse of card_to_json."""
    values = dict(data)
    for name in _DECIMALS:
        values[name] = Decimal(values[name])
    for name in _MOMENTS:
        values[name] = datetime.fromisoformat(values[name]) if values.get(name) else None
    values["fields"] = tuple(tuple(pair) for pair in values.get("fields", ()))
    return Card(**values)
