"""The long-lived objects `nudge run` shares between the Slack listeners and the poller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.access import Access
from bot.config import Settings
from bot.delivery import Dispatcher, Pacer, SlackGateway, SlackWeb
from bot.llm import build_summariser
from bot.poller import Poller
from bot.salesforce import SalesforceCRM
from bot.store import Store
from bot.summary import Summariser, TemplateSummariser
from bot.territory import CrmAccounts, Territory, read_territory
from bot.threshold import ThresholdSetting, current_threshold
from bot.usage import Warehouse, warehouse_engine


def now_utc() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


def build_territory(
    settings: Settings,
    slack: SlackGateway | None,
    store: Store | None,
    clock: Callable[[], datetime] = now_utc,
    crm: CrmAccounts | None = None,
) -> Territory:
    """The owner chain from settings (CSV overrides, Slack); ConfigError for a bad CSV."""
    csv_path = settings.territory.csv
    return Territory(
        slack,
        overrides=read_territory(settings.resolve_path(csv_path)) if csv_path else None,
        store=store,
        cache_ttl=settings.territory.cache_ttl,
        clock=clock,
        crm=crm,
    )


def build_poller(
    settings: Settings,
    store: Store,
    slack: SlackGateway | None,
    *,
    dry_run: bool,
    clock: Callable[[], datetime] = now_utc,
    pacer: Pacer | None = None,
    warehouse: Warehouse | None = None,
    summariser: Summariser | None = None,
    crm: CrmAccounts | None = None,
) -> Poller:
    """Wire a Poller from settings; ConfigError for a bad table, columns or territory file.

    The LLM summariser when OPENAI_API_KEY is set and `[summary] enabled` (ConfigError for a
    bad prompt file), else the template; a dry run never calls the LLM (it sends nothing).
    """
    if warehouse is None:
        engine = warehouse_engine(
            settings.effective_warehouse_url, settings.warehouse.timeout.total_seconds()
        )
        warehouse = Warehouse(engine, settings)
        warehouse.validate()
    territory = build_territory(settings, slack, None if dry_run else store, clock, crm)
    dispatcher = None if dry_run or slack is None else Dispatcher(store, slack, clock, pacer)
    if dry_run:
        build_summariser(settings)  # a bad prompt_file or send_fields fails the dry run too
        summariser = TemplateSummariser()
    elif summariser is None:
        summariser = build_summariser(settings)
    return Poller(settings, store, warehouse, territory, summariser, dispatcher, clock, crm=crm)


@dataclass
class Services:
    """What listeners and the scheduler need; built once by the composition root."""

    settings: Settings
    store: Store
    slack: SlackWeb
    access: Access
    clock: Callable[[], datetime] = now_utc
    pacer: Pacer | None = None
    crm: CrmAccounts | None = None  # default: Salesforce when configured (SPEC 1.3)
    # `/usage-summary` answers within 10 s: a summariser with a short timeout and no retries.
    summariser: Summariser = field(init=False)
    poll_summariser: Summariser = field(init=False, repr=False)
    _warehouse: Warehouse | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Built once, at startup: a bad prompt_file or send_fields stops `nudge run` here.
        self.summariser = build_summariser(self.settings, interactive=True)
        self.poll_summariser = build_summariser(self.settings)
        if self.crm is None:
            self.crm = SalesforceCRM.from_settings(self.settings)

    def warehouse(self) -> Warehouse:
        """The validated warehouse (one engine and pool for the process)."""
        if self._warehouse is None:
            engine = warehouse_engine(
                self.settings.effective_warehouse_url,
                self.settings.warehouse.timeout.total_seconds(),
            )
            warehouse = Warehouse(engine, self.settings)
            warehouse.validate()
            self._warehouse = warehouse
        return self._warehouse

    def territory(self) -> Territory:
        """A fresh owner chain (its in-memory cache lives for one request, the store's longer)."""
        return build_territory(self.settings, self.slack, self.store, self.clock, self.crm)

    def first_delivery(self, body: dict[str, Any]) -> bool:
        """Slack re-delivers an event it thinks was lost: handle each event_id once (F03).

        Checked after the ack, so a busy state database never delays Slack's answer.
        """
        event_id = body.get("event_id")
        return not event_id or self.store.first_delivery_of_event(str(event_id), self.clock())

    def threshold(self) -> ThresholdSetting:
        """The threshold the next poll uses, and where it comes from."""
        return current_threshold(self.settings, self.store)

    def poller(self) -> Poller:
        """A poller for one run."""
        return build_poller(
            self.settings,
            self.store,
            self.slack,
            dry_run=False,
            clock=self.clock,
            pacer=self.pacer,
            warehouse=self.warehouse(),
            summariser=self.poll_summariser,
            crm=self.crm,
        )
