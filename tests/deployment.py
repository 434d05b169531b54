"""`python -m bot …` as a subprocess, with only the given settings in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def nudge(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot …` with only the given settings in the environment."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NUDGE_", "OPENAI_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
