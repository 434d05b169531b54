"""A small OpenAI-compatible chat completions endpoint, served over real HTTP on 127.0.0.1.

The product reaches it exactly as it reaches OpenAI, through the official client and
``OPENAI_BASE_URL``::

    with FakeOpenAI(answer="- Usage is climbing") as llm:
        settings = Settings(openai_api_key="sk-test", openai_base_url=llm.url)
        ...
        assert llm.requests[0].body["model"] == "gpt-4o-mini"

Every ``POST /v1/chat/completions`` is recorded in ``FakeOpenAI.requests``. Replies are
scripted: ``script(...)`` queues replies that the next requests consume in order (helpers:
``slow``, ``fail``, ``rate_limited``, ``insufficient_quota``); once the queue is empty every
request gets the normal answer (``answer``: a text, or a function of the request body).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

JsonDict = dict[str, Any]
Answer = str | Callable[[JsonDict], str]
DEFAULT_ANSWER = (
    "- Usage is climbing fast: a good moment for an **upgrade** conversation.\n"
    "- Ask how the team plans to grow."
)


@dataclass(frozen=True)
class Request:
    """One chat completion request as the fake received it (header names lower-cased)."""

    path: str
    headers: dict[str, str]
    body: JsonDict
    at: float

    @property
    def user_prompt(self) -> str:
        """The user message's text."""
        return "\n".join(
            str(m.get("content", "")) for m in self.body.get("messages", []) if m["role"] == "user"
        )


@dataclass
class Reply:
    """One scripted reply: an answer (``content``) or an error (``status`` with ``error``)."""

    content: str | None = None
    status: int = 200
    error: JsonDict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0  # seconds between the body's bytes (headers go at once)


def error_body(message: str, kind: str, code: str | None) -> JsonDict:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def completion(content: str, model: str) -> JsonDict:
    """A chat.completion object with one choice."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


class FakeOpenAI:
    """The fake endpoint; ``url`` is the base URL to configure (it ends in ``/v1``)."""

    def __init__(self, answer: Answer = DEFAULT_ANSWER, *, delay: float = 0.0) -> None:
        self.answer: Answer = answer
        self.delay = delay
        self.requests: list[Request] = []
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeOpenAI:
        """Listen on a random local port."""
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; replies still sleeping give up at once."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, as OPENAI_BASE_URL."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._script.extend(replies)

    def slow(self, seconds: float, times: int = 1, content: str = DEFAULT_ANSWER) -> None:
        """Accept the request, then answer only after `seconds`."""
        self.script(*[Reply(content=content, delay=seconds) for _ in range(times)])

    def drip(self, seconds_per_byte: float) -> None:
        """Answer the headers at once, then the body a byte at a time (no read ever times out)."""
        self.script(Reply(drip=seconds_per_byte))

    def fail(self, status: int = 500, times: int = 1) -> None:
        """Answer `status` with a server error body."""
        body = error_body("The server had an error", "server_error", None)
        self.script(*[Reply(status=status, error=body) for _ in range(times)])

    def rate_limited(self, retry_after: int = 1, times: int = 1) -> None:
        """429 rate limit with ``retry-after``."""
        body = error_body("Rate limit reached", "requests", "rate_limit_exceeded")
        headers = {"retry-after": str(retry_after)}
        self.script(*[Reply(status=429, error=body, headers=headers) for _ in range(times)])

    def insufficient_quota(self, times: int = 1) -> None:
        """429 ``insufficient_quota``: the account is out of credit (waiting will not help)."""
        body = error_body(
            "You exceeded your current quota", "insufficient_quota", "insufficient_quota"
        )
        self.script(*[Reply(status=429, error=body) for _ in range(times)])

    def _next(self) -> Reply | None:
        with self._lock:
            return self._script.pop(0) if self._script else None

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[Reply, JsonDict]:
        """Record one request; its reply and JSON body (after the reply's delay)."""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return Reply(status=400), error_body("invalid JSON", "invalid_request_error", None)
        with self._lock:
            self.requests.append(Request(path, headers, body, time.monotonic()))
        if path != "/v1/chat/completions":
            return Reply(status=404), error_body(f"no {path}", "invalid_request_error", None)
        reply = self._next() or Reply(delay=self.delay)
        if reply.delay:
            self._stopping.wait(reply.delay)
        if reply.error is not None:
            return reply, reply.error
        content = reply.content
        if content is None:
            content = self.answer(body) if callable(self.answer) else self.answer
        return reply, completion(content, str(body.get("model", "")))

    def pause(self, seconds: float) -> bool:
        """Sleep, unless the fake is stopping; False once it is."""
        return not self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeOpenAI) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply, body = self.server.fake.handle(self.path, headers, raw)
        data = json.dumps(body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not reply.drip:
                self.wfile.write(data)
                return
            for byte in data:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                if not self.server.fake.pause(reply.drip):
                    return
        except OSError:  # the client gave up (its timeout): nothing to answer
            pass

    def do_GET(self) -> None:
        """`GET /v1/models/<id>` (what `nudge check` asks): any model id exists."""
        model = self.path.rstrip("/").rsplit("/", 1)[-1]
        data = json.dumps({"id": model, "object": "model", "owned_by": "fake"}).encode()
        found = self.path.startswith("/v1/models/")
        self.send_response(200 if found else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass
