"""The state database's tables (SQLAlchemy Core); migrations in bot/migrations create them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state database")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class DecimalText(TypeDecorator[Decimal]):
    """Exact decimals stored as text, identical on SQLite and PostgreSQL."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


metadata = MetaData()

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("is_open", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("account_name", Text, nullable=False),
    Column("owner_crm_id", String(64)),
    Column("owner_slack_id", String(32)),
    Column("usage_pct", DecimalText),
    Column("threshold", DecimalText, nullable=False),
    Column("card", JSON, nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("snoozed_until", UTCDateTime),
    Column("acted_by", String(32)),
    Index(
        "uq_alerts_open_account",
        "account_id",
        unique=True,
        sqlite_where=text("is_open"),
        postgresql_where=text("is_open"),
    ),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("message_key", String(32), nullable=False, index=True),
    Column("alert_id", String(32), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("recipient", String(32)),
    Column("channel", String(32)),
    Column("ts", String(32)),
    Column("status", String(16), nullable=False, index=True),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
)

poll_runs = Table(
    "poll_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("status", String(16), nullable=False),
    Column("threshold", DecimalText, nullable=False),
    Column("evaluated", Integer, nullable=False, default=0),
    Column("above", Integer, nullable=False, default=0),
    Column("insufficient", Integer, nullable=False, default=0),
    Column("sent", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("error", Text),
)

threshold_changes = Table(
    "threshold_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("old", DecimalText),
    Column("new", DecimalText, nullable=False),
    Column("user_id", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("user_id", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("alert_id", String(32)),
    Column("detail", JSON),
)

slack_users = Table(
    "slack_users",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("user_id", String(32)),
    Column("first_name", Text),
    Column("real_name", Text),
    Column("tz", String(64)),
    Column("error", String(64)),
    Column("fetched_at", UTCDateTime, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

seen_events = Table(
    "seen_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("at", UTCDateTime, nullable=False),
)
