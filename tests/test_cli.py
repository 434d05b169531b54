"""`nudge poll` / `nudge status` as subprocesses, configured as an admin would: env + nudge.toml."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import BOT_TOKEN
from tests.deployment import nudge
from tests.fakes.slack import FakeSlack
from tests.warehouses import account, create_usage_table


def test_poll_delivers_each_crossing_once_then_nothing(
    deployment: dict[str, Any], slack: FakeSlack
) -> None:
    run = nudge("poll", "--json", env=deployment["env"], cwd=deployment["dir"])
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["evaluated"], report["above"], report["insufficient_data"]) == (5, 3, 1)
    assert report["dry_run"] is False and report["threshold"] == 75 and report["errors"] == []
    got = sorted(
        (a["account_name"], a["kind"], a["owner"], a["channel"], a["sent"])
        for a in report["alerts"]
    )
    assert got == [
        ("Account 2", "digest", "U0DANA", "D0DANA", True),
        ("Account 5", "alert", "U0PRIYA", "D0PRIYA", True),
        ("Smith & Sons <EMEA>", "digest", "U0DANA", "D0DANA", True),
    ]
    assert len(slack.all_posts()) == 2
    digest = slack.messages("D0DANA")[0]
    assert "Smith &amp; Sons &lt;EMEA&gt;" in json.dumps(digest["blocks"])
    second = nudge("poll", "--json", env=deployment["env"], cwd=deployment["dir"])
    assert second.returncode == 0 and json.loads(second.stdout)["alerts"] == []
    assert len(slack.all_posts()) == 2
    assert (deployment["dir"] / "nudge-state.db").exists()  # beside nudge.toml
    status = nudge("status", env=deployment["env"], cwd=deployment["dir"])
    assert (
        status.returncode == 0
        and "Recent polls" in status.stdout
        and "2 alerted" not in status.stderr
    )


def test_dry_run_prints_what_would_be_sent_and_sends_nothing(
    deployment: dict[str, Any], slack: FakeSlack
) -> None:
    run = nudge(
        "poll",
        "--dry-run",
        "--json",
        "--threshold",
        "90",
        env=deployment["env"],
        cwd=deployment["dir"],
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["dry_run"] is True and report["threshold"] == 90
    assert [(a["account_name"], a["sent"]) for a in report["alerts"]] == [("Account 2", False)]
    assert slack.calls_to("chat.postMessage") == []
    human = nudge("poll", "--dry-run", env=deployment["env"], cwd=deployment["dir"])
    assert "would send" in human.stdout and "Smith & Sons <EMEA>" in human.stdout


@pytest.mark.parametrize(
    ("env", "toml", "message"),
    [
        ({}, None, "SLACK_BOT_TOKEN is not set"),
        ({"NUDGE_RULE__THRESHOLD": "abc"}, None, "rule.threshold"),
        ({"NUDGE_RULE__THRESHOLD": "101"}, None, "at most 100"),
        ({}, '[warehouse]\nurl = "sqlite:///missing.db"\n', "does not exist"),
        ({}, '[warehouse]\nurl = "nosuchdb://x"\n', "cannot use nosuchdb://"),
        (
            {},
            '[warehouse]\nurl = "sqlite:///usage.db"\n'
            '[columns]\nnumerator = "tracked_hours; drop table x"\n',
            "not allowed",
        ),
        (
            {},
            '[warehouse]\nurl = "sqlite:///usage.db"\n[rule]\nsegment = "nope = 1"\n',
            "unknown column",
        ),
        ({}, "[warehouse\n", "not valid TOML"),
    ],
)
def test_bad_configuration_exits_2_with_one_line_per_problem(
    deployment: dict[str, Any], env: dict[str, str], toml: str | None, message: str
) -> None:
    settings = dict(deployment["env"])
    if not env and toml is None:
        settings.pop("SLACK_BOT_TOKEN")
    settings.update(env)
    if toml is not None:
        (deployment["dir"] / "nudge.toml").write_text(toml)
    run = nudge("poll", env=settings, cwd=deployment["dir"])
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr


def test_threshold_flag_needs_dry_run(deployment: dict[str, Any]) -> None:
    run = nudge("poll", "--threshold", "80", env=deployment["env"], cwd=deployment["dir"])
    assert run.returncode == 2 and "--dry-run" in run.stderr


@pytest.mark.parametrize("missing", ["users:read.email", "im:history"])
def test_a_missing_scope_is_a_startup_error(deployment: dict[str, Any], missing: str) -> None:
    granted = {"chat:write", "im:write", "im:history", "users:read", "users:read.email"}
    with FakeSlack(token=BOT_TOKEN, scopes=",".join(sorted(granted - {missing}))) as narrow:
        env = {**deployment["env"], "SLACK_API_URL": narrow.url}
        run = nudge("poll", env=env, cwd=deployment["dir"])
        assert run.returncode == 2 and missing in run.stderr
        assert narrow.calls_to("chat.postMessage") == []


def test_unreachable_warehouse_exits_1_and_is_recorded(deployment: dict[str, Any]) -> None:
    env = {**deployment["env"], "NUDGE_WAREHOUSE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/x"}
    run = nudge("poll", "--json", env=env, cwd=deployment["dir"])
    assert run.returncode == 1
    assert json.loads(run.stdout)["errors"] and "Traceback" not in run.stderr


def test_revoked_token_fails_the_run_without_a_traceback(deployment: dict[str, Any]) -> None:
    env = {**deployment["env"], "SLACK_BOT_TOKEN": "xoxb-revoked"}
    run = nudge("poll", env=env, cwd=deployment["dir"])
    assert run.returncode == 1 and "invalid_auth" in run.stdout + run.stderr
    assert "xoxb-revoked" not in run.stdout + run.stderr


def test_hostile_names_cannot_drive_the_terminal(deployment: dict[str, Any]) -> None:
    create_usage_table(
        f"sqlite:///{deployment['dir'] / 'usage.db'}",
        [account(1, 45, 50, owner=1, name="[/bold] Evil [red]\x1b]0;pwned\x07\x1b[2J Co")],
    )
    run = nudge("poll", "--dry-run", env=deployment["env"], cwd=deployment["dir"])
    assert run.returncode == 0, run.stderr
    assert "[/bold] Evil [red]" in run.stdout and "\x1b]0;" not in run.stdout
