"""The warehouse: the pushed-down ratio query, streamed rows, and the run's counts (SPEC 2)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    bindparam,
    case,
    cast,
    column,
    func,
    inspect,
    literal_column,
    select,
    table,
)
from sqlalchemy.engine import Inspector
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnClause, ColumnElement

from bot.config import Settings
from bot.crmid import to_18
from bot.errors import ConfigError, WarehouseError
from bot.fragments import TableColumns, compile_fragment
from bot.lookup import LIKE_ESCAPE, MAX_RESULTS, Query
from bot.warehouse import deadline, describe, retry_once
from bot.warehouse import warehouse_engine as warehouse_engine

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
        self._table_name = settings.warehouse.table.rpartition(".")[2]
        # Setting name -> the column as reflected (Snowflake folds unquoted names to upper case).
        self._names: dict[str, str] = {}

    def validate(self) -> None:
        """Check the table, role columns and SQL fragments; ConfigError lists every problem."""
        columns = self._reflect()
        problems: list[str] = []
        self._names = {}
        for role, name in self._role_columns():
            actual = columns.find(name)
            if actual is None:
                reason = f"{columns.problem(name)} (the table has: {columns.listing()})"
                problems.append(f"[columns] {role} = {name!r}: {reason}")
            else:
                self._names[name] = actual
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
                about_columns = "unknown column" in str(exc) or "several columns" in str(exc)
                hint = f" (the table has: {columns.listing()})" if about_columns else ""
                problems.append(f"{exc}{hint}")
        if problems:
            raise ConfigError(problems)
        self._numerator = literal_column(f"({compiled['numerator']})")
        self._denominator = literal_column(f"({compiled['denominator']})")
        self._segment = (
            literal_column(f"({compiled['segment']})") if "segment" in compiled else None
        )

    def _reflect(self) -> TableColumns:
        """The table's columns; a table named in another case than its quoted name is found."""
        schema, _, name = self.settings.warehouse.table.rpartition(".")
        try:
            inspector = inspect(self.engine)  # connects: an unreachable warehouse fails here
            found = _columns_of(inspector, name, schema or None)
            if not found:
                names = inspector.get_table_names(schema or None)
                names += inspector.get_view_names(schema or None)
                actual = TableColumns(names).find(name)
                if actual is not None and actual != name:
                    found = _columns_of(inspector, actual, schema or None)
                    self._table_name = actual
        except SQLAlchemyError as exc:
            raise WarehouseError(f"cannot read the warehouse: {describe(exc)}") from exc
        if not found:
            raise ConfigError([f"warehouse: table {self.settings.warehouse.table!r} not found"])
        quote = self.engine.dialect.identifier_preparer.quote
        return TableColumns([column_["name"] for column_ in found], quote)

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
        schema = self.settings.warehouse.table.rpartition(".")[0]
        return table(self._table_name, schema=schema or None)

    def _col(self, name: str) -> ColumnClause[Any]:
        """The column a setting names, as the table spells it (quoted by the dialect's rules)."""
        return column(self._names.get(name, name))

    def _insufficient(self) -> ColumnElement[bool]:
        num, den = self._numerator, self._denominator
        assert num is not None
        missing_id = self._col(self.cols.account_id).is_(None)
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
            self._col(self.cols.account_id).label("account_id"),
            self._col(self.cols.account_name).label("account_name"),
            self._col(self.cols.domain).label("domain"),
            self._numerator.label("nudge_numerator"),
            self._denominator.label("nudge_denominator"),
        ]
        if self.cols.owner_id:
            cols.append(self._col(self.cols.owner_id).label("owner_id"))
        cols += [self._col(name).label(f"f_{i}") for i, name in enumerate(self.cols.fields)]
        return select(*cols).select_from(self._table())

    def _row(self, row: Any) -> UsageRow:
        # Keys ignoring case: a warehouse may report labels upper-cased (Snowflake).
        mapping = {str(key).lower(): value for key, value in row._mapping.items()}
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
            self._select()
            .where(self._where(self._above()))
            .order_by(self._col(self.cols.account_id))
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
                self._col(self.cols.account_id).in_(bindparam("ids", expanding=True))
            )
            yield from self._stream(query, {"ids": keys})

    def find(self, query: Query, limit: int = MAX_RESULTS) -> list[UsageRow]:
        """The accounts a `/usage-summary` query names (at most `limit`), bound, never SQL.

        A domain matches exactly (case and surrounding spaces ignored, a stored `www.` too);
        a name is a case-insensitive substring, `%`, `_` and `\\` taken literally. The segment
        does not apply: an AE may ask about any account.
        """
        name: ColumnElement[str] = self._col(self.cols.account_name)
        condition: ColumnElement[bool]
        if query.kind == "domain":
            domain = func.lower(func.trim(self._col(self.cols.domain)))
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
            .order_by(func.lower(name), self._col(self.cols.account_id))
            .limit(limit)
        )
        # /usage-summary answers within 10 s (SPEC 1.2): a shorter bound than a poll's.
        return list(self._stream(select_, params, min(self.timeout_s, INTERACTIVE_TIMEOUT_S)))

    def _run_one(self, query: Any, params: dict[str, Any]) -> Any:
        for attempt in (1, 2):
            try:
                with self.engine.connect() as conn, deadline(conn, self.timeout_s):
                    return conn.execute(query, params).one()
            except SQLAlchemyError as exc:
                if not retry_once(exc, attempt):
                    raise WarehouseError(describe(exc)) from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _stream(
        self, query: Any, params: dict[str, Any], timeout_s: float | None = None
    ) -> Iterator[UsageRow]:
        for attempt in (1, 2):
            started = False
            try:
                with self.engine.connect() as conn, deadline(conn, timeout_s or self.timeout_s):
                    result = conn.execution_options(
                        stream_results=True, yield_per=STREAM_BATCH
                    ).execute(query, params)
                    for row in result:
                        started = True
                        yield self._row(row)
                return
            except SQLAlchemyError as exc:
                # Once rows went out, running again would repeat them: only a clean start retries.
                if started or not retry_once(exc, attempt):
                    raise WarehouseError(describe(exc)) from exc


def _columns_of(inspector: Inspector, name: str, schema: str | None) -> list[Any]:
    try:
        return list(inspector.get_columns(name, schema=schema))
    except NoSuchTableError:
        return []
