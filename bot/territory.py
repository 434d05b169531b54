"""Owner chain: CRM owner -> email -> Slack user, with the territory CSV overriding (SPEC 4)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from bot.crmid import to_18
from bot.errors import ConfigError, DeliveryError, OwnerLookupError
from bot.store import Store

NEGATIVE_TTL = timedelta(hours=1)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlackUser:
    """What Nudge needs of a Slack member."""

    id: str
    first_name: str = ""
    real_name: str = ""
    tz: str = ""
    deleted: bool = False
    is_restricted: bool = False
    is_admin: bool = False


@dataclass(frozen=True)
class CrmUser:
    """A CRM user (Salesforce `User`)."""

    id: str
    email: str
    first_name: str = ""
    active: bool = True


@dataclass(frozen=True)
class Owner:
    """A resolved owner: who gets the DM."""

    crm_id: str | None
    slack_user_id: str
    first_name: str
    tz: str = ""


@dataclass(frozen=True)
class Unresolved:
    """An owner Nudge could not map to a Slack user, and why (shown in the fallback card)."""

    crm_id: str | None
    reason: str
    transient: bool = False  # a failed look-up, not a missing owner: retried next poll


Resolution = Owner | Unresolved


class SlackDirectory(Protocol):
    """Slack's user look-ups (users.lookupByEmail, users.info); None when the user is unknown."""

    def lookup_by_email(self, email: str) -> SlackUser | None: ...

    def user_info(self, user_id: str) -> SlackUser | None: ...


class CrmDirectory(Protocol):
    """The CRM's users by id (batched by the adapter)."""

    def users(self, ids: Iterable[str]) -> Mapping[str, CrmUser]: ...


class CrmAccounts(CrmDirectory, Protocol):
    """The CRM's accounts: owners, the fields a summary uses, the record page."""

    def account_owners(self, account_ids: Iterable[str]) -> Mapping[str, str]: ...

    def account_fields(self, account_ids: Iterable[str]) -> Mapping[str, Mapping[str, Any]]: ...

    def record_url(self, account_id: str) -> str: ...


@dataclass(frozen=True)
class TerritoryRow:
    """One override row of the territory CSV."""

    crm_user_id: str
    email: str
    slack_user_id: str


def normalise_email(email: str) -> str:
    """Emails compare trimmed and lower-cased."""
    return email.strip().lower()


def read_territory(path: Path) -> dict[str, TerritoryRow]:
    """Parse the territory CSV (crm_user_id,email,slack_user_id); ConfigError on a bad file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = {"crm_user_id", "email", "slack_user_id"} - set(reader.fieldnames or ())
            if missing:
                raise ConfigError([f"{path}: missing column(s) {', '.join(sorted(missing))}"])
            rows = list(reader)
    except OSError as exc:
        raise ConfigError([f"territory: cannot read {path}: {exc.strerror}"]) from exc
    table: dict[str, TerritoryRow] = {}
    for row in rows:
        crm_id = to_18(row.get("crm_user_id") or "")
        if crm_id:
            table[crm_id] = TerritoryRow(
                crm_id,
                normalise_email(row.get("email") or ""),
                (row.get("slack_user_id") or "").strip(),
            )
    return table


def _first_name(crm: str, user: SlackUser) -> str:
    if crm.strip():
        return crm.strip()
    if user.first_name.strip():
        return user.first_name.strip()
    words = user.real_name.split()
    return words[0] if words else ""


class Territory:
    """Maps CRM owner ids to Slack users: CSV row, else CRM email; cached per run and in store."""

    def __init__(
        self,
        slack: SlackDirectory | None,
        *,
        overrides: Mapping[str, TerritoryRow] | None = None,
        crm: CrmDirectory | None = None,
        store: Store | None = None,
        cache_ttl: timedelta = timedelta(hours=24),
        clock: Callable[[], datetime],
    ) -> None:
        self.slack = slack
        self.overrides = dict(overrides or {})
        self.crm = crm
        self.store = store
        self.cache_ttl = cache_ttl
        self.clock = clock
        self.lookups = 0
        self._by_email: dict[str, SlackUser | None] = {}
        self._by_id: dict[str, SlackUser | None] = {}

    def resolve_many(self, owner_ids: Iterable[str | None]) -> dict[str | None, Resolution]:
        """Resolve each distinct owner once (one look-up per owner, not per account)."""
        wanted = list(dict.fromkeys(owner_ids))
        need_crm = [o for o in wanted if o and o not in self.overrides]
        try:
            crm_users = dict(self.crm.users(need_crm)) if self.crm and need_crm else {}
        except OwnerLookupError as exc:  # the CRM is down: those owners wait for the next poll
            log.warning("CRM users look-up failed: %s", exc)
            failed = Unresolved(None, f"CRM look-up failed ({exc})", transient=True)
            return {o: (failed if o in need_crm else self._resolve_or_defer(o, {})) for o in wanted}
        return {owner: self._resolve_or_defer(owner, crm_users) for owner in wanted}

    def _resolve_or_defer(self, owner: str | None, crm_users: Mapping[str, CrmUser]) -> Resolution:
        """One owner's failed look-up fails that owner's accounts this run, not the run."""
        try:
            return self._resolve(owner, crm_users)
        except DeliveryError as exc:
            if exc.fatal:
                raise
            return Unresolved(owner, f"Slack look-up failed ({exc.code or exc})", transient=True)

    def _resolve(self, owner: str | None, crm_users: Mapping[str, CrmUser]) -> Resolution:
        if not owner:
            return Unresolved(None, "the account has no owner in the CRM")
        crm_user = crm_users.get(owner)
        crm_first = crm_user.first_name if crm_user else ""
        row = self.overrides.get(owner)
        if row and row.slack_user_id:
            return self._by_slack_id(owner, row.slack_user_id, crm_first)
        email = row.email if row and row.email else ""
        if not email and crm_user:
            if not crm_user.active:
                return Unresolved(owner, f"CRM user {owner} is inactive")
            email = normalise_email(crm_user.email)
        if not email and self.crm:
            return Unresolved(owner, f"owner {owner} is not a known CRM user with an email")
        if not email:
            why = "is not in the territory file and no CRM is configured"
            return Unresolved(owner, f"owner {owner} {why}")
        return self._by_email_address(owner, email, crm_first)

    def _by_slack_id(self, owner: str, user_id: str, crm_first: str) -> Resolution:
        if self.slack is None:
            return self._not_looked_up(owner)
        if user_id not in self._by_id:
            self._by_id[user_id] = self.slack.user_info(user_id)
        return self._finish(owner, self._by_id[user_id], f"Slack user {user_id}", crm_first)

    def _by_email_address(self, owner: str, email: str, crm_first: str) -> Resolution:
        if self.slack is None:
            return self._not_looked_up(owner)
        if email not in self._by_email:
            self._by_email[email] = self._cached_lookup(email)
        return self._finish(owner, self._by_email[email], email, crm_first)

    @staticmethod
    def _not_looked_up(owner: str) -> Unresolved:
        return Unresolved(
            owner, "not looked up in Slack: SLACK_BOT_TOKEN is not set", transient=True
        )

    def _cached_lookup(self, email: str) -> SlackUser | None:
        now = self.clock()
        if self.store:
            cached = self.store.cached_user(email, now, self.cache_ttl)
            if cached and not cached["user_id"] and cached["fetched_at"] < now - NEGATIVE_TTL:
                cached = None  # a new hire may have joined Slack since: ask again hourly
            if cached is not None:
                if not cached["user_id"]:
                    # Keep the reason across runs: a deactivated user is not an unknown one.
                    return SlackUser("", deleted=True) if cached["error"] == "deleted" else None
                return SlackUser(
                    cached["user_id"],
                    cached["first_name"] or "",
                    cached["real_name"] or "",
                    cached["tz"] or "",
                )
        assert self.slack is not None
        self.lookups += 1
        user = self.slack.lookup_by_email(email)
        if self.store:
            live = user if user and not user.deleted else None
            self.store.cache_user(
                email,
                now,
                user_id=live.id if live else None,
                first_name=live.first_name if live else None,
                real_name=live.real_name if live else None,
                tz=live.tz if live else None,
                error=None if live else ("deleted" if user else "users_not_found"),
            )
        return user

    @staticmethod
    def _finish(owner: str, user: SlackUser | None, who: str, crm_first: str) -> Resolution:
        if user is None:
            if "@" in who:
                return Unresolved(owner, f"no Slack user has the email {who}")
            return Unresolved(owner, f"{who} is not a member of this Slack workspace")
        if user.deleted:
            label = who if "@" in who else user.id
            return Unresolved(owner, f"the Slack account of {label} is deactivated")
        return Owner(owner, user.id, _first_name(crm_first, user), user.tz)


__all__ = [
    "CrmDirectory",
    "CrmUser",
    "Owner",
    "OwnerLookupError",
    "Resolution",
    "SlackDirectory",
    "SlackUser",
    "Territory",
    "TerritoryRow",
    "Unresolved",
    "read_territory",
]
