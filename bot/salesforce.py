"""Salesforce adapter (simple-salesforce): log-in modes, owners, users, account fields, links."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
)
from simple_salesforce.format import format_soql
from simple_salesforce.login import SalesforceLogin

from bot.config import Settings
from bot.crmid import to_18
from bot.errors import ConfigError, OwnerLookupError
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
_MY_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*(\.(sandbox|develop|scratch|demo))?\.my$")
# (mode, label, the settings it needs) in SPEC 1.3's order, which is also the precedence.
MODES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "client_credentials",
        "OAuth client credentials",
        ("SALESFORCE_DOMAIN", "SALESFORCE_CONSUMER_KEY", "SALESFORCE_CONSUMER_SECRET"),
    ),
    (
        "jwt",
        "JWT bearer",
        ("SALESFORCE_USERNAME", "SALESFORCE_CONSUMER_KEY", "SALESFORCE_PRIVATE_KEY_FILE"),
    ),
    ("access_token", "access token", ("SALESFORCE_INSTANCE_URL", "SALESFORCE_ACCESS_TOKEN")),
    (
        "password",
        "username/password (legacy)",
        ("SALESFORCE_USERNAME", "SALESFORCE_PASSWORD", "SALESFORCE_SECURITY_TOKEN"),
    ),
)


def _plain(value: str | SecretStr | None) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value().strip()
    return (value or "").strip()


def _values(settings: Settings) -> dict[str, str]:
    return {
        "SALESFORCE_DOMAIN": _plain(settings.salesforce_domain),
        "SALESFORCE_CONSUMER_KEY": _plain(settings.salesforce_consumer_key),
        "SALESFORCE_CONSUMER_SECRET": _plain(settings.salesforce_consumer_secret),
        "SALESFORCE_USERNAME": _plain(settings.salesforce_username),
        "SALESFORCE_PRIVATE_KEY_FILE": _plain(settings.salesforce_private_key_file),
        "SALESFORCE_INSTANCE_URL": _plain(settings.salesforce_instance_url),
        "SALESFORCE_ACCESS_TOKEN": _plain(settings.salesforce_access_token),
        "SALESFORCE_PASSWORD": _plain(settings.salesforce_password),
        "SALESFORCE_SECURITY_TOKEN": _plain(settings.salesforce_security_token),
    }


def _domain_host(value: str) -> str:
    """`acme`, `acme.my.salesforce.com` or its URL -> `acme.my`; `login`/`test` stay as they are."""
    host = re.sub(r"^[a-z]+://", "", value.strip().lower()).split("/")[0]
    host = host.removesuffix(".salesforce.com").removesuffix(".lightning.force.com")
    if host in ("login", "test") or host.endswith(".my"):
        return host
    return host + ".my"


def _present(values: Mapping[str, str]) -> set[str]:
    present = {name for name, value in values.items() if value}
    if _domain_host(values["SALESFORCE_DOMAIN"]) in ("login", "test"):
        present.discard("SALESFORCE_DOMAIN")  # not a My Domain, so no help to client credentials
    return present


def auth_mode(settings: Settings) -> str | None:
    """The log-in mode the settings configure (SPEC 1.3), None for none; ConfigError if partial."""
    values = _values(settings)
    present = _present(values)
    for mode, _label, needed in MODES:
        if present.issuperset(needed):
            _validate(mode, values)
            return mode
    if not any(values.values()):
        return None
    raise ConfigError([_missing(values, present)])


def _missing(values: Mapping[str, str], present: set[str]) -> str:
    """One line naming what the closest mode lacks."""
    domain = values["SALESFORCE_DOMAIN"]
    sandbox = _domain_host(domain) in ("login", "test")  # only the legacy mode takes these
    scored = [
        (len(present.intersection(need)) + (sandbox and mode == "password"), -i)
        for i, (mode, _label, need) in enumerate(MODES)
    ]
    _, label, needed = MODES[-max(scored)[1]]
    lacking = [name for name in needed if name not in present]
    if "SALESFORCE_DOMAIN" in lacking and domain:
        return (
            f"Salesforce ({label}): SALESFORCE_DOMAIN must be your My Domain "
            f"(acme for acme.my.salesforce.com), not {domain!r}"
        )
    return (
        f"Salesforce ({label}): {' and '.join(lacking)} not set "
        f"(this mode needs {' + '.join(needed)})"
    )


def _validate(mode: str, values: Mapping[str, str]) -> None:
    domain = values["SALESFORCE_DOMAIN"]
    host = _domain_host(domain)
    if domain and host not in ("login", "test") and not _MY_DOMAIN.match(host):
        raise ConfigError([f"SALESFORCE_DOMAIN {domain!r} is not a My Domain (acme or its URL)"])
    if mode == "access_token":
        parts = urlsplit(values["SALESFORCE_INSTANCE_URL"])
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(
                ["SALESFORCE_INSTANCE_URL must be an https URL (https://acme.my.salesforce.com)"]
            )
    if mode == "jwt":
        _check_private_key(Path(values["SALESFORCE_PRIVATE_KEY_FILE"]).expanduser())


def _check_private_key(path: Path) -> None:
    try:
        jwt.encode({"check": True}, path.read_bytes(), algorithm="RS256")
    except OSError as exc:
        problem = f"SALESFORCE_PRIVATE_KEY_FILE: cannot read {path}: {exc.strerror}"
        raise ConfigError([problem]) from exc
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise ConfigError(
            [f"SALESFORCE_PRIVATE_KEY_FILE: {path} is not an RSA private key in PEM form"]
        ) from exc


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request the configured timeout unless the caller chose one."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """Send with the default timeout when none was given."""
        chosen = self.timeout_s if timeout is None else timeout
        return super().send(request, stream, chosen, verify, cert, proxies)


def with_timeout(session: requests.Session, timeout_s: float) -> requests.Session:
    """Mount adapters on `session` so that no request to any host can wait without a limit."""
    adapter = _TimeoutAdapter(timeout_s)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _token_answer(response: requests.Response) -> tuple[str, str]:
    """(instance_url, access_token) from an OAuth token response."""
    try:
        body = response.json()
    except ValueError as exc:
        raise SalesforceAuthenticationFailed(response.status_code, "not a JSON answer") from exc
    body = body if isinstance(body, dict) else {}
    if response.status_code != 200 or not (body.get("instance_url") and body.get("access_token")):
        raise SalesforceAuthenticationFailed(
            body.get("error") or response.status_code, body.get("error_description")
        )
    return str(body["instance_url"]), str(body["access_token"])


def _log_in(
    mode: str, values: Mapping[str, str], http: requests.Session, version: str
) -> tuple[str, str]:
    """(instance_url, access token) for `mode`; network errors and auth failures propagate."""
    domain = _domain_host(values["SALESFORCE_DOMAIN"]) if values["SALESFORCE_DOMAIN"] else "login"
    if mode == "access_token":
        return values["SALESFORCE_INSTANCE_URL"], values["SALESFORCE_ACCESS_TOKEN"]
    if mode == "client_credentials":
        response = http.post(
            f"https://{domain}.salesforce.com/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": values["SALESFORCE_CONSUMER_KEY"],
                "client_secret": values["SALESFORCE_CONSUMER_SECRET"],
            },
        )
        return _token_answer(response)
    if mode == "jwt":
        # The audience must be login or test; a My Domain only changes where the token comes from.
        token, instance = SalesforceLogin(
            username=values["SALESFORCE_USERNAME"],
            consumer_key=values["SALESFORCE_CONSUMER_KEY"],
            privatekey_file=str(Path(values["SALESFORCE_PRIVATE_KEY_FILE"]).expanduser()),
            domain="test" if domain == "test" else "login",
            instance_url=None if domain in ("login", "test") else domain,
            session=http,
        )
    else:
        token, instance = SalesforceLogin(
            username=values["SALESFORCE_USERNAME"],
            password=values["SALESFORCE_PASSWORD"],
            security_token=values["SALESFORCE_SECURITY_TOKEN"],
            domain=domain,
            sf_version=version,
            session=http,
        )
    return f"https://{instance}", token


def _secrets(settings: Settings) -> tuple[str, ...]:
    values = _values(settings)
    names = ("CONSUMER_SECRET", "ACCESS_TOKEN", "PASSWORD", "SECURITY_TOKEN")
    return tuple(values[f"SALESFORCE_{name}"] for name in names if values[f"SALESFORCE_{name}"])


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _login_error(exc: Exception, label: str, secrets: Sequence[str], timeout_s: float) -> str:
    if isinstance(exc, SalesforceAuthenticationFailed):
        return _redact(f"Salesforce log-in ({label}) was refused: {exc}", secrets)
    if isinstance(exc, requests.Timeout):
        return f"Salesforce log-in ({label}) got no answer within {timeout_s:g} s"
    return f"Salesforce log-in ({label}) failed: cannot reach Salesforce ({type(exc).__name__})"


def _open(settings: Settings, mode: str, session: requests.Session | None) -> Salesforce:
    """Log in with `mode`; OwnerLookupError (without secrets) when that fails."""
    timeout_s = settings.salesforce.timeout_s
    version = settings.salesforce.api_version
    http = with_timeout(session or requests.Session(), timeout_s)
    label = next(label for name, label, _ in MODES if name == mode)
    try:
        instance_url, token = _log_in(mode, _values(settings), http, version)
    except (SalesforceAuthenticationFailed, requests.RequestException) as exc:
        message = _login_error(exc, label, _secrets(settings), timeout_s)
        raise OwnerLookupError(message) from exc
    log.info("Salesforce: logged in (%s) to %s", label, urlsplit(instance_url).hostname)
    return Salesforce(instance_url=instance_url, session_id=token, session=http, version=version)


def connect(settings: Settings, session: requests.Session | None = None) -> Salesforce | None:
    """Log in with the configured mode (SPEC 1.3); None when Salesforce is not configured.

    ConfigError when the settings are partial or invalid; OwnerLookupError when the log-in
    fails. `session` (tests hand in one that reaches a local fake) gets the timeout adapters.
    """
    mode = auth_mode(settings)
    return None if mode is None else _open(settings, mode, session)


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
        values = _values(settings)
        domain = _domain_host(values["SALESFORCE_DOMAIN"])
        known = values["SALESFORCE_INSTANCE_URL"] if mode == "access_token" else ""
        if mode == "client_credentials":
            known = f"https://{domain}.salesforce.com"
        return cls(
            partial(_open, settings, mode, session or requests.Session()),
            renewable=mode != "access_token",
            account_fields=settings.salesforce.account_fields,
            link_base=settings.salesforce.instance_url or known,
            timeout_s=settings.salesforce.timeout_s,
            secrets=_secrets(settings),
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
            raise OwnerLookupError(_redact(message, self._secrets)) from exc
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
