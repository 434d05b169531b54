"""mrkdwn escaping and the number, percent and date formats every message uses."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, localcontext

_ENTITY_TAIL = re.compile(r"&[a-z]{0,4}$|<[^>]*$")
ELLIPSIS = "…"


def escape_mrkdwn(text: object) -> str:
    """Escape `&`, `<`, `>` (and nothing else) so untrusted text can never be a mention or link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """Cut escaped text to `limit` characters, never inside an entity, a link or a mention."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    cut = _ENTITY_TAIL.sub("", cut)
    return cut.rstrip() + ELLIPSIS


def format_number(value: Decimal | int | float, places: int = 1) -> str:
    """1200 -> "1,200"; 12.5 -> "12.5"; trailing zeros dropped."""
    with localcontext() as context:
        context.prec = 200  # warehouse values can be huge; never fail to print one
        step = Decimal(1).scaleb(-places)
        number = Decimal(str(value)).quantize(step, rounding=ROUND_HALF_UP)
        if number == number.to_integral_value():
            return f"{int(number):,}"
        return f"{number:,.{places}f}".rstrip("0")


def format_percent(value: Decimal) -> str:
    """Usage percent, rounded *down* to one decimal so 74.99 % never reads as 75 %."""
    with localcontext() as context:
        context.prec = 200
        floored = value.quantize(Decimal("0.1"), rounding=ROUND_DOWN)
    return f"{format_number(floored)} %"


def format_threshold(value: Decimal) -> str:
    """A threshold exactly as set (up to two decimals): 74.99 stays "74.99 %"."""
    return f"{format_number(value, places=2)} %"


def format_usage(numerator: Decimal, denominator: Decimal, unit: str, pct: Decimal) -> str:
    """`41 / 50 h (82 %)`."""
    unit_part = f" {unit}" if unit else ""
    return (
        f"{format_number(numerator)} / {format_number(denominator)}{unit_part}"
        f" ({format_percent(pct)})"
    )


def format_day(value: date | datetime) -> str:
    """`Tue 10 Dec` (with the year when it is not this year's)."""
    today = date.today()
    text = f"{value:%a} {value.day} {value:%b}"
    return text if value.year == today.year else f"{text} {value.year}"


def format_moment(value: datetime) -> str:
    """`Wed 3 Dec 14:05 UTC`."""
    return f"{format_day(value)} {value:%H:%M} {value.tzname() or 'UTC'}"


def humanize_field(name: str) -> str:
    """`last_activity_date` -> `Last activity date`."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def days_ago(value: date, today: date) -> str:
    """`today`, `yesterday`, `5 days ago`."""
    days = (today - value).days
    if days <= 0:
        return "today"
    return "yesterday" if days == 1 else f"{days} days ago"
