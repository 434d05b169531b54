"""Connecting to the usage warehouse: one engine per backend, a deadline on every query, and one
reconnect when a Snowflake session has expired (SPEC 2 and 6, F11)."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from bot.errors import ConfigError
from bot.store import postgres_session

# Below Snowflake's 4-hour session token lifetime, so a pooled connection is renewed before it
# can expire; pre-ping and the connector's keep-alive cover the rest (F11).
RECYCLE_S = 3600
LOGIN_TIMEOUT_S = 10
# Snowflake's "session no longer exists" (390111), "session expired" (390112), "master token not
# found" (390113), "Authentication token has expired" (390114): a new login fixes each one.
SESSION_GONE = frozenset({390111, 390112, 390113, 390114})
_TIMEOUT_KEY = "nudge_statement_timeout_s"

log = logging.getLogger(__name__)


def warehouse_engine(url: str, timeout_s: float) -> Engine:
    """An engine for the configured warehouse; a missing driver or bad URL is a ConfigError."""
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        database = str(parsed.database or "")
        local = backend == "sqlite" and database not in ("", ":memory:")
        if local and not Path(database).is_file():
            where = Path(database).resolve()
            raise ConfigError([f"warehouse: SQLite file {where} does not exist"])
        args: dict[str, Any] = {}
        if backend == "postgresql":
            args = {"connect_timeout": LOGIN_TIMEOUT_S}
        elif backend == "snowflake":
            parsed, args = snowflake_connect_args(parsed)
        engine = create_engine(
            parsed, pool_pre_ping=True, pool_recycle=RECYCLE_S, connect_args=args
        )
        if backend == "postgresql":
            event.listen(engine, "connect", postgres_session(timeout_s, read_only=True))
        elif backend == "snowflake":
            event.listen(engine, "handle_error", _session_gone_is_a_disconnect)
        return engine
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise ConfigError([f"warehouse: cannot use {parsed_name(url)}: {exc}"]) from exc


def parsed_name(url: str) -> str:
    """The URL's scheme only (never its credentials), for messages."""
    return url.split("://", 1)[0] + "://…"


def snowflake_connect_args(url: URL) -> tuple[URL, dict[str, Any]]:
    """The URL without key-file parameters, and the connector's arguments.

    `snowflake://user[:password]@account/database/schema?warehouse=…&role=…` authenticates with
    the password, or with the key pair read from `private_key_file` (passphrase:
    `private_key_file_pwd`), which snowflake-sqlalchemy refuses to take from a URL itself.
    """
    query = {key: value for key, value in url.query.items() if isinstance(value, str)}
    key_file = query.pop("private_key_file", None)
    passphrase = query.pop("private_key_file_pwd", None)
    args: dict[str, Any] = {
        "client_session_keep_alive": True,
        "login_timeout": LOGIN_TIMEOUT_S,
    }
    if key_file:
        args["private_key"] = private_key_der(key_file, passphrase)
    return url.set(query=query), args


def private_key_der(path: str, passphrase: str | None) -> bytes:
    """The PEM private key at `path` as unencrypted PKCS#8 DER, as the connector takes it."""
    from cryptography.hazmat.primitives import serialization

    where = Path(path).expanduser()
    try:
        pem = where.read_bytes()
    except OSError as exc:
        problem = f"warehouse: cannot read private_key_file {where}: {exc.strerror}"
        raise ConfigError([problem]) from exc
    try:
        key = serialization.load_pem_private_key(
            pem, password=passphrase.encode() if passphrase else None
        )
    except (ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            [f"warehouse: private_key_file {where} is not a usable private key ({reason})"]
        ) from exc
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def session_gone(exc: BaseException) -> bool:
    """A Snowflake error that a new login fixes (expired session or token)."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    return getattr(original, "errno", None) in SESSION_GONE


def retry_once(exc: SQLAlchemyError, attempt: int) -> bool:
    """Run a query again after the first failure of an expired Snowflake session (F11).

    The failed connection was invalidated (`handle_error` below), so the retry logs in afresh;
    a second failure in a row is the caller's WarehouseError.
    """
    if attempt == 1 and session_gone(exc):
        log.warning("warehouse session expired; reconnecting once")
        return True
    return False


def describe(exc: SQLAlchemyError) -> str:
    """A short reason for a failed query, without SQL text or parameters."""
    original = getattr(exc, "orig", None)
    reason = str(original or exc).splitlines()[0][:200]
    return f"warehouse query failed: {type(original or exc).__name__}: {reason}"


def _session_gone_is_a_disconnect(context: ExceptionContext) -> None:
    # Invalidating drops this connection and every older one in the pool: their sessions were
    # opened together and expire together. A pre-ping that meets it reconnects by itself.
    if context.original_exception is not None and session_gone(context.original_exception):
        context.is_disconnect = True


@contextlib.contextmanager
def deadline(conn: Connection, seconds: float) -> Iterator[None]:
    """Bound the queries run inside: an interrupt on SQLite and DuckDB, a statement timeout on
    PostgreSQL and Snowflake."""
    raw = conn.connection.dbapi_connection
    name = conn.dialect.name
    if name == "sqlite" and raw is not None:
        end = time.monotonic() + seconds
        raw.set_progress_handler(lambda: int(time.monotonic() > end), 10_000)
        try:
            yield
        finally:
            raw.set_progress_handler(None, 0)
        return
    if name == "postgresql":
        conn.exec_driver_sql(f"SET statement_timeout = {max(1, int(seconds * 1000))}")
    elif name == "snowflake":
        _snowflake_timeout(conn, seconds)
    elif name == "duckdb" and raw is not None:
        timer = threading.Timer(seconds, raw.interrupt)
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
        return
    yield


def _snowflake_timeout(conn: Connection, seconds: float) -> None:
    # Whole seconds, at least 1: 0 would mean "no timeout" to Snowflake. Each round trip costs,
    # so a session is altered only when the bound changes (the info dict dies with the session).
    wanted = max(1, math.ceil(seconds))
    info = conn.connection.info
    if info.get(_TIMEOUT_KEY) != wanted:
        conn.exec_driver_sql(f"ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = {wanted}")
        info[_TIMEOUT_KEY] = wanted
