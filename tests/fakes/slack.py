"""A small fake of the Slack Web API, served over real HTTP on 127.0.0.1.

The product talks to it exactly as it talks to Slack, through slack_sdk::

    with FakeSlack(token="xoxb-test") as slack:
        slack.add_user("U123", "ada@example.com", first_name="Ada")
        client = WebClient(base_url=slack.url, token="xoxb-test")
        client.chat_postMessage(channel="U123", text="hi")
        assert slack.messages("D123")[0]["text"] == "hi"

Only the methods the product uses are modelled (see ``FakeSlack._methods``); anything else
answers ``unknown_method``. Every request is recorded in ``FakeSlack.calls``. Failures can be
injected per method with ``fail``, ``hang`` and ``drop``; injected faults are queued in the
order they were added and each API call consumes at most one of them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fakes.server import FakeServer, LocalFake

JsonDict = dict[str, Any]

DEFAULT_SCOPES = (
    "commands,chat:write,im:write,users:read,users:read.email,im:history,usergroups:read"
)
MAX_BLOCKS = 50
# Parameters whose value is JSON; in form-encoded bodies they arrive as JSON strings.
JSON_PARAMS = frozenset({"blocks", "attachments", "metadata", "view", "user_auth_blocks"})
# The scope each method needs; a token without it gets ``missing_scope``.
REQUIRED_SCOPES = {
    "users.lookupByEmail": "users:read.email",
    "users.info": "users:read",
    "conversations.open": "im:write",
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "usergroups.users.list": "usergroups:read",
}
# Keys of a stored message that conversations.history / chat.* responses expose.
PUBLIC_MESSAGE_KEYS = ("type", "user", "bot_id", "text", "ts", "thread_ts", "blocks", "edited")
_FIRST_TS_MICROS = 1_700_000_000_000_100
_TS_STEP_MICROS = 100


@dataclass(frozen=True)
class Call:
    """One Web API request as the fake received it (header names are lower-cased)."""

    method: str
    params: JsonDict
    headers: dict[str, str]
    at: float


@dataclass
class _Fault:
    """A misbehaviour injected for the next ``times`` calls of one method."""

    kind: Literal["fail", "hang", "drop"]
    times: int
    error: str = "ratelimited"
    status: int = 200
    retry_after: int = 1
    seconds: float = 0.0
    after_effect: bool = True


@dataclass(frozen=True)
class _Request:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Reply:
    """What the HTTP handler sends back; ``dropped`` closes the connection without a response."""

    status: int = 200
    body: JsonDict = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    dropped: bool = False


def _error(error: str) -> JsonDict:
    return {"ok": False, "error": error}


def _truthy(value: object) -> bool:
    """Slack booleans arrive as True (JSON) or "1"/"true" (form bodies)."""
    return value is True or str(value).lower() in {"1", "true"}


def _dm_id(user_id: str) -> str:
    """The fake's DM channel id for a user: U123 -> D123."""
    return "D" + user_id[1:]


def _parse_params(request: _Request) -> JsonDict:
    """Merge query-string and body parameters; raises ValueError on a malformed body."""
    params: JsonDict = dict(parse_qsl(request.query, keep_blank_values=True))
    if request.body:
        if request.headers.get("content-type", "").startswith("application/json"):
            loaded = json.loads(request.body)
            if not isinstance(loaded, dict):
                raise ValueError("JSON body must be an object")
            params.update(loaded)
        else:
            params.update(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    for key in JSON_PARAMS & params.keys():
        if isinstance(params[key], str):
            # A malformed value stays a string; the method then answers invalid_blocks etc.
            with contextlib.suppress(ValueError):
                params[key] = json.loads(params[key])
    return params


def _content_error(params: JsonDict) -> str | None:
    """Validate the text/blocks of chat.postMessage and chat.update."""
    blocks = params.get("blocks")
    if blocks is not None and (not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS):
        return "invalid_blocks"
    if not (params.get("text") or blocks or params.get("attachments")):
        return "no_text"
    return None


def _public_message(message: JsonDict, with_metadata: bool) -> JsonDict:
    """A stored message in the shape Slack returns it."""
    public = {key: copy.deepcopy(message[key]) for key in PUBLIC_MESSAGE_KEYS if message.get(key)}
    if with_metadata and message.get("metadata"):
        public["metadata"] = copy.deepcopy(message["metadata"])
    return public


def _fault_reply(fault: _Fault) -> _Reply:
    headers = {"Retry-After": str(fault.retry_after)} if fault.status == 429 else {}
    return _Reply(status=fault.status, body=_error(fault.error), headers=headers)


class FakeSlack(LocalFake):
    """An in-process Slack Web API; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        token: str = "xoxb-test",
        scopes: str = DEFAULT_SCOPES,
        *,
        team_id: str = "T0FAKE",
        team: str = "Fake Workspace",
        bot_user_id: str = "U0NUDGEBOT",
        bot_id: str = "B0NUDGEBOT",
    ) -> None:
        self.token = token
        self.scopes = scopes
        # Socket Mode: apps.connections.open takes the app-level token and returns this URL.
        self.app_token: str | None = None
        self.socket_url = ""
        self.team_id = team_id
        self.team = team
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self._lock = threading.RLock()
        self._init_server(_Handler)
        self._calls: list[Call] = []
        self._users: dict[str, JsonDict] = {}
        self._channels: dict[str, JsonDict] = {}
        self._messages: dict[str, list[JsonDict]] = {}
        self._posts: list[JsonDict] = []
        self._views: dict[str, JsonDict] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._responses: dict[str, list[JsonDict]] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._last_ts_micros = _FIRST_TS_MICROS - _TS_STEP_MICROS
        self._methods: dict[str, Callable[[JsonDict], JsonDict]] = {
            "auth.test": self._auth_test,
            "users.lookupByEmail": self._users_lookup_by_email,
            "users.info": self._users_info,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroups_users_list,
            "apps.connections.open": self._apps_connections_open,
        }

    @property
    def url(self) -> str:
        """The base_url to give slack_sdk's WebClient."""
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, key: str) -> str:
        """A response_url whose POSTs are recorded in ``responses[key]``."""
        return f"http://127.0.0.1:{self.port}/response/{key}"

    # ------------------------------------------------------------------ setup

    def add_user(
        self,
        user_id: str,
        email: str,
        first_name: str = "",
        real_name: str = "",
        tz: str = "America/New_York",
        deleted: bool = False,
        is_restricted: bool = False,
        is_admin: bool = False,
        is_owner: bool = False,
        display_name: str = "",
    ) -> JsonDict:
        """Add a user (email stored as given); returns the Slack-shaped user object."""
        name = email.split("@")[0]
        full_name = real_name or first_name or name
        user: JsonDict = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": full_name,
            "deleted": deleted,
            "is_bot": False,
            "is_restricted": is_restricted,
            "is_admin": is_admin,
            "is_owner": is_owner,
            "tz": tz,
            "profile": {
                "email": email,
                "first_name": first_name,
                "real_name": full_name,
                "display_name": display_name,
            },
        }
        with self._lock:
            self._users[user_id] = user
        return copy.deepcopy(user)

    def add_channel(self, channel_id: str, name: str, is_member: bool = True) -> None:
        """Register a public/private channel (C…/G…) the bot can post to if it is a member."""
        with self._lock:
            self._channels[channel_id] = {"id": channel_id, "name": name, "is_member": is_member}

    def add_usergroup(self, usergroup_id: str, user_ids: list[str]) -> None:
        """Register a user group (S…) and its members, for ``usergroups.users.list``."""
        with self._lock:
            self._usergroups[usergroup_id] = list(user_ids)

    def fail(
        self,
        method: str,
        error: str = "ratelimited",
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls with ``status`` and ``{"ok": false, "error": error}``.

        A 429 also carries ``Retry-After: retry_after`` (whole seconds, as slack_sdk expects).
        The call has no effect.
        """
        fault = _Fault("fail", times, error=error, status=status, retry_after=retry_after)
        self._add_fault(method, fault)

    def hang(self, method: str, seconds: float, times: int = 1) -> None:
        """Process the next ``times`` calls at once but delay their responses by ``seconds``."""
        self._add_fault(method, _Fault("hang", times, seconds=seconds))

    def drop(self, method: str, times: int = 1, after_effect: bool = True) -> None:
        """Close the connection without answering the next ``times`` calls.

        With ``after_effect`` the call is processed first (e.g. the message IS posted), as when
        Slack accepted a request but the response was lost.
        """
        self._add_fault(method, _Fault("drop", times, after_effect=after_effect))

    def _add_fault(self, method: str, fault: _Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    # ------------------------------------------------------------------ inspection

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def messages(self, channel: str) -> list[JsonDict]:
        """Stored messages of a channel in post order (a U… id means that user's DM)."""
        with self._lock:
            if channel in self._users:
                channel = _dm_id(channel)
            return copy.deepcopy(self._messages.get(channel, []))

    def all_posts(self) -> list[JsonDict]:
        """Every message stored by chat.postMessage, in post order (as currently updated)."""
        with self._lock:
            return copy.deepcopy(self._posts)

    @property
    def views(self) -> dict[str, JsonDict]:
        """The last view published to each user's Home tab, by user id."""
        with self._lock:
            return copy.deepcopy(self._views)

    @property
    def responses(self) -> dict[str, list[JsonDict]]:
        """Payloads POSTed to each response_url key, in arrival order."""
        with self._lock:
            return copy.deepcopy(self._responses)

    def wait_for(
        self, predicate: Callable[[], object], timeout: float = 5.0, message: str = ""
    ) -> None:
        """Poll ``predicate`` until it is truthy; raise AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise AssertionError(message or f"condition not met within {timeout}s")
            time.sleep(0.01)

    # ------------------------------------------------------------------ request handling

    def _route(self, request: _Request) -> _Reply:
        if request.path.startswith("/api/"):
            return self._handle_api(request.path.removeprefix("/api/"), request)
        if request.path.startswith("/response/"):
            return self._handle_response_url(
                unquote(request.path.removeprefix("/response/")), request
            )
        return _Reply(status=404, body=_error("not_found"))

    def _handle_api(self, method: str, request: _Request) -> _Reply:
        fault: _Fault | None = None
        with self._lock:
            try:
                params = _parse_params(request)
            except ValueError:
                params = {}
                body = _error("invalid_json")
            else:
                body, fault = self._answer(method, params, request.headers)
            self._calls.append(Call(method, copy.deepcopy(params), request.headers, time.time()))
        if fault is not None and fault.kind == "fail":
            return _fault_reply(fault)
        if fault is not None and fault.kind == "hang":
            self._stopping.wait(fault.seconds)
        reply = _Reply(body=body, headers={"x-oauth-scopes": self.scopes})
        reply.dropped = fault is not None and fault.kind == "drop"
        return reply

    def _answer(
        self, method: str, params: JsonDict, headers: dict[str, str]
    ) -> tuple[JsonDict, _Fault | None]:
        """Authenticate, consume an injected fault and run the method (lock held)."""
        error = self._auth_error(params, headers)
        if error is not None:
            return _error(error), None
        fault = self._take_fault(method)
        if fault is not None and (fault.kind == "fail" or not fault.after_effect):
            return {}, fault
        return self._dispatch(method, params), fault

    def _auth_error(self, params: JsonDict, headers: dict[str, str]) -> str | None:
        authorization = headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ").strip()
        else:
            token = str(params.get("token", ""))
        if not token:
            return "not_authed"
        return None if token in (self.token, self.app_token) else "invalid_auth"

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times == 0:
            queue.pop(0)
        return fault

    def _dispatch(self, method: str, params: JsonDict) -> JsonDict:
        handler = self._methods.get(method)
        if handler is None:
            return _error("unknown_method")
        needed = REQUIRED_SCOPES.get(method)
        if needed is not None and needed not in self.scopes.split(","):
            return {**_error("missing_scope"), "needed": needed, "provided": self.scopes}
        try:
            return handler(params)
        except (ValueError, TypeError):
            return _error("invalid_arguments")

    def _handle_response_url(self, key: str, request: _Request) -> _Reply:
        try:
            payload = _parse_params(request)
        except ValueError:
            return _Reply(status=400, body=_error("invalid_payload"))
        with self._lock:
            self._responses.setdefault(key, []).append(payload)
        return _Reply(body={"ok": True})

    # ------------------------------------------------------------------ helpers (lock held)

    def _next_ts(self) -> str:
        self._last_ts_micros += _TS_STEP_MICROS
        seconds, micros = divmod(self._last_ts_micros, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _channel_error(self, channel: str) -> str | None:
        """Why the bot cannot use ``channel`` (a D… of a known user or a registered C…)."""
        if channel.startswith("D") and any(_dm_id(uid) == channel for uid in self._users):
            return None
        info = self._channels.get(channel)
        if info is None:
            return "channel_not_found"
        return None if info["is_member"] else "not_in_channel"

    def _find_message(self, channel: str, ts: str) -> JsonDict | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    # ------------------------------------------------------------------ API methods (lock held)

    def _apps_connections_open(self, params: JsonDict) -> JsonDict:
        if not self.socket_url:
            return _error("invalid_auth")
        return {"ok": True, "url": self.socket_url}

    def _auth_test(self, params: JsonDict) -> JsonDict:
        return {
            "ok": True,
            "url": "https://fake-workspace.slack.com/",
            "team": self.team,
            "user": "nudge",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _users_lookup_by_email(self, params: JsonDict) -> JsonDict:
        email = params.get("email")
        for user in self._users.values():
            if user["profile"]["email"] == email:
                return {"ok": True, "user": copy.deepcopy(user)}
        return _error("users_not_found")

    def _users_info(self, params: JsonDict) -> JsonDict:
        user = self._users.get(str(params.get("user", "")))
        if user is None:
            return _error("user_not_found")
        return {"ok": True, "user": copy.deepcopy(user)}

    def _conversations_open(self, params: JsonDict) -> JsonDict:
        user_id = str(params.get("users", "")).strip()
        if user_id not in self._users:
            return _error("user_not_found")
        return {"ok": True, "channel": {"id": _dm_id(user_id)}}

    def _conversations_history(self, params: JsonDict) -> JsonDict:
        channel = str(params.get("channel", ""))
        error = self._channel_error(channel)
        if error is not None:
            return _error(error)
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or "inf")
        inclusive = _truthy(params.get("inclusive"))
        limit = int(params.get("limit") or 100)

        def in_range(ts: float) -> bool:
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        found = [m for m in reversed(self._messages.get(channel, [])) if in_range(float(m["ts"]))]
        with_metadata = _truthy(params.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [_public_message(m, with_metadata) for m in found[:limit]],
            "has_more": len(found) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _chat_post_message(self, params: JsonDict) -> JsonDict:
        channel = str(params.get("channel", ""))
        if channel in self._users:  # Slack opens the DM when posting to a user id
            channel = _dm_id(channel)
        error = self._channel_error(channel) or _content_error(params)
        if error is not None:
            return _error(error)
        message: JsonDict = {
            "type": "message",
            "channel": channel,
            "ts": self._next_ts(),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "text": params.get("text", ""),
            "blocks": params.get("blocks") or [],
            "metadata": params.get("metadata"),
            "thread_ts": params.get("thread_ts"),
            "params": copy.deepcopy(params),
            "revisions": [],
        }
        self._messages.setdefault(channel, []).append(message)
        self._posts.append(message)
        public = _public_message(message, with_metadata=True)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": public}

    def _chat_update(self, params: JsonDict) -> JsonDict:
        channel = str(params.get("channel", ""))
        error = self._channel_error(channel) or _content_error(params)
        if error is not None:
            return _error(error)
        message = self._find_message(channel, str(params.get("ts", "")))
        if message is None:
            return _error("message_not_found")
        message["revisions"].append(
            {key: copy.deepcopy(message[key]) for key in ("text", "blocks", "metadata", "params")}
        )
        for key in ("text", "blocks", "metadata"):
            if key in params:
                message[key] = copy.deepcopy(params[key])
        message["blocks"] = message["blocks"] or []
        message["params"] = copy.deepcopy(params)
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        public = _public_message(message, with_metadata=True)
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": public,
        }

    def _chat_post_ephemeral(self, params: JsonDict) -> JsonDict:
        return {"ok": True, "message_ts": self._next_ts()}

    def _chat_get_permalink(self, params: JsonDict) -> JsonDict:
        channel = str(params.get("channel", ""))
        ts = str(params.get("message_ts", "")).replace(".", "")
        permalink = f"https://fake-workspace.slack.com/archives/{channel}/p{ts}"
        return {"ok": True, "channel": channel, "permalink": permalink}

    def _usergroups_users_list(self, params: JsonDict) -> JsonDict:
        members = self._usergroups.get(str(params.get("usergroup", "")))
        if members is None:
            return _error("no_such_subteam")
        return {"ok": True, "users": list(members)}

    def _views_publish(self, params: JsonDict) -> JsonDict:
        user_id = str(params.get("user_id", ""))
        view = params.get("view")
        if user_id not in self._users:
            return _error("user_not_found")
        if not isinstance(view, dict):
            return _error("invalid_arguments")
        self._views[user_id] = copy.deepcopy(view)
        return {"ok": True, "view": {"id": "V" + user_id[1:], **copy.deepcopy(view)}}


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = _Request(
            path=url.path,
            query=url.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        reply = self.server.fake._route(request)
        if reply.dropped:
            self.close_connection = True
            return
        payload = json.dumps(reply.body).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet; FakeSlack.calls is the record
