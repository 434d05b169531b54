"""Block Kit builders: escaping, Slack's limits, the digest, the card's actions and formats."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from slack_sdk.models.blocks import SectionBlock

from blocks import ids
from blocks.alert import (
    MAX_BLOCKS,
    Card,
    Message,
    _md,
    _render,
    alert_message,
    digest_message,
    reminder_message,
)
from blocks.text import (
    ELLIPSIS,
    escape_mrkdwn,
    format_number,
    format_percent,
    format_usage,
    truncate,
)

RECORD_URL = "https://acme.my.salesforce.com/lightning/r/Account/001A0000006Vm9rIAC/view"
# blocks.text.format_day reads today's date (it names the year when it is not this one).
DETECTED = datetime(date.today().year, 12, 3, 14, 5, tzinfo=UTC)
HOSTILE = "<!channel> <@U123> <https://evil.example|click> <!here|here>"


def make_card(**changes: Any) -> Card:
    """An ordinary card: 41 / 50 h, 82 %, threshold 75 %."""
    card = Card(
        alert_id="a1b2c3",
        account_name="Acme Corp",
        domain="acme.example",
        usage_pct=Decimal("82"),
        numerator=Decimal("41"),
        denominator=Decimal("50"),
        threshold=Decimal("75"),
        detected_at=DETECTED,
        plan="Pro",
        first_name="Dana",
        fields=(("Plan", "Pro"), ("Users", "12"), ("Last activity", "yesterday")),
        summary_mrkdwn="• Usage is climbing\n• 12 active users",
        record_url=RECORD_URL,
    )
    return dataclasses.replace(card, **changes)


def text_objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every text object (plain_text or mrkdwn) anywhere in a block tree."""
    if isinstance(node, dict):
        if node.get("type") in ("plain_text", "mrkdwn") and "text" in node:
            yield node
        for value in node.values():
            yield from text_objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from text_objects(item)


def all_texts(message: Message) -> list[str]:
    """The fallback `text` and every text object of the message."""
    return [message.text] + [obj["text"] for obj in text_objects(message.blocks)]


def blocks_of(message: Message, kind: str) -> list[dict[str, Any]]:
    return [b for b in message.blocks if b["type"] == kind]


def actions(message: Message) -> list[dict[str, Any]]:
    return blocks_of(message, "actions")


def elements_by_action(message: Message) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in actions(message):
        for element in block["elements"]:
            found[element["action_id"]] = element
    return found


# ------------------------------------------------------------------ escaping (F07)


def test_account_name_is_escaped_in_every_text() -> None:
    message = alert_message(make_card(account_name="Smith & Sons <EMEA>"))
    header = blocks_of(message, "header")[0]["text"]
    assert header["type"] == "plain_text"
    assert header["text"] == "Smith &amp; Sons &lt;EMEA&gt; is at 82 %"
    assert message.text.startswith("Dana, Smith &amp; Sons &lt;EMEA&gt; has used 41 / 50 h")
    for text in all_texts(message):
        assert "Smith & Sons" not in text
        assert "<EMEA>" not in text
    named = [t for t in all_texts(message) if "Smith" in t]
    assert len(named) == 2  # the header and the fallback text
    assert all("Smith &amp; Sons &lt;EMEA&gt;" in t for t in named)


def test_account_name_is_escaped_in_the_digest() -> None:
    cards = [make_card(alert_id="x1", account_name="Smith & Sons <EMEA>"), make_card()]
    message = digest_message(cards, "Dana", Decimal("75"))
    named = [t for t in all_texts(message) if "Smith" in t]
    assert len(named) == 2  # the entry and the fallback text
    assert all("Smith &amp; Sons &lt;EMEA&gt;" in t for t in named)
    assert not any("<EMEA>" in t for t in all_texts(message))


def nudge_built(text: str) -> str:
    """The text with the links and mentions Nudge itself builds removed."""
    return re.sub(r"<@U0ACTOR>|<https://fake-workspace\.slack\.com/[^|>]*\|the alert>", "", text)


def assert_no_foreign_controls(message: Message) -> None:
    for text in all_texts(message):
        rest = nudge_built(text)
        for control in ("<!", "<@", "<http", "<#"):
            assert control not in rest, f"{control!r} in {text!r}"


@pytest.mark.parametrize(
    "hostile",
    [
        {"account_name": HOSTILE},
        {"fields": (("Plan", HOSTILE), (HOSTILE, "x"))},
        {"plan": HOSTILE},
        {"first_name": HOSTILE},
        {"domain": HOSTILE},
        {"unit": HOSTILE},
        {"fallback_reason": HOSTILE},
        {"state": "snoozed", "actor_id": "U0ACTOR", "until": datetime(2026, 12, 10, tzinfo=UTC)},
    ],
    ids=["name", "fields", "plan", "first_name", "domain", "unit", "fallback_reason", "outcome"],
)
def test_untrusted_text_never_makes_a_mention_or_link(hostile: dict[str, Any]) -> None:
    card = make_card(**hostile)
    assert_no_foreign_controls(alert_message(card))
    assert_no_foreign_controls(digest_message([card, make_card()], HOSTILE, Decimal("75")))
    permalink = "https://fake-workspace.slack.com/archives/D1/p1700000000000100"
    reminder = reminder_message(card, permalink, "Your snooze ended")
    assert_no_foreign_controls(reminder)
    assert f"<{permalink}|the alert>" in reminder.blocks[0]["text"]["text"]


def test_hostile_field_is_shown_literally_escaped() -> None:
    message = alert_message(make_card(fields=(("Plan", "<!channel> usage is critical"),)))
    fields = blocks_of(message, "section")[1]["fields"]
    assert fields[1]["text"] == "*Plan*\n&lt;!channel&gt; usage is critical"


def test_the_salesforce_url_is_the_only_raw_link() -> None:
    message = alert_message(make_card(account_name=HOSTILE))
    button = elements_by_action(message)[ids.OPEN_SALESFORCE]
    assert button["url"] == RECORD_URL


def test_apostrophe_and_quotes_stay_as_they_are() -> None:
    message = alert_message(
        make_card(account_name="O'Brien's \"Bakery\"", first_name="D'Arcy", plan="Pro")
    )
    assert blocks_of(message, "header")[0]["text"]["text"] == "O'Brien's \"Bakery\" is at 82 %"
    assert blocks_of(message, "section")[0]["text"]["text"].startswith("Hi D'Arcy! ")
    assert message.text.startswith("D'Arcy, O'Brien's \"Bakery\" has used")
    for text in all_texts(message):
        assert "&#39;" not in text and "&apos;" not in text and "&quot;" not in text


@pytest.mark.parametrize(
    "card",
    [
        make_card(account_name="Smith & Sons <EMEA>"),
        make_card(fallback_reason="owner 005… is not in the territory file"),
        make_card(state="contacted", actor_id="U0ACTOR"),
    ],
    ids=["alert", "fallback", "contacted"],
)
def test_every_mrkdwn_text_is_verbatim(card: Card) -> None:
    for message in (alert_message(card), digest_message([card, card], "Dana", Decimal("75"))):
        mrkdwn = [obj for obj in text_objects(message.blocks) if obj["type"] == "mrkdwn"]
        assert mrkdwn
        for obj in mrkdwn:
            assert obj.get("verbatim") is True, obj


def test_greeting_and_reason() -> None:
    message = alert_message(make_card(plan="Enterprise & <Co>"))
    greeting = blocks_of(message, "section")[0]["text"]["text"]
    assert greeting == (
        "Hi Dana! An Enterprise &amp; &lt;Co&gt; account you own has used *82 %* of its free "
        "hours quota — a good time to check in and discuss an Enterprise plan."
    )
    plain = blocks_of(alert_message(make_card(plan="", first_name="")), "section")[0]
    assert plain["text"]["text"].startswith("Hi there! An account you own has used *82 %*")


def test_card_shows_usage_fields_summary_and_context() -> None:
    message = alert_message(make_card())
    sections = blocks_of(message, "section")
    assert [f["text"] for f in sections[1]["fields"]] == [
        "*Usage*\n41 / 50 h (82 %)",
        "*Plan*\nPro",
        "*Users*\n12",
        "*Last activity*\nyesterday",
    ]
    assert sections[2]["text"]["text"] == (
        "Here's a summary created by a bot:\n• Usage is climbing\n• 12 active users"
    )
    context = blocks_of(message, "context")[0]["elements"][0]["text"]
    assert context == (
        f"Threshold 75 % · detected {DETECTED:%a} 3 Dec 14:05 UTC · "
        "`/usage-summary acme.example` for a fresh summary"
    )


def test_card_without_summary_has_no_summary_section() -> None:
    message = alert_message(make_card(summary_mrkdwn=""))
    assert not any("summary created by a bot" in t for t in all_texts(message))


# ------------------------------------------------------------------ Slack limits


def test_huge_name_and_summary_still_build_within_limits() -> None:
    huge = "Big & <Bad> " * 420  # 5 040 characters, 10 080 once escaped
    card = make_card(
        account_name=huge[:5000],
        summary_mrkdwn=escape_mrkdwn(huge[:5000]),
        first_name=huge[:5000],
        plan=huge[:5000],
        fields=tuple((f"Field {i} {huge[:100]}", huge[:5000]) for i in range(15)),
    )
    for message in (alert_message(card), digest_message([card] * 3, huge, Decimal("75"))):
        header = blocks_of(message, "header")[0]["text"]["text"]
        assert len(header) <= 150
        for section in blocks_of(message, "section"):
            if "text" in section:
                assert len(section["text"]["text"]) <= 3000
            assert len(section.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in section.get("fields", []))
        for text in all_texts(message):
            assert len(text) <= 3000
            assert_whole_entities(text)
    fields = blocks_of(alert_message(card), "section")[1]["fields"]
    assert len(fields) == 10
    assert fields[0]["text"] == "*Usage*\n41 / 50 h (82 %)"


def test_long_domain_keeps_the_context_within_limits() -> None:
    message = alert_message(make_card(domain="a&b." * 1500))
    for text in all_texts(message):
        assert len(text) <= 3000
        assert_whole_entities(text)


def assert_whole_entities(text: str) -> None:
    """Every `&` starts a complete entity and no `<…` is left open."""
    for match in re.finditer("&", text):
        assert re.match(r"&(amp|lt|gt);", text[match.start() :]), text[match.start() - 5 :][:20]
    assert not re.search(r"<[^>]*$", text), text[-40:]


def test_truncation_never_cuts_an_entity() -> None:
    card = make_card(account_name="&" * 200, summary_mrkdwn="&amp;" * 1000)
    message = alert_message(card)
    header = blocks_of(message, "header")[0]["text"]["text"]
    assert header == "&amp;" * 29 + ELLIPSIS
    summary = blocks_of(message, "section")[2]["text"]["text"]
    assert len(summary) <= 3000
    assert summary.endswith("&amp;" + ELLIPSIS)
    for text in all_texts(message):
        assert_whole_entities(text)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("abcdefghijk", 10, "abcdefghi" + ELLIPSIS),
        ("Tom &amp; Jerry", 9, "Tom" + ELLIPSIS),  # "Tom &amp" would cut the entity
        ("Tom &amp; Jerry", 10, "Tom &amp;" + ELLIPSIS),
        ("Tom &amp; Jerry", 11, "Tom &amp;" + ELLIPSIS),
        ("a &lt;b&gt; c", 6, "a" + ELLIPSIS),
        ("a &lt;b&gt; c", 7, "a &lt;" + ELLIPSIS),
        ("a &lt;b&gt; c", 10, "a &lt;b" + ELLIPSIS),
        ("a &gt; b", 4, "a" + ELLIPSIS),
        ("hi <@U123ABC> there", 10, "hi" + ELLIPSIS),  # never half a mention
        ("see <https://x.example|link> now", 20, "see" + ELLIPSIS),
        ("&amp;" * 4, 12, "&amp;&amp;" + ELLIPSIS),
    ],
)
def test_truncate(text: str, limit: int, expected: str) -> None:
    result = truncate(text, limit)
    assert result == expected
    assert len(result) <= limit


def test_render_refuses_more_than_50_blocks() -> None:
    block = SectionBlock(text=_md("x"))
    assert len(_render("ok", [block] * MAX_BLOCKS).blocks) == 50
    with pytest.raises(ValueError, match="51 blocks"):
        _render("too many", [block] * (MAX_BLOCKS + 1))


def test_render_truncates_the_fallback_text() -> None:
    assert len(_render("&amp;" * 1000, []).text) <= 3000


# ------------------------------------------------------------------ the digest


def digest_cards(count: int) -> list[Card]:
    return [
        make_card(alert_id=f"alert{i:02d}", account_name=f"Account {i:02d}") for i in range(count)
    ]


def test_digest_of_40_lists_15_and_says_25_more() -> None:
    cards = digest_cards(40)
    message = digest_message(cards, "Dana", Decimal("75"))
    assert len(message.blocks) <= 50
    assert blocks_of(message, "header")[0]["text"]["text"] == "40 accounts at or above 75 %"
    entries = [
        b["text"]["text"] for b in blocks_of(message, "section") if "Account" in b["text"]["text"]
    ]
    assert entries == [
        f"*Account {i:02d}* — 41 / 50 h (82 %) · Plan: Pro · Users: 12" for i in range(15)
    ]
    tail = blocks_of(message, "context")[-1]["elements"][0]["text"]
    assert "25 more" in tail
    assert "Home" in tail
    assert "Account 14" in message.text and "Account 15" not in message.text
    assert message.text.startswith("Dana, 40 accounts you own are above the threshold")


def test_digest_entries_each_have_their_own_actions() -> None:
    message = digest_message(digest_cards(40), "Dana", Decimal("75"))
    blocks = actions(message)
    assert len(blocks) == 15
    parsed = [ids.parse_actions_block_id(b["block_id"]) for b in blocks]
    assert parsed == [(ids.CARD_VERSION, f"alert{i:02d}") for i in range(15)]
    for block in blocks:
        contacted = next(e for e in block["elements"] if e["action_id"] == ids.CONTACTED)
        assert ids.parse_actions_block_id(block["block_id"]) == (
            ids.CARD_VERSION,
            contacted["value"],
        )


def test_digest_without_more_says_nothing_about_more() -> None:
    message = digest_message(digest_cards(3), "", Decimal("75"))
    assert len(actions(message)) == 3
    assert not any("more" in t for t in all_texts(message))
    assert blocks_of(message, "section")[0]["text"]["text"].startswith(
        "Hi there! 3 accounts you own are at or above *75 %*"
    )


def test_digest_context_has_no_raw_angle_brackets() -> None:
    """`<domain>` would be read by Slack as a link; the placeholder must be escaped."""
    message = digest_message(digest_cards(20), "Dana", Decimal("75"))
    context = blocks_of(message, "context")[-1]["elements"][0]["text"]
    assert "<" not in context and ">" not in context
    assert "/usage-summary &lt;domain&gt;" in context


def test_digest_is_always_within_the_block_limit() -> None:
    for count in (2, 15, 16, 100, 500):
        message = digest_message(digest_cards(count), "Dana", Decimal("75"))
        assert len(message.blocks) <= MAX_BLOCKS
        assert len(actions(message)) == min(count, 15)


# ------------------------------------------------------------------ the card's actions


def test_card_actions() -> None:
    message = alert_message(make_card())
    [block] = actions(message)
    assert ids.parse_actions_block_id(block["block_id"]) == (ids.CARD_VERSION, "a1b2c3")
    elements = elements_by_action(message)
    assert set(elements) == {ids.SNOOZE, ids.CONTACTED, ids.OPEN_SALESFORCE}

    snooze = elements[ids.SNOOZE]
    assert snooze["type"] == "static_select"
    labels = [o["text"]["text"] for o in snooze["options"]]
    assert labels == ["1 day", "3 days", "1 week", "2 weeks"]
    assert [o["value"] for o in snooze["options"]] == ["1d", "3d", "7d", "14d"]

    contacted = elements[ids.CONTACTED]
    assert contacted["type"] == "button"
    assert contacted["style"] == "primary"
    assert contacted["text"]["text"] == "Mark contacted"
    assert contacted["value"] == "a1b2c3"

    salesforce = elements[ids.OPEN_SALESFORCE]
    assert salesforce["type"] == "button"
    assert salesforce["text"]["text"] == "Open in Salesforce"
    assert salesforce["url"] == RECORD_URL
    assert "style" not in salesforce


def test_no_salesforce_button_without_a_record_url() -> None:
    elements = elements_by_action(alert_message(make_card(record_url="")))
    assert set(elements) == {ids.SNOOZE, ids.CONTACTED}


def test_fallback_card_carries_assign_to() -> None:
    card = make_card(fallback_reason="no Slack user has the email dana@example.com")
    message = alert_message(card)
    elements = elements_by_action(message)
    assign = elements[ids.ASSIGN]
    assert assign["type"] == "users_select"
    assert assign["placeholder"]["text"] == "Assign to…"
    greeting = blocks_of(message, "section")[0]["text"]["text"]
    assert greeting.startswith("*Owner not found* — no Slack user has the email dana@example.com.")
    assert ids.ASSIGN not in elements_by_action(alert_message(make_card()))


def test_snoozed_card_shows_who_and_until_instead_of_actions() -> None:
    until = datetime(date.today().year, 12, 10, 9, 0, tzinfo=UTC)
    card = make_card(state="snoozed", actor_id="U0DANA", until=until)
    message = alert_message(card)
    assert actions(message) == []
    line = blocks_of(message, "context")[-1]["elements"][0]["text"]
    assert line == f":zzz: Snoozed until {until:%a} 10 Dec by <@U0DANA>"


def test_snooze_in_another_year_names_the_year() -> None:
    until = datetime(date.today().year + 1, 1, 2, tzinfo=UTC)
    message = alert_message(make_card(state="snoozed", actor_id="U0DANA", until=until))
    line = blocks_of(message, "context")[-1]["elements"][0]["text"]
    assert line == f":zzz: Snoozed until {until:%a} 2 Jan {until.year} by <@U0DANA>"


def test_contacted_card_shows_who_instead_of_actions() -> None:
    message = alert_message(make_card(state="contacted", actor_id="U0DANA"))
    assert actions(message) == []
    line = blocks_of(message, "context")[-1]["elements"][0]["text"]
    assert line == ":white_check_mark: Marked contacted by <@U0DANA>"


def test_acted_on_digest_entry_shows_the_outcome() -> None:
    cards = digest_cards(2)
    cards[0] = dataclasses.replace(cards[0], state="contacted", actor_id="U0DANA")
    message = digest_message(cards, "Dana", Decimal("75"))
    assert [ids.parse_actions_block_id(b["block_id"]) for b in actions(message)] == [
        (ids.CARD_VERSION, "alert01")
    ]
    assert any("Marked contacted by <@U0DANA>" in t for t in all_texts(message))


# ------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("74.999", "74.9 %"),
        ("74.99", "74.9 %"),
        ("75", "75 %"),
        ("75.0", "75 %"),
        ("82", "82 %"),
        ("102.5", "102.5 %"),
        ("62.55", "62.5 %"),
        ("0", "0 %"),
        ("1234.56", "1,234.5 %"),
    ],
)
def test_format_percent_rounds_down(value: str, expected: str) -> None:
    assert format_percent(Decimal(value)) == expected


def test_format_usage() -> None:
    assert format_usage(Decimal(41), Decimal(50), "h", Decimal(82)) == "41 / 50 h (82 %)"
    assert format_usage(Decimal("30"), Decimal("40"), "h", Decimal("75")) == "30 / 40 h (75 %)"
    assert (
        format_usage(Decimal("1200"), Decimal("1500.5"), "", Decimal("79.97"))
        == "1,200 / 1,500.5 (79.9 %)"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1200", "1,200"),
        (1200, "1,200"),
        (Decimal("1200.00"), "1,200"),
        (12.5, "12.5"),
        (Decimal("1234567.25"), "1,234,567.3"),
        (0, "0"),
        (Decimal("41"), "41"),
    ],
)
def test_format_number(value: Any, expected: str) -> None:
    assert format_number(value) == expected


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("Smith & Sons <EMEA>", "Smith &amp; Sons &lt;EMEA&gt;"),
        ("<!channel>", "&lt;!channel&gt;"),
        ('it\'s "fine"', 'it\'s "fine"'),
        ("&amp;", "&amp;amp;"),
        (42, "42"),
    ],
)
def test_escape_mrkdwn(raw: object, escaped: str) -> None:
    assert escape_mrkdwn(raw) == escaped
