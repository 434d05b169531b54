"""The Slack app under test: `nudge run`'s HTTP server on a random port, reached with requests
exactly as Slack sends them (form-encoded, signed), against the fake Slack Web API."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bot.access import Access
from bot.delivery import Pacer, SlackWeb, web_client
from bot.services import Services
from handlers import build_app
from handlers.server import http_server
from tests.conftest import BOT_TOKEN, Clock
from tests.fakes.slack import FakeSlack
from tests.harness import Harness

SIGNING_SECRET = "test-signing-secret"


def sign(body: bytes, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    """Slack's v0 request signature."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackApp(Harness):
    """A Harness (warehouse, state, territory, fake Slack) plus the running Slack app."""

    def __init__(self, tmp_path: Path, slack: FakeSlack, clock: Clock, **kwargs: Any) -> None:
        settings = kwargs.pop("settings", {}) or {}
        settings.setdefault("slack_signing_secret", SIGNING_SECRET)
        super().__init__(tmp_path, slack, clock, settings=settings, **kwargs)
        web = SlackWeb(web_client(BOT_TOKEN, slack.url))
        self.services = Services(
            self.settings,
            self.store,
            web,
            Access(web, self.settings.admin_ids, self.settings.viewers),
            clock=clock,
            pacer=Pacer(sleep=self.sleeps.append),
        )
        self.server = http_server(build_app(self.services), self.services, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> SlackApp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()
        self._thread.join(timeout=5)

    def post(
        self,
        body: bytes,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, float]:
        """POST /slack/events; returns (status, body, seconds to the response)."""
        ts = int(time.time()) if timestamp is None else timestamp
        request = urllib.request.Request(
            f"{self.url}/slack/events",
            data=body,
            method="POST",
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": str(ts),
                "X-Slack-Signature": signature or sign(body, ts),
                **(headers or {}),
            },
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read(), time.monotonic() - started
        except urllib.error.HTTPError as error:
            return error.code, error.read(), time.monotonic() - started

    def command(
        self, command: str, text: str, user_id: str = "U0OWNER0001", **extra: str
    ) -> tuple[int, bytes, float]:
        """A slash command as Slack sends it; its response_url is the fake's sink `cmd`."""
        form = {
            "token": "legacy",
            "team_id": "T0FAKE",
            "channel_id": "C0RANDOM",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": command,
            "text": text,
            "response_url": self.slack.response_url("cmd"),
            "trigger_id": "1.2.3",
            **extra,
        }
        return self.post(urllib.parse.urlencode(form).encode())

    def interaction(self, payload: dict[str, Any]) -> tuple[int, bytes, float]:
        """A block_actions (or other) interaction: form-encoded `payload=<json>`."""
        return self.post(urllib.parse.urlencode({"payload": json.dumps(payload)}).encode())

    def event(
        self, event: dict[str, Any], event_id: str, retry_num: int | None = None
    ) -> tuple[int, bytes, float]:
        """An Events API callback (JSON), optionally marked as Slack's retry."""
        body = json.dumps(
            {
                "token": "legacy",
                "team_id": "T0FAKE",
                "api_app_id": "A0NUDGE",
                "type": "event_callback",
                "event_id": event_id,
                "event_time": int(time.time()),
                "event": event,
            }
        ).encode()
        headers = (
            {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
            if retry_num
            else {}
        )
        return self.post(body, content_type="application/json", headers=headers)

    def get(self, path: str) -> tuple[int, bytes]:
        """GET a path of the server (e.g. /healthz)."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


def block_actions(
    message: dict[str, Any],
    channel: str,
    action: dict[str, Any],
    user_id: str = "U0OWNER0001",
) -> dict[str, Any]:
    """The block_actions payload Slack sends for a click on a stored message of the fake.

    `response_url` is empty: a test that wants Nudge's ephemeral answers sets it to one of the
    fake's sinks (`slack.response_url(key)`)."""
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "team_id": "T0FAKE"},
        "api_app_id": "A0NUDGE",
        "token": "legacy",
        "trigger_id": "1.2.3",
        "team": {"id": "T0FAKE"},
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "channel": {"id": channel},
        "message": {"ts": message["ts"], "text": message["text"], "blocks": message["blocks"]},
        "response_url": "",
        "actions": [action],
    }
