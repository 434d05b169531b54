"""The warehouse: the pushed-down ratio query, streamed rows, and the run's counts (SPEC 2)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    bindparam,
    case,
    cast,
    column,
    create_engine,
    event,
    func,
    inspect,
    literal_column,
    select,
    table,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from bot.config import Settings
from bot.crmid import to_18
from bot.errors import ConfigError, WarehouseError
from bot.fragments import compile_fragment
from bot.lookup import LIKE_ESCAPE, MAX_RESULTS, Query
from bot.store import postgres_session

CHUNK = 500
INTERACTIVE_TIMEOUT_S = 7.0
STREAM_BATCH = 2_000


@dataclass(frozen=True)
class UsageRow:
    """One account's current usage, as read from the warehouse."""

    account_id: str
    account_name: str
    domain: str
    owner_id: str | None
    numerator: Decimal | None
    denominator: Decimal | None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def usage_pct(self) -> Decimal | None:
        """The ratio in percent, or None when the data cannot give one (insufficient data)."""
        if self.numerator is None or self.denominator is None:
            return None
        if self.denominator <= 0 or self.numerator < 0:
            return None
        return self.numerator * 100 / self.denominator


@dataclass(frozen=True)
class Counts:
    """One aggregate query's answer for a run."""

    evaluated: int
    above: int
    insufficient: int


def threshold_hundredths(threshold: Decimal) -> int:
    """75 -> 7500, 62.5 -> 6250: the integer bound into the exact comparison."""
    return int((threshold * 100).to_integral_value())


def _decimal(value: Any) -> Decimal | None:
    """A finite Decimal, or None for NULL, NaN, infinities and text (insufficient data)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal | float):
        number = _decimal(value)
        return number if number is not None else str(value)
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, datetime | date | int) or value is None:
        return value
    return str(value)


def warehouse_engine(url: str, timeout_s: float) -> Engine:
    """An engine for the configured warehouse; a missing driver or bad URL is a ConfigError."""
    try:
        parsed = make_url(url)
        database = str(parsed.database or "")
        local = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
        if local and not Path(database).is_file():
            where = Path(database).resolve()
            raise ConfigError([f"warehouse: SQLite file {where} does not exist"])
        postgres = parsed.get_backend_name() == "postgresql"
        args: dict[str, Any] = {"connect_timeout": 10} if postgres else {}
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=3600, connect_args=args)
        if postgres:
            event.listen(engine, "connect", postgres_session(timeout_s, read_only=True))
        return engine
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise ConfigError([f"warehouse: cannot use {parsed_name(url)}: {exc}"]) from exc


def parsed_name(url: str) -> str:
    """The URL's scheme only (never its credentials), for messages."""
    return url.split("://", 1)[0] + "://…"


@contextlib.contextmanager
def deadline(conn: Connection, seconds: float) -> Iterator[None]:
    """Interrupt a SQLite or DuckDB query running past `seconds` (PostgreSQL: statement_timeout)."""
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
        yield
        return
    if name == "duckdb" and raw is not None:
        timer = threading.Timer(seconds, raw.interrupt)
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
        return
    yield


class Warehouse:
    """Builds and runs the usage query for one configured table."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.cols = settings.columns
        self.timeout_s = settings.warehouse.timeout.total_seconds()
        self._numerator: ColumnElement[Any] | None = None
        self._denominator: ColumnElement[Any] = literal_column("1")
        self._segment: ColumnElement[Any] | None = None

    def validate(self) -> None:
        """Check the table, role columns and SQL fragments; ConfigError lists every problem."""
        schema, _, name = self.settings.warehouse.table.rpartition(".")
        try:
            found = inspect(self.engine).get_columns(name, schema=schema or None)
        except NoSuchTableError:
            found = []
        except SQLAlchemyError as exc:
            raise WarehouseError(f"cannot read the warehouse: {type(exc).__name__}") from exc
        columns = {str(c["name"]).lower() for c in found}
        if not columns:
            raise ConfigError([f"warehouse: table {self.settings.warehouse.table!r} not found"])
        known = ", ".join(sorted(columns)[:30])
        problems = [
            f"[columns] {role} = {name!r}: no such column (the table has: {known})"
            for role, name in self._role_columns()
            if name.lower() not in columns
        ]
        compiled: dict[str, str] = {}
        fragments = {
            "numerator": self.cols.numerator,
            "denominator": self.cols.denominator,
            "segment": self.settings.rule.segment,
        }
        for role, text in fragments.items():
            if not text:
                continue
            try:
                compiled[role] = compile_fragment(
                    role, text, columns, self.engine.dialect.name, numeric=role != "segment"
                )
            except ValueError as exc:
                hint = f" (the table has: {known})" if "unknown column" in str(exc) else ""
                problems.append(f"{exc}{hint}")
        if problems:
            raise ConfigError(problems)
        self._numerator = literal_column(f"({compiled['numerator']})")
        self._denominator = literal_column(f"({compiled['denominator']})")
        self._segment = (
            literal_column(f"({compiled['segment']})") if "segment" in compiled else None
        )

    def _role_columns(self) -> list[tuple[str, str]]:
        roles = [
            ("account_id", self.cols.account_id),
            ("account_name", self.cols.account_name),
            ("domain", self.cols.domain),
            ("owner_id", self.cols.owner_id),
            ("updated_at", self.cols.updated_at),
        ]
        roles += [("fields", name) for name in self.cols.fields]
        return [(role, name) for role, name in roles if name]

    def _table(self) -> Any:
        schema, _, name = self.settings.warehouse.table.rpartition(".")
        return table(name, schema=schema or None)

    def _insufficient(self) -> ColumnElement[bool]:
        num, den = self._numerator, self._denominator
        assert num is not None
        missing_id = column(self.cols.account_id).is_(None)
        return missing_id | num.is_(None) | den.is_(None) | (den <= 0) | (num < 0)

    def _above(self) -> ColumnElement[bool]:
        # Exact for integers and decimals: no division, the threshold bound as an integer.
        assert self._numerator is not None
        # 64-bit arithmetic: an INTEGER column times 10 000 overflows int4 on PostgreSQL/DuckDB.
        t = cast(bindparam("t", type_=BigInteger), BigInteger)
        scale = cast(literal_column("10000"), BigInteger)
        return ~self._insufficient() & (self._numerator * scale >= t * self._denominator)

    def _where(self, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        return condition if self._segment is None else (self._segment & condition)

    def _select(self) -> Any:
        assert self._numerator is not None
        cols = [
            column(self.cols.account_id).label("account_id"),
            column(self.cols.account_name).label("account_name"),
            column(self.cols.domain).label("domain"),
            self._numerator.label("nudge_numerator"),
            self._denominator.label("nudge_denominator"),
        ]
        if self.cols.owner_id:
            cols.append(column(self.cols.owner_id).label("owner_id"))
        cols += [column(name).label(f"f_{i}") for i, name in enumerate(self.cols.fields)]
        return select(*cols).select_from(self._table())

    def _row(self, row: Any) -> UsageRow:
        mapping = row._mapping
        fields = {name: _plain(mapping[f"f_{i}"]) for i, name in enumerate(self.cols.fields)}
        owner = mapping.get("owner_id")
        return UsageRow(
            account_id=to_18(str(mapping["account_id"])),
            account_name=_plain(str(mapping["account_name"] or mapping["account_id"])),
            domain=_plain(str(mapping["domain"] or "")).strip().lower(),
            owner_id=to_18(str(owner)) if owner else None,
            numerator=_decimal(mapping["nudge_numerator"]),
            denominator=_decimal(mapping["nudge_denominator"]),
            fields=fields,
        )

    def counts(self, threshold: Decimal) -> Counts:
        """Rows evaluated, above the threshold, and with insufficient data: one aggregate query."""
        query = select(
            func.count().label("evaluated"),
            func.sum(case((self._above(), 1), else_=0)).label("above"),
            func.sum(case((self._insufficient(), 1), else_=0)).label("insufficient"),
        ).select_from(self._table())
        if self._segment is not None:
            query = query.where(self._segment)
        row = self._run_one(query, {"t": threshold_hundredths(threshold)})
        return Counts(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))

    def above(self, threshold: Decimal) -> Iterator[UsageRow]:
        """Stream the accounts at or above the threshold (the filter runs in the warehouse)."""
        query = (
            self._select().where(self._where(self._above())).order_by(column(self.cols.account_id))
        )
        yield from self._stream(query, {"t": threshold_hundredths(threshold)})

    def rows_by_id(self, account_ids: Iterable[str]) -> Iterator[UsageRow]:
        """Current rows of the given accounts (open alerts), fetched in chunks."""
        ids = sorted(set(account_ids))
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            # 15-character ids in the warehouse still match their 18-character form.
            keys = sorted(set(chunk) | {i[:15] for i in chunk if len(i) == 18})
            query = self._select().where(
                column(self.cols.account_id).in_(bindparam("ids", expanding=True))
            )
            yield from self._stream(query, {"ids": keys})

    def find(self, query: Query, limit: int = MAX_RESULTS) -> list[UsageRow]:
        """The accounts a `/usage-summary` query names (at most `limit`), bound, never SQL.

        A domain matches exactly (case and surrounding spaces ignored, a stored `www.` too);
        a name is a case-insensitive substring, `%`, `_` and `\\` taken literally. The segment
        does not apply: an AE may ask about any account.
        """
        name: ColumnElement[str] = column(self.cols.account_name)
        condition: ColumnElement[bool]
        if query.kind == "domain":
            domain = func.lower(func.trim(column(self.cols.domain)))
            condition = domain.in_(bindparam("domains", expanding=True))
            params: dict[str, Any] = {"domains": [query.value, f"www.{query.value}"]}
        else:
            # lower() is ASCII-only on SQLite: the pattern as typed finds other scripts too.
            lowered = func.lower(name).like(bindparam("pattern"), escape=LIKE_ESCAPE)
            condition = lowered | name.like(bindparam("typed"), escape=LIKE_ESCAPE)
            params = {"pattern": query.pattern, "typed": query.typed_pattern}
        select_ = (
            self._select()
            .where(condition)
            .order_by(func.lower(name), column(self.cols.account_id))
            .limit(limit)
        )
        # /usage-summary answers within 10 s (SPEC 1.2): a shorter bound than a poll's.
        return list(self._stream(select_, params, min(self.timeout_s, INTERACTIVE_TIMEOUT_S)))

    def _run_one(self, query: Any, params: dict[str, Any]) -> Any:
        try:
            with self.engine.connect() as conn, deadline(conn, self.timeout_s):
                return conn.execute(query, params).one()
        except SQLAlchemyError as exc:
            raise WarehouseError(_describe(exc)) from exc

    def _stream(
        self, query: Any, params: dict[str, Any], timeout_s: float | None = None
    ) -> Iterator[UsageRow]:
        try:
            with self.engine.connect() as conn, deadline(conn, timeout_s or self.timeout_s):
                result = conn.execution_options(
                    stream_results=True, yield_per=STREAM_BATCH
                ).execute(query, params)
                for row in result:
                    yield self._row(row)
        except SQLAlchemyError as exc:
            raise WarehouseError(_describe(exc)) from exc


def _describe(exc: SQLAlchemyError) -> str:
    """A short reason without SQL text or parameters."""
    original = getattr(exc, "orig", None)
    reason = str(original or exc).splitlines()[0][:200]
    return f"warehouse query failed: {type(original or exc).__name__}: {reason}"
