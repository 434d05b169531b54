"""Snowflake as the warehouse (SPEC 2, 6; F11), through fakesnow in-process.

The real connector and snowflake-sqlalchemy run; fakesnow replaces `snowflake.connector.connect`
with an in-memory DuckDB that speaks Snowflake SQL and reports names as Snowflake does (unquoted
names upper-cased). What fakesnow does not do — authenticate, expire a session, enforce a
statement timeout, tell quoted names apart by case — is injected into the driver or checked in
the SQL Nudge sends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from snowflake.connector.errors import ProgrammingError
from sqlalchemy import Engine, create_engine, event, text

from bot.errors import ConfigError, WarehouseError
from bot.lookup import Query
from bot.usage import Counts, Warehouse
from bot.warehouse import RECYCLE_S, warehouse_engine
from tests.test_usage import T75, above, make_warehouse
from tests.warehouses import (
    DECIMAL,
    SNOWFLAKE_URL,
    account,
    create_usage_table,
    fake_snowflake,
    sf_id,
)

TOKEN_LIFETIME_S = 4 * 3600
EXPIRED = "Authentication token has expired.  The user must authenticate again."


@pytest.fixture
def snowflake_url() -> Iterator[str]:
    """fakesnow for the test's duration."""
    with fake_snowflake() as url:
        yield url


def connect_kwargs() -> dict[str, Any]:
    """What the last login handed to `snowflake.connector.connect` (fakesnow's mock records it)."""
    connect: Any = snowflake.connector.connect
    return dict(connect.call_args.kwargs)


def statements_of(engine: Engine) -> list[str]:
    """Every statement `engine` sends from now on."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen


# --- Engine: connection options, password and key-pair authentication --------------------------


def test_the_engine_pings_recycles_before_the_token_expires_and_keeps_alive(
    snowflake_url: str,
) -> None:
    engine = warehouse_engine(snowflake_url, 60)

    assert engine.pool._pre_ping is True
    assert 0 < engine.pool._recycle < TOKEN_LIFETIME_S
    assert engine.pool._recycle == RECYCLE_S
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 41 + 1")).scalar() == 42
    kwargs = connect_kwargs()
    assert kwargs["client_session_keep_alive"] is True
    assert kwargs["login_timeout"] == 10
    engine.dispose()


def test_password_warehouse_role_database_and_schema_come_from_the_url(
    snowflake_url: str,
) -> None:
    url = "snowflake://nudge:p%40ss%2Fw0rd@acme-xy12345/USAGE_DB/analytics?warehouse=WH&role=READER"
    engine = warehouse_engine(url, 60)
    engine.connect().close()

    kwargs = connect_kwargs()
    assert (kwargs["user"], kwargs["password"], kwargs["account"]) == (
        "nudge",
        "p@ss/w0rd",
        "acme-xy12345",
    )
    assert (kwargs["database"], kwargs["schema"]) == ("USAGE_DB", "analytics")
    assert (kwargs["warehouse"], kwargs["role"]) == ("WH", "READER")
    assert "private_key" not in kwargs
    engine.dispose()


def _key_file(path: Path, passphrase: bytes | None) -> bytes:
    """Write a fresh RSA key as PEM (encrypted when `passphrase`); return it as PKCS#8 DER."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize("passphrase", [None, "c0rrect horse"], ids=["plain", "encrypted"])
def test_key_pair_auth_reads_the_private_key_file_named_in_the_url(
    snowflake_url: str, tmp_path: Path, passphrase: str | None
) -> None:
    der = _key_file(tmp_path / "rsa_key.p8", passphrase.encode() if passphrase else None)
    query = f"private_key_file={tmp_path / 'rsa_key.p8'}&warehouse=WH&role=READER"
    if passphrase:
        query += "&private_key_file_pwd=c0rrect%20horse"
    engine = warehouse_engine(f"snowflake://nudge@acme/usage_db/analytics?{query}", 60)
    create_usage_table(snowflake_url, [account(1, 30, 40)])
    warehouse = Warehouse(engine, make_warehouse(snowflake_url).settings)
    warehouse.validate()

    assert warehouse.counts(T75) == Counts(evaluated=1, above=1, insufficient=0)
    kwargs = connect_kwargs()
    assert kwargs["private_key"] == der  # the connector then signs in with SNOWFLAKE_JWT
    assert "password" not in kwargs
    assert "private_key_file" not in kwargs and "private_key_file_pwd" not in kwargs
    assert (kwargs["warehouse"], kwargs["role"]) == ("WH", "READER")
    assert str(passphrase) not in repr(engine.url)
    engine.dispose()


def test_an_unusable_private_key_file_is_a_config_error_without_the_passphrase(
    tmp_path: Path,
) -> None:
    _key_file(tmp_path / "rsa_key.p8", b"right passphrase")
    (tmp_path / "not_a_key.p8").write_text("hello")
    base = "snowflake://nudge@acme/db/schema?private_key_file="

    with pytest.raises(ConfigError) as missing:
        warehouse_engine(f"{base}{tmp_path / 'nope.p8'}", 60)
    with pytest.raises(ConfigError) as wrong:
        warehouse_engine(f"{base}{tmp_path / 'rsa_key.p8'}&private_key_file_pwd=wr0ng-s3cret", 60)
    with pytest.raises(ConfigError) as garbage:
        warehouse_engine(f"{base}{tmp_path / 'not_a_key.p8'}", 60)
    with pytest.raises(ConfigError) as no_passphrase:
        warehouse_engine(f"{base}{tmp_path / 'rsa_key.p8'}", 60)

    assert "cannot read private_key_file" in missing.value.problems[0]
    assert "nope.p8" in missing.value.problems[0]
    for caught in (wrong, garbage, no_passphrase):
        assert "is not a usable private key" in caught.value.problems[0]
    assert "wr0ng-s3cret" not in str(wrong.value)


# --- Statement timeout --------------------------------------------------------------------------


def test_every_session_gets_the_statement_timeout_of_its_query(snowflake_url: str) -> None:
    create_usage_table(snowflake_url, [account(1, 30, 40)])
    warehouse = make_warehouse(snowflake_url, warehouse={"timeout": "45s"})
    warehouse.engine.dispose()  # start from a fresh session
    seen = statements_of(warehouse.engine)

    warehouse.counts(T75)
    list(warehouse.above(T75))
    warehouse.find(Query("name", "account"))  # /usage-summary: a shorter bound
    list(warehouse.above(T75))

    alters = [sql for sql in seen if sql.startswith("ALTER SESSION")]
    # Set once per session, and again only when the bound changes; never 0 ("no timeout").
    assert alters == [
        "ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = 45",
        "ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = 7",
        "ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = 45",
    ]
    first_query = next(i for i, sql in enumerate(seen) if "account_usage" in sql.lower())
    assert seen.index(alters[0]) < first_query  # the bound is in place before the query runs


def test_a_fraction_of_a_second_is_rounded_up_never_to_no_timeout(snowflake_url: str) -> None:
    create_usage_table(snowflake_url, [account(1, 30, 40)])
    warehouse = make_warehouse(snowflake_url)
    warehouse.engine.dispose()
    seen = statements_of(warehouse.engine)
    warehouse.timeout_s = 0.2

    warehouse.counts(T75)

    assert "ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = 1" in seen


# --- F11: an expired session reconnects once -----------------------------------------------------


class SessionExpiry:
    """Expires Snowflake sessions inside the driver.

    Every statement on an expired connection — the pool's pre-ping included — fails as the
    connector fails it: ProgrammingError 390114 "Authentication token has expired".
    """

    def __init__(self, engine: Engine) -> None:
        self.connections: list[Any] = []
        self.expired: set[int] = set()
        self.at_next_queries = 0
        event.listen(engine, "connect", self._wrap)

    @property
    def logins(self) -> int:
        return len(self.connections)

    def expire_all(self) -> None:
        """Hours of idleness: every open session has expired."""
        self.expired |= {id(conn) for conn in self.connections}

    def expire_at_next_queries(self, count: int) -> None:
        """The next `count` sessions to run a usage query expire right then (after the ping)."""
        self.at_next_queries = count

    def _wrap(self, dbapi_connection: Any, _record: Any) -> None:
        self.connections.append(dbapi_connection)
        make_cursor = dbapi_connection.cursor

        def cursor(*args: Any, **kwargs: Any) -> Any:
            cur = make_cursor(*args, **kwargs)
            execute = cur.execute

            def checked(command: str, *more: Any, **options: Any) -> Any:
                if self.at_next_queries and "account_usage" in command.lower():
                    self.at_next_queries -= 1
                    self.expired.add(id(dbapi_connection))
                if id(dbapi_connection) in self.expired:
                    raise ProgrammingError(msg=EXPIRED, errno=390114, sqlstate="08001")
                return execute(command, *more, **options)

            cur.execute = checked
            return cur

        dbapi_connection.cursor = cursor


@pytest.fixture
def expiring(snowflake_url: str) -> tuple[Warehouse, SessionExpiry]:
    """A validated warehouse over the F13 table whose sessions the test can expire."""
    create_usage_table(
        snowflake_url,
        [account(1, 30, 40), account(2, 5, 0), account(3, None, 40), account(4, 41, 40)],
    )
    warehouse = make_warehouse(snowflake_url)
    warehouse.engine.dispose()
    expiry = SessionExpiry(warehouse.engine)
    warehouse.counts(T75)  # one pooled session, as after a first poll
    assert expiry.logins == 1
    return warehouse, expiry


F13_ABOVE = {sf_id("001", 1): Decimal(75), sf_id("001", 4): Decimal("102.5")}
F13_COUNTS = Counts(evaluated=4, above=2, insufficient=2)


def test_f11_after_hours_idle_the_pre_ping_logs_in_again(
    expiring: tuple[Warehouse, SessionExpiry], caplog: pytest.LogCaptureFixture
) -> None:
    warehouse, expiry = expiring
    expiry.expire_all()
    caplog.set_level(logging.WARNING, logger="bot.warehouse")

    assert warehouse.counts(T75) == F13_COUNTS
    assert above(warehouse) == F13_ABOVE
    assert expiry.logins == 2
    assert expiry.connections[0].is_closed()  # the expired session is dropped, not leaked
    assert "reconnecting" not in caplog.text  # the pool's pre-ping did it: no query failed


@pytest.mark.parametrize("query", ["counts", "above", "rows_by_id", "find"])
def test_f11_a_session_expiring_at_the_query_reconnects_once_and_succeeds(
    expiring: tuple[Warehouse, SessionExpiry], query: str, caplog: pytest.LogCaptureFixture
) -> None:
    warehouse, expiry = expiring
    expiry.expire_at_next_queries(1)
    caplog.set_level(logging.WARNING, logger="bot.warehouse")

    if query == "counts":
        assert warehouse.counts(T75) == F13_COUNTS
    elif query == "above":
        assert above(warehouse) == F13_ABOVE
    elif query == "rows_by_id":
        assert {r.account_id for r in warehouse.rows_by_id([sf_id("001", 4)])} == {sf_id("001", 4)}
    else:
        assert [r.account_id for r in warehouse.find(Query("domain", "account4.example"))] == [
            sf_id("001", 4)
        ]

    assert expiry.logins == 2
    assert expiry.connections[0].is_closed()
    assert "warehouse session expired; reconnecting once" in caplog.text
    assert warehouse.counts(T75) == F13_COUNTS  # and the new session stays in the pool
    assert expiry.logins == 2


@pytest.mark.parametrize("query", ["counts", "above"])
def test_f11_a_second_expiry_in_a_row_is_a_warehouse_error(
    expiring: tuple[Warehouse, SessionExpiry], query: str
) -> None:
    warehouse, expiry = expiring
    expiry.expire_at_next_queries(2)

    with pytest.raises(WarehouseError) as caught:
        if query == "counts":
            warehouse.counts(T75)
        else:
            list(warehouse.above(T75))

    assert "390114" in str(caught.value) and "token has expired" in str(caught.value)
    assert "SELECT" not in str(caught.value)
    assert expiry.logins == 2  # the first session and one retry, no more
    # The next poll goes ahead with a fresh session.
    assert warehouse.counts(T75) == F13_COUNTS
    assert expiry.logins == 3


def test_f11_other_errors_are_not_retried(expiring: tuple[Warehouse, SessionExpiry]) -> None:
    warehouse, expiry = expiring
    admin = create_engine(SNOWFLAKE_URL)
    with admin.begin() as conn:
        conn.execute(text("DROP TABLE account_usage"))
    admin.dispose()

    with pytest.raises(WarehouseError, match="does not exist"):
        warehouse.counts(T75)
    assert expiry.logins == 1


# --- Result normalisation: upper-case names, NUMBER(38,0), NUMBER(p,s), FLOAT --------------------


def _snowflake_table(url: str, ddl: str, rows: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE OR REPLACE TABLE ACCOUNT_USAGE ({ddl})"))
        conn.execute(text(f"INSERT INTO ACCOUNT_USAGE VALUES {rows}"))
    engine.dispose()


UPPER_DDL = (
    "ACCOUNT_ID VARCHAR, ACCOUNT_NAME VARCHAR, DOMAIN VARCHAR, OWNER_ID VARCHAR, "
    "TRACKED_HOURS NUMBER(38,0), TOTAL_FREE_HOURS NUMBER(38,0), SEATS NUMBER(38,0), "
    "SPEND NUMBER(12,3), SCORE FLOAT, PLAN VARCHAR"
)


def _upper_rows() -> str:
    a1, a2, o1 = sf_id("001", 1), sf_id("001", 2), sf_id("005", 1)
    return (
        f"('{a1}', 'Acme', ' WWW.Acme.COM ', '{o1}', 30, 40, 12, 1234.500, 0.5, 'pro'), "
        f"('{a2}', 'Beta', 'beta.example', NULL, 3, 40, 1, 1.000, 1.5, 'free')"
    )


@pytest.mark.parametrize("case", ["lower", "upper"])
def test_upper_case_snowflake_names_are_found_whatever_case_the_settings_use(
    snowflake_url: str, case: str
) -> None:
    _snowflake_table(snowflake_url, UPPER_DDL, _upper_rows())
    spell = str.lower if case == "lower" else str.upper
    names = ["account_id", "account_name", "domain", "owner_id"]
    warehouse = make_warehouse(
        snowflake_url,
        warehouse={"table": spell("account_usage")},
        columns={
            **{name: spell(name) for name in names},
            "numerator": spell("tracked_hours"),
            "denominator": spell("total_free_hours"),
            "fields": [spell("plan"), spell("seats"), spell("spend"), spell("score")],
        },
        rule={"segment": f"{spell('plan')} = 'pro'"},
    )
    seen = statements_of(warehouse.engine)

    [row] = list(warehouse.above(T75))

    assert (row.account_id, row.owner_id) == (sf_id("001", 1), sf_id("005", 1))
    assert (row.account_name, row.domain) == ("Acme", "www.acme.com")
    assert row.fields == {
        spell("plan"): "pro",
        spell("seats"): 12,
        spell("spend"): Decimal("1234.5"),
        spell("score"): Decimal("0.5"),
    }
    assert warehouse.counts(T75) == Counts(evaluated=1, above=1, insufficient=0)
    [found] = warehouse.find(Query("domain", "acme.com"))
    assert found.account_id == sf_id("001", 1)
    # Unquoted, so Snowflake folds them to the upper-case columns; a quoted lower-case or
    # mixed-case name would not match on a real Snowflake (fakesnow would not notice).
    for sql in seen:
        if "ACCOUNT_USAGE" in sql.upper() and not sql.startswith("ALTER"):
            assert '"' not in sql.replace('"ACCOUNT_USAGE"', ""), sql


def test_number_columns_come_back_as_decimal_ratios(snowflake_url: str) -> None:
    _snowflake_table(snowflake_url, UPPER_DDL, _upper_rows())
    warehouse = make_warehouse(snowflake_url, columns={"fields": ["seats", "spend"]})

    [row] = list(warehouse.above(T75))
    [beta] = list(warehouse.rows_by_id([sf_id("001", 2)]))

    # NUMBER(38,0) arrives as int from the connector; the row holds Decimal, like every backend.
    assert type(row.numerator) is Decimal and type(row.denominator) is Decimal
    assert (row.numerator, row.denominator, row.usage_pct) == (30, 40, Decimal(75))
    assert beta.usage_pct == Decimal("7.5")
    assert type(row.fields["seats"]) is int and type(row.fields["spend"]) is Decimal


def test_decimal_and_float_fragments_compare_exactly(snowflake_url: str) -> None:
    create_usage_table(
        snowflake_url,
        [account(1, Decimal("74.995"), 100), account(2, Decimal("75.000"), 100)],
        number_type=DECIMAL,
    )
    warehouse = make_warehouse(
        snowflake_url,
        columns={"numerator": "tracked_hours * 4", "denominator": "total_free_hours * 4"},
    )

    assert above(warehouse) == {sf_id("001", 2): Decimal(75)}
    [row] = list(warehouse.above(T75))
    assert row.numerator == Decimal(300) and isinstance(row.numerator, Decimal)
