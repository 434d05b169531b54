"""What `/usage-summary <text>` looks for: an exact domain, or part of an account name (SPEC 7).

Pure: the text is only normalised here. It reaches the warehouse as bound parameters only
(`Warehouse.find`), never as SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

MIN_NAME = 2
MAX_TEXT = 200
MAX_RESULTS = 10
LIKE_ESCAPE = "!"

# A host name: dot-separated labels ending in an alphabetic top-level label (so `62.5` is not).
_HOST = r"(?:[\w-]+\.)+[^\W\d_]{2,}\.?"
_HOST_ONLY = re.compile(rf"^(?P<host>{_HOST})(?::\d+)?(?:[/?#]\S*)?$")
_EMAIL = re.compile(rf"^[^@\s<>]+@(?P<host>{_HOST})$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
# Slack may send a link it recognised as `<https://acme.com|acme.com>` or `<mailto:…|…>`.
_SLACK_LINK = re.compile(r"^<((?:https?://|mailto:)[^<>|]+)(?:\|[^<>]*)?>$", re.IGNORECASE)
_MAILTO = re.compile(r"^mailto:", re.IGNORECASE)


@dataclass(frozen=True)
class Query:
    """A normalised lookup: `domain` matches exactly; `name` is a case-insensitive substring."""

    kind: Literal["domain", "name"]
    value: str

    @property
    def pattern(self) -> str:
        """The LIKE pattern of a name query: lower-cased, wildcards made literal (`escape_like`)."""
        return f"%{escape_like(self.value.lower())}%"

    @property
    def typed_pattern(self) -> str:
        """The same pattern as typed (case kept): finds non-ASCII names SQLite cannot lower."""
        return f"%{escape_like(self.value)}%"


def escape_like(text: str) -> str:
    """Make `%`, `_` and `!` literal in a LIKE pattern whose ESCAPE character is `!`.

    Not `\\`: SQLAlchemy writes it as `'\\\\'` for DuckDB, which DuckDB refuses. With an
    explicit ESCAPE, a backslash is an ordinary character on SQLite, DuckDB and PostgreSQL.
    """
    return text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", "!%").replace("_", "!_")


def unescape_slack(text: str) -> str:
    """Slack sends `&`, `<`, `>` in command text as entities; undo exactly those three."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _host(value: str) -> str | None:
    """The host a URL, email address or host name names (lower-cased, without `www.`)."""
    host: str | None = None
    if _SCHEME.match(value):
        try:
            host = urlsplit(value).hostname
        except ValueError:
            return None
        if host is None or not re.fullmatch(_HOST, host):
            return None
    else:
        match = _EMAIL.match(value) or _HOST_ONLY.match(value)
        if match is None:
            return None
        host = match.group("host")
    host = host.lower().rstrip(".")
    return host.removeprefix("www.") if host.count(".") > 1 else host


def looks_like_address(text: str) -> bool:
    """True when the text is a URL, an email address or a host name (matched by domain)."""
    return bool(_SCHEME.match(text) or _EMAIL.match(text) or _HOST_ONLY.match(text))


def parse_query(text: str) -> Query | None:
    """The query for a `/usage-summary` text, or None when it needs the usage line."""
    value = " ".join(unescape_slack(text).split())
    link = _SLACK_LINK.match(value)
    if link:
        value = link.group(1)
    value = _MAILTO.sub("", value)
    if len(value) > MAX_TEXT:
        return None
    if looks_like_address(value):
        host = _host(value)
        return Query("domain", host) if host else None
    if len(value) < MIN_NAME:
        return None
    return Query("name", value)
