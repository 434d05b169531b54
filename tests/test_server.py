"""`nudge run` as an admin starts it: HTTP mode under a real server, /healthz, the scheduler,
a clean stop on SIGTERM; and `nudge manifest`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import ScheduleSection
from bot.manifest import bot_scopes, http_variant, load_manifest
from bot.scheduler import due_now, start_scheduler, trigger
from bot.store import Store
from tests.conftest import BOT_TOKEN, Clock
from tests.fakes.slack import FakeSlack
from tests.slackapp import SIGNING_SECRET, sign
from tests.warehouses import account, create_usage_table, sf_id

ALL_SCOPES = ",".join(sorted(bot_scopes(load_manifest())))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def wait_until_up(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nudge run exited: {process.communicate()[1]}")
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("nudge run did not start listening")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`nudge run --port N` against the fake Slack and a SQLite warehouse with one crossing."""
    with FakeSlack(token=BOT_TOKEN, scopes=ALL_SCOPES) as slack:
        slack.add_user("U0DANA", "dana@example.com", first_name="Dana")
        create_usage_table(f"sqlite:///{tmp_path / 'usage.db'}", [account(1, 45, 50, owner=1)])
        (tmp_path / "territory.csv").write_text(
            f"crm_user_id,email,slack_user_id\n{sf_id('005', 1)},dana@example.com,\n"
        )
        (tmp_path / "nudge.toml").write_text(
            '[warehouse]\nurl = "sqlite:///usage.db"\n[columns]\nowner_id = "owner_id"\n'
            '[territory]\ncsv = "territory.csv"\n'
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NUDGE_"))}
        env.update(
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack.url,
            NUDGE_CONFIG=str(tmp_path / "nudge.toml"),
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
            yield {"url": f"http://127.0.0.1:{port}", "slack": slack, "process": process}
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


def test_run_serves_healthz_polls_at_start_and_stops_cleanly(running: dict[str, Any]) -> None:
    slack: FakeSlack = running["slack"]
    slack.wait_for(lambda: slack.all_posts(), timeout=20, message="the first poll ran at start")
    assert [p["channel"] for p in slack.all_posts()] == ["D0DANA"]
    status, body = get(f"{running['url']}/healthz")
    assert status == 200 and body["status"] == "ok"
    slack.wait_for(lambda: get(f"{running['url']}/healthz")[1].get("last_poll") == "ok", timeout=20)
    assert get(f"{running['url']}/nope")[0] == 404
    process: subprocess.Popen[str] = running["process"]
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert BOT_TOKEN not in out + err and SIGNING_SECRET not in out + err


def test_forged_and_stale_requests_get_401(running: dict[str, Any]) -> None:
    body = b"command=%2Fusage-threshold&text=set+1&user_id=U0DANA"

    def post(timestamp: int, signature: str) -> int:
        request = urllib.request.Request(
            f"{running['url']}/slack/events",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": str(timestamp),
                "X-Slack-Signature": signature,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    now = int(time.time())
    assert post(now, "v0=" + "0" * 64) == 401
    assert post(now - 600, sign(body, now - 600)) == 401
    assert post(now, sign(body + b"&x=1", now)) == 401


def test_run_fails_fast_without_its_secrets(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NUDGE_"))}
    env["NUDGE_WAREHOUSE_URL"] = "sqlite:///x.db"
    run = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "SLACK_BOT_TOKEN" in run.stderr and "SLACK_SIGNING_SECRET" in run.stderr


def test_manifest_http_variant_fills_every_request_url() -> None:
    manifest = http_variant(load_manifest(), "https://nudge.example.com/")
    url = "https://nudge.example.com/slack/events"
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert manifest["settings"]["interactivity"]["request_url"] == url
    assert manifest["settings"]["event_subscriptions"]["request_url"] == url
    assert {c["url"] for c in manifest["features"]["slash_commands"]} == {url}
    assert load_manifest()["settings"]["socket_mode_enabled"] is True


def test_nudge_manifest_prints_yaml_and_refuses_plain_http(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "bot", "manifest", "--url", "https://n.example"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert (
        ok.returncode == 0 and yaml.safe_load(ok.stdout)["display_information"]["name"] == "Nudge"
    )
    bad = subprocess.run(
        [sys.executable, "-m", "bot", "manifest", "--url", "http://n.example"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "https://" in bad.stderr


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"every": "15m"}, "interval[0:15:00]"),
        ({"cron": "0 9 * * mon-fri", "timezone": "Europe/Paris"}, "cron"),
    ],
)
def test_trigger_from_schedule(schedule: dict[str, str], expected: str) -> None:
    made = trigger(ScheduleSection(**schedule))
    assert str(made).startswith(expected)
    if "timezone" in schedule:
        assert str(made.timezone) == "Europe/Paris"


def test_a_poll_runs_at_start_only_when_the_last_good_one_is_older_than_an_interval(
    tmp_path: Path, clock: Clock
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    every = timedelta(minutes=15)
    assert due_now(store, every, clock())
    run = store.start_run(Decimal(75), clock())
    store.finish_run(run, clock(), status="ok")
    clock.advance(minutes=5)
    assert not due_now(store, every, clock())
    clock.advance(minutes=11)
    assert due_now(store, every, clock())


def test_scheduler_runs_the_job_at_start_and_keeps_one_instance(tmp_path: Path) -> None:
    started = threading.Event()
    scheduler = start_scheduler(ScheduleSection(every="1h"), started.set, run_now=True)
    try:
        assert started.wait(10)
        job = scheduler.get_job("nudge-poll")
        assert job is not None and job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time >= 60
    finally:
        scheduler.shutdown(wait=False)


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NUDGE_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", "run", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_start_failures_are_one_clear_line(tmp_path: Path) -> None:
    create_usage_table(f"sqlite:///{tmp_path / 'usage.db'}", [account(1, 45, 50)])
    base = {"NUDGE_WAREHOUSE_URL": "sqlite:///usage.db", "SLACK_SIGNING_SECRET": "s"}
    not_app_token = _run(
        {**base, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": "dummy"}, tmp_path
    )
    assert not_app_token.returncode == 2 and "xapp-" in not_app_token.stderr
    with FakeSlack(token=BOT_TOKEN, scopes=ALL_SCOPES) as slack:
        refused = _run(
            {**base, "SLACK_BOT_TOKEN": "xoxb-wrong", "SLACK_API_URL": slack.url}, tmp_path
        )
        assert refused.returncode == 1 and "Slack refused SLACK_BOT_TOKEN" in refused.stderr
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = str(taken.getsockname()[1])
            busy = _run(
                {**base, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack.url},
                tmp_path,
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--no-scheduler",
            )
        assert busy.returncode == 1 and "cannot listen" in busy.stderr
    for run in (not_app_token, refused, busy):
        assert "Traceback" not in run.stderr


def test_socket_mode_connects_acks_a_command_and_answers_it(tmp_path: Path) -> None:
    from tests.fakes.socket_mode import FakeSocketMode

    create_usage_table(f"sqlite:///{tmp_path / 'usage.db'}", [account(1, 45, 50)])
    with FakeSlack(token=BOT_TOKEN, scopes=ALL_SCOPES) as slack, FakeSocketMode() as socket_mode:
        slack.app_token, slack.socket_url = "xapp-1-test", socket_mode.url
        slack.add_user("U0DANA", "dana@example.com", first_name="Dana")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NUDGE_"))}
        env.update(
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_APP_TOKEN="xapp-1-test",
            SLACK_API_URL=slack.url,
            NUDGE_WAREHOUSE_URL="sqlite:///usage.db",
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--no-scheduler"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            socket_mode.wait_for(lambda: socket_mode.connected, timeout=30)
            payload = {
                "command": "/usage-threshold",
                "text": "help",
                "user_id": "U0DANA",
                "team_id": "T0FAKE",
                "channel_id": "C0X",
                "trigger_id": "1.2",
                "response_url": slack.response_url("socket"),
            }
            socket_mode.push(
                {
                    "envelope_id": "env-1",
                    "type": "slash_commands",
                    "accepts_response_payload": True,
                    "payload": payload,
                }
            )
            socket_mode.wait_for(
                lambda: any(m.get("envelope_id") == "env-1" for m in socket_mode.received)
            )
            slack.wait_for(lambda: slack.responses.get("socket"), timeout=10)
            assert "/usage-threshold" in json.dumps(slack.responses["socket"][0])
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=20)
            assert process.returncode == 0, err
            assert "Socket Mode" in err and "Traceback" not in err
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
