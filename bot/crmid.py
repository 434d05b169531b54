"""Salesforce ids: 15- and 18-character forms join once normalised to 18 (SPEC 4)."""

from __future__ import annotations

import re

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")


def to_18(value: str) -> str:
    """The 18-character form of a Salesforce id; other values come back trimmed, unchanged."""
    text = value.strip()
    if not _ID.match(text):
        return text
    base = text[:15]
    suffix = ""
    for start in range(0, 15, 5):
        chunk = base[start : start + 5]
        bits = sum(1 << i for i, char in enumerate(chunk) if char.isupper())
        suffix += _ALPHABET[bits]
    return base + suffix
