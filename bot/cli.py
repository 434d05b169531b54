"""`nudge …`: the composition root, where settings meet adapters."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import SQLAlchemyError

from bot.config import Settings, load_settings, parse_threshold
from bot.delivery import SlackWeb, web_client
from bot.errors import ConfigError, DeliveryError, WarehouseError
from bot.poller import PollReport
from bot.preview import terminal_safe
from bot.salesforce import SalesforceCRM
from bot.services import build_poller, now_utc
from bot.store import Store

log = logging.getLogger("nudge")
# im:history: a send whose outcome is unknown is checked against the DM before a re-send.
NEEDED_SCOPES = frozenset(
    {"chat:write", "im:write", "im:history", "users:read", "users:read.email"}
)


def _live_slack(
    settings: Settings, *, dry_run: bool, needed: frozenset[str] = NEEDED_SCOPES
) -> SlackWeb | None:
    if settings.slack_bot_token is None:
        return None
    slack = SlackWeb(
        web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    )
    if not dry_run:
        missing = needed - slack.scopes()
        if missing:
            raise ConfigError(
                [
                    f"Slack: the bot token lacks scope(s) {', '.join(sorted(missing))}: add them "
                    "under OAuth & Permissions (see manifest.yml) and reinstall the app"
                ]
            )
    return slack


def print_report(console: Console, report: PollReport) -> None:
    """The human-readable poll result."""
    if report.skipped:
        console.print(f"Skipped: {report.skipped} (another Nudge process is polling).")
        return
    columns = ["account", "usage", "would send" if report.dry_run else "kind", "to"]
    table = Table(*columns, *([] if report.dry_run else ["sent"]), "why / error", box=None)
    for line in report.alerts:
        who = line.owner or line.channel or "—"
        sent = [] if report.dry_run else ["yes" if line.sent else "no"]
        why = line.error or line.reason or ""
        cells = [line.account_name, f"{line.usage_pct:g} %", line.kind, who, *sent, why]
        table.add_row(*(terminal_safe(cell) for cell in cells))
    if report.alerts:
        console.print(table)
    if report.ran:
        console.print(
            f"Threshold {report.threshold:g} %: {report.evaluated} accounts evaluated, "
            f"{report.above} at or above, {report.insufficient_data} with insufficient data; "
            f"{len(report.alerts)} account(s) with a message this run."
        )
    for error in report.errors:
        console.print(f"[red]error:[/red] {terminal_safe(error)}")


def cmd_poll(args: argparse.Namespace) -> int:
    """One poll cycle now."""
    threshold = None
    if args.threshold is not None:
        if not args.dry_run:
            raise ConfigError(["--threshold goes with --dry-run (it previews, it sets nothing)"])
        try:
            threshold = parse_threshold(args.threshold)
        except ValueError as exc:
            raise ConfigError([f"--threshold: {exc}"]) from exc
    settings = load_settings()
    settings.require("poll", dry_run=args.dry_run)
    store = Store.open(settings.state_database_url())
    try:
        slack = _live_slack(settings, dry_run=args.dry_run)
        crm = SalesforceCRM.from_settings(settings)
        poller = build_poller(settings, store, slack, dry_run=args.dry_run, crm=crm)
    except (WarehouseError, DeliveryError) as exc:
        value = threshold or store.stored_threshold() or settings.rule.threshold
        report = PollReport(dry_run=args.dry_run, threshold=value, ran=False)
        report.errors.append(str(exc))
        if not args.dry_run:  # visible in `nudge status`, like any failed run
            run_id = store.start_run(value, now_utc())
            store.finish_run(run_id, now_utc(), status="failed", error=str(exc))
    else:
        report = poller.run(dry_run=args.dry_run, threshold=threshold)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_report(Console(), report)
    return 0 if report.ran else 1


def cmd_status(args: argparse.Namespace) -> int:
    """Recent runs, open alerts by state, and what could not be delivered."""
    from bot.status import show_status

    settings = load_settings()
    show_status(Console(), Store.open(settings.state_database_url()), limit=args.limit)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded sample data."""
    from bot.demo_run import run_demo

    return run_demo(Console(), Path(args.dir), seed=args.seed, accounts=args.accounts)


def cmd_check(args: argparse.Namespace) -> int:
    """Probe every configured dependency; non-zero when something required fails."""
    from bot.check import run_checks

    settings = load_settings()
    probes = run_checks(settings)
    console = Console(soft_wrap=True)
    for probe in probes:
        mark = (
            "[green]ok[/green]  "
            if probe.ok
            else ("[red]FAIL[/red]" if probe.required else "[yellow]warn[/yellow]")
        )
        console.print(f"{mark} {probe.name:15} {terminal_safe(probe.detail)}")
    return 0 if all(p.ok or not p.required for p in probes) else 1


def cmd_manifest(args: argparse.Namespace) -> int:
    """Print the Slack app manifest (HTTP mode when --url is given)."""
    from bot.manifest import http_variant, load_manifest, render

    manifest = load_manifest()
    print(render(http_variant(manifest, args.url) if args.url else manifest), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The Slack app, with the poll scheduler unless --no-scheduler."""
    from bot.access import Access
    from bot.services import Services
    from handlers import build_app
    from handlers.server import serve

    settings = load_settings()
    settings.require("run")
    store = Store.open(settings.state_database_url())
    from bot.manifest import bot_scopes, load_manifest

    try:
        slack = _live_slack(settings, dry_run=False, needed=frozenset(bot_scopes(load_manifest())))
    except DeliveryError as exc:
        print(f"nudge: {exc}", file=sys.stderr)
        return 1
    assert slack is not None
    access = Access(slack, settings.admin_ids, settings.viewers)
    services = Services(settings, store, slack, access)
    services.warehouse()  # a bad table or fragment fails at start, not at the first poll
    if store.installation_state() in ("app_uninstalled", "tokens_revoked"):
        store.add_audit("nudge", "installed", now_utc(), detail={"by": "nudge run"})
    try:
        serve(
            build_app(services),
            services,
            host=args.host,
            port=args.port,
            scheduler=not args.no_scheduler,
            ready=_announce(settings),
        )
    except SlackApiError as exc:  # Socket Mode: apps.connections.open refused the app token
        code = exc.response.get("error", "error")
        print(
            f"nudge: Slack refused SLACK_APP_TOKEN ({code}): create an app-level token with "
            "connections:write under Basic Information → App-Level Tokens",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"nudge: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print("Nudge stopped.", file=sys.stderr)
    return 0


def _announce(settings: Settings) -> Callable[[str], None]:
    """Say, without -v, that the app is up and where."""

    def ready(where: str) -> None:
        print(f"Nudge is running: {where} (SIGTERM or Ctrl-C to stop)", file=sys.stderr)

    return ready


def parser() -> argparse.ArgumentParser:
    """The `nudge` command line."""
    root = argparse.ArgumentParser(
        prog="nudge",
        description="Nudge: DM account executives when an account crosses a usage threshold.",
    )
    root.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = root.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run one poll on sample data and preview every DM")
    demo.add_argument("--dir", default="nudge-demo", help="folder for the sample data and outbox")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--accounts", type=int, default=300)
    demo.set_defaults(func=cmd_demo)
    poll = sub.add_parser("poll", help="run one poll cycle now")
    poll.add_argument("--dry-run", action="store_true", help="send nothing, record nothing")
    poll.add_argument("--json", action="store_true", help="print one JSON object")
    poll.add_argument("--threshold", help="with --dry-run: what this threshold would do")
    poll.set_defaults(func=cmd_poll)
    run = sub.add_parser("run", help="the Slack app (Socket Mode or HTTP) and the poll scheduler")
    run.add_argument("--host", default="0.0.0.0", help="HTTP mode: address to listen on")
    run.add_argument("--port", type=int, default=3000, help="HTTP mode: port (default 3000)")
    run.add_argument("--no-scheduler", action="store_true", help="answer Slack only; no polls")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser(
        "check", help="probe the state database, warehouse, Slack, Salesforce and the LLM"
    )
    check.set_defaults(func=cmd_check)
    manifest = sub.add_parser("manifest", help="print the Slack app manifest")
    manifest.add_argument("--url", help="public https:// base URL: HTTP mode with request URLs")
    manifest.set_defaults(func=cmd_manifest)
    status = sub.add_parser("status", help="recent polls, open alerts, undeliverable alerts")
    status.add_argument("--limit", type=int, default=10)
    status.set_defaults(func=cmd_status)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nudge` console script."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"nudge: config: {problem}", file=sys.stderr)
        return 2
    except WarehouseError as exc:
        print(f"nudge: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        log.debug("state database error", exc_info=True)
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        print(f"nudge: the state database (NUDGE_STATE_URL) failed: {reason}", file=sys.stderr)
        return 1
