"""Salesforce log-in (SPEC 1.3): the four modes, their settings, timeouts, secret redaction."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.login import SalesforceLogin

from bot.config import Settings
from bot.errors import ConfigError, OwnerLookupError

log = logging.getLogger(__name__)

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


def setting_values(settings: Settings) -> dict[str, str]:
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


def domain_host(value: str) -> str:
    """`acme`, `acme.my.salesforce.com` or its URL -> `acme.my`; `login`/`test` stay as they are."""
    host = re.sub(r"^[a-z]+://", "", value.strip().lower()).split("/")[0]
    host = host.removesuffix(".salesforce.com").removesuffix(".lightning.force.com")
    if host in ("login", "test") or host.endswith(".my"):
        return host
    return host + ".my"


def _present(values: Mapping[str, str]) -> set[str]:
    present = {name for name, value in values.items() if value}
    if domain_host(values["SALESFORCE_DOMAIN"]) in ("login", "test"):
        present.discard("SALESFORCE_DOMAIN")  # not a My Domain, so no help to client credentials
    return present


def auth_mode(settings: Settings) -> str | None:
    """The log-in mode the settings configure (SPEC 1.3), None for none; ConfigError if partial."""
    values = setting_values(settings)
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
    sandbox = domain_host(domain) in ("login", "test")  # only the legacy mode takes these
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
    host = domain_host(domain)
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
    domain = domain_host(values["SALESFORCE_DOMAIN"]) if values["SALESFORCE_DOMAIN"] else "login"
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


def secrets_of(settings: Settings) -> tuple[str, ...]:
    values = setting_values(settings)
    names = ("CONSUMER_SECRET", "ACCESS_TOKEN", "PASSWORD", "SECURITY_TOKEN")
    return tuple(values[f"SALESFORCE_{name}"] for name in names if values[f"SALESFORCE_{name}"])


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _login_error(exc: Exception, label: str, secrets: Sequence[str], timeout_s: float) -> str:
    if isinstance(exc, SalesforceAuthenticationFailed):
        return redact(f"Salesforce log-in ({label}) was refused: {exc}", secrets)
    if isinstance(exc, requests.Timeout):
        return f"Salesforce log-in ({label}) got no answer within {timeout_s:g} s"
    return f"Salesforce log-in ({label}) failed: cannot reach Salesforce ({type(exc).__name__})"


def open_client(settings: Settings, mode: str, session: requests.Session | None) -> Salesforce:
    """Log in with `mode`; OwnerLookupError (without secrets) when that fails."""
    timeout_s = settings.salesforce.timeout_s
    version = settings.salesforce.api_version
    http = with_timeout(session or requests.Session(), timeout_s)
    label = next(label for name, label, _ in MODES if name == mode)
    try:
        instance_url, token = _log_in(mode, setting_values(settings), http, version)
    except (SalesforceAuthenticationFailed, requests.RequestException) as exc:
        message = _login_error(exc, label, secrets_of(settings), timeout_s)
        raise OwnerLookupError(message) from exc
    log.info("Salesforce: logged in (%s) to %s", label, urlsplit(instance_url).hostname)
    return Salesforce(instance_url=instance_url, session_id=token, session=http, version=version)


def connect(settings: Settings, session: requests.Session | None = None) -> Salesforce | None:
    """Log in with the configured mode (SPEC 1.3); None when Salesforce is not configured.

    ConfigError when the settings are partial or invalid; OwnerLookupError when the log-in
    fails. `session` (tests hand in one that reaches a local fake) gets the timeout adapters.
    """
    mode = auth_mode(settings)
    return None if mode is None else open_client(settings, mode, session)
