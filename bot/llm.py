"""LLM summaries via the official OpenAI client: bounded, grounded, the template behind (SPEC 5).

What leaves for the LLM is decided in `bot.prompt` (allowed fields only); `[summary] enabled =
false` or no OPENAI_API_KEY means no LLM at all (`build_summariser` gives the template).

Runs. A *run* is one poll, or one `/usage-summary` answer. Within a run, a timeout, an
`insufficient_quota` error, an unreachable endpoint or a refused key or model stops the LLM:
the rest of the run gets template summaries (F10, F16). `OpenAISummariser.summarise` and
`.summarise_many` each start a fresh run; `for_run()` returns a `SummaryRun` whose calls share
one run. Calls already in flight when a run stops (at most `concurrency`) finish, so a hung
endpoint costs a run one timeout, not one per account.

Bounds. `[summary] timeout_s` per request and for the whole answer (never unlimited); in a poll
at most 2 retries (5xx, 429, dropped connections), none for `/usage-summary`, whose timeout is
also at most INTERACTIVE_TIMEOUT_S. A timeout, or a 429 that waiting will not cure, is never
retried (see `BoundedTransport`). A poll gives `summarise_many` a time budget too (half its
send window): after it no new LLM call starts. Any failure, and any answer that states a number
not in its input, gives the template summary; the DM goes out either way.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx2
from openai import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    DefaultHttpxClient,
    NotFoundError,
    OpenAI,
    OpenAIError,
    PermissionDeniedError,
    RateLimitError,
)
from openai.types.chat import ChatCompletionMessageParam

from blocks.text import escape_mrkdwn
from bot.config import Settings
from bot.errors import SummaryError
from bot.grounding import bullet_lines, has_bullets, ungrounded
from bot.prompt import SYSTEM, Prompt, allowed_fields, facts_of
from bot.summary import Summariser, SummaryInput, TemplateSummariser, fit_bullets

log = logging.getLogger(__name__)
CONCURRENCY = 8
POLL_RETRIES = 2
INTERACTIVE_TIMEOUT_S = 6.0
DEFAULT_BASE_URL = "https://api.openai.com/v1"
ClientFactory = Callable[[Settings, bool], OpenAI]


class RunStopped(SummaryError):
    """A failure every further call of the run would meet too: no more LLM calls that run."""


def request_timeout(settings: Settings, interactive: bool) -> float:
    """Seconds per request: `[summary] timeout_s`, capped for `/usage-summary` (10 s to answer)."""
    timeout = settings.summary.timeout_s
    return min(timeout, INTERACTIVE_TIMEOUT_S) if interactive else timeout


class _Deadline(httpx2.SyncByteStream):
    """An answer's body, cut off once the whole answer has taken longer than the timeout."""

    def __init__(self, inner: httpx2.SyncByteStream, request: httpx2.Request, end: float) -> None:
        self._inner, self._request, self._end = inner, request, end

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            if time.monotonic() > self._end:  # a read timeout alone restarts at every chunk
                raise APITimeoutError(request=self._request)
            yield chunk

    def close(self) -> None:
        self._inner.close()


def _error_code(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    return str(error.get("code") or error.get("type") or "") if isinstance(error, dict) else ""


class BoundedTransport(httpx2.BaseTransport):
    """The OpenAI client's transport, holding SPEC 5's bounds where the library would retry.

    A timeout raises APITimeoutError here, which the client passes on without retrying; a 429
    for `insufficient_quota`, or one asking to wait longer than the timeout, gets the client's
    own `x-should-retry: false`.
    """

    def __init__(self, limit_s: float, proxy: str | None = None) -> None:
        self._inner = httpx2.HTTPTransport(proxy=proxy)
        self._limit_s = limit_s

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send one request within the time limit."""
        end = time.monotonic() + self._limit_s
        try:
            response = self._inner.handle_request(request)
        except httpx2.TimeoutException as exc:
            raise APITimeoutError(request=request) from exc
        assert isinstance(response.stream, httpx2.SyncByteStream)
        response.stream = _Deadline(response.stream, request, end)
        if response.status_code == 429 and self._final(response):
            response.headers["x-should-retry"] = "false"
        return response

    def _final(self, response: httpx2.Response) -> bool:
        wait = response.headers.get("retry-after", "").strip()
        if wait.isdigit() and int(wait) > self._limit_s:
            return True
        return _error_code(response.read()) == "insufficient_quota"

    def close(self) -> None:
        """Close the pooled connections."""
        self._inner.close()


def _env_proxy(base_url: str) -> str | None:
    """HTTPS_PROXY / NO_PROXY as httpx applies them (it ignores them beside a custom transport)."""
    parts = urlsplit(base_url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def openai_client(settings: Settings, interactive: bool) -> OpenAI:
    """The official client for OPENAI_BASE_URL (or OpenAI's), bounded as SPEC 5 asks."""
    timeout = request_timeout(settings, interactive)
    base_url = settings.openai_base_url or DEFAULT_BASE_URL
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    transport = BoundedTransport(timeout, proxy=_env_proxy(base_url))
    return OpenAI(
        api_key=key,
        base_url=base_url,
        timeout=timeout,
        max_retries=0 if interactive else POLL_RETRIES,
        http_client=DefaultHttpxClient(transport=transport),
    )


class OpenAISummariser:
    """The LLM summary with the template as fallback; long-lived (one client, one prompt).

    `interactive=True` is the `/usage-summary` variant: no retries, a shorter timeout. A bad
    `prompt_file` or `send_fields` raises ConfigError here, at startup.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        interactive: bool = False,
        client_factory: ClientFactory = openai_client,
    ) -> None:
        self.model = settings.summary.model
        self.enabled = settings.summary.enabled
        self.timeout_s = request_timeout(settings, interactive)
        self.prompt = Prompt(settings, allowed_fields(settings))
        self.template = TemplateSummariser()
        self._client = client_factory(settings, interactive) if self.enabled else None

    def for_run(self) -> SummaryRun:
        """A fresh run: its calls share one circuit (see the module docstring)."""
        return SummaryRun(self)

    def summarise(self, data: SummaryInput) -> str:
        """One summary, as a run of its own."""
        return self.for_run().summarise(data)

    def summarise_many(
        self,
        inputs: Sequence[SummaryInput],
        *,
        concurrency: int = CONCURRENCY,
        budget_s: float | None = None,
    ) -> list[str]:
        """One summary per input, in order, `concurrency` at a time, as one run."""
        run = self.for_run()
        return run.summarise_many(inputs, concurrency=concurrency, budget_s=budget_s)

    def ask(self, data: SummaryInput) -> str:
        """The LLM's summary of one account, shaped and grounded; SummaryError otherwise."""
        user = self.prompt.render(facts_of(data, self.prompt.allowed))
        answer = self._complete(user)
        if not has_bullets(answer):
            raise SummaryError("the answer is not a bullet list")
        lines = bullet_lines(answer)
        invented = ungrounded("\n".join(lines), [SYSTEM, user])
        if invented:
            raise SummaryError(f"it states number(s) not in its input: {', '.join(invented)}")
        text = fit_bullets([escape_mrkdwn(line) for line in lines])
        if not text:
            raise SummaryError("the answer has no bullet of at most 100 words")
        return text

    def _complete(self, user: str) -> str:
        assert self._client is not None
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user},
        ]
        try:
            completion = self._client.chat.completions.create(model=self.model, messages=messages)
        except APITimeoutError as exc:
            raise RunStopped(f"no answer within {self.timeout_s:g} s") from exc
        except APIConnectionError as exc:
            raise RunStopped("cannot reach OPENAI_BASE_URL, retries used up") from exc
        except RateLimitError as exc:
            if "insufficient_quota" in (exc.code, exc.type):
                raise RunStopped("insufficient_quota: the OpenAI account has no credit") from exc
            raise SummaryError("rate limited (429)") from exc
        except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
            why = f"HTTP {exc.status_code}: check OPENAI_API_KEY and [summary] model"
            raise RunStopped(why) from exc
        except APIStatusError as exc:
            raise SummaryError(f"HTTP {exc.status_code}, retries used up") from exc
        except OpenAIError as exc:
            raise SummaryError(type(exc).__name__) from exc
        content = completion.choices[0].message.content if completion.choices else None
        if not content:
            raise SummaryError("an empty answer")
        return content


class SummaryRun:
    """One run's summaries: the LLM's, or the template's after a failure (SPEC 5, F10, F16)."""

    def __init__(self, llm: OpenAISummariser) -> None:
        self._llm = llm
        self._stopped = "" if llm.enabled else "[summary] enabled = false"
        self._deadline = math.inf
        self._lock = threading.Lock()

    @property
    def stopped(self) -> str:
        """Why this run makes no more LLM calls; empty while it still does."""
        return self._stopped

    def summarise(self, data: SummaryInput) -> str:
        """The LLM summary, or the template summary after any failure."""
        if not self._stopped and time.monotonic() > self._deadline:
            self._stop("the run's time for summaries is used up")
        if not self._stopped:
            account = data.row.account_id
            try:
                return self._llm.ask(data)
            except RunStopped as exc:
                self._stop(str(exc))
            except SummaryError as exc:
                log.warning("LLM summary of %s not used (%s): template summary", account, exc)
            except Exception:  # a bug here must cost one summary, never the alert
                log.exception("LLM summary of %s failed: template summary", account)
        return self._llm.template.summarise(data)

    def _stop(self, reason: str) -> None:
        with self._lock:  # calls run side by side: the first reason is the one logged
            if self._stopped:
                return
            self._stopped = reason
        log.warning("LLM summaries stopped for the rest of this run: %s", reason)

    def summarise_many(
        self,
        inputs: Sequence[SummaryInput],
        *,
        concurrency: int = CONCURRENCY,
        budget_s: float | None = None,
    ) -> list[str]:
        """One summary per input, in order, at most `concurrency` LLM calls at a time.

        After `budget_s` seconds no new LLM call starts: the rest get the template.
        """
        if budget_s is not None:
            self._deadline = min(self._deadline, time.monotonic() + budget_s)
        workers = max(1, min(concurrency, len(inputs)))
        if workers == 1 or self._stopped:
            return [self.summarise(data) for data in inputs]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nudge-summary") as pool:
            return list(pool.map(self.summarise, inputs))


def build_summariser(settings: Settings, *, interactive: bool = False) -> Summariser:
    """The LLM summariser when OPENAI_API_KEY is set and `[summary] enabled`; else the template."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    if not key or not settings.summary.enabled:
        return TemplateSummariser()
    return OpenAISummariser(settings, interactive=interactive)
