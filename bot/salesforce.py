"""Salesforce adapter (simple-salesforce): owners, users, account fields, record links."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
)
from simple_salesforce.format import format_soql

from bot.config import Settings
from bot.crmid import to_18
from bot.errors import ConfigError, OwnerLookupError
from bot.salesforce_login import (
    auth_mode,
    connect,
    domain_host,
    open_client,
    redact,
    secrets_of,
    setting_values,
    with_timeout,
)
from bot.territory import CrmUser

log = logging.getLogger(__name__)

MAX_IDS_PER_QUERY = 200  # SPEC 4: one SOQL query per <= 200 ids keeps the GET URL short
MAX_PAGES = 100  # 200 ids fit one page of 2 000; far more pages means something is wrong
USER_FIELDS = ("Id", "Email", "FirstName", "IsActive")
ACCESS_TOKEN_EXPIRED = (
    "the Salesforce access token (SALESFORCE_ACCESS_TOKEN) has expired or was revoked; "
    "it cannot be renewed automatically: set a new one, or use OAuth client credentials "
    "(SALESFORCE_DOMAIN + SALESFORCE_CONSUMER_KEY + SALESFORCE_CONSUMER_SECRET)"
)
_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")


def check_account_fields(fields: Iterable[str]) -> tuple[str, ...]:
    """Field names (`Industry`, `Parent.Name`) safe to put in a SELECT; ConfigError otherwise."""
    chosen = tuple(dict.fromkeys(field.strip() for field in fields if field.strip()))
    bad = [field for field in chosen if not _FIELD.match(field)]
    if bad:
        raise ConfigError([f"[salesforce] account_fields: {', '.join(map(repr, bad))} not fields"])
    return chosen


def _id_chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    """Distinct 18-character ids in chunks; a malformed id (which would fail the whole
    Salesforce query with INVALID_QUERY_FILTER_OPERATOR) is simply unknown."""
    wanted = [i for i in dict.fromkeys(to_18(str(raw)) for raw in ids) if _ID.match(i)]
    for start in range(0, len(wanted), MAX_IDS_PER_QUERY):
        yield wanted[start : start + MAX_IDS_PER_QUERY]


def _field_value(record: Mapping[str, Any], path: str) -> Any:
    """`Parent.Name` from a nested record (None when the parent is empty); names match any case."""
    current: Any = record
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        key = next((k for k in current if k.lower() == part.lower()), part)
        current = current.get(key)
    return current


def _error_detail(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return f"{content[0].get('errorCode')}: {content[0].get('message')}"
    return f"HTTP {exc.status}"


class SalesforceCRM:
    """Owners, users and account fields over the Salesforce REST API (a CrmDirectory).

    `queries` counts SOQL queries sent, `pages` the further pages fetched and `logins` the
    log-ins: the numbers the scale note reports.
    """

    def __init__(
        self,
        login: Callable[[], Salesforce],
        *,
        renewable: bool = True,
        account_fields: Iterable[str] = (),
        link_base: str = "",
        timeout_s: float = 20,
        secrets: Sequence[str] = (),
    ) -> None:
        self._login = login
        self._sf: Salesforce | None = None
        self.renewable = renewable
        self.fields = check_account_fields(account_fields)
        self.link_base = link_base.rstrip("/")
        self.timeout_s = timeout_s
        self._secrets = tuple(secrets)
        self.queries = 0
        self.pages = 0
        self.logins = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, session: requests.Session | None = None
    ) -> SalesforceCRM | None:
        """The CRM for the configured log-in mode, None without one; logs in on first use."""
        mode = auth_mode(settings)
        if mode is None:
            return None
        values = setting_values(settings)
        domain = domain_host(values["SALESFORCE_DOMAIN"])
        known = values["SALESFORCE_INSTANCE_URL"] if mode == "access_token" else ""
        if mode == "client_credentials":
            known = f"https://{domain}.salesforce.com"
        return cls(
            partial(open_client, settings, mode, session or requests.Session()),
            renewable=mode != "access_token",
            account_fields=settings.salesforce.account_fields,
            link_base=settings.salesforce.instance_url or known,
            timeout_s=settings.salesforce.timeout_s,
            secrets=secrets_of(settings),
        )

    def users(self, ids: Iterable[str]) -> dict[str, CrmUser]:
        """`User` records by 18-character id (email, first name, active); unknown ids absent."""
        users = {}
        for record in self._select("User", USER_FIELDS, ids):
            user_id = to_18(str(record["Id"]))
            users[user_id] = CrmUser(
                id=user_id,
                email=str(record.get("Email") or ""),
                first_name=str(record.get("FirstName") or ""),
                active=bool(record.get("IsActive")),
            )
        return users

    def account_owners(self, account_ids: Iterable[str]) -> dict[str, str]:
        """`Account.OwnerId` by 18-character account id (both ids 18 characters)."""
        records = self._select("Account", ("Id", "OwnerId"), account_ids)
        return {to_18(str(r["Id"])): to_18(str(r["OwnerId"])) for r in records if r.get("OwnerId")}

    def account_fields(self, account_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The configured `[salesforce] account_fields` by account id; `Parent.Name` flattened."""
        if not self.fields:
            return {}
        extra = tuple(f for f in self.fields if f.lower() != "id")
        records = self._select("Account", ("Id", *extra), account_ids)
        return {
            to_18(str(r["Id"])): {field: _field_value(r, field) for field in self.fields}
            for r in records
        }

    def record_url(self, account_id: str) -> str:
        """The account's Lightning record page, or "" while no instance is known."""
        base = self.link_base or (f"https://{self._sf.sf_instance}" if self._sf else "")
        return f"{base}/lightning/r/Account/{to_18(account_id)}/view" if base else ""

    def check(self) -> str:
        """Log in and run one tiny query (for `nudge check`); returns the instance host."""
        self._query_all("SELECT Id FROM User LIMIT 1")
        assert self._sf is not None
        return str(self._sf.sf_instance)

    def _select(self, sobject: str, fields: Sequence[str], ids: Iterable[str]) -> list[Any]:
        records: list[Any] = []
        for chunk in _id_chunks(ids):
            soql = format_soql(
                "SELECT {fields:literal} FROM {sobject:literal} WHERE Id IN {ids}",
                fields=", ".join(fields),
                sobject=sobject,
                ids=chunk,
            )
            records.extend(self._query_all(soql))
        return records

    def _query_all(self, soql: str) -> list[Any]:
        """Every record of `soql`; an expired session is renewed once and the query re-run (F14)."""
        try:
            return self._pages(soql)
        except SalesforceExpiredSession as exc:
            if not self.renewable:
                raise OwnerLookupError(ACCESS_TOKEN_EXPIRED) from exc
            log.info("Salesforce session expired (INVALID_SESSION_ID): logging in again")
            self._sf = None
        try:
            return self._pages(soql)
        except SalesforceExpiredSession as exc:
            raise OwnerLookupError(
                "Salesforce rejected the session again right after a new log-in "
                "(INVALID_SESSION_ID): check the integration user and the connected app's policies"
            ) from exc

    def _pages(self, soql: str) -> list[Any]:
        with self._translated():
            if self._sf is None:
                self.logins += 1
                self._sf = self._login()
            self.queries += 1
            result = self._sf.query(soql)
            records = list(result["records"])
            seen: set[str] = set()
            while not result.get("done", True):
                link = str(result.get("nextRecordsUrl") or "")
                # A link seen before, or endless paging, would hold the run forever (F10).
                if not link or link in seen or len(seen) >= MAX_PAGES:
                    raise OwnerLookupError("Salesforce kept paging without an end; query abandoned")
                seen.add(link)
                self.pages += 1
                result = self._sf.query_more(link, identifier_is_url=True)
                records.extend(result["records"])
            return records

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Library and network errors become OwnerLookupError, without secrets (an expired
        session passes through for _query_all to renew)."""
        try:
            yield
        except SalesforceExpiredSession:
            raise
        except SalesforceError as exc:
            message = f"Salesforce query failed: {_error_detail(exc)}"
            raise OwnerLookupError(redact(message, self._secrets)) from exc
        except requests.Timeout as exc:
            raise OwnerLookupError(
                f"Salesforce did not answer within {self.timeout_s:g} s ([salesforce] timeout_s)"
            ) from exc
        except requests.RequestException as exc:
            raise OwnerLookupError(f"cannot reach Salesforce ({type(exc).__name__})") from exc
        except (KeyError, TypeError) as exc:
            raise OwnerLookupError("Salesforce answered a query in an unexpected shape") from exc


__all__ = [
    "MAX_IDS_PER_QUERY",
    "SalesforceCRM",
    "auth_mode",
    "check_account_fields",
    "connect",
    "with_timeout",
]
