"""Sample data for `nudge demo`: a usage warehouse, its owners and their territory CSV.

Everything here is deterministic for a given seed and reference date, and nothing runs on
import except building the constant SAMPLE_USERS (pure computation, no I/O).
"""

from __future__ import annotations

import csv
import math
import random
import re
import sqlite3
import string
from collections.abc import Sequence
from contextlib import closing
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

from faker import Faker

from bot.crmid import to_18

__all__ = [
    "SAMPLE_DOMAIN",
    "SAMPLE_USERS",
    "SPECIAL_NAMES",
    "UNKNOWN_OWNER_IDS",
    "SampleUser",
    "build_sample_rows",
    "create_sample_warehouse",
    "territory_rows",
    "write_sample_territory",
]

SAMPLE_DOMAIN = "northwind-sales.example"
TABLE = "account_usage"
THRESHOLD_PERCENT = 75
PLAN_QUOTAS: dict[str, int] = {"starter": 50, "team": 200, "business": 1000}
TERRITORY_HEADER = ("crm_user_id", "email", "slack_user_id")

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SLACK_ALPHABET = string.ascii_uppercase + string.digits
_PLAN_SEATS: dict[str, tuple[int, int]] = {
    "starter": (1, 5),
    "team": (5, 25),
    "business": (25, 250),
}


@dataclass(frozen=True)
class SampleUser:
    """A member of the sample Slack workspace who is also a Salesforce user."""

    crm_user_id: str
    slack_user_id: str
    email: str
    first_name: str
    real_name: str
    tz: str
    deleted: bool


# (first name, last name, IANA time zone); index 10 is the deactivated Slack member.
_USER_SPECS: tuple[tuple[str, str, str], ...] = (
    ("Dana", "Whitfield", "America/New_York"),
    ("Priya", "Raman", "America/Los_Angeles"),
    ("Marcus", "Bell", "America/Chicago"),
    ("Elena", "Kovac", "Europe/Berlin"),
    ("Jonas", "Lindqvist", "Europe/Stockholm"),
    ("Aisha", "Okafor", "Europe/London"),
    ("Diego", "Alvarez", "America/Denver"),
    ("Sofia", "Marchetti", "Europe/Rome"),
    ("Noah", "Fischer", "Europe/Amsterdam"),
    ("Grace", "Kim", "America/Phoenix"),
    ("Hannah", "Brooks", "Europe/Dublin"),
    ("Ben", "Carter", "America/New_York"),
)
_DELETED_INDEX = 10
_USERS_SEED = 20240611


def _random_chars(rng: random.Random, alphabet: str, length: int) -> str:
    """`length` characters drawn from `alphabet`."""
    return "".join(rng.choice(alphabet) for _ in range(length))


def _sf_id(rng: random.Random, prefix: str, taken: set[str]) -> str:
    """A fresh 18-char Salesforce id with the given key prefix, not already in `taken`."""
    while True:
        candidate = to_18(prefix + "8d0000" + _random_chars(rng, _BASE62, 6))
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _build_sample_users() -> tuple[SampleUser, ...]:
    """The fixed sample owners, with ids drawn from a fixed seed."""
    rng = random.Random(_USERS_SEED)
    crm_ids: set[str] = set()
    users = []
    for index, (first, last, tz) in enumerate(_USER_SPECS):
        users.append(
            SampleUser(
                crm_user_id=_sf_id(rng, "005", crm_ids),
                slack_user_id="U0" + _random_chars(rng, _SLACK_ALPHABET, 9),
                email=f"{first}.{last}@{SAMPLE_DOMAIN}".lower(),
                first_name=first,
                real_name=f"{first} {last}",
                tz=tz,
                deleted=index == _DELETED_INDEX,
            )
        )
    return tuple(users)


SAMPLE_USERS: tuple[SampleUser, ...] = _build_sample_users()

# Salesforce users who own accounts in the warehouse but are absent from the territory.
UNKNOWN_OWNER_IDS: tuple[str, ...] = (to_18("0058d00000Zq7Lm"), to_18("0058d00000Wp3Rt"))

# --- warehouse -------------------------------------------------------------------------

_Kind = Literal["high", "exact", "over", "under", "normal", "zero_quota", "null", "negative"]
_ABOVE_KINDS: frozenset[str] = frozenset({"high", "exact", "over"})
_ABOVE_SHARE = 0.075
_N_EXACT = 3
_N_OVER = 3
_N_UNDER = 3
_N_ZERO_QUOTA = 4
_N_NULL = 2
_N_NEGATIVE = 1
_N_UNKNOWN_NORMAL = 2
_MULTI_OWNERS = 5  # SAMPLE_USERS[:5] get two or more accounts above the threshold
_SINGLE_OWNERS = (5, _DELETED_INDEX)  # exactly one account above the threshold each
_MIN_ACCOUNTS = 180
SPECIAL_NAMES = ("Smith & Sons <EMEA>", "O'Reilly Freight")
_NAME_STOPWORDS = frozenset({"and", "inc", "llc", "ltd", "plc", "group", "co", "the"})


@dataclass(frozen=True)
class _Row:
    """One row of account_usage, in column order."""

    account_id: str
    account_name: str
    domain: str
    owner_id: str
    plan: str
    users: int
    tracked_hours: int | None
    total_free_hours: int
    last_activity_date: str
    score_tier: str
    updated_at: str


def _plans(rng: random.Random, n: int) -> list[str]:
    """Plans in fixed proportions (55 % starter, 30 % team, 15 % business), shuffled."""
    starter, team = round(n * 0.55), round(n * 0.30)
    plans = ["starter"] * starter + ["team"] * team + ["business"] * (n - starter - team)
    rng.shuffle(plans)
    return plans


def _kinds(rng: random.Random, plans: Sequence[str]) -> list[_Kind]:
    """Which usage pattern each account gets; exact-75 % rows need a quota divisible by 4."""
    n = len(plans)
    order = list(range(n))
    rng.shuffle(order)
    kinds: list[_Kind] = ["normal"] * n
    exact = [i for i in order if PLAN_QUOTAS[plans[i]] % 4 == 0][:_N_EXACT]
    rest = [i for i in order if i not in exact]
    n_high = round(n * _ABOVE_SHARE) - _N_EXACT - _N_OVER
    counts: list[tuple[_Kind, int]] = [
        ("over", _N_OVER),
        ("high", n_high),
        ("under", _N_UNDER),
        ("zero_quota", _N_ZERO_QUOTA),
        ("null", _N_NULL),
        ("negative", _N_NEGATIVE),
    ]
    for i in exact:
        kinds[i] = "exact"
    for kind, count in counts:
        for i in rest[:count]:
            kinds[i] = kind
        rest = rest[count:]
    return kinds


def _owners(rng: random.Random, kinds: Sequence[_Kind]) -> list[str]:
    """Owner of each account: a fixed mix for accounts above the threshold, random otherwise."""
    above = [i for i, kind in enumerate(kinds) if kind in _ABOVE_KINDS]
    pattern = [u.crm_user_id for u in SAMPLE_USERS[:_MULTI_OWNERS] for _ in range(2)]
    pattern += [SAMPLE_USERS[i].crm_user_id for i in _SINGLE_OWNERS]
    pattern.append(UNKNOWN_OWNER_IDS[0])
    if len(above) < len(pattern):
        raise ValueError("too few accounts for the sample owner mix")
    multi = SAMPLE_USERS[:_MULTI_OWNERS]
    pattern += [rng.choice(multi).crm_user_id for _ in range(len(above) - len(pattern))]
    rng.shuffle(pattern)
    owners = [rng.choice(SAMPLE_USERS).crm_user_id for _ in kinds]
    for i, owner in zip(above, pattern, strict=True):
        owners[i] = owner
    normal = [i for i, kind in enumerate(kinds) if kind == "normal"]
    for count, i in enumerate(rng.sample(normal, _N_UNKNOWN_NORMAL)):
        owners[i] = UNKNOWN_OWNER_IDS[count % len(UNKNOWN_OWNER_IDS)]
    return owners


def _company_names(fake: Faker, n: int) -> list[str]:
    """`n` distinct Faker company names, none equal to the special names."""
    names: list[str] = []
    seen = set(SPECIAL_NAMES)
    while len(names) < n:
        name = fake.company()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _place_special_names(names: list[str], kinds: Sequence[_Kind], owners: Sequence[str]) -> None:
    """Give the escaping test names to the first accounts above the threshold with known owners."""
    known = {u.crm_user_id for u in SAMPLE_USERS}
    slots = [i for i, kind in enumerate(kinds) if kind in _ABOVE_KINDS and owners[i] in known]
    for i, name in zip(slots, SPECIAL_NAMES, strict=False):
        names[i] = name


def _domain_for(name: str, taken: set[str]) -> str:
    """A lower-case `.example` domain derived from a company name, unique within `taken`."""
    words = re.findall(r"[a-z0-9]+", name.lower().replace("'", ""))
    stem = "-".join(w for w in words if w not in _NAME_STOPWORDS) or "-".join(words) or "company"
    domain, suffix = f"{stem}.example", 2
    while domain in taken:
        domain, suffix = f"{stem}-{suffix}.example", suffix + 1
    taken.add(domain)
    return domain


def _hours(rng: random.Random, kind: _Kind, quota: int) -> tuple[int | None, int]:
    """(tracked_hours, total_free_hours) for an account of the given kind and plan quota."""
    if kind == "exact":
        return quota * THRESHOLD_PERCENT // 100, quota
    if kind == "under":
        return quota * (THRESHOLD_PERCENT - 1) // 100, quota
    if kind == "over":
        return math.ceil(quota * rng.uniform(1.05, 1.8)), quota
    if kind == "high":
        tracked = math.ceil(quota * rng.uniform(0.76, 0.99))
        return min(max(tracked, quota * THRESHOLD_PERCENT // 100 + 1), quota - 1), quota
    if kind == "zero_quota":
        return rng.randint(1, 40), 0
    if kind == "null":
        return None, quota
    if kind == "negative":
        return -rng.randint(3, 40), quota
    if rng.random() < 0.08:
        return 0, quota
    return int(quota * 0.7 * rng.betavariate(1.3, 4.0)), quota


def _activity(rng: random.Random, kind: _Kind, tracked: int | None, today: date) -> str:
    """ISO date of last activity: recent for busy accounts, older for idle ones."""
    if kind in _ABOVE_KINDS or kind == "under":
        days = rng.randint(0, 6)
    elif tracked == 0:
        days = rng.randint(30, 120)
    else:
        days = rng.randint(0, 45)
    return (today - timedelta(days=days)).isoformat()


def _tier(rng: random.Random, kind: _Kind) -> str:
    """Lead score tier, skewed towards A for accounts above the threshold."""
    weights = (6, 3, 1) if kind in _ABOVE_KINDS else (2, 4, 4)
    return rng.choices(("A", "B", "C"), weights=weights)[0]


def _build_row(
    rng: random.Random, ident: tuple[str, str, str, str], kind: _Kind, plan: str, today: date
) -> _Row:
    """One account row; `ident` is (account_id, account_name, domain, owner_id)."""
    account_id, name, domain, owner = ident
    tracked, total = _hours(rng, kind, PLAN_QUOTAS[plan])
    stamp = datetime.combine(today, time(5, 0), tzinfo=UTC)
    return _Row(
        account_id=account_id,
        account_name=name,
        domain=domain,
        owner_id=owner,
        plan=plan,
        users=rng.randint(*_PLAN_SEATS[plan]),
        tracked_hours=tracked,
        total_free_hours=total,
        last_activity_date=_activity(rng, kind, tracked, today),
        score_tier=_tier(rng, kind),
        updated_at=(stamp + timedelta(seconds=rng.randint(0, 5400))).isoformat(),
    )


def build_sample_rows(seed: int, accounts: int, today: date) -> list[tuple[object, ...]]:
    """The account_usage rows, in column order, for a seed, account count and reference date."""
    if accounts < _MIN_ACCOUNTS:
        raise ValueError(f"accounts must be at least {_MIN_ACCOUNTS}, got {accounts}")
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    plans = _plans(rng, accounts)
    kinds = _kinds(rng, plans)
    owners = _owners(rng, kinds)
    names = _company_names(fake, accounts)
    _place_special_names(names, kinds, owners)
    taken_ids: set[str] = set()
    taken_domains: set[str] = set()
    rows = []
    for i in range(accounts):
        account_id = _sf_id(rng, "001", taken_ids)
        ident = (account_id, names[i], _domain_for(names[i], taken_domains), owners[i])
        rows.append(astuple(_build_row(rng, ident, kinds[i], plans[i], today)))
    return rows


_CREATE_TABLE = """
CREATE TABLE account_usage (
    account_id TEXT PRIMARY KEY,
    account_name TEXT NOT NULL,
    domain TEXT NOT NULL UNIQUE,
    owner_id TEXT NOT NULL,
    plan TEXT NOT NULL,
    users INTEGER NOT NULL,
    tracked_hours INTEGER,
    total_free_hours INTEGER NOT NULL,
    last_activity_date TEXT NOT NULL,
    score_tier TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""
_INSERT = "INSERT INTO account_usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def create_sample_warehouse(
    path: Path, *, seed: int = 7, accounts: int = 300, today: date | None = None
) -> None:
    """Write (overwriting) a SQLite warehouse with one `account_usage` row per sample account."""
    rows = build_sample_rows(seed, accounts, today or date.today())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        try:
            conn.execute(_CREATE_TABLE)
            conn.executemany(_INSERT, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


# --- territory -------------------------------------------------------------------------

# Index -> how the territory row identifies the user; every other index is slack-only.
_BOTH_INDEX = 2
_EMAIL_ONLY = (0, 4, 6, 8, _DELETED_INDEX)
_MESSY_INDEXES = (0, 4)


def _messy(email: str, index: int) -> str:
    """A mixed-case, space-padded variant of `email`, to exercise normalisation."""
    if index == _MESSY_INDEXES[1]:
        return email.upper() + "  "
    local, domain = email.split("@")
    mixed = ".".join(part.capitalize() for part in local.split("."))
    mixed_domain = "-".join(part.capitalize() for part in domain.split("-"))
    return f" {mixed}@{mixed_domain} "


def territory_rows() -> list[tuple[str, str, str]]:
    """(crm_user_id, email, slack_user_id) for every sample user, as written to the CSV."""
    rows = []
    for index, user in enumerate(SAMPLE_USERS):
        if index == _BOTH_INDEX:
            rows.append((user.crm_user_id, user.email, user.slack_user_id))
        elif index in _EMAIL_ONLY:
            email = _messy(user.email, index) if index in _MESSY_INDEXES else user.email
            rows.append((user.crm_user_id, email, ""))
        else:
            rows.append((user.crm_user_id, "", user.slack_user_id))
    return rows


def write_sample_territory(path: Path) -> None:
    """Write the territory CSV (crm_user_id,email,slack_user_id) for SAMPLE_USERS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TERRITORY_HEADER)
        writer.writerows(territory_rows())
