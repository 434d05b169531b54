"""`nudge check`: one line per dependency, with the fix; non-zero when something required fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.manifest import bot_scopes, load_manifest
from tests.conftest import BOT_TOKEN
from tests.deployment import nudge
from tests.fakes.slack import FakeSlack
from tests.warehouses import account, create_usage_table

ALL_SCOPES = ",".join(sorted(bot_scopes(load_manifest())))


def test_check_passes_when_everything_answers(deployment: dict[str, Any]) -> None:
    with FakeSlack(token=BOT_TOKEN, scopes=ALL_SCOPES) as slack:
        env = {**deployment["env"], "SLACK_API_URL": slack.url}
        run = nudge("check", env=env, cwd=deployment["dir"])
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "state"],
        ["ok", "warehouse"],
        ["ok", "slack"],
        ["ok", "channels"],
        ["ok", "salesforce"],
        ["ok", "openai"],
    ]
    assert "5 rows, 3 at or above 75 %" in run.stdout


def test_check_names_each_failure_and_its_fix(deployment: dict[str, Any], tmp_path: Path) -> None:
    create_usage_table(
        f"sqlite:///{deployment['dir'] / 'usage.db'}",
        [account(1, 1, 2)],
        columns=(
            "account_id",
            "account_name",
            "domain",
            "owner_id",
            "tracked_hours",
            "quota",
            "plan",
        ),
    )
    with FakeSlack(token=BOT_TOKEN, scopes="chat:write") as slack:
        env = {
            **deployment["env"],
            "SLACK_API_URL": slack.url,
            "NUDGE_TERRITORY__FALLBACK_CHANNEL": "#triage",
        }
        run = nudge("check", env=env, cwd=deployment["dir"])
    assert run.returncode == 1
    out = run.stdout
    assert "FAIL warehouse" in out and "total_free_hours" in out
    assert "FAIL slack" in out and "users:read.email" in out
    assert "FAIL channels" in out and "channel id" in out
    assert BOT_TOKEN not in out + run.stderr


def test_check_probes_the_llm_and_names_partial_salesforce_settings(
    deployment: dict[str, Any],
) -> None:
    from tests.fakes.openai import FakeOpenAI

    with FakeSlack(token=BOT_TOKEN, scopes=ALL_SCOPES) as slack, FakeOpenAI() as llm:
        env = {
            **deployment["env"],
            "SLACK_API_URL": slack.url,
            "OPENAI_API_KEY": "sk-check",
            "OPENAI_BASE_URL": llm.url,
            "SALESFORCE_DOMAIN": "acme",
        }
        run = nudge("check", env=env, cwd=deployment["dir"])
        down = nudge(
            "check", env={**env, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, cwd=deployment["dir"]
        )
    assert "ok   openai" in run.stdout and "gpt-4o-mini available" in run.stdout
    assert "FAIL salesforce" in run.stdout and "SALESFORCE_CONSUMER" in run.stdout
    assert "warn openai" in down.stdout and "template" in down.stdout
    assert "sk-check" not in run.stdout + run.stderr + down.stdout + down.stderr


def test_check_reads_the_prompt_file_as_a_poll_would(deployment: dict[str, Any]) -> None:
    from tests.fakes.openai import FakeOpenAI

    (deployment["dir"] / "prompt.txt").write_text("Summarise {{ owner_email }}")
    with FakeSlack(token=BOT_TOKEN, scopes=ALL_SCOPES) as slack, FakeOpenAI() as llm:
        env = {
            **deployment["env"],
            "SLACK_API_URL": slack.url,
            "OPENAI_API_KEY": "sk-check",
            "OPENAI_BASE_URL": llm.url,
            "NUDGE_SUMMARY__PROMPT_FILE": "prompt.txt",
        }
        run = nudge("check", env=env, cwd=deployment["dir"])
    assert run.returncode == 1 and "FAIL openai" in run.stdout and "owner_email" in run.stdout
