"""The warehouse usage model (SPEC 2): pushed-down, exact, streamed, validated; F12 and F13."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError

import bot.usage
from bot.config import Settings
from bot.errors import ConfigError, WarehouseError
from bot.lookup import Query
from bot.usage import Counts, UsageRow, Warehouse, threshold_hundredths
from bot.warehouse import deadline, warehouse_engine
from tests.warehouses import COLUMNS, DECIMAL, account, create_usage_table, sf_id

T75 = Decimal(75)


def make_warehouse(url: str, **overrides: Any) -> Warehouse:
    """A validated Warehouse over `account_usage` at `url` (overrides: Settings sections)."""
    sections: dict[str, Any] = {
        "warehouse": {"url": url},
        "columns": {"owner_id": "owner_id", "fields": ["plan"]},
        "rule": {},
    }
    for name, values in overrides.items():
        sections[name] = {**sections.get(name, {}), **values}
    warehouse = Warehouse(warehouse_engine(url, 10), Settings(**sections))
    warehouse.validate()
    return warehouse


def above(warehouse: Warehouse, threshold: Decimal = T75) -> dict[str, Decimal | None]:
    """The accounts at or above `threshold`, as {account_id: usage_pct}."""
    return {row.account_id: row.usage_pct for row in warehouse.above(threshold)}


def config_problems(url: str, **overrides: Any) -> str:
    """Validation must fail: the ConfigError's problems, joined."""
    with pytest.raises(ConfigError) as caught:
        make_warehouse(url, **overrides)
    assert caught.value.problems
    return "\n".join(caught.value.problems)


@pytest.fixture
def statements() -> Iterator[tuple[list[Any], Any]]:
    """Record (statement, parameters) of every query an engine runs (attach with `listen`)."""
    seen: list[Any] = []

    def listen(engine: Engine) -> None:
        def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
            seen.append((statement, params))

        event.listen(engine, "before_cursor_execute", record)

    yield seen, listen


def bound_values(params: Any) -> list[Any]:
    """Every bound value, whatever the driver's paramstyle (dict, tuple, list of either)."""
    if isinstance(params, dict):
        return list(params.values())
    if isinstance(params, list | tuple):
        values: list[Any] = []
        for item in params:
            values += bound_values(item) if isinstance(item, dict | list | tuple) else [item]
        return values
    return [params]


# --- F13: the four-row table, identical on every backend -------------------------------------


def test_f13_alerts_exactly_the_75_and_102_5_percent_accounts(warehouse_url: str) -> None:
    create_usage_table(
        warehouse_url,
        [account(1, 30, 40), account(2, 5, 0), account(3, None, 40), account(4, 41, 40)],
    )
    warehouse = make_warehouse(warehouse_url)

    rows = list(warehouse.above(T75))

    assert [row.account_id for row in rows] == [sf_id("001", 1), sf_id("001", 4)]
    assert [row.usage_pct for row in rows] == [Decimal(75), Decimal("102.5")]
    assert all(isinstance(row.usage_pct, Decimal) for row in rows)
    assert warehouse.counts(T75) == Counts(evaluated=4, above=2, insufficient=2)


def test_f13_rows_carry_the_configured_columns(warehouse_url: str) -> None:
    create_usage_table(warehouse_url, [account(1, 30, 40, owner=7, plan="pro", name="Acme")])

    [row] = list(make_warehouse(warehouse_url).above(T75))

    assert row == UsageRow(
        account_id=sf_id("001", 1),
        account_name="Acme",
        domain="account1.example",
        owner_id=sf_id("005", 7),
        numerator=Decimal(30),
        denominator=Decimal(40),
        fields={"plan": "pro"},
    )


def test_negative_null_and_zero_values_count_as_insufficient_data(warehouse_url: str) -> None:
    create_usage_table(
        warehouse_url,
        [
            account(1, -5, 40),  # negative numerator
            account(2, 50, -40),  # negative denominator
            account(3, 50, None),  # NULL denominator
            account(4, None, None),
            account(5, 0, 0),
            account(6, 0, 40),  # 0 % is valid data, just below the threshold
            account(7, 40, 40),
        ],
    )
    warehouse = make_warehouse(warehouse_url)

    assert above(warehouse) == {sf_id("001", 7): Decimal(100)}
    assert warehouse.counts(T75) == Counts(evaluated=7, above=1, insufficient=5)


# --- Exactness (SPEC 2: numerator * 10000 >= T * denominator) --------------------------------


def test_29_of_100_is_in_at_a_29_percent_threshold(warehouse_url: str) -> None:
    # As floats, 0.29 * 100 == 28.999999999999996: a float ratio would miss this account.
    create_usage_table(warehouse_url, [account(1, 29, 100), account(2, 28, 100)])
    warehouse = make_warehouse(warehouse_url)

    assert above(warehouse, Decimal(29)) == {sf_id("001", 1): Decimal(29)}
    assert warehouse.counts(Decimal(29)) == Counts(evaluated=2, above=1, insufficient=0)


def test_integer_columns_never_divide_as_integers(warehouse_url: str) -> None:
    # 3 / 4 is 0 in integer arithmetic on SQLite and PostgreSQL; the account must still alert.
    create_usage_table(warehouse_url, [account(1, 3, 4), account(2, 2, 3), account(3, 1, 4)])
    warehouse = make_warehouse(warehouse_url)

    assert above(warehouse) == {sf_id("001", 1): Decimal(75)}
    # 2 / 3 = 66.666…%: in at 66.66, out at 66.67.
    assert set(above(warehouse, Decimal("66.66"))) == {sf_id("001", 1), sf_id("001", 2)}
    assert set(above(warehouse, Decimal("66.67"))) == {sf_id("001", 1)}


def test_74_995_percent_is_out_and_exactly_75_is_in_with_decimal_columns(
    warehouse_url: str,
) -> None:
    create_usage_table(
        warehouse_url,
        [
            account(1, Decimal("74.995"), Decimal(100)),
            account(2, Decimal("75.000"), Decimal(100)),
            account(3, Decimal("7.5"), Decimal(10)),
            account(4, Decimal("74.999"), Decimal(100)),
        ],
        number_type=DECIMAL,
    )
    warehouse = make_warehouse(warehouse_url)

    assert above(warehouse) == {sf_id("001", 2): Decimal(75), sf_id("001", 3): Decimal(75)}
    assert warehouse.counts(T75) == Counts(evaluated=4, above=2, insufficient=0)


def test_74_995_percent_is_out_with_integer_columns(warehouse_url: str) -> None:
    create_usage_table(warehouse_url, [account(1, 14999, 20000), account(2, 15000, 20000)])

    assert above(make_warehouse(warehouse_url)) == {sf_id("001", 2): Decimal(75)}


def test_threshold_is_integer_hundredths_of_a_percent() -> None:
    assert threshold_hundredths(Decimal(75)) == 7500
    assert threshold_hundredths(Decimal("62.5")) == 6250
    assert threshold_hundredths(Decimal("0.01")) == 1
    assert threshold_hundredths(Decimal("100")) == 10000
    assert isinstance(threshold_hundredths(Decimal("62.5")), int)


def test_fractional_threshold_is_bound_as_an_integer(
    warehouse_url: str, statements: tuple[list[Any], Any]
) -> None:
    create_usage_table(
        warehouse_url, [account(1, 5, 8), account(2, 6249, 10000), account(3, 625, 1000)]
    )
    warehouse = make_warehouse(warehouse_url)
    seen, listen = statements
    listen(warehouse.engine)

    assert above(warehouse, Decimal("62.5")) == {
        sf_id("001", 1): Decimal("62.5"),
        sf_id("001", 3): Decimal("62.5"),
    }
    assert warehouse.counts(Decimal("62.5")) == Counts(evaluated=3, above=2, insufficient=0)

    usage_queries = [(sql, params) for sql, params in seen if "account_usage" in sql]
    assert len(usage_queries) == 2
    for sql, params in usage_queries:
        assert "6250" not in sql and "62.5" not in sql  # bound, not inlined
        bound = bound_values(params)
        assert 6250 in bound
        assert all(type(value) is int for value in bound if value == 6250)


# --- Decimal results, over-quota ----------------------------------------------------------------


def test_decimal_columns_return_decimal_values(warehouse_url: str) -> None:
    create_usage_table(
        warehouse_url,
        [account(1, Decimal("120.5"), Decimal("100.25")), account(2, Decimal("1.5"), 3)],
        number_type=DECIMAL,
    )
    warehouse = make_warehouse(warehouse_url)

    [row] = list(warehouse.above(T75))

    assert row.account_id == sf_id("001", 1)
    assert isinstance(row.numerator, Decimal) and isinstance(row.denominator, Decimal)
    assert row.numerator == Decimal("120.5")
    assert row.denominator == Decimal("100.25")
    assert row.usage_pct == Decimal("120.5") * 100 / Decimal("100.25")


def test_ratio_above_100_percent_alerts(warehouse_url: str) -> None:
    create_usage_table(warehouse_url, [account(1, 250, 100), account(2, 1000, 1)])

    assert above(make_warehouse(warehouse_url), Decimal(100)) == {
        sf_id("001", 1): Decimal(250),
        sf_id("001", 2): Decimal(100000),
    }


# --- Segment ------------------------------------------------------------------------------------


def test_segment_filters_alerts_and_counts(warehouse_url: str) -> None:
    create_usage_table(
        warehouse_url,
        [
            account(1, 80, 100, plan="starter"),
            account(2, 90, 100, plan="enterprise"),
            account(3, 10, 100, plan="starter"),
            account(4, None, 100, plan="starter"),
            account(5, None, 100, plan="enterprise"),
        ],
    )
    warehouse = make_warehouse(warehouse_url, rule={"segment": "plan = 'starter'"})

    assert above(warehouse) == {sf_id("001", 1): Decimal(80)}
    assert warehouse.counts(T75) == Counts(evaluated=3, above=1, insufficient=1)


def test_segment_with_boolean_logic_and_arithmetic(warehouse_url: str) -> None:
    create_usage_table(
        warehouse_url,
        [
            account(1, 80, 100, plan="starter"),
            account(2, 90, 100, plan="pro"),
            account(3, 95, 100, plan="enterprise"),
            account(4, 80, 10, plan="pro"),
        ],
    )
    warehouse = make_warehouse(
        warehouse_url,
        rule={"segment": "plan IN ('starter', 'pro') AND NOT (total_free_hours * 2 < 100)"},
    )

    assert set(above(warehouse)) == {sf_id("001", 1), sf_id("001", 2)}
    assert warehouse.counts(T75) == Counts(evaluated=2, above=2, insufficient=0)


def test_arithmetic_fragments_are_valid(warehouse_url: str) -> None:
    # Numerator in minutes, denominator in hours: both are fragments.
    create_usage_table(warehouse_url, [account(1, 45, 60), account(2, 30, 60)])
    warehouse = make_warehouse(
        warehouse_url,
        columns={"numerator": "tracked_hours * 60", "denominator": "total_free_hours * 60"},
    )

    assert above(warehouse) == {sf_id("001", 1): Decimal(75)}
    [row] = list(warehouse.above(T75))
    assert row.numerator == Decimal(2700) and row.denominator == Decimal(3600)


# --- Fragment and column validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "values", "reason"),
    [
        ("columns", {"numerator": "nope * 2"}, "unknown column 'nope'"),
        ("rule", {"segment": "upper(plan) = 'X'"}, "UPPER is not allowed"),
        ("rule", {"segment": "plan IN (SELECT plan FROM account_usage)"}, "SUBQUERY is not"),
        ("columns", {"denominator": "(SELECT 100)"}, "SUBQUERY is not"),
        ("columns", {"numerator": "tracked_hours; DROP TABLE account_usage"}, "';'"),
        ("columns", {"numerator": "tracked_hours -- minutes"}, "comments are not allowed"),
        ("columns", {"numerator": "tracked_hours /* x */"}, "comments are not allowed"),
        ("columns", {"numerator": "tracked_hours / 60"}, "division is not allowed"),
        ("columns", {"denominator": "total_free_hours % 7"}, "division is not allowed"),
        ("columns", {"numerator": "account_usage.tracked_hours"}, "names a table"),
        ("rule", {"segment": "plan = 'a' OR 1 = 1)"}, "segment: not a SQL expression"),
    ],
    ids=[
        "unknown",
        "function",
        "subquery",
        "scalar",
        "semicolon",
        "dashes",
        "block",
        "division",
        "modulo",
        "qualified",
        "syntax",
    ],
)
def test_unsafe_or_wrong_fragments_are_rejected(
    warehouse_url: str, section: str, values: dict[str, str], reason: str
) -> None:
    create_usage_table(warehouse_url, [account(1, 30, 40)])

    assert reason in config_problems(warehouse_url, **{section: values})


def test_every_problem_is_listed_at_once(warehouse_url: str) -> None:
    create_usage_table(warehouse_url, [account(1, 30, 40)])

    problems = config_problems(
        warehouse_url,
        columns={"domain": "nope", "numerator": "upper(plan)"},
        rule={"segment": "missing = 1"},
    )

    assert "[columns] domain = 'nope': no such column" in problems
    assert "UPPER is not allowed" in problems
    assert "unknown column 'missing'" in problems


def test_a_missing_role_column_is_a_config_error(warehouse_url: str) -> None:
    create_usage_table(warehouse_url, [account(1, 30, 40)])

    assert "domain = 'nope': no such column" in config_problems(
        warehouse_url, columns={"domain": "nope"}
    )
    assert "fields = 'tier': no such column" in config_problems(
        warehouse_url, columns={"fields": ["plan", "tier"]}
    )


def test_column_names_match_case_insensitively(warehouse_url: str) -> None:
    create_usage_table(warehouse_url, [account(1, 30, 40)])
    warehouse = make_warehouse(warehouse_url, columns={"numerator": "TRACKED_HOURS"})

    assert above(warehouse) == {sf_id("001", 1): Decimal(75)}


def test_a_missing_table_is_a_config_error(warehouse_url: str) -> None:
    create_usage_table(warehouse_url, [account(1, 30, 40)])

    assert "table 'nope' not found" in config_problems(warehouse_url, warehouse={"table": "nope"})


# --- rows_by_id ---------------------------------------------------------------------------------


def test_rows_by_id_fetches_in_chunks_and_omits_missing_ids(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch, statements: tuple[list[Any], Any]
) -> None:
    monkeypatch.setattr(bot.usage, "CHUNK", 3)
    create_usage_table(
        warehouse_url,
        [account(n, 12 * n, 100) for n in range(1, 8)] + [account(8, None, 100)],
    )
    warehouse = make_warehouse(warehouse_url)
    seen, listen = statements
    listen(warehouse.engine)
    wanted = [sf_id("001", n) for n in range(1, 9)] + [sf_id("001", 99)]

    rows = {row.account_id: row for row in warehouse.rows_by_id(wanted)}

    assert {key: row.usage_pct for key, row in rows.items()} == {
        **{sf_id("001", n): Decimal(12 * n) for n in range(1, 8)},
        sf_id("001", 8): None,  # insufficient data still comes back: it is the current row
    }
    assert sf_id("001", 99) not in rows
    assert len([sql for sql, _ in seen if "account_usage" in sql]) == 3  # 9 ids / 3 per chunk
    assert warehouse.counts(T75) == Counts(evaluated=8, above=1, insufficient=1)  # 84 %


def test_rows_by_id_with_no_ids_runs_no_query(
    warehouse_url: str, statements: tuple[list[Any], Any]
) -> None:
    create_usage_table(warehouse_url, [account(1, 30, 40)])
    warehouse = make_warehouse(warehouse_url)
    seen, listen = statements
    listen(warehouse.engine)

    assert list(warehouse.rows_by_id([])) == []
    assert seen == []


def test_rows_by_id_matches_15_character_warehouse_ids(warehouse_url: str) -> None:
    rows = [account(1, 30, 40), account(2, 10, 40)]
    create_usage_table(warehouse_url, [(row[0][:15], *row[1:]) for row in rows])
    warehouse = make_warehouse(warehouse_url)

    found = {row.account_id: row.usage_pct for row in warehouse.rows_by_id([sf_id("001", 1)])}

    assert found == {sf_id("001", 1): Decimal(75)}
    # above() normalises the same way.
    assert above(warehouse) == {sf_id("001", 1): Decimal(75)}


# --- F12: memory stays flat -----------------------------------------------------------------------


def _sqlite_table(path: Path, size: int) -> str:
    """`size` rows, every 100th at 80 % (above 75), the rest at 10 %."""
    url = f"sqlite:///{path}"
    create_usage_table(url, [])
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :size) "
                "INSERT INTO account_usage SELECT '001' || printf('%012d', i), "
                "'Account ' || i, 'account' || i || '.example', NULL, "
                "CASE WHEN i % 100 = 0 THEN 80 ELSE 10 END, 100, 'starter' FROM n"
            ),
            {"size": size},
        )
    engine.dispose()
    return url


def _peak_while_consuming(url: str) -> tuple[int, int, Counts]:
    warehouse = make_warehouse(url)
    warehouse.counts(T75)  # warm the engine's pool and statement cache outside the measurement
    sum(1 for _ in warehouse.above(T75))
    tracemalloc.start()
    try:
        seen = sum(1 for _ in warehouse.above(T75))
        counts = warehouse.counts(T75)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        warehouse.engine.dispose()
    return peak, seen, counts


def test_f12_memory_stays_flat_as_the_table_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python holds at most STREAM_BATCH rows at a time. At these sizes 1 % is 200 and 2 000 rows,
    # both within the real batch (2 000), so a smaller batch is what shows the stream is flat;
    # reading the whole result at once would make the large peak ~7x the small one.
    monkeypatch.setattr(bot.usage, "STREAM_BATCH", 100)
    small = _sqlite_table(tmp_path / "small.db", 20_000)
    large = _sqlite_table(tmp_path / "large.db", 200_000)

    small_peak, small_seen, small_counts = _peak_while_consuming(small)
    large_peak, large_seen, large_counts = _peak_while_consuming(large)

    assert (small_seen, large_seen) == (200, 2_000)
    assert small_counts == Counts(evaluated=20_000, above=200, insufficient=0)
    assert large_counts == Counts(evaluated=200_000, above=2_000, insufficient=0)
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)


# --- Errors -------------------------------------------------------------------------------------


def test_a_warehouse_error_carries_no_sql_text(warehouse_url: str) -> None:
    create_usage_table(warehouse_url, [account(1, 30, 40)])
    warehouse = make_warehouse(warehouse_url, rule={"segment": "plan = 'starter'"})
    admin = create_engine(warehouse_url)
    with admin.begin() as conn:
        conn.execute(text("DROP TABLE account_usage"))
    admin.dispose()

    with pytest.raises(WarehouseError) as from_counts:
        warehouse.counts(T75)
    with pytest.raises(WarehouseError) as from_above:
        list(warehouse.above(T75))
    with pytest.raises(WarehouseError) as from_ids:
        list(warehouse.rows_by_id([sf_id("001", 1)]))

    for caught in (from_counts, from_above, from_ids):
        message = str(caught.value)
        assert message.startswith("warehouse query failed: ")
        for sql in ("SELECT", "select ", "[SQL", "starter", "7500", "\n"):
            assert sql not in message, message


def test_a_missing_sqlite_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        warehouse_engine("sqlite:///does/not/exist.db", 10)

    assert "does/not/exist.db does not exist" in caught.value.problems[0]
    assert not Path("does").exists()  # nothing was created on the way


def test_an_unknown_driver_is_a_config_error_without_credentials() -> None:
    with pytest.raises(ConfigError) as unknown:
        warehouse_engine("nosuchdb://x", 10)
    with pytest.raises(ConfigError) as bad_driver:
        warehouse_engine("postgresql+nosuchdriver://nudge:s3cret@db.internal/usage", 10)

    assert unknown.value.problems[0].startswith("warehouse: cannot use nosuchdb://")
    assert "s3cret" not in str(bad_driver.value)


# --- deadline() -----------------------------------------------------------------------------------

SQLITE_FOREVER = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
    "SELECT count(*) FROM c"
)


def test_sqlite_deadline_interrupts_a_long_query(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as conn:
        with pytest.raises(DBAPIError, match="interrupt"), deadline(conn, 0.2):
            conn.execute(text(SQLITE_FOREVER)).scalar()
        # The handler is removed afterwards: the connection still works.
        assert conn.execute(text("SELECT 41 + 1")).scalar() == 42
    engine.dispose()


def test_duckdb_deadline_interrupts_a_long_query(tmp_path: Path) -> None:
    engine = create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    forever = "SELECT sum(a.range * b.range) FROM range(1000000000) a, range(1000000000) b"
    with engine.connect() as conn:
        with pytest.raises(DBAPIError, match="Interrupted"), deadline(conn, 0.2):
            conn.execute(text(forever)).scalar()
        conn.rollback()  # DuckDB aborts the interrupted transaction
        assert conn.execute(text("SELECT 41 + 1")).scalar() == 42
    engine.dispose()


def test_warehouse_queries_run_under_the_deadline(tmp_path: Path) -> None:
    warehouse = make_warehouse(_sqlite_table(tmp_path / "w.db", 20_000))
    warehouse.timeout_s = 0  # every query is past its deadline at once

    with pytest.raises(WarehouseError, match="interrupted"):
        warehouse.counts(T75)
    with pytest.raises(WarehouseError, match="interrupted"):
        list(warehouse.above(T75))
    warehouse.engine.dispose()


def test_deadline_leaves_a_quick_query_alone(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as conn, deadline(conn, 5):
        assert conn.execute(text("SELECT 42")).scalar() == 42
    engine.dispose()


def test_large_integer_values_never_overflow_the_comparison(warehouse_url: str) -> None:
    # 300 000 * 10 000 does not fit a 32-bit INTEGER (PostgreSQL int4, DuckDB INT32).
    create_usage_table(warehouse_url, [account(1, 300_000, 350_000), account(2, 100_000, 350_000)])
    warehouse = make_warehouse(warehouse_url)
    assert set(above(warehouse)) == {sf_id("001", 1)}
    assert warehouse.counts(T75).above == 1


def test_rows_without_an_account_id_never_alert_and_count_as_insufficient(
    warehouse_url: str,
) -> None:
    create_usage_table(
        warehouse_url,
        [account(1, 45, 50), (None, "Ghost", "ghost.example", sf_id("005", 1), 45, 50, "starter")],
    )
    warehouse = make_warehouse(warehouse_url)
    assert set(above(warehouse)) == {sf_id("001", 1)}
    counts = warehouse.counts(T75)
    assert (counts.evaluated, counts.above, counts.insufficient) == (2, 1, 1)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"numerator": "tracked_hours > 0"}, "not a condition"),
        ({"denominator": "'abc'"}, "not a string"),
        ({"numerator": "TRUE"}, "not a condition"),
    ],
)
def test_numerator_and_denominator_must_be_numbers(
    warehouse_url: str, values: dict[str, str], reason: str
) -> None:
    create_usage_table(warehouse_url, [account(1, 45, 50)])
    assert reason in config_problems(warehouse_url, columns=values)


# --- Identifier case: settings name columns in any case; the query names them as the table does -


MIXED_CASE = ("AccountId", "AccountName", "Domain", "OwnerId", "TrackedHours", "FreeHours", "Plan")
SPELLINGS = {"lower": str.lower, "upper": str.upper, "exact": str}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_quoted_mixed_case_columns_work_whatever_case_the_settings_use(
    warehouse_url: str, spelling: str, statements: tuple[list[Any], Any]
) -> None:
    # Created quoted: PostgreSQL and Snowflake then match only "TrackedHours", exactly.
    create_usage_table(
        warehouse_url,
        [account(1, 30, 40, plan="pro"), account(2, 10, 40, plan="pro"), account(3, 39, 40)],
        columns=MIXED_CASE,
    )
    id_, name, domain, owner, used, quota, plan = map(SPELLINGS[spelling], MIXED_CASE)
    warehouse = make_warehouse(
        warehouse_url,
        columns={
            **{"account_id": id_, "account_name": name, "domain": domain, "owner_id": owner},
            **{"numerator": f"{used} * 60", "denominator": f"{quota} * 60", "fields": [plan]},
        },
        rule={"segment": f"{plan} = 'pro' AND {quota} > 0"},
    )
    seen, listen = statements
    listen(warehouse.engine)

    [row] = list(warehouse.above(T75))
    assert (row.account_id, row.usage_pct, row.fields) == (sf_id("001", 1), 75, {plan: "pro"})
    assert (row.account_name, row.domain) == ("Account 1", "account1.example")
    assert row.owner_id == sf_id("005", 1)
    assert warehouse.counts(T75) == Counts(evaluated=2, above=1, insufficient=0)
    assert [r.account_id for r in warehouse.rows_by_id([sf_id("001", 3)])] == [sf_id("001", 3)]
    assert [r.account_name for r in warehouse.find(Query("domain", "account3.example"))] == [
        "Account 3"
    ]
    # SQLite, DuckDB and fakesnow ignore case even in quoted names: the SQL shows it is right.
    usage_sql = [sql for sql, _ in seen if "account_usage" in sql.lower()]
    assert len(usage_sql) == 4
    for sql in usage_sql:
        assert '"TrackedHours"' in sql and '"FreeHours"' in sql and '"AccountId"' in sql, sql


def test_a_quoted_mixed_case_table_is_found_whatever_case_the_setting_uses(
    warehouse_url: str,
) -> None:
    create_usage_table(warehouse_url, [account(1, 30, 40)], table="AccountUsage")

    warehouse = make_warehouse(warehouse_url, warehouse={"table": "accountusage"})

    assert above(warehouse) == {sf_id("001", 1): Decimal(75)}
    assert warehouse.counts(T75) == Counts(evaluated=1, above=1, insufficient=0)


def test_columns_differing_only_in_case_must_be_named_exactly(warehouse_url: str) -> None:
    if warehouse_url.startswith(("sqlite", "duckdb")):
        pytest.skip("SQLite and DuckDB refuse two column names equal but for case")
    if warehouse_url.startswith("snowflake"):
        pytest.skip(
            'fakesnow cannot create "plan" beside "PLAN" (DuckDB: "Column with name PLAN already '
            'exists"); a real Snowflake can'
        )
    columns = (*COLUMNS, "PLAN")
    create_usage_table(warehouse_url, [(*account(1, 30, 40, plan="pro"), "PRO")], columns=columns)

    problems = config_problems(warehouse_url, columns={"fields": ["Plan"]})
    assert "fields = 'Plan': matches several columns (plan, PLAN)" in problems
    warehouse = make_warehouse(warehouse_url, columns={"fields": ["PLAN", "plan"]})
    [row] = list(warehouse.above(T75))
    assert row.fields == {"PLAN": "PRO", "plan": "pro"}


# --- A query past its deadline, on every backend -------------------------------------------------

SLOW_QUERIES = {
    "sqlite": SQLITE_FOREVER,
    "duckdb": "SELECT sum(a.range * b.range) FROM range(1000000000) a, range(1000000000) b",
    "postgresql": "SELECT pg_sleep(30)",
}


def test_a_query_past_its_deadline_is_stopped_in_the_warehouse(warehouse_url: str) -> None:
    backend = warehouse_url.split(":", 1)[0].split("+", 1)[0]
    if backend == "snowflake":
        pytest.skip(
            "fakesnow cannot stop a running query: it accepts ALTER SESSION SET "
            "STATEMENT_TIMEOUT_IN_SECONDS as a no-op and has no interrupt (the statement Nudge "
            "sends is checked in tests/test_snowflake.py)"
        )
    engine = warehouse_engine(warehouse_url, 10)
    started = time.monotonic()
    with engine.connect() as conn, pytest.raises(DBAPIError), deadline(conn, 0.3):
        conn.execute(text(SLOW_QUERIES[backend])).scalar()
    assert time.monotonic() - started < 5
    engine.dispose()
