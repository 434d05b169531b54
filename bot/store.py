"""The state database: engine, migrations under a lock, and the repository over it."""

from __future__ import annotations

import contextlib
import fcntl
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Engine,
    case,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from bot.schema import (
    alerts,
    audit,
    deliveries,
    leases,
    poll_runs,
    seen_events,
    slack_users,
    threshold_changes,
)

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 7_311_2024


INSTALLATION_EVENTS = ("app_uninstalled", "tokens_revoked", "installed")


def new_id() -> str:
    """An opaque id for alerts, deliveries and messages."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class AlertRecord:
    """One open (or closed) alert episode as stored."""

    id: str
    account_id: str
    state: str
    version: int
    account_name: str
    owner_crm_id: str | None
    owner_slack_id: str | None
    usage_pct: Decimal | None
    threshold: Decimal
    card: dict[str, Any]
    opened_at: datetime
    snoozed_until: datetime | None
    acted_by: str | None
    is_open: bool = True


@dataclass(frozen=True)
class DeliveryRecord:
    """One delivery row: an alert's share of one Slack message."""

    id: str
    message_key: str
    alert_id: str
    kind: str
    recipient: str | None
    channel: str | None
    ts: str | None
    status: str
    error: str | None
    created_at: datetime


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for the state database, with sane timeouts on each backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    if parsed.get_backend_name() == "postgresql":
        event.listen(engine, "connect", postgres_session(30))
    return engine


def postgres_session(timeout_s: float, *, read_only: bool = False) -> Any:
    """A connect hook bounding every statement (and, for the warehouse, refusing writes)."""

    def configure(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
            if read_only:
                cursor.execute("SET default_transaction_read_only = on")
        dbapi_connection.commit()

    return configure


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """SQLite replicas starting together migrate one at a time (held until the commit)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the latest revision, one process at a time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _file_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _alert(row: Any) -> AlertRecord:
    return AlertRecord(**{name: getattr(row, name) for name in AlertRecord.__dataclass_fields__})


def _delivery(row: Any) -> DeliveryRecord:
    fields = DeliveryRecord.__dataclass_fields__
    return DeliveryRecord(**{name: getattr(row, name) for name in fields})


class Store:
    """Repository over the state database; every method is one short transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and migrate (SPEC 7: the schema is created on first use by any command)."""
        engine = make_engine(url)
        migrate(engine)
        return cls(engine)

    # -- alerts ---------------------------------------------------------------------------

    def open_alerts(self) -> dict[str, AlertRecord]:
        """Open alerts by account id."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(alerts).where(alerts.c.is_open))
            return {row.account_id: _alert(row) for row in rows}

    def alert(self, alert_id: str) -> AlertRecord | None:
        """One alert by id (open or closed)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
            return _alert(row) if row else None

    def alerts_by_id(self, alert_ids: Iterable[str]) -> dict[str, AlertRecord]:
        """Several alerts by id (open or closed); unknown ids are left out."""
        ids = list(alert_ids)
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(alerts).where(alerts.c.id.in_(ids)))
            return {row.id: _alert(row) for row in rows}

    def create_alert(self, record: AlertRecord, now: datetime) -> bool:
        """Insert a new open alert; False when the account already has one (another replica)."""
        values = {name: getattr(record, name) for name in AlertRecord.__dataclass_fields__}
        values.update(is_open=True, updated_at=now)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(alerts).values(**values))
        except IntegrityError:
            return False
        return True

    def update_alert(self, alert_id: str, version: int, now: datetime, **changes: Any) -> bool:
        """Compare-and-set on the alert's version: False when someone else changed it first."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(alerts)
                .where(alerts.c.id == alert_id, alerts.c.version == version)
                .values(version=version + 1, updated_at=now, **changes)
            )
            return result.rowcount == 1

    def update_alert_audited(
        self,
        alert_id: str,
        version: int,
        now: datetime,
        audit_entry: tuple[str, str, dict[str, Any] | None],
        **changes: Any,
    ) -> bool:
        """update_alert and its audit row (user id, action, detail) in one transaction, so the
        audit log has every change that happened, once, in the order they happened."""
        user_id, action, detail = audit_entry
        with self.engine.begin() as conn:
            result = conn.execute(
                update(alerts)
                .where(alerts.c.id == alert_id, alerts.c.version == version)
                .values(version=version + 1, updated_at=now, **changes)
            )
            if result.rowcount != 1:
                return False
            values = {"at": now, "user_id": user_id, "action": action, "alert_id": alert_id}
            conn.execute(insert(audit).values(detail=detail, **values))
            return True

    def close_alerts(self, alert_ids: Iterable[str], now: datetime) -> int:
        """Close episodes (re-armed): the next crossing is a new alert."""
        ids = list(alert_ids)
        if not ids:
            return 0
        with self.engine.begin() as conn:
            result = conn.execute(
                update(alerts)
                .where(alerts.c.id.in_(ids), alerts.c.is_open)
                .values(is_open=False, closed_at=now, updated_at=now, version=alerts.c.version + 1)
            )
            return result.rowcount

    def open_alerts_for_owner(self, slack_user_id: str) -> list[AlertRecord]:
        """An AE's open alerts, highest usage first (App Home)."""
        query = select(alerts).where(alerts.c.is_open, alerts.c.owner_slack_id == slack_user_id)
        with self.engine.connect() as conn:
            records = [_alert(row) for row in conn.execute(query)]
        return sorted(records, key=lambda r: r.usage_pct or 0, reverse=True)

    def has_history(self) -> bool:
        """True once any alert or successful poll was recorded (so this is not the first poll)."""
        with self.engine.connect() as conn:
            if conn.execute(select(alerts.c.id).limit(1)).first():
                return True
            ok = select(poll_runs.c.id).where(poll_runs.c.status == "ok").limit(1)
            return conn.execute(ok).first() is not None

    # -- deliveries (the ledger: recorded before the send, confirmed after) ----------------

    def record_pending(
        self,
        message_key: str,
        alert_ids: Sequence[str],
        kind: str,
        recipient: str | None,
        now: datetime,
    ) -> None:
        """Write the intent to send before sending."""
        rows = [
            {
                "id": new_id(),
                "message_key": message_key,
                "alert_id": alert_id,
                "kind": kind,
                "recipient": recipient,
                "status": "pending",
                "created_at": now,
            }
            for alert_id in alert_ids
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(deliveries), rows)

    def finish_delivery(
        self,
        message_key: str,
        status: str,
        now: datetime,
        *,
        channel: str | None = None,
        ts: str | None = None,
        error: str | None = None,
    ) -> None:
        """Confirm (sent, with channel and ts) or fail (failed / unknown / undeliverable) a send."""
        values: dict[str, Any] = {"status": status, "error": error}
        if channel:
            values["channel"] = channel
        if ts:
            values.update(ts=ts, sent_at=now)
        with self.engine.begin() as conn:
            conn.execute(
                update(deliveries).where(deliveries.c.message_key == message_key).values(**values)
            )

    def unconfirmed_deliveries(self) -> list[DeliveryRecord]:
        """Sends whose outcome is unknown (a crash or dropped connection mid-send)."""
        query = select(deliveries).where(deliveries.c.status.in_(("pending", "unknown")))
        with self.engine.connect() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def delivery_summary(self, alert_ids: Iterable[str]) -> dict[str, tuple[bool, int]]:
        """Per alert: (sent or in doubt, attempts so far). In doubt is never re-sent blindly."""
        ids = list(alert_ids)
        if not ids:
            return {}
        settled = deliveries.c.status.in_(("sent", "pending", "unknown"))
        sent = func.sum(case((settled, 1), else_=0))
        tries = func.count(deliveries.c.id)
        query = (
            select(deliveries.c.alert_id, sent, tries)
            .where(deliveries.c.alert_id.in_(ids), deliveries.c.kind != "reminder")
            .group_by(deliveries.c.alert_id)
        )
        with self.engine.connect() as conn:
            return {row[0]: (bool(row[1]), int(row[2])) for row in conn.execute(query)}

    def latest_deliveries(self, alert_ids: Iterable[str]) -> dict[str, DeliveryRecord]:
        """The newest delivery of each alert (where its card lives, or why it failed)."""
        ids = list(alert_ids)
        out: dict[str, DeliveryRecord] = {}
        if not ids:
            return out
        query = select(deliveries).where(deliveries.c.alert_id.in_(ids))
        with self.engine.connect() as conn:
            for row in conn.execute(query.order_by(deliveries.c.created_at)):
                out[row.alert_id] = _delivery(row)
        return out

    def deliveries_of_alert(self, alert_id: str) -> list[DeliveryRecord]:
        """Every delivery of one alert, oldest first (where its cards went, and how it went)."""
        query = select(deliveries).where(deliveries.c.alert_id == alert_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(deliveries.c.created_at))
            return [_delivery(row) for row in rows]

    def deliveries_for_message(self, channel: str, ts: str) -> list[DeliveryRecord]:
        """The deliveries behind one Slack message (one alert, or every entry of a digest)."""
        query = select(deliveries).where(deliveries.c.channel == channel, deliveries.c.ts == ts)
        with self.engine.connect() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def threshold_history(self, limit: int = 5, rule: str = "default") -> list[dict[str, Any]]:
        """The newest threshold changes first: who, old, new, when."""
        query = (
            select(threshold_changes)
            .where(threshold_changes.c.rule == rule)
            .order_by(threshold_changes.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def deliveries_by_status(
        self, statuses: Sequence[str], limit: int = 50
    ) -> list[DeliveryRecord]:
        """Recent deliveries in the given statuses (for `nudge status`)."""
        query = (
            select(deliveries)
            .where(deliveries.c.status.in_(statuses))
            .order_by(deliveries.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    # -- poll runs --------------------------------------------------------------------------

    def start_run(self, threshold: Decimal, now: datetime) -> int:
        """Record a poll run as started."""
        values = {
            "started_at": now,
            "status": "running",
            "threshold": threshold,
            "evaluated": 0,
            "above": 0,
            "insufficient": 0,
            "sent": 0,
            "failed": 0,
        }
        with self.engine.begin() as conn:
            key = conn.execute(insert(poll_runs).values(**values)).inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish_run(self, run_id: int, now: datetime, **values: Any) -> None:
        """Record a poll run's outcome and counts."""
        with self.engine.begin() as conn:
            conn.execute(
                update(poll_runs).where(poll_runs.c.id == run_id).values(finished_at=now, **values)
            )

    def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest poll runs first."""
        query = select(poll_runs).order_by(poll_runs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def last_ok_threshold(self) -> Decimal | None:
        """The threshold of the newest successful run (to tell that it was lowered)."""
        query = (
            select(poll_runs.c.threshold)
            .where(poll_runs.c.status == "ok")
            .order_by(poll_runs.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
            return Decimal(value) if value is not None else None

    # -- threshold and audit ----------------------------------------------------------------

    def stored_threshold(self, rule: str = "default") -> Decimal | None:
        """The value last set with `/usage-threshold set`, if any."""
        query = (
            select(threshold_changes.c.new)
            .where(threshold_changes.c.rule == rule)
            .order_by(threshold_changes.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
            return Decimal(value) if value is not None else None

    def set_threshold(
        self, new: Decimal, old: Decimal | None, user_id: str, now: datetime, rule: str = "default"
    ) -> None:
        """Store a new threshold; the row is its audit entry (who, old, new, when)."""
        values = {"rule": rule, "old": old, "new": new, "user_id": user_id, "at": now}
        with self.engine.begin() as conn:
            conn.execute(insert(threshold_changes).values(**values))

    def add_audit(
        self,
        user_id: str,
        action: str,
        now: datetime,
        alert_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append to the audit log."""
        values = {
            "at": now,
            "user_id": user_id,
            "action": action,
            "alert_id": alert_id,
            "detail": detail,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(audit).values(**values))

    # -- Slack user cache ---------------------------------------------------------------------

    def cached_user(self, email: str, now: datetime, ttl: timedelta) -> dict[str, Any] | None:
        """A cached `users.lookupByEmail` answer younger than `ttl`."""
        query = select(slack_users).where(
            slack_users.c.email == email, slack_users.c.fetched_at > now - ttl
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
            return dict(row._mapping) if row else None

    def cache_user(self, email: str, now: datetime, **values: Any) -> None:
        """Remember a lookup answer (found or not) for the next runs."""
        with self.engine.begin() as conn:
            conn.execute(slack_users.delete().where(slack_users.c.email == email))
            conn.execute(insert(slack_users).values(email=email, fetched_at=now, **values))

    # -- installation -----------------------------------------------------------------------

    def installation_state(self) -> str | None:
        """The newest installation event: "app_uninstalled", "tokens_revoked", "installed"."""
        query = (
            select(audit.c.action)
            .where(audit.c.action.in_(INSTALLATION_EVENTS))
            .order_by(audit.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
            return str(value) if value else None

    # -- Events API de-duplication ---------------------------------------------------------

    def first_delivery_of_event(self, event_id: str, now: datetime) -> bool:
        """True the first time an event id is seen (Slack retries Events API deliveries)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(seen_events).values(event_id=event_id, at=now))
        except IntegrityError:
            return False
        return True

    def ping(self) -> None:
        """Raise unless the state database answers."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    # -- the poll lease -----------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take (or renew) a lease unless another holder's is still valid."""
        expires = now + ttl
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(leases)
                .where(leases.c.name == name)
                .where((leases.c.expires_at <= now) | (leases.c.holder == holder))
                .values(holder=holder, expires_at=expires)
            )
            if taken.rowcount == 1:
                return True
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(leases).values(name=name, holder=holder, expires_at=expires))
        except IntegrityError:
            return False
        return True

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease back early (the run finished)."""
        with self.engine.begin() as conn:
            conn.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))
