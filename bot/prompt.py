"""What leaves for the LLM, and the prompt it is put in (SPEC 5).

Only *allowed fields* are ever sent. `[summary] send_fields` empty: the usage fields, the account
name and the `[columns] fields` (with their derived `days_since_…`). Otherwise exactly the
fields listed there, from: the usage fields, `account_name`, `domain`, the `[columns] fields`,
`days_since_<field>` and the CRM fields of `[salesforce] account_fields`.

Usage fields, derived so the model never has to compute: `used`, `quota`, `usage_pct`,
`left_in_quota` and `left_in_quota_pct` (or `over_quota` past 100 %), `threshold_pct`.

The prompt is a system message (the output rules; it holds no digits, so it never vouches for
a number) and a user message rendered from a Jinja2 template in a sandbox: the default one
below, or `[summary] prompt_file`. A template sees each allowed field by name (non-identifier
characters as `_`, so `Parent.Name` is `{{ Parent_Name }}`), `facts` (the account's
(name, value) pairs), `quota_label` and `pitch` from `[rule]`. A name it may not see, or an
unsafe expression, is a ConfigError at startup, not a failure per account.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from blocks.text import format_number, format_percent, format_threshold
from bot.config import Settings
from bot.errors import ConfigError, SummaryError
from bot.summary import SummaryInput, as_date

USAGE_FIELDS = (
    "used",
    "quota",
    "usage_pct",
    "left_in_quota",
    "left_in_quota_pct",
    "over_quota",
    "threshold_pct",
)
MAX_VALUE_CHARS = 500
MAX_PROMPT_CHARS = 20_000
SYSTEM = (
    "You are an assistant to an Account Executive (AE) at a software company. You prepare short "
    "Slack notes about upsell opportunities: an account is nearing the end of its quota. Write "
    "two to four bullet points, each starting with '- ', fewer than a hundred words in all. Use "
    "only the facts you are given. Every number you write must be one of the given numbers "
    "(rounding is fine): never compute, estimate or invent numbers, dates, names or links. No "
    "greeting, heading or sign-off."
)
DEFAULT_PROMPT = """\
This account is nearing the end of its {{ quota_label }}. Write the upsell summary for its AE \
from the account data and the usage data below. Suggested angle: {{ pitch }}.

{% for name, value in facts %}- {{ name }}: {{ value }}
{% endfor %}"""


def identifier(name: str) -> str:
    """A field name as a template variable: `Parent.Name` -> `Parent_Name`."""
    return re.sub(r"\W", "_", name)


def allowed_fields(settings: Settings) -> frozenset[str]:
    """The fields that may leave for the LLM; ConfigError for a `send_fields` name Nudge lacks."""
    columns = settings.columns.fields
    derived = [f"days_since_{name}" for name in columns]
    wanted = settings.summary.send_fields
    if not wanted:
        return frozenset((*USAGE_FIELDS, "account_name", *columns, *derived))
    known = {*USAGE_FIELDS, "account_name", "domain", *columns, *derived}
    known |= set(settings.salesforce.account_fields)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(
            [
                f"[summary] send_fields: unknown field(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            ]
        )
    return frozenset(wanted)


def _text(value: Any) -> str | None:
    """A value as the model reads it; None when there is nothing to say."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    day = as_date(value)
    if day is not None:
        return day.isoformat()
    if isinstance(value, Decimal | int | float):
        try:
            return format_number(value, places=2)
        except (InvalidOperation, ValueError):
            return None
    text = " ".join(str(value).split())[:MAX_VALUE_CHARS]
    return text or None


def usage_facts(data: SummaryInput) -> dict[str, str]:
    """The usage fields, derived values included."""
    row, pct = data.row, data.row.usage_pct
    if pct is None or row.numerator is None or row.denominator is None:
        return {}
    unit = f" {data.unit}" if data.unit else ""
    facts = {
        "used": f"{format_number(row.numerator, 2)}{unit}",
        "quota": f"{format_number(row.denominator, 2)}{unit}",
        "usage_pct": format_percent(pct),
    }
    left = row.denominator - row.numerator
    if left >= 0:
        facts["left_in_quota"] = f"{format_number(left, 2)}{unit}"
        facts["left_in_quota_pct"] = format_percent(100 - pct)
    else:
        facts["over_quota"] = f"{format_number(-left, 2)}{unit}"
    if data.threshold is not None:
        facts["threshold_pct"] = format_threshold(data.threshold)
    return facts


def facts_of(data: SummaryInput, allowed: frozenset[str]) -> dict[str, str]:
    """The account's allowed fields, as text, in a stable order (nothing else is ever sent)."""
    values: dict[str, Any] = {"account_name": data.row.account_name, "domain": data.row.domain}
    values.update(usage_facts(data))
    for name, value in data.row.fields.items():
        values.setdefault(name, value)
        day = as_date(value)
        if day is not None:
            values[f"days_since_{name}"] = (data.today - day).days
    for name, value in data.account.items():
        values.setdefault(name, value)
    texts = {name: _text(value) for name, value in values.items() if name in allowed}
    return {name: text for name, text in texts.items() if text is not None}


class Prompt:
    """The user message for one account, from the default template or `prompt_file`."""

    def __init__(self, settings: Settings, allowed: frozenset[str]) -> None:
        self.allowed = allowed
        self.extra = {"quota_label": settings.rule.quota_label, "pitch": settings.rule.pitch}
        source, self.origin = DEFAULT_PROMPT, "the default prompt"
        if settings.summary.prompt_file:
            path = settings.resolve_path(settings.summary.prompt_file)
            self.origin = f"[summary] prompt_file {path}"
            try:
                source = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError([f"{self.origin}: cannot read it: {exc.strerror}"]) from exc
        self.template = self._compile(source)

    def _compile(self, source: str) -> Template:
        env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        names = {identifier(n) for n in self.allowed} | set(self.extra) | {"facts"}
        try:
            unknown = meta.find_undeclared_variables(env.parse(source)) - names - set(env.globals)
        except TemplateError as exc:
            raise ConfigError([f"{self.origin}: {type(exc).__name__}: {exc}"]) from exc
        if unknown:
            refs = ", ".join(f"{{{{ {name} }}}}" for name in sorted(unknown))
            raise ConfigError(
                [
                    f"{self.origin}: {refs}: not a field sent to the LLM "
                    f"(available: {', '.join(sorted(names))}; see [summary] send_fields)"
                ]
            )
        template = env.from_string(source)
        try:  # a trial render: an unsafe or broken expression fails here, once, at startup
            template.render(self._context({n: "sample" for n in self.allowed}))
        except Exception as exc:
            raise ConfigError([f"{self.origin}: {type(exc).__name__}: {exc}"]) from exc
        return template

    def _context(self, facts: Mapping[str, str]) -> dict[str, Any]:
        context: dict[str, Any] = {identifier(n): "" for n in self.allowed}
        context.update({identifier(n): v for n, v in facts.items()})
        return {**context, **self.extra, "facts": list(facts.items())}

    def render(self, facts: Mapping[str, str]) -> str:
        """The user message; SummaryError when this account's values break the template."""
        try:
            text = self.template.render(self._context(facts))
        except Exception as exc:  # this account's values only: the template summary stands in
            raise SummaryError(f"{self.origin}: {type(exc).__name__}") from exc
        if len(text) > MAX_PROMPT_CHARS:
            raise SummaryError(f"{self.origin}: the prompt is over {MAX_PROMPT_CHARS} characters")
        return text
