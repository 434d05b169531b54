"""Build usage tables on a real warehouse (SQLite, DuckDB, PostgreSQL, Snowflake) for tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    insert,
)
from sqlalchemy.types import TypeEngine

COLUMNS = (
    "account_id",
    "account_name",
    "domain",
    "owner_id",
    "tracked_hours",
    "total_free_hours",
    "plan",
)

NUMERIC = ("tracked_hours", "total_free_hours")

SNOWFLAKE_URL = "snowflake://nudge:pass@acme-test/usage_db/analytics?warehouse=nudge_wh&role=nudge"
# fakesnow implements no ALTER SESSION but AUTOCOMMIT and QUOTED_IDENTIFIERS_IGNORE_CASE: the
# statement timeout Nudge sets is accepted as a no-op (recorded, never enforced).
SNOWFLAKE_NOPS = [r"ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = \d+$"]


@contextlib.contextmanager
def fake_snowflake() -> Iterator[str]:
    """Snowflake in-process (fakesnow over an in-memory DuckDB) for the block; yields its URL.

    Every connection made inside the block, by any engine, reaches the same database.
    """
    import fakesnow

    with fakesnow.patch(nop_regexes=SNOWFLAKE_NOPS):
        yield SNOWFLAKE_URL


def sf_id(prefix: str, n: int) -> str:
    """A valid-looking 18-character Salesforce id (checksum added by normalisation)."""
    from bot.crmid import to_18

    return to_18(f"{prefix}{n:012d}")


def create_usage_table(
    url: str,
    rows: Iterable[Sequence[Any]],
    *,
    number_type: TypeEngine[Any] | type[TypeEngine[Any]] = Integer,
    table: str = "account_usage",
    columns: Sequence[str] = COLUMNS,
) -> None:
    """(Re)create `table` with `columns` and insert `rows` (tuples in column order).

    `columns` may rename the standard ones (same order): a name with capitals is created quoted,
    so it keeps its case where the warehouse cares (PostgreSQL, Snowflake).
    """
    renamed = {new for old, new in zip(COLUMNS, columns, strict=False) if old in NUMERIC}
    numeric = renamed | set(NUMERIC)
    meta = MetaData()
    tbl = Table(
        table,
        meta,
        *(Column(name, number_type if name in numeric else String(200)) for name in columns),
    )
    engine = create_engine(url)
    try:
        meta.drop_all(engine)
        meta.create_all(engine)
        batch = [dict(zip(columns, row, strict=True)) for row in rows]
        with engine.begin() as conn:
            if batch:
                conn.execute(insert(tbl), batch)
    finally:
        engine.dispose()


def account(
    n: int, used: Any, quota: Any, *, owner: int = 1, plan: str = "starter", name: str | None = None
) -> tuple[Any, ...]:
    """One row of the standard test table."""
    return (
        sf_id("001", n),
        name or f"Account {n}",
        f"account{n}.example",
        sf_id("005", owner),
        used,
        quota,
        plan,
    )


DECIMAL = Numeric(12, 3)
