"""Salesforce ids: 15- and 18-character forms join once normalised to 18 (SPEC 4)."""

from __future__ import annotations

import re

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")


def to_18(value: str) -> str:
    """The 18-character form of a 15-character Salesforce id; other values come back trimmed.

    An 18-character id is kept as given: re-deriving its suffix would make distinct ids from
    other systems (or hand-made test data) collide on their first 15 characters.
    """
    text = value.strip()
    if not _ID.match(text) or len(text) == 18:
        return text
    base = text
    suffix = ""
    for start in range(0, 15, 5):
        chunk = base[start : start + 5]
        bits = sum(1 << i for i, char in enumerate(chunk) if char.isupper())
        suffix += _ALPHABET[bits]
    return base + suffix
