"""The `nudge demo` sample data: warehouse rows, owners, territory CSV and Salesforce ids."""

from __future__ import annotations

import csv
import re
import sqlite3
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bot.crmid import to_18
from bot.demo import (
    SAMPLE_DOMAIN,
    SAMPLE_USERS,
    UNKNOWN_OWNER_IDS,
    create_sample_warehouse,
    write_sample_territory,
)

TODAY = date(2024, 6, 3)
COLUMNS = [
    "account_id",
    "account_name",
    "domain",
    "owner_id",
    "plan",
    "users",
    "tracked_hours",
    "total_free_hours",
    "last_activity_date",
    "score_tier",
    "updated_at",
]
QUOTAS = {"starter": 50, "team": 200, "business": 1000}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All account_usage rows as dicts, ordered by account id."""
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM account_usage ORDER BY account_id").fetchall()
    return [dict(row) for row in rows]


def usable(row: dict[str, Any]) -> bool:
    """A row whose usage percentage can be computed."""
    tracked, total = row["tracked_hours"], row["total_free_hours"]
    return tracked is not None and tracked >= 0 and total > 0


def percent(row: dict[str, Any]) -> float:
    """Tracked hours as a percentage of free hours."""
    return float(100 * row["tracked_hours"] / row["total_free_hours"])


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "warehouse.db"
    create_sample_warehouse(path, seed=7, today=TODAY)
    return path


@pytest.fixture(scope="module")
def rows(warehouse: Path) -> list[dict[str, Any]]:
    return read_rows(warehouse)


@pytest.fixture(scope="module")
def above(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if usable(row) and percent(row) >= 75]


# --- sample users -----------------------------------------------------------------------


def test_sample_users_shape() -> None:
    assert len(SAMPLE_USERS) == 12
    assert [u.first_name for u in SAMPLE_USERS[:3]] == ["Dana", "Priya", "Marcus"]
    assert sum(u.deleted for u in SAMPLE_USERS) == 1
    assert len({u.crm_user_id for u in SAMPLE_USERS}) == 12
    assert len({u.slack_user_id for u in SAMPLE_USERS}) == 12
    assert len({u.email for u in SAMPLE_USERS}) == 12
    assert {u.tz.split("/")[0] for u in SAMPLE_USERS} == {"America", "Europe"}
    for user in SAMPLE_USERS:
        assert re.fullmatch(r"005[0-9A-Za-z]{15}", user.crm_user_id)
        assert to_18(user.crm_user_id[:15]) == user.crm_user_id
        assert re.fullmatch(r"U0[0-9A-Z]{9}", user.slack_user_id)
        assert user.email == user.email.lower().strip()
        assert user.email.endswith("@" + SAMPLE_DOMAIN)
        assert user.real_name.startswith(user.first_name + " ")


def test_unknown_owners_are_not_sample_users() -> None:
    assert set(UNKNOWN_OWNER_IDS).isdisjoint(u.crm_user_id for u in SAMPLE_USERS)
    for owner in UNKNOWN_OWNER_IDS:
        assert owner.startswith("005") and to_18(owner) == owner


# --- warehouse --------------------------------------------------------------------------


def test_schema_and_row_count(warehouse: Path, rows: list[dict[str, Any]]) -> None:
    with sqlite3.connect(warehouse) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        columns = [r[1] for r in conn.execute("PRAGMA table_info(account_usage)")]
    assert tables == ["account_usage"]
    assert columns == COLUMNS
    assert len(rows) == 300


def test_reproducible_for_same_seed_and_date(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    again = tmp_path / "again.db"
    create_sample_warehouse(again, seed=7, today=TODAY)
    assert read_rows(again) == rows
    other = tmp_path / "other.db"
    create_sample_warehouse(other, seed=8, today=TODAY)
    assert read_rows(other) != rows


def test_overwrites_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.db"
    path.write_bytes(b"not a database")
    create_sample_warehouse(path, seed=3, accounts=200, today=TODAY)
    assert len(read_rows(path)) == 200


def test_too_few_accounts_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        create_sample_warehouse(tmp_path / "w.db", accounts=20, today=TODAY)


def test_account_ids_and_domains(rows: list[dict[str, Any]]) -> None:
    ids = [row["account_id"] for row in rows]
    domains = [row["domain"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert len(set(domains)) == len(domains)
    assert len({row["account_name"] for row in rows}) == len(rows)
    for account_id, domain in zip(ids, domains, strict=True):
        assert account_id.startswith("001") and len(account_id) == 18
        assert to_18(account_id[:15]) == account_id
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*\.example", domain), domain


def test_plans_seats_and_quotas(rows: list[dict[str, Any]]) -> None:
    shares = Counter(row["plan"] for row in rows)
    assert abs(shares["starter"] / len(rows) - 0.55) < 0.03
    assert abs(shares["team"] / len(rows) - 0.30) < 0.03
    assert abs(shares["business"] / len(rows) - 0.15) < 0.03
    for row in rows:
        assert row["total_free_hours"] in (0, QUOTAS[row["plan"]])
        assert row["users"] >= 1
        assert row["score_tier"] in ("A", "B", "C")
    assert max(r["users"] for r in rows if r["plan"] == "starter") < min(
        r["users"] for r in rows if r["plan"] == "business"
    )


def test_dates_relative_to_today(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        activity = date.fromisoformat(row["last_activity_date"])
        assert 0 <= (TODAY - activity).days <= 180
        assert row["updated_at"].startswith(TODAY.isoformat() + "T")


def test_share_above_threshold(rows: list[dict[str, Any]], above: list[dict[str, Any]]) -> None:
    assert 0.05 <= len(above) / len(rows) <= 0.10
    assert 2 <= sum(percent(r) > 100 for r in above) <= 5
    assert 2 <= sum(percent(r) == 75 for r in above) <= 5
    just_under = [r for r in rows if usable(r) and percent(r) == 74]
    assert 2 <= len(just_under) <= 5


def test_owner_mix_above_threshold(above: list[dict[str, Any]]) -> None:
    per_owner = Counter(row["owner_id"] for row in above)
    assert sum(n >= 2 for n in per_owner.values()) >= 3
    assert sum(n == 1 for n in per_owner.values()) >= 2
    deleted = next(u for u in SAMPLE_USERS if u.deleted)
    assert per_owner[deleted.crm_user_id] >= 1
    assert any(owner in UNKNOWN_OWNER_IDS for owner in per_owner)


def test_owners_known_except_a_few(rows: list[dict[str, Any]]) -> None:
    known = {u.crm_user_id for u in SAMPLE_USERS}
    unknown = [row for row in rows if row["owner_id"] not in known]
    assert 2 <= len(unknown) <= 4
    assert {row["owner_id"] for row in unknown} <= set(UNKNOWN_OWNER_IDS)


def test_bad_rows_exist(rows: list[dict[str, Any]]) -> None:
    assert 3 <= sum(row["total_free_hours"] == 0 for row in rows) <= 5
    assert 2 <= sum(row["tracked_hours"] is None for row in rows) <= 3
    negative = [r for r in rows if r["tracked_hours"] is not None and r["tracked_hours"] < 0]
    assert len(negative) == 1


def test_escaping_names_are_above_threshold(above: list[dict[str, Any]]) -> None:
    names = {row["account_name"] for row in above}
    assert "Smith & Sons <EMEA>" in names
    assert any("'" in name for name in names)


# --- territory --------------------------------------------------------------------------


def read_territory(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a territory CSV."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_territory_covers_every_user(tmp_path: Path) -> None:
    path = tmp_path / "territory.csv"
    write_sample_territory(path)
    header, rows = read_territory(path)
    assert header == ["crm_user_id", "email", "slack_user_id"]
    by_id = {row["crm_user_id"]: row for row in rows}
    assert len(rows) == len(by_id) == len(SAMPLE_USERS)
    for user in SAMPLE_USERS:
        row = by_id[user.crm_user_id]
        assert row["email"] or row["slack_user_id"]
        if row["email"]:
            assert row["email"].strip().lower() == user.email
        if row["slack_user_id"]:
            assert row["slack_user_id"] == user.slack_user_id
    deleted = next(u for u in SAMPLE_USERS if u.deleted)
    assert by_id[deleted.crm_user_id]["email"]


def test_territory_identifier_mix(tmp_path: Path) -> None:
    path = tmp_path / "territory.csv"
    write_sample_territory(path)
    _, rows = read_territory(path)
    email_only = [r for r in rows if r["email"] and not r["slack_user_id"]]
    slack_only = [r for r in rows if r["slack_user_id"] and not r["email"]]
    both = [r for r in rows if r["email"] and r["slack_user_id"]]
    assert len(both) == 1
    assert len(email_only) + len(slack_only) == len(rows) - 1
    assert abs(len(email_only) - len(slack_only)) <= 2
    messy = [r for r in email_only if r["email"] != r["email"].strip().lower()]
    assert len(messy) == 2
    assert any(r["email"] != r["email"].strip() for r in messy)


def test_territory_never_names_unknown_owners(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    path = tmp_path / "territory.csv"
    write_sample_territory(path)
    text = path.read_text(encoding="utf-8")
    known = {u.crm_user_id for u in SAMPLE_USERS}
    warehouse_unknown = {row["owner_id"] for row in rows} - known
    assert warehouse_unknown
    for owner in warehouse_unknown | set(UNKNOWN_OWNER_IDS):
        assert owner not in text
        assert owner[:15] not in text
