"""Outbound Slack: look-ups, DMs, pacing, 429s, and the ledger that makes each send happen once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from blocks.alert import Message
from blocks.ids import METADATA_EVENT
from bot.errors import DeliveryError
from bot.store import Store
from bot.territory import SlackUser

log = logging.getLogger(__name__)

# Errors that no retry will fix: the run stops sending and says so.
FATAL_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "team_access_not_granted",
        "no_permission",
    }
)
HTTP_TIMEOUT_S = 10
RATE_LIMIT_RETRIES = 2
RETRY_AFTER_CAP_S = 15
# The longest one send can take: every attempt timing out, plus the capped 429 waits.
SEND_MAX_S = (
    HTTP_TIMEOUT_S * (RATE_LIMIT_RETRIES + 1) + (RETRY_AFTER_CAP_S + 1) * RATE_LIMIT_RETRIES
)
# Errors that mean the history can never be read: the send is treated as lost and retried.
UNREADABLE_HISTORY = frozenset({"missing_scope", "channel_not_found", "not_in_channel"})


class CappedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Waits out a 429's Retry-After, unless it is longer than the cap (then the send fails
    and the next poll retries it) so a run never sleeps past its budget."""

    def _can_retry(
        self, *, state: Any, request: Any, response: Any = None, error: Any = None
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        headers = {k.lower(): v for k, v in (response.headers if response else {}).items()}
        value = headers.get("retry-after", ["1"])
        seconds = value[0] if isinstance(value, list) else value
        try:
            return float(seconds) <= RETRY_AFTER_CAP_S
        except ValueError:
            return False


class SlackGateway(Protocol):
    """What delivery needs from Slack (real: SlackWeb; demo: the outbox)."""

    def lookup_by_email(self, email: str) -> SlackUser | None: ...

    def user_info(self, user_id: str) -> SlackUser | None: ...

    def open_dm(self, user_id: str) -> str: ...

    def post(self, channel: str, message: Message, metadata: dict[str, Any]) -> tuple[str, str]: ...

    def update(self, channel: str, ts: str, message: Message) -> None: ...

    def find_delivery(self, channel: str, message_key: str) -> str | None: ...


def _slack_user(data: dict[str, Any]) -> SlackUser:
    profile = data.get("profile") or {}
    return SlackUser(
        id=data["id"],
        first_name=profile.get("first_name") or "",
        real_name=data.get("real_name") or profile.get("real_name") or "",
        tz=data.get("tz") or "",
        deleted=bool(data.get("deleted")),
        is_restricted=bool(data.get("is_restricted") or data.get("is_ultra_restricted")),
        is_admin=bool(data.get("is_admin") or data.get("is_owner") or data.get("is_primary_owner")),
    )


def _error_code(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or f"http_{exc.response.status_code}")


def web_client(token: str, base_url: str) -> WebClient:
    """A WebClient that retries only on 429 (honouring Retry-After): never a blind re-post."""
    return WebClient(
        token=token,
        base_url=base_url,
        timeout=HTTP_TIMEOUT_S,
        retry_handlers=[CappedRateLimitRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)],
    )


class SlackWeb:
    """The real Slack Web API through slack_sdk."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        try:
            # The typed methods serialise blocks and metadata as Slack expects.
            response = getattr(self.client, method.replace(".", "_"))(**params)
        except SlackApiError as exc:
            code = _error_code(exc)
            raise DeliveryError(f"{method}: {code}", code, fatal=code in FATAL_ERRORS) from exc
        except OSError as exc:  # timeouts and dropped connections: the outcome is unknown
            raise DeliveryError(f"{method}: {type(exc).__name__}", "connection") from exc
        return dict(response.data) if isinstance(response.data, dict) else {}

    def scopes(self) -> set[str]:
        """The scopes granted to the token, from auth.test's `x-oauth-scopes` header."""
        try:
            response = self.client.auth_test()
        except OSError as exc:
            raise DeliveryError(f"cannot reach Slack: {type(exc).__name__}", "connection") from exc
        except SlackApiError as exc:
            code = _error_code(exc)
            raise DeliveryError(
                f"Slack refused SLACK_BOT_TOKEN ({code}): use the Bot User OAuth Token (xoxb-…) "
                "of the installed app, from OAuth & Permissions",
                code,
                fatal=True,
            ) from exc
        header = {k.lower(): v for k, v in response.headers.items()}.get("x-oauth-scopes", "")
        value = header[0] if isinstance(header, list) else header
        return {part.strip() for part in str(value).split(",") if part.strip()}

    def lookup_by_email(self, email: str) -> SlackUser | None:
        """users.lookupByEmail; None for users_not_found."""
        try:
            return _slack_user(self._call("users.lookupByEmail", email=email)["user"])
        except DeliveryError as exc:
            if exc.code == "users_not_found":
                return None
            raise

    def user_info(self, user_id: str) -> SlackUser | None:
        """users.info; None for an unknown user."""
        try:
            return _slack_user(self._call("users.info", user=user_id)["user"])
        except DeliveryError as exc:
            if exc.code in ("user_not_found", "users_not_found"):
                return None
            raise

    def usergroup_members(self, usergroup_id: str) -> set[str]:
        """usergroups.users.list: the user ids of a user group."""
        return set(self._call("usergroups.users.list", usergroup=usergroup_id).get("users", []))

    def open_dm(self, user_id: str) -> str:
        """conversations.open: the D… channel that chat.update will need later (F04)."""
        return str(self._call("conversations.open", users=user_id)["channel"]["id"])

    def post(self, channel: str, message: Message, metadata: dict[str, Any]) -> tuple[str, str]:
        """chat.postMessage; returns (channel id, ts)."""
        data = self._call(
            "chat.postMessage",
            channel=channel,
            text=message.text,
            blocks=message.blocks,
            metadata=metadata,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(data["channel"]), str(data["ts"])

    def update(self, channel: str, ts: str, message: Message) -> None:
        """chat.update on the D… channel and ts where the card lives."""
        self._call("chat.update", channel=channel, ts=ts, text=message.text, blocks=message.blocks)

    def find_delivery(self, channel: str, message_key: str) -> str | None:
        """The ts of a message carrying this delivery's metadata, if Slack has it.

        The newest 200 messages of the conversation: recovery runs at the next poll, minutes
        after the send, and a bot's DM or alert channel never moves that fast.
        """
        data = self._call(
            "conversations.history", channel=channel, include_all_metadata=True, limit=200
        )
        for message in data.get("messages", []):
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("delivery") == message_key:
                return str(message["ts"])
        return None


class Pacer:
    """At most one message per second per conversation (Slack's posting limit)."""

    def __init__(
        self,
        interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self.monotonic = monotonic
        self.sleep = sleep
        self._last: dict[str, float] = {}

    def wait(self, channel: str) -> None:
        """Block until `channel` may receive another message."""
        last = self._last.get(channel)
        if last is not None:
            remaining = self.interval - (self.monotonic() - last)
            if remaining > 0:
                self.sleep(remaining)
        self._last[channel] = self.monotonic()


@dataclass(frozen=True)
class Outcome:
    """What happened to one send."""

    sent: bool
    channel: str | None = None
    ts: str | None = None
    error: str | None = None
    fatal: bool = False


class Dispatcher:
    """Sends through the ledger: recorded before, confirmed after, never re-sent blindly."""

    def __init__(
        self,
        store: Store,
        slack: SlackGateway,
        clock: Callable[[], datetime],
        pacer: Pacer | None = None,
    ) -> None:
        self.store = store
        self.slack = slack
        self.clock = clock
        self.pacer = pacer or Pacer()
        self._dm: dict[str, str] = {}

    def channel_for(self, recipient: str) -> str:
        """The conversation for a user (opened once per run) or a channel id as given."""
        if not recipient.startswith(("U", "W")):
            return recipient
        if recipient not in self._dm:
            self._dm[recipient] = self.slack.open_dm(recipient)
        return self._dm[recipient]

    def send(
        self, key: str, alert_ids: list[str], kind: str, recipient: str, message: Message
    ) -> Outcome:
        """Record, open, pace, post, confirm; a failure is recorded and returned, not raised."""
        self.store.record_pending(key, alert_ids, kind, recipient, self.clock())
        try:
            channel = self.channel_for(recipient)
            self.store.finish_delivery(key, "pending", self.clock(), channel=channel)
            self.pacer.wait(channel)
            metadata = {"event_type": METADATA_EVENT, "event_payload": {"delivery": key}}
            channel, ts = self.slack.post(channel, message, metadata)
        except DeliveryError as exc:
            status = "unknown" if exc.code == "connection" else "failed"
            self.store.finish_delivery(key, status, self.clock(), error=exc.code or str(exc))
            log.warning("send %s to %s failed: %s", kind, recipient, exc)
            return Outcome(False, error=exc.code or str(exc), fatal=exc.fatal)
        self.store.finish_delivery(key, "sent", self.clock(), channel=channel, ts=ts)
        return Outcome(True, channel, ts)

    def reconcile(self) -> int:
        """Settle sends whose outcome is unknown by reading the DM history; returns how many."""
        settled = 0
        groups: dict[str, Any] = {}
        for delivery in self.store.unconfirmed_deliveries():
            groups.setdefault(delivery.message_key, delivery)
        for key, delivery in groups.items():
            ts = None
            if delivery.channel:
                try:
                    ts = self.slack.find_delivery(delivery.channel, key)
                except DeliveryError as exc:
                    if exc.code not in UNREADABLE_HISTORY:  # still in doubt: checked next run
                        log.warning("cannot check delivery %s yet: %s", key, exc)
                        continue
                    log.warning(
                        "cannot read %s (%s): delivery %s counted as lost",
                        delivery.channel,
                        exc.code,
                        key,
                    )
            if ts:
                self.store.finish_delivery(
                    key, "sent", self.clock(), channel=delivery.channel, ts=ts
                )
            else:
                self.store.finish_delivery(key, "failed", self.clock(), error="not delivered")
            settled += 1
        return settled
