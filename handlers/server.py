"""serve(): Socket Mode, or Bolt's WSGI adapter under waitress with /healthz; plus the scheduler."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier

from bot.scheduler import due_now, start_scheduler
from bot.services import Services

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
MAX_BODY = 1_000_000  # Slack's payloads are far smaller
Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def health(services: Services) -> tuple[int, dict[str, Any]]:
    """200 when the app can serve Slack and the state database answers; 503 otherwise."""
    try:
        services.store.ping()
        runs = services.store.recent_runs(1)
    except Exception as exc:  # any failure of the state database makes this replica unhealthy
        return 503, {"status": "unhealthy", "state_database": type(exc).__name__}
    last = runs[0]["status"] if runs else "never"
    return 200, {"status": "ok", "last_poll": last}


def wsgi_app(app: App, services: Services) -> Wsgi:
    """POST /slack/events to Bolt, GET /healthz, 404 for anything else."""
    bolt = SlackRequestHandler(app, path=EVENTS_PATH)
    secret = services.settings.slack_signing_secret
    verifier = SignatureVerifier(secret.get_secret_value()) if secret else None

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == EVENTS_PATH:
            if verifier is not None and not _signed(verifier, environ):
                start_response("401 Unauthorized", [("Content-Type", "application/json")])
                return [b'{"error": "invalid request"}']
            return bolt(environ, start_response)
        if path == "/healthz":
            status, body = health(services)
            phrase = "200 OK" if status == 200 else "503 Service Unavailable"
            start_response(phrase, [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return application


def _signed(verifier: SignatureVerifier, environ: dict[str, Any]) -> bool:
    """Check Slack's signature before anything parses the body (forged input never runs).

    The body is read here and handed on to Bolt unchanged.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    if not 0 <= length <= MAX_BODY:
        return False
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""))
    signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", ""))
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    try:
        return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except (ValueError, TypeError):
        return False


def poll_job(services: Services) -> Callable[[], None]:
    """The scheduled job: one poll run; its failures are logged, never raised."""

    def run() -> None:
        try:
            report = services.poller().run()
        except Exception:  # the scheduler must keep going whatever one run does
            log.exception("poll run could not start")
            return
        if report.skipped:
            log.info("poll skipped: %s", report.skipped)
        for error in report.errors:
            log.warning("poll: %s", error)

    return run


def serve(
    app: App,
    services: Services,
    *,
    host: str,
    port: int,
    scheduler: bool,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT: Socket Mode when SLACK_APP_TOKEN is set, HTTP otherwise."""
    settings = services.settings
    jobs = None
    if scheduler:
        run_now = due_now(services.store, settings.schedule.every, services.clock())
        jobs = start_scheduler(settings.schedule, poll_job(services), run_now=run_now)
    try:
        if settings.slack_app_token is not None:
            _serve_socket_mode(app, settings.slack_app_token.get_secret_value(), ready)
        else:
            _serve_http(app, services, host, port, ready)
    finally:
        if jobs is not None:
            jobs.shutdown(wait=False)


def _on_stop(stop: Callable[[], None]) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())


def http_server(app: App, services: Services, host: str, port: int) -> Any:
    """A waitress server (production WSGI, 8 threads) for the app; port 0 picks a free one."""
    from waitress import create_server

    return create_server(wsgi_app(app, services), host=host, port=port, threads=8)


def _serve_http(
    app: App, services: Services, host: str, port: int, ready: Callable[[str], None] | None
) -> None:
    server = http_server(app, services, host, port)
    _on_stop(server.close)
    bound = int(server.effective_port)
    log.info("Nudge listening on http://%s:%d%s", host, bound, EVENTS_PATH)
    if ready:
        ready(f"HTTP on http://{host}:{bound}{EVENTS_PATH}, health at /healthz")
    with contextlib.suppress(OSError):  # closing from a signal ends run() with EBADF
        server.run()


def _serve_socket_mode(app: App, app_token: str, ready: Callable[[str], None] | None) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(app, app_token)
    stopped = threading.Event()
    _on_stop(stopped.set)
    handler.connect()  # type: ignore[no-untyped-call]
    log.info("Nudge connected to Slack in Socket Mode")
    if ready:
        ready("Socket Mode, connected to Slack")
    stopped.wait()
    handler.close()  # type: ignore[no-untyped-call]
