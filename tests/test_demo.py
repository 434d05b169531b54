"""`nudge demo`: the main job on the embedded sample data, with no account anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from slack_sdk.models.blocks import Block


def run_demo(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The demo as a user runs it, with none of the usual settings in the environment."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NUDGE_", "OPENAI_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", "demo"],
        cwd=cwd,
        env={**clean, **env, "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_previews_every_dm_and_writes_valid_block_kit(tmp_path: Path) -> None:
    run = run_demo(tmp_path)
    assert run.returncode == 0, run.stderr
    outbox = sorted((tmp_path / "nudge-demo" / "outbox").glob("*.json"))
    messages = [json.loads(path.read_text()) for path in outbox]
    assert len(messages) >= 5
    kinds = {m["blocks"][0]["text"]["text"].split()[1] for m in messages}
    assert "accounts" in kinds  # at least one digest
    for message in messages:
        assert message["text"] and len(message["blocks"]) <= 50
        assert message["unfurl_links"] is False
        for block in message["blocks"]:
            assert Block.parse(block) is not None
    triage = [m for m in messages if m["channel"].startswith("C")]
    assert triage and all("Owner not found" in json.dumps(m["blocks"]) for m in triage)
    assert "Smith & Sons <EMEA>" in run.stdout  # readable, shown literally
    assert "Smith &amp; Sons &lt;EMEA&gt;" in json.dumps(messages)  # escaped for Slack
    assert "22 at or above" in run.stdout and "insufficient data" in run.stdout


def test_demo_is_reproducible_and_ignores_the_users_settings(tmp_path: Path) -> None:
    first = run_demo(tmp_path)
    second = run_demo(
        tmp_path, NUDGE_WAREHOUSE_URL="sqlite:///elsewhere.db", SLACK_BOT_TOKEN="xoxb-x"
    )
    assert first.returncode == second.returncode == 0
    names = lambda text: [line for line in text.splitlines() if "accounts evaluated" in line]  # noqa: E731
    assert names(first.stdout) == names(second.stdout)
    assert not (tmp_path / "elsewhere.db").exists()
