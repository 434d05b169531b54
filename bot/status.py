"""`nudge status`: what the poller has done and what needs a human."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from bot.preview import terminal_safe
from bot.store import Store


def _moment(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "—"


def show_status(console: Console, store: Store, *, limit: int = 10) -> None:
    """Print recent runs, open alerts by state, and undeliverable or failed sends with why."""
    runs = store.recent_runs(limit)
    table = Table(
        "started (UTC)",
        "status",
        "rows",
        "above",
        "no data",
        "sent",
        "failed",
        "error",
        title="Recent polls",
        title_justify="left",
    )
    for run in runs:
        table.add_row(
            f"{run['started_at']:%m-%d %H:%M}",
            run["status"],
            str(run["evaluated"]),
            f"{run['above']} ≥ {run['threshold']:g} %",
            str(run["insufficient"]),
            str(run["sent"]),
            str(run["failed"]),
            terminal_safe(run["error"] or ""),
        )
    console.print(table if runs else "No poll has run yet: try `nudge poll --dry-run`.")
    removed = store.installation_state()
    if removed in ("app_uninstalled", "tokens_revoked"):
        console.print(f"[red]Polling stopped:[/red] Slack sent {removed}. Reinstall the app.")
    states = Counter(record.state for record in store.open_alerts().values())
    summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"
    console.print(f"Open alerts: {summary}")
    problems = store.deliveries_by_status(("undeliverable", "failed", "unknown"))
    if not problems:
        console.print("Undeliverable alerts: none")
        return
    names = {r.id: r.account_name for r in store.open_alerts().values()}
    table = Table(
        "when", "account", "status", "why", title="Undeliverable or failed", title_justify="left"
    )
    for delivery in problems:
        table.add_row(
            _moment(delivery.created_at),
            terminal_safe(names.get(delivery.alert_id, delivery.alert_id)),
            delivery.status,
            terminal_safe(delivery.error or ""),
        )
    console.print(table)
