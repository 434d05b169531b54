"""A poll harness: real warehouse and state database, the fake Slack over HTTP, a fake clock."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.delivery import Pacer, SlackWeb, web_client
from bot.poller import PollReport
from bot.services import build_poller
from bot.store import Store
from tests.conftest import BOT_TOKEN, Clock
from tests.fakes.slack import FakeSlack
from tests.warehouses import create_usage_table, sf_id


def owner_user(n: int) -> tuple[str, str, str]:
    """(crm id, Slack user id, email) of test owner n."""
    return sf_id("005", n), f"U0OWNER{n:04d}", f"owner{n}@example.com"


class Harness:
    """Builds a fresh Poller for every poll, as a restarted process would."""

    def __init__(
        self,
        tmp_path: Path,
        slack: FakeSlack,
        clock: Clock,
        *,
        owners: int = 3,
        state_url: str | None = None,
        settings: dict[str, Any] | None = None,
        crm: Any = None,
        warehouse_url: str | None = None,
    ) -> None:
        self.slack, self.clock, self.tmp = slack, clock, tmp_path
        self.crm = crm
        self.warehouse_url = warehouse_url or f"sqlite:///{tmp_path / 'warehouse.db'}"
        self.rows: list[tuple[Any, ...]] = []
        create_usage_table(self.warehouse_url, [])
        territory = tmp_path / "territory.csv"
        with territory.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["crm_user_id", "email", "slack_user_id"])
            for n in range(1, owners + 1):
                crm, user, email = owner_user(n)
                writer.writerow([crm, email, ""])
                slack.add_user(user, email, first_name=f"Owner{n}", real_name=f"Owner{n} Test")
        values: dict[str, Any] = {
            "warehouse": {"url": self.warehouse_url},
            "state_url": state_url or f"sqlite:///{tmp_path / 'state.db'}",
            "columns": {"owner_id": "owner_id", "fields": ["plan"]},
            "territory": {"csv": str(territory)},
            "salesforce": {"instance_url": "https://acme.lightning.force.com"},
            "slack_bot_token": BOT_TOKEN,
            "slack_api_url": slack.url,
        }
        for section, override in (settings or {}).items():
            if isinstance(override, dict):
                values[section] = {**values.get(section, {}), **override}
            else:
                values[section] = override
        self.settings = Settings(**values)
        self.store = Store.open(self.settings.state_database_url())
        self.sleeps: list[float] = []

    def set_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Replace the warehouse table's rows."""
        self.rows = list(rows)
        create_usage_table(self.warehouse_url, self.rows)

    def after_a_quiet_first_poll(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run a first poll on an empty table, then load `rows`: they are ordinary crossings."""
        self.set_rows([])
        self.poll()
        self.set_rows(rows)

    def poll(
        self, *, dry_run: bool = False, threshold: Any = None, monotonic: Any = None
    ) -> PollReport:
        """One poll through a freshly built Poller (optionally with a fake monotonic clock)."""
        slack = SlackWeb(web_client(BOT_TOKEN, self.slack.url))
        pacer = Pacer(sleep=self.sleeps.append)
        poller = build_poller(
            self.settings,
            self.store,
            slack,
            dry_run=dry_run,
            clock=self.clock,
            pacer=pacer,
            crm=self.crm,
        )
        if monotonic is not None:
            poller.monotonic = monotonic
        return poller.run(dry_run=dry_run, threshold=threshold)

    def posts(self) -> list[dict[str, Any]]:
        """Every chat.postMessage Slack stored."""
        return self.slack.all_posts()
