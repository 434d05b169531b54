"""Import direction (ARCHITECTURE.md): handlers -> bot, blocks; blocks -> slack_sdk.models."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports(package: str) -> dict[str, set[str]]:
    """Top-level module names imported by each file of a package."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_bot_never_imports_bolt_and_only_the_cli_imports_handlers() -> None:
    for path, names in imports("bot").items():
        assert not any(n.startswith("slack_bolt") for n in names), path
        if not path.endswith("cli.py"):
            assert not any(n.startswith("handlers") for n in names), path


def test_blocks_import_only_slack_sdk_models_blocks_and_the_standard_library() -> None:
    for path, names in imports("blocks").items():
        for name in names:
            top = name.split(".")[0]
            allowed = (
                top in sys.stdlib_module_names
                or top == "blocks"
                or name.startswith("slack_sdk.models")
            )
            assert allowed, f"{path} imports {name}"
