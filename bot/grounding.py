"""LLM output checked and shaped for Slack: grounded in its input, as mrkdwn bullets (SPEC 5).

Grounding: every number the summary states must be one of the numbers that were sent, after
normalising both (`1,200` = `1200`, `82%` = `82`, `$1.2M` = `1200000`, `2.5k` = `2500`) and
rounding the input to the precision the summary wrote (`82%` matches 82.4 and 81.6, `$1.2M`
matches 1,234,567; truncation counts too, as Nudge itself floors percentages: `82%` matches
82.9). Numbers glued to letters (`Q4`, `B2B`, `gpt-4o`) are names, not quantities.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, localcontext

_NUMBER = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?"
    r"(?:\s?(thousand|million|billion|bn|mn|[kmb])(?![a-z]))?",
    re.IGNORECASE,
)
_EXPONENT = {"k": 3, "thousand": 3, "m": 6, "mn": 6, "million": 6, "b": 9, "bn": 9, "billion": 9}
_MARKER = re.compile(r"^(?:[-*•+]|\d{1,2}[.)])\s+")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


@dataclass(frozen=True)
class Number:
    """A number as written: its value (`$1.2M` -> 1200000) and the precision written (100000)."""

    text: str
    value: Decimal
    step: Decimal

    def matches(self, known: Decimal) -> bool:
        """`known`, rounded (or truncated) to this number's precision, is this number."""
        with localcontext() as context:
            context.prec = 60
            units = abs(known) / self.step
            written = self.value / self.step
            return written in (
                units.to_integral_value(ROUND_HALF_UP),
                units.to_integral_value(ROUND_DOWN),
            )


def numbers_in(text: str) -> list[Number]:
    """Every quantity written in `text`, normalised."""
    found = []
    for match in _NUMBER.finditer(text):
        whole, fraction, suffix = match.groups()
        exponent = _EXPONENT[suffix.lower()] if suffix else 0
        places = len(fraction) - 1 if fraction else 0
        value = Decimal(whole.replace(",", "") + (fraction or "")).scaleb(exponent)
        found.append(Number(match.group(0), value, Decimal(1).scaleb(exponent - places)))
    return found


def ungrounded(output: str, sent: Iterable[str]) -> list[str]:
    """The numbers of `output` that no number of the `sent` texts accounts for."""
    known = [n.value for text in sent for n in numbers_in(text)]
    return [n.text for n in numbers_in(output) if not any(n.matches(k) for k in known)]


def has_bullets(text: str) -> bool:
    """The answer is a bullet list (a refusal or a JSON blob is not a summary)."""
    return any(_MARKER.match(line.strip()) for line in text.splitlines())


def bullet_lines(text: str) -> list[str]:
    """The answer's points, markers and Markdown removed (`**x**` -> `*x*`), not yet escaped.

    Lead-in lines ("Here is the summary:"), headings and code fences are dropped; numbered
    list markers go too, so `1.` is never mistaken for a stated number.
    """
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("```", "#")):
            continue
        marker = _MARKER.match(line)
        if marker is None and line.rstrip("*_ ").endswith(":"):
            continue
        body = line[marker.end() :] if marker else line
        body = _LINK.sub(r"\1", body)
        body = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", body)
        if body.strip():
            lines.append(body.strip())
    return lines
