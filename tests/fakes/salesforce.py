"""A small fake of the Salesforce REST API (and its log-in endpoints), over HTTP on 127.0.0.1.

simple-salesforce always builds ``https://<instance>/…`` URLs, so the product reaches the fake
through :class:`FakeSalesforceSession`, a ``requests.Session`` that sends every https request
to the fake over plain http while keeping the original ``Host`` header (the fake records which
host each call was meant for)::

    with FakeSalesforce() as sf:
        sf.add_user("005000000000001", "ada@example.com", first_name="Ada")
        crm = SalesforceCRM.from_settings(settings, session=sf.session())

Modelled: ``POST /services/oauth2/token`` (client credentials; JWT bearer, verified with
``jwt_public_key`` when given), ``POST /services/Soap/u/<v>`` (legacy username/password +
security token), ``GET /services/data/v<v>/query?q=`` for ``SELECT <fields> FROM User|Account
[WHERE Id IN (…) | Id = '…'] [LIMIT n]`` with relationship fields (``Parent.Name``,
``Owner.Email``), and ``nextRecordsUrl`` paging (``page_size`` records per page). Faults:
``expire_sessions``, ``expire_after``, ``invalid_session``, ``hang``, ``fail``. Every request
is recorded in ``calls``; ``queries`` lists the SOQL received.
"""

from __future__ import annotations

import copy
import html
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import jwt
import requests

from bot.crmid import to_18
from tests.fakes.server import FakeServer, LocalFake

JsonDict = dict[str, Any]
Route = Literal["token", "soap", "query"]

CONSUMER_KEY = "fake-consumer-key"
CONSUMER_SECRET = "fake-consumer-secret-7f3a"
USERNAME = "integration@example.com"
PASSWORD = "fake-password-91b2"
SECURITY_TOKEN = "fake-security-token-c4d8"
JWT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
SCHEMA: dict[str, tuple[str, ...]] = {
    "User": ("Id", "Username", "Email", "FirstName", "LastName", "Name", "IsActive"),
    "Account": (
        "Id",
        "Name",
        "OwnerId",
        "ParentId",
        "Description",
        "Industry",
        "BillingCountry",
        "Website",
        "NumberOfEmployees",
        "AnnualRevenue",
    ),
}
# relationship name -> (object, the field holding the related id)
RELATIONSHIPS: dict[str, dict[str, tuple[str, str]]] = {
    "User": {},
    "Account": {"Parent": ("Account", "ParentId"), "Owner": ("User", "OwnerId")},
}
_SELECT = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")
_DATA_PATH = re.compile(r"^/services/data/v(?P<version>\d+\.\d)/query/?(?P<locator>[^/]*)$")


class SoqlError(Exception):
    """A query Salesforce would refuse (400 with an errorCode)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Call:
    """One request as the fake received it (header names lower-cased; host from Host)."""

    method: str
    host: str
    path: str
    params: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class _Fault:
    kind: Literal["fail", "hang", "invalid_session"]
    times: int
    seconds: float = 0.0
    status: int = 500
    code: str = "UNKNOWN_EXCEPTION"
    message: str = "An unexpected error occurred"


@dataclass
class _Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    content_type: str = "application/json"
    delay: float = 0.0


def _soql_literals(text: str) -> list[str]:
    """The quoted literals of `( 'a', 'b' )` (or a single `'a'`), escapes decoded."""
    text = text.strip()
    wrapped = text.startswith("(")
    body = text[1:] if wrapped else text
    values: list[str] = []
    i = 0
    while True:
        while i < len(body) and body[i] == " ":
            i += 1
        if i >= len(body) or body[i] != "'":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token at: {body[i:]!r}")
        value, i = _read_literal(body, i + 1)
        values.append(value)
        while i < len(body) and body[i] == " ":
            i += 1
        if wrapped and body[i : i + 1] == ",":
            i += 1
            continue
        rest = body[i:].strip()
        if (wrapped and rest != ")") or (not wrapped and rest):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token at: {rest!r}")
        return values


def _read_literal(body: str, i: int) -> tuple[str, int]:
    out = []
    while i < len(body):
        char = body[i]
        if char == "\\":
            escaped = body[i + 1 : i + 2]
            if escaped not in _ESCAPES:
                raise SoqlError("MALFORMED_QUERY", f"invalid escape sequence \\{escaped}")
            out.append(_ESCAPES[escaped])
            i += 2
        elif char == "'":
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise SoqlError("MALFORMED_QUERY", "unterminated string literal")


class FakeSalesforce(LocalFake):
    """An in-process Salesforce; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        page_size: int = 2000,
        instance_host: str = "acme.my.salesforce.com",
        consumer_key: str = CONSUMER_KEY,
        consumer_secret: str = CONSUMER_SECRET,
        username: str = USERNAME,
        password: str = PASSWORD,
        security_token: str = SECURITY_TOKEN,
        jwt_public_key: bytes | None = None,
    ) -> None:
        self.page_size = page_size
        self.instance_host = instance_host
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.username = username
        self.password = password
        self.security_token = security_token
        self.jwt_public_key = jwt_public_key
        self._lock = threading.RLock()
        self._init_server(_Handler)
        self._calls: list[Call] = []
        self._records: dict[str, dict[str, JsonDict]] = {name: {} for name in SCHEMA}
        self._extra_fields: dict[str, set[str]] = {name: set() for name in SCHEMA}
        self._tokens: set[str] = set()
        self._token_ids = itertools.count(1)
        self._cursors: dict[str, list[JsonDict]] = {}
        self._cursor_ids = itertools.count(1)
        self._faults: dict[str, list[_Fault]] = {}
        self._expire_countdown: int | None = None

    @property
    def instance_url(self) -> str:
        """The instance URL the log-in endpoints hand out (reached through ``session()``)."""
        return f"https://{self.instance_host}"

    def session(self) -> FakeSalesforceSession:
        """A requests.Session that sends every https request to this fake."""
        return FakeSalesforceSession(self.port)

    # ------------------------------------------------------------------ data

    def add_user(
        self,
        user_id: str,
        email: str,
        first_name: str = "",
        last_name: str = "User",
        active: bool = True,
    ) -> str:
        """Add a `User`; returns its 18-character id."""
        record = {
            "Id": to_18(user_id),
            "Username": email,
            "Email": email,
            "FirstName": first_name or None,
            "LastName": last_name,
            "Name": f"{first_name} {last_name}".strip(),
            "IsActive": active,
        }
        return self._add("User", record)

    def add_account(self, account_id: str, owner_id: str | None = None, **fields: Any) -> str:
        """Add an `Account` (fields by API name, e.g. Name=…, ParentId=…, Plan__c=…)."""
        record: JsonDict = {"Id": to_18(account_id), "OwnerId": owner_id and to_18(owner_id)}
        record.update(fields)
        if record.get("ParentId"):
            record["ParentId"] = to_18(record["ParentId"])
        with self._lock:
            self._extra_fields["Account"].update(set(fields) - set(SCHEMA["Account"]))
        return self._add("Account", record)

    def _add(self, sobject: str, record: JsonDict) -> str:
        with self._lock:
            self._records[sobject][record["Id"]] = record
        return str(record["Id"])

    def issue_token(self) -> str:
        """A valid access token, as if obtained elsewhere (SALESFORCE_ACCESS_TOKEN mode)."""
        with self._lock:
            return self._new_token()

    def _new_token(self) -> str:
        token = f"00Dfake!session-{next(self._token_ids):04d}"
        self._tokens.add(token)
        return token

    # ------------------------------------------------------------------ faults

    def expire_sessions(self) -> None:
        """Every session handed out so far is now expired (INVALID_SESSION_ID)."""
        with self._lock:
            self._tokens.clear()

    def expire_after(self, requests_: int) -> None:
        """Let the next `requests_` data requests succeed, then expire every session."""
        with self._lock:
            self._expire_countdown = requests_

    def invalid_session(self, times: int = 1) -> None:
        """The next `times` data requests answer 401 INVALID_SESSION_ID (their session dies)."""
        self._add_fault("query", _Fault("invalid_session", times))

    def hang(self, route: Route, seconds: float, times: int = 1) -> None:
        """Delay the answer of the next `times` calls to `route` by `seconds`."""
        self._add_fault(route, _Fault("hang", times, seconds=seconds))

    def fail(
        self,
        route: Route,
        status: int = 500,
        code: str = "UNKNOWN_EXCEPTION",
        message: str = "An unexpected error occurred",
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls to `route` with `status` and Salesforce's error shape."""
        self._add_fault(route, _Fault("fail", times, status=status, code=code, message=message))

    def _add_fault(self, route: str, fault: _Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.setdefault(route, []).append(fault)

    def _take_fault(self, route: str) -> _Fault | None:
        queue = self._faults.get(route)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times == 0:
            queue.pop(0)
        return fault

    # ------------------------------------------------------------------ inspection

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    @property
    def queries(self) -> list[str]:
        """The SOQL of every query request (not the further pages), in order."""
        return [c.params["q"] for c in self.calls if "q" in c.params and "/query" in c.path]

    @property
    def page_requests(self) -> list[Call]:
        """Requests for further pages (``nextRecordsUrl``)."""
        return [c for c in self.calls if "q" not in c.params and "/query/" in c.path]

    @property
    def logins(self) -> list[Call]:
        """Calls to the log-in endpoints (OAuth token and SOAP login)."""
        return [
            c for c in self.calls if c.path.startswith(("/services/oauth2/", "/services/Soap/"))
        ]

    # ------------------------------------------------------------------ request handling

    def _route(self, call: Call) -> _Reply:
        with self._lock:
            self._calls.append(call)
            if call.path == "/services/oauth2/token" and call.method == "POST":
                return self._faulted("token", call, self._token)
            if call.path.startswith("/services/Soap/u/") and call.method == "POST":
                return self._faulted("soap", call, self._soap_login)
            match = _DATA_PATH.match(call.path)
            if match and call.method == "GET":
                locator = match["locator"]
                return self._faulted("query", call, lambda c: self._data(c, locator))
        return _Reply(404, [{"errorCode": "NOT_FOUND", "message": "resource does not exist"}])

    def _faulted(self, route: str, call: Call, answer: Callable[[Call], _Reply]) -> _Reply:
        fault = self._take_fault(route)
        if fault is None:
            return answer(call)
        if fault.kind == "fail":
            return _Reply(fault.status, [{"errorCode": fault.code, "message": fault.message}])
        if fault.kind == "invalid_session":
            self._tokens.discard(_bearer(call))
            return self._expired()
        reply = answer(call)
        reply.delay = fault.seconds
        return reply

    @staticmethod
    def _expired() -> _Reply:
        body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        return _Reply(401, body)

    # ---- log-in

    def _token(self, call: Call) -> _Reply:
        grant = call.form.get("grant_type", "")
        if grant == "client_credentials":
            error = self._client_credentials_error(call)
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            error = self._jwt_error(call.form.get("assertion", ""))
        else:
            error = ("unsupported_grant_type", "grant type not supported")
        if error is not None:
            return _Reply(400, {"error": error[0], "error_description": error[1]})
        return _Reply(
            200,
            {
                "access_token": self._new_token(),
                "instance_url": self.instance_url,
                "id": f"https://login.salesforce.com/id/00D000000000001/{to_18('005000000000INT')}",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "signature": "fake-signature",
            },
        )

    def _client_credentials_error(self, call: Call) -> tuple[str, str] | None:
        if not call.host.split(":")[0].endswith(".my.salesforce.com"):
            return ("invalid_request", "request not supported on this domain")
        key, secret = call.form.get("client_id", ""), call.form.get("client_secret", "")
        if (key, secret) != (self.consumer_key, self.consumer_secret):
            return ("invalid_client", "invalid client credentials")
        return None

    def _jwt_error(self, assertion: str) -> tuple[str, str] | None:
        try:
            if self.jwt_public_key is None:
                claims = jwt.decode(assertion, options={"verify_signature": False})
            else:
                claims = jwt.decode(
                    assertion, self.jwt_public_key, algorithms=["RS256"], audience=JWT_AUDIENCES
                )
        except jwt.PyJWTError as exc:
            return ("invalid_grant", f"invalid assertion: {type(exc).__name__}")
        if claims.get("iss") != self.consumer_key:
            return ("invalid_client_id", "client identifier invalid")
        if claims.get("sub") != self.username:
            return ("invalid_grant", "user hasn't approved this consumer")
        return None

    def _soap_login(self, call: Call) -> _Reply:
        body = call.form.get("_raw", "")
        username = _xml_value(body, "username")
        password = _xml_value(body, "password")
        if (username, password) != (self.username, self.password + self.security_token):
            return _Reply(500, _SOAP_FAULT, content_type="text/xml")
        server = f"{self.instance_url}/services/Soap/u/62.0/00D000000000001"
        answer = _SOAP_OK.format(server=server, session=self._new_token())
        return _Reply(200, answer, content_type="text/xml")

    # ---- data

    def _data(self, call: Call, locator: str) -> _Reply:
        if self._expire_countdown is not None:
            if self._expire_countdown <= 0:
                self._tokens.clear()
                self._expire_countdown = None
            else:
                self._expire_countdown -= 1
        if _bearer(call) not in self._tokens:
            return self._expired()
        try:
            if locator:
                return _Reply(200, self._page(locator))
            return _Reply(200, self._query(call.params.get("q", "")))
        except SoqlError as exc:
            return _Reply(400, [{"errorCode": exc.code, "message": str(exc)}])

    def _query(self, soql: str) -> JsonDict:
        match = _SELECT.match(soql)
        if not match:
            raise SoqlError("MALFORMED_QUERY", "unexpected token")
        sobject = next((n for n in SCHEMA if n.lower() == match["object"].lower()), None)
        if sobject is None:
            raise SoqlError("INVALID_TYPE", f"sObject type '{match['object']}' is not supported")
        fields = self._fields(sobject, match["fields"])
        rows = self._where(sobject, match["where"])
        if match["limit"]:
            rows = rows[: int(match["limit"])]
        records = [self._shape(sobject, row, fields) for row in rows]
        cursor = f"01gFAKE{next(self._cursor_ids):011d}"
        self._cursors[cursor] = records
        return self._page(f"{cursor}-0")

    def _page(self, locator: str) -> JsonDict:
        cursor, _, offset_text = locator.rpartition("-")
        records = self._cursors.get(cursor)
        if records is None or not offset_text.isdigit():
            raise SoqlError("INVALID_QUERY_LOCATOR", "invalid query locator")
        offset = int(offset_text)
        end = offset + self.page_size
        page: JsonDict = {
            "totalSize": len(records),
            "done": end >= len(records),
            "records": copy.deepcopy(records[offset:end]),
        }
        if not page["done"]:
            page["nextRecordsUrl"] = f"/services/data/v62.0/query/{cursor}-{end}"
        return page

    def _fields(self, sobject: str, text: str) -> list[str]:
        fields = [part.strip() for part in text.split(",")]
        seen: set[str] = set()
        for name in fields:
            if name.lower() in seen:
                raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {name}")
            seen.add(name.lower())
            self._canonical(sobject, name)  # raises INVALID_FIELD
        return fields

    def _canonical(self, sobject: str, path: str) -> list[str]:
        """The schema's spelling of a (possibly relationship) field path."""
        parts = path.split(".")
        names: list[str] = []
        current = sobject
        for i, part in enumerate(parts):
            if i < len(parts) - 1:
                rel = next((r for r in RELATIONSHIPS[current] if r.lower() == part.lower()), None)
                if rel is None:
                    raise SoqlError("INVALID_FIELD", f"Didn't understand relationship '{part}'")
                names.append(rel)
                current = RELATIONSHIPS[current][rel][0]
                continue
            known = SCHEMA[current] + tuple(sorted(self._extra_fields[current]))
            name = next((f for f in known if f.lower() == part.lower()), None)
            if name is None:
                raise SoqlError("INVALID_FIELD", f"No such column '{part}' on entity '{current}'")
            names.append(name)
        return names

    def _where(self, sobject: str, where: str | None) -> list[JsonDict]:
        table = self._records[sobject]
        if where is None:
            return list(table.values())
        match = re.match(r"^\s*Id\s+(IN|=)\s*(.+)$", where, re.IGNORECASE | re.DOTALL)
        if not match:
            raise SoqlError("MALFORMED_QUERY", f"unsupported WHERE clause: {where!r}")
        is_in = match[1].upper() == "IN"
        if is_in != match[2].strip().startswith("("):
            raise SoqlError("MALFORMED_QUERY", "IN needs a parenthesised list")
        ids = _soql_literals(match[2])
        bad = next((i for i in ids if not _ID.match(i)), None)
        if bad is not None:
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {bad}")
        wanted = dict.fromkeys(to_18(i) for i in ids)
        return [table[i] for i in wanted if i in table]

    def _shape(self, sobject: str, row: JsonDict, fields: list[str]) -> JsonDict:
        record: JsonDict = {"attributes": _attributes(sobject, row["Id"])}
        for path in fields:
            names = self._canonical(sobject, path)
            target, current, source = record, sobject, row
            for name in names[:-1]:
                related_object, id_field = RELATIONSHIPS[current][name]
                related = self._records[related_object].get(source.get(id_field) or "")
                if related is None:
                    target[name] = None
                    break
                nested = target.get(name) or {
                    "attributes": _attributes(related_object, related["Id"])
                }
                target[name] = nested
                target, current, source = nested, related_object, related
            else:
                target[names[-1]] = source.get(names[-1])
        return record


def _attributes(sobject: str, record_id: str) -> JsonDict:
    return {"type": sobject, "url": f"/services/data/v62.0/sobjects/{sobject}/{record_id}"}


def _bearer(call: Call) -> str:
    return call.headers.get("authorization", "").removeprefix("Bearer ").strip()


def _xml_value(body: str, tag: str) -> str:
    match = re.search(rf"<(?:\w+:)?{tag}>(.*?)</(?:\w+:)?{tag}>", body, re.DOTALL)
    return html.unescape(match.group(1)) if match else ""


_SOAP_OK = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>
<serverUrl>{server}</serverUrl><sessionId>{session}</sessionId>
</result></loginResponse></soapenv:Body></soapenv:Envelope>"""
_SOAP_FAULT = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>
<faultcode>INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password,
security token; or user locked out.</faultstring><detail><sf:LoginFault>
<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username,
password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail>
</soapenv:Fault></soapenv:Body></soapenv:Envelope>"""


class FakeSalesforceSession(requests.Session):
    """Sends every https request to the fake at 127.0.0.1:`port` over http, keeping `Host`."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.trust_env = False  # a developer's HTTPS_PROXY must not capture test traffic
        self.fake_port = port

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        if parts.scheme == "https":
            request.headers["Host"] = parts.netloc
            request.url = urlunsplit(
                ("http", f"127.0.0.1:{self.fake_port}", parts.path, parts.query, "")
            )
        return super().send(request, **kwargs)


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        headers = {name.lower(): value for name, value in self.headers.items()}
        is_form = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        form = dict(parse_qsl(raw, keep_blank_values=True)) if is_form else {"_raw": raw}
        call = Call(
            method=self.command,
            host=headers.get("host", ""),
            path=url.path,
            params=dict(parse_qsl(url.query, keep_blank_values=True)),
            form=form,
            headers=headers,
            at=time.time(),
        )
        fake = self.server.fake
        reply = fake._route(call)
        if reply.delay:
            fake._stopping.wait(reply.delay)
        body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        payload = body.encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", f"{reply.content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet; FakeSalesforce.calls is the record
