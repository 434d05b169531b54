"""`nudge demo`: one poll of the real engine on the sample data, every DM previewed."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from rich.console import Console

from bot import demo
from bot.config import Settings
from bot.outbox import OutboxSlack
from bot.preview import render
from bot.store import Store
from bot.territory import SlackUser

FALLBACK_CHANNEL = "C0DEMOTRIAGE"
FIELDS = ["plan", "users", "last_activity_date", "score_tier"]


class DemoSettings(Settings):
    """Settings that ignore the environment: the demo needs, and uses, nothing of yours."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def demo_settings(folder: Path) -> Settings:
    """The demo's configuration: sample warehouse, territory file, a fallback channel."""
    values: dict[str, Any] = {
        "warehouse": {"url": f"sqlite:///{folder / 'warehouse.db'}"},
        "state_url": f"sqlite:///{folder / 'state.db'}",
        "columns": {"owner_id": "owner_id", "fields": FIELDS},
        "territory": {"csv": str(folder / "territory.csv"), "fallback_channel": FALLBACK_CHANNEL},
        "salesforce": {"instance_url": "https://northwind-sales.lightning.force.com"},
    }
    if os.environ.get("OPENAI_API_KEY"):
        values["openai_api_key"] = os.environ["OPENAI_API_KEY"]
        values["openai_base_url"] = os.environ.get("OPENAI_BASE_URL", "")
    return DemoSettings(**values)


def prepare(folder: Path, *, seed: int, accounts: int) -> None:
    """Create the sample data if missing; start every demo from an empty state database."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "warehouse.db").exists():
        demo.create_sample_warehouse(folder / "warehouse.db", seed=seed, accounts=accounts)
    if not (folder / "territory.csv").exists():
        demo.write_sample_territory(folder / "territory.csv")
    for name in ("state.db", "state.db-wal", "state.db-shm", "state.db.lock"):
        (folder / name).unlink(missing_ok=True)
    for old in (folder / "outbox").glob("*.json"):
        old.unlink()


def sample_workspace(folder: Path) -> OutboxSlack:
    """The sample Slack workspace: every sample owner (one of them deactivated)."""
    members = [
        (SlackUser(u.slack_user_id, u.first_name, u.real_name, u.tz, u.deleted), u.email)
        for u in demo.SAMPLE_USERS
    ]
    return OutboxSlack.with_users(folder / "outbox", members)


def run_demo(console: Console, folder: Path, *, seed: int = 7, accounts: int = 300) -> int:
    """Run the demo and print what every recipient would see."""
    from bot.services import build_poller

    prepare(folder, seed=seed, accounts=accounts)
    settings = demo_settings(folder)
    store = Store.open(settings.state_database_url())
    outbox = sample_workspace(folder)
    poller = build_poller(settings, store, outbox, dry_run=False)
    report = poller.run()
    names = {u.id: u.real_name for u in outbox.users.values()}
    console.print(
        f"[bold]Nudge demo[/bold] — sample warehouse {folder / 'warehouse.db'}, "
        f"first poll at {datetime.now(UTC):%H:%M} UTC.\n"
        + (
            "Summaries by the LLM at OPENAI_BASE_URL/OpenAI (sample data only); "
            "nothing else leaves this machine.\n"
            if settings.openai_api_key
            else "Nothing leaves this machine (set OPENAI_API_KEY for LLM summaries).\n"
        )
    )
    for sent in outbox.sent:
        to = (
            f"DM to {names.get(sent.recipient, sent.recipient)}"
            if sent.channel.startswith("D")
            else "#nudge-triage (fallback channel)"
        )
        render(console, f"{to} · {sent.path.name}", sent.message.blocks, lambda u: names.get(u, u))
    kinds = Counter(line.kind for line in report.alerts)
    console.print(
        f"Threshold {report.threshold:g} %: {report.evaluated} accounts evaluated, "
        f"{report.above} at or above, {report.insufficient_data} with insufficient data "
        f"(skipped, counted). {len(outbox.sent)} messages for {sum(kinds.values())} accounts "
        f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}).\n"
        f"Block Kit JSON of each message: {folder / 'outbox'}/ · "
        f"a second run starts from an empty state again."
    )
    for error in report.errors:
        console.print(f"[red]error:[/red] {error}")
    return 0 if report.ran else 1
