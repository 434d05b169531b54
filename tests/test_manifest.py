"""manifest.yml is the single source: every command, event and action it implies has a
listener, and every listener is for something the manifest or a message declares."""

from __future__ import annotations

import ast
import inspect
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

from blocks.alert import Card, alert_message, digest_message
from blocks.home import home_view
from bot.manifest import load_manifest
from handlers import actions, commands, events, home
from tests.conftest import Clock
from tests.fakes.slack import FakeSlack
from tests.slackapp import SlackApp

NOW = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)


def registered(kind: str) -> set[str]:
    """What `app.<kind>(X)` registers across the handlers, X evaluated in its module."""
    found: set[str] = set()
    modules: list[ModuleType] = [actions, commands, events, home]
    for module in modules:
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            func = node.func if isinstance(node, ast.Call) else None
            if (
                isinstance(func, ast.Attribute)
                and func.attr == kind
                and isinstance(func.value, ast.Name)
                and func.value.id == "app"
            ):
                expression = ast.Expression(node.args[0])  # type: ignore[union-attr]
                found.add(eval(compile(expression, module.__name__, "eval"), vars(module)))
    return found


def action_ids(blocks: list[dict[str, Any]]) -> set[str]:
    """Every action_id an interactive element of these blocks can send."""
    ids: set[str] = set()
    for block in blocks:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if "action_id" in element:
                ids.add(element["action_id"])
    return ids


def test_commands_and_events_match_the_manifest() -> None:
    manifest = load_manifest()
    assert registered("command") == {c["command"] for c in manifest["features"]["slash_commands"]}
    assert registered("event") == set(manifest["settings"]["event_subscriptions"]["bot_events"])


def test_every_action_a_message_or_the_home_tab_can_send_has_a_listener() -> None:
    card = Card(
        alert_id="a1",
        account_name="Acme",
        domain="acme.example",
        usage_pct=Decimal(82),
        numerator=Decimal(41),
        denominator=Decimal(50),
        threshold=Decimal(75),
        detected_at=NOW,
        record_url="https://acme.lightning.force.com/lightning/r/Account/001/view",
    )
    sent = action_ids(alert_message(card).blocks)
    sent |= action_ids(alert_message(replace(card, fallback_reason="no owner")).blocks)
    sent |= action_ids(
        digest_message([card, replace(card, alert_id="a2")], "Dana", Decimal(75)).blocks
    )
    many = [replace(card, alert_id=f"a{n}") for n in range(60)]
    sent |= action_ids(home_view(many, page=1, now=NOW)["blocks"])
    assert sent == registered("action")


def test_every_declared_command_and_event_is_answered(
    tmp_path: Path, slack: FakeSlack, clock: Clock
) -> None:
    manifest = load_manifest()
    with SlackApp(tmp_path, slack, clock) as app:
        for command in manifest["features"]["slash_commands"]:
            status, body, _ = app.command(command["command"], "help")
            assert status == 200, (command["command"], body)
        for n, event in enumerate(manifest["settings"]["event_subscriptions"]["bot_events"]):
            status, body, _ = app.event(
                {"type": event, "user": "U0OWNER0001", "tab": "messages"}, f"Ev{n}"
            )
            assert status == 200, (event, body)
