"""Shared fixtures: a clean environment, no internet, the fake Slack, and warehouses for real."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.fakes.slack import FakeSlack
from tests.warehouses import account, create_usage_table, fake_snowflake, sf_id

SECRET_PREFIXES = ("SLACK_", "OPENAI_", "SALESFORCE_", "NUDGE_")
POSTGRES_URL = os.environ.get("NUDGE_TEST_POSTGRES_URL", "")
BOT_TOKEN = "xoxb-test-token"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer's own keys never leak into a test; no stray .env or nudge.toml is read."""
    for name in list(os.environ):
        if name.startswith(SECRET_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else address
    inet = self.family in (socket.AF_INET, socket.AF_INET6)
    if (
        inet
        and isinstance(host, str)
        and not host.startswith("127.")
        and host not in ("localhost", "::1")
    ):
        raise AssertionError(f"test tried to reach {host}: tests never leave this machine")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that would reach a non-loopback address fails."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """The fake Slack Web API on a random local port."""
    with FakeSlack(token=BOT_TOKEN) as fake:
        yield fake


class Clock:
    """An injected clock that tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 12, 3, 14, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    """A fixed, movable clock."""
    return Clock()


def _postgres_schema_url() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL: set NUDGE_TEST_POSTGRES_URL to run (CI sets it)")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(params=["sqlite", "duckdb", "postgresql", "snowflake"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty warehouse database on each backend (PostgreSQL: a throw-away schema; Snowflake:
    fakesnow, in-process, for the test's duration)."""
    if request.param == "sqlite":
        path = tmp_path / "warehouse.db"
        create_engine(f"sqlite:///{path}").connect().close()
        yield f"sqlite:///{path}"
    elif request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    elif request.param == "snowflake":
        with fake_snowflake() as url:
            yield url
    else:
        yield from _postgres_schema_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty state database: SQLite always, PostgreSQL when configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        yield from _postgres_schema_url()


Factory = Callable[..., Any]


@pytest.fixture
def deployment(tmp_path: Path, slack: FakeSlack) -> dict[str, Any]:
    """A nudge.toml beside a SQLite warehouse and a territory file; the env points at Slack."""
    create_usage_table(
        f"sqlite:///{tmp_path / 'usage.db'}",
        [
            account(1, 40, 50, owner=1, name="Smith & Sons <EMEA>"),
            account(2, 45, 50, owner=1),
            account(3, 10, 50, owner=2),
            account(4, 5, 0, owner=2),
            account(5, 41, 50, owner=2),
        ],
    )
    (tmp_path / "territory.csv").write_text(
        f"crm_user_id,email,slack_user_id\n{sf_id('005', 1)[:15]}, Dana.Owner@Example.com ,\n"
        f"{sf_id('005', 2)},,U0PRIYA\n"
    )
    slack.add_user("U0DANA", "dana.owner@example.com", first_name="Dana")
    slack.add_user("U0PRIYA", "priya@example.com", first_name="Priya")
    (tmp_path / "nudge.toml").write_text(
        '[warehouse]\nurl = "sqlite:///usage.db"\n\n'
        '[columns]\nowner_id = "owner_id"\nfields = ["plan"]\n\n'
        '[territory]\ncsv = "territory.csv"\n'
    )
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": slack.url,
        "NUDGE_CONFIG": str(tmp_path / "nudge.toml"),
    }
    return {"env": env, "dir": tmp_path}
