"""`nudge check`: one line per dependency — does it answer, and if not, what to fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.config import Settings
from bot.delivery import SlackWeb, web_client
from bot.errors import ConfigError, DeliveryError, NudgeError
from bot.manifest import bot_scopes, load_manifest
from bot.store import Store
from bot.usage import Warehouse, warehouse_engine


@dataclass(frozen=True)
class Probe:
    """One dependency's answer."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def _warehouse(settings: Settings) -> Probe:
    url = settings.effective_warehouse_url
    if not url:
        return Probe(
            "warehouse", False, "not configured: set NUDGE_WAREHOUSE_URL or [warehouse] url"
        )
    try:
        warehouse = Warehouse(
            warehouse_engine(url, settings.warehouse.timeout.total_seconds()), settings
        )
        warehouse.validate()
        counts = warehouse.counts(settings.rule.threshold)
    except ConfigError as exc:
        return Probe("warehouse", False, "; ".join(exc.problems))
    except NudgeError as exc:
        return Probe("warehouse", False, f"{exc} — check the URL, network and credentials")
    return Probe(
        "warehouse",
        True,
        f"{settings.warehouse.table}: {counts.evaluated} rows, "
        f"{counts.above} at or above {settings.rule.threshold:g} %, "
        f"{counts.insufficient} with insufficient data",
    )


def _slack(settings: Settings) -> Probe:
    if settings.slack_bot_token is None:
        return Probe(
            "slack",
            False,
            "SLACK_BOT_TOKEN is not set (OAuth & Permissions → Bot User OAuth Token)",
        )
    slack = SlackWeb(
        web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    )
    try:
        granted = slack.scopes()
    except DeliveryError as exc:
        return Probe("slack", False, str(exc))
    missing = bot_scopes(load_manifest()) - granted
    if missing:
        return Probe(
            "slack",
            False,
            f"token lacks {', '.join(sorted(missing))}: add them "
            "(manifest.yml) and reinstall the app",
        )
    return Probe(
        "slack", True, f"token accepted; all {len(granted)} scopes of manifest.yml granted"
    )


def _channels(settings: Settings) -> Probe:
    channels = [
        c for c in (settings.territory.fallback_channel, settings.delivery.admin_channel) if c
    ]
    if not channels:
        return Probe(
            "channels",
            True,
            "no fallback channel: alerts without an owner are kept as "
            "undeliverable (`nudge status`)",
            required=False,
        )
    bad = [c for c in channels if not c.startswith(("C", "G"))]
    if bad:
        return Probe(
            "channels",
            False,
            f"{', '.join(bad)}: use the channel id (C…), from the channel's details, not its name",
        )
    return Probe(
        "channels",
        True,
        f"{', '.join(channels)}: make sure Nudge is a member "
        "(`/invite @Nudge`); the manifest's scopes cannot read membership",
        required=False,
    )


def _state(settings: Settings) -> Probe:
    try:
        store = Store.open(settings.state_database_url())
        store.ping()
    except Exception as exc:  # any failure here means Nudge cannot run
        return Probe("state database", False, f"{type(exc).__name__}: check NUDGE_STATE_URL")
    return Probe("state database", True, "reachable, schema at the latest revision")


def _salesforce(settings: Settings) -> Probe:
    from bot.salesforce import SalesforceCRM

    try:
        crm = SalesforceCRM.from_settings(settings)
        if crm is None:
            how = "owners come from [columns] owner_id and the territory file"
            return Probe("salesforce", True, f"not configured: {how}", required=False)
        host = crm.check()
    except ConfigError as exc:
        return Probe("salesforce", False, "; ".join(exc.problems))
    except NudgeError as exc:
        return Probe("salesforce", False, f"{exc} — check the SALESFORCE_* settings")
    return Probe("salesforce", True, f"logged in to {host}; User and Account readable")


def _openai(settings: Settings) -> Probe:
    from bot.llm import build_summariser, openai_client

    if not settings.summary.enabled or settings.openai_api_key is None:
        return Probe("openai", True, "not used: DMs carry the template summary", required=False)
    try:
        build_summariser(settings)  # prompt_file and send_fields, as `nudge poll` will read them
    except ConfigError as exc:
        return Probe("openai", False, "; ".join(exc.problems))
    try:
        openai_client(settings, True).models.retrieve(settings.summary.model)
    except Exception as exc:  # every failure of the endpoint reads the same way here
        kind = type(exc).__name__
        where = settings.openai_base_url or "OpenAI's API"
        return Probe(
            "openai",
            False,
            f"{kind} from {where}: check OPENAI_API_KEY, OPENAI_BASE_URL and "
            f"[summary] model ({settings.summary.model}); DMs fall back to the template",
            required=False,
        )
    return Probe("openai", True, f"model {settings.summary.model} available")


PROBES: list[Callable[[Settings], Probe]] = [
    _state,
    _warehouse,
    _slack,
    _channels,
    _salesforce,
    _openai,
]


def run_checks(
    settings: Settings, extra: list[Callable[[Settings], Probe]] | None = None
) -> list[Probe]:
    """Every probe, in order; a probe never raises."""
    return [probe(settings) for probe in [*PROBES, *(extra or [])]]
