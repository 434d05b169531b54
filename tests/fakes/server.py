"""What every local HTTP fake shares: a threaded server on 127.0.0.1 (random port) and its
start / stop / context-manager lifecycle."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class FakeServer(ThreadingHTTPServer):
    """One daemon thread per request, so hung handlers never block stop() or other requests."""

    daemon_threads = True

    def __init__(self, fake: Any, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.fake = fake


class LocalFake:
    """Base of the fakes: subclasses call `_init_server(their handler class)` in __init__."""

    def _init_server(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.handler = handler
        self._stopping = threading.Event()
        self._server: FakeServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Listen on a random local port."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._stopping.clear()
        self._server = FakeServer(self, self.handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hung handlers are woken up and never waited for."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])
