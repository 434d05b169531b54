"""A real `nudge poll` process killed with SIGKILL mid-send: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.deployment import nudge
from tests.fakes.slack import FakeSlack


def _start_poll(deployment: dict[str, Any]) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NUDGE_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "poll"],
        env={**base, **deployment["env"]},
        cwd=deployment["dir"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _budget_elapses(state: Path) -> None:
    """The dead poller's lease runs out (it expires with the run's budget, 5 min by default)."""
    engine = create_engine(f"sqlite:///{state}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE leases SET expires_at = '2000-01-01 00:00:00'"))
    engine.dispose()


def _kill_when(slack: FakeSlack, process: subprocess.Popen[str], method: str) -> None:
    slack.wait_for(lambda: slack.calls_to(method), timeout=30, message=f"{method} was called")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)


@pytest.mark.parametrize("method", ["chat.postMessage", "conversations.open"])
def test_a_poll_killed_mid_send_delivers_each_dm_exactly_once_after_restart(
    deployment: dict[str, Any],
    slack: FakeSlack,
    method: str,
) -> None:
    # chat.postMessage: Slack has the DM, the process dies before recording it.
    # conversations.open: the process dies before anything was posted.
    slack.hang(method, 30, times=1)
    process = _start_poll(deployment)
    _kill_when(slack, process, method)
    assert process.returncode == -signal.SIGKILL
    _budget_elapses(deployment["dir"] / "nudge-state.db")
    again = nudge("poll", env=deployment["env"], cwd=deployment["dir"])
    assert again.returncode == 0, again.stderr
    texts = [post["text"] for post in slack.all_posts()]
    for name in ("Smith &amp; Sons &lt;EMEA&gt;", "Account 2", "Account 5"):
        assert sum(name in text for text in texts) == 1, (name, texts)  # delivered, once
    third = nudge("poll", env=deployment["env"], cwd=deployment["dir"])
    assert third.returncode == 0 and len(slack.all_posts()) == len(texts)
