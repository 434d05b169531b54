"""A terminal preview of Slack messages, close to what an AE sees on screen."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

_EMOJI = {":zzz:": "💤", ":white_check_mark:": "✅", ":arrow_right:": "➡", ":arrow_down:": "⬇"}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: object) -> str:
    """Untrusted text for the terminal: no rich markup, no control or escape sequences."""
    return escape(_CONTROL.sub("", str(text)))


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def mrkdwn_to_rich(text: str, name_of: Callable[[str], str] = lambda user: user) -> str:
    """Slack mrkdwn -> rich markup: *bold*, `code`, <@U…> mentions, <url|label> links."""
    text = re.sub(r"<@([UW][A-Z0-9]+)>", lambda m: f"\0@{name_of(m.group(1))}\0", text)
    text = re.sub(r"<([^|>]+)\|([^>]+)>", lambda m: f"\0{m.group(2)}\0", text)
    for code, emoji in _EMOJI.items():
        text = text.replace(code, emoji)
    markup = terminal_safe(_unescape(text))
    markup = re.sub(r"\0([^\0]*)\0", r"[cyan]\1[/cyan]", markup)
    markup = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"[bold]\1[/bold]", markup)
    return re.sub(r"`([^`\n]+)`", r"[magenta]\1[/magenta]", markup)


def _element(element: dict[str, Any]) -> str:
    label = element.get("text", {}).get("text") or element.get("placeholder", {}).get("text", "")
    if element["type"] in ("static_select", "users_select"):
        return f"[ {escape(label)} ▾ ]"
    style = "bold green" if element.get("style") == "primary" else "bold"
    arrow = " ↗" if element.get("url") else ""
    return f"[{style}][ {escape(label)}{arrow} ][/{style}]"


def _block(block: dict[str, Any], name_of: Callable[[str], str]) -> Text | None:
    kind = block["type"]
    if kind == "header":
        return Text.from_markup(f"[bold]{terminal_safe(_unescape(block['text']['text']))}[/bold]")
    if kind == "section":
        parts = [mrkdwn_to_rich(block["text"]["text"], name_of)] if block.get("text") else []
        fields = [
            mrkdwn_to_rich(f["text"], name_of).replace("\n", ": ", 1)
            for f in block.get("fields", [])
        ]
        if fields:
            parts.append("   ".join(fields))
        return Text.from_markup("\n".join(parts))
    if kind == "context":
        line = " ".join(mrkdwn_to_rich(e.get("text", ""), name_of) for e in block["elements"])
        return Text.from_markup(f"[dim]{line}[/dim]")
    if kind == "actions":
        return Text.from_markup("  ".join(_element(e) for e in block["elements"]))
    if kind == "divider":
        return Text("─" * 40, style="dim")
    return None


def render(
    console: Console,
    title: str,
    blocks: list[dict[str, Any]],
    name_of: Callable[[str], str] = lambda user: user,
) -> None:
    """Print one message as a panel."""
    parts = [text for block in blocks if (text := _block(block, name_of)) is not None]
    console.print(Panel(Group(*parts), title=terminal_safe(title), title_align="left", width=84))
