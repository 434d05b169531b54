"""Salesforce ids: 15 and 18 characters join once normalised."""

import pytest

from bot.crmid import to_18


@pytest.mark.parametrize(
    ("short", "full"),
    [
        # Salesforce's documented example.
        ("001A0000006Vm9r", "001A0000006Vm9rIAC"),
        # No upper-case letters: every chunk is 0 -> "A".
        ("001000000000000", "001000000000000AAA"),
        # All upper-case: every chunk is 0b11111 = 31 -> "5".
        ("ABCDEABCDEABCDE", "ABCDEABCDEABCDE555"),
        # "a0B0C" -> bits 2,4 = 20 -> "U"; "00000" -> "A"; "0000Z" -> bit 4 = 16 -> "Q".
        ("a0B0C000000000Z", "a0B0C000000000ZUAQ"),
        # "00Q5e" -> bit 2 = 4 -> "E"; "X0000" -> bit 0 = 1 -> "B"; "0Ab00" -> bit 1 = 2 -> "C".
        ("00Q5eX00000Ab00", "00Q5eX00000Ab00EBC"),
    ],
)
def test_to_18_known_ids(short: str, full: str) -> None:
    assert to_18(short) == full


def test_18_character_ids_are_kept_as_given_so_distinct_ids_never_collide() -> None:
    assert to_18("001A0000006Vm9rIAC") == "001A0000006Vm9rIAC"
    ids = [f"0018d00000AAAAAAA{n}" for n in range(1, 8)]
    assert len({to_18(i) for i in ids}) == 7


@pytest.mark.parametrize("value", ["", "acme-42", "001A0000006Vm9", "not a salesforce id"])
def test_to_18_leaves_non_ids_alone(value: str) -> None:
    assert to_18(value) == value.strip()


def test_to_18_trims_whitespace() -> None:
    assert to_18(" 001A0000006Vm9r ") == "001A0000006Vm9rIAC"
