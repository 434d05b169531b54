"""A fake Slack Socket Mode endpoint: a local WebSocket server that says hello, pushes
envelopes (slash commands, interactions, events) and records the acks Nudge sends back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve


class FakeSocketMode:
    """`with FakeSocketMode() as socket:` then `socket.url` goes into FakeSlack.socket_url."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._connections: list[ServerConnection] = []
        self._server: Server | None = None

    def __enter__(self) -> FakeSocketMode:
        self._server = serve(self._handle, "127.0.0.1", 0)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link"

    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            self._connections.append(connection)
        connection.send(json.dumps({"type": "hello", "num_connections": 1}))
        try:
            for message in connection:
                with self._lock:
                    self.received.append(json.loads(message))
        except ConnectionClosed:
            pass

    @property
    def connected(self) -> bool:
        with self._lock:
            return bool(self._connections)

    def push(self, envelope: dict[str, Any]) -> None:
        """Send an envelope to the newest connection (as Slack does)."""
        with self._lock:
            connection = self._connections[-1]
        connection.send(json.dumps(envelope))

    def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Poll until predicate() is true, or fail the test."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError("the Socket Mode fake never saw what was expected")
