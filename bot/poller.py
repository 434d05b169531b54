"""One poll cycle: usage -> lifecycle -> territory -> summary -> delivery (SPEC 2-4, 6)."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from blocks.alert import Card, Message, alert_message, digest_message, reminder_message
from bot.cards import build_card, card_from_json, card_to_json
from bot.config import Settings
from bot.delivery import SEND_MAX_S, Dispatcher, Outcome
from bot.errors import DeliveryError, OwnerLookupError, WarehouseError
from bot.lifecycle import Episode, digest_mode, plan_open_episodes
from bot.store import AlertRecord, Store, new_id
from bot.summary import Summariser, SummaryInput, TemplateSummariser
from bot.territory import CrmAccounts, Owner, Resolution, Territory, Unresolved
from bot.threshold import current_threshold
from bot.timebox import within
from bot.usage import UsageRow, Warehouse

log = logging.getLogger(__name__)
LEASE = "poll"


def send_window(budget_s: float) -> float:
    """Seconds of a run's budget in which a new send may start.

    A send takes at most SEND_MAX_S (HTTP timeouts and capped 429 waits), so one that starts
    in the window finishes before the lease — which expires with the budget — can pass to
    another poller; that poller then never sees a send still in flight.
    """
    return max(budget_s - SEND_MAX_S, budget_s / 2)


@dataclass
class AlertReport:
    """One line of the poll's outcome (SPEC 7, `nudge poll --json`)."""

    account_id: str
    account_name: str
    usage_pct: float
    owner: str | None
    channel: str | None
    kind: str
    sent: bool
    reason: str | None = None
    error: str | None = None
    message: Message | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object of SPEC 7 (extra keys allowed; None extras left out)."""
        data = {k: v for k, v in self.__dict__.items() if k != "message"}
        return {k: v for k, v in data.items() if v is not None or k in ("owner", "channel")}


@dataclass
class PollReport:
    """What one poll did (or, dry-run, would do)."""

    dry_run: bool
    threshold: Decimal
    evaluated: int = 0
    above: int = 0
    insufficient_data: int = 0
    alerts: list[AlertReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None
    ran: bool = True
    first_poll: bool = False

    def to_json(self) -> dict[str, Any]:
        """The `nudge poll --json` object."""
        data: dict[str, Any] = {
            "dry_run": self.dry_run,
            "threshold": float(self.threshold),
            "evaluated": self.evaluated,
            "above": self.above,
            "insufficient_data": self.insufficient_data,
            "alerts": [a.to_json() for a in self.alerts],
            "errors": self.errors,
        }
        if self.skipped:
            data["skipped"] = self.skipped
        return data


@dataclass
class _Outgoing:
    record: AlertRecord
    card: Card
    owner: Resolution
    kind: str = "alert"


class Poller:
    """Runs poll cycles against injected ports; holds no state between runs."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        warehouse: Warehouse,
        territory: Territory,
        summariser: Summariser,
        dispatcher: Dispatcher | None,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        crm: CrmAccounts | None = None,
    ) -> None:
        self.crm = crm
        self._accounts: dict[str, Mapping[str, Any]] = {}
        self.monotonic = monotonic
        self._send_by = 0.0
        self._summary_budget = 0.0
        self.settings = settings
        self.store = store
        self.warehouse = warehouse
        self.territory = territory
        self.summariser = summariser
        self.dispatcher = dispatcher
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"

    def current_threshold(self) -> Decimal:
        """Stored by /usage-threshold set > environment > nudge.toml > 75."""
        return current_threshold(self.settings, self.store).value

    def run(self, *, dry_run: bool = False, threshold: Decimal | None = None) -> PollReport:
        """One cycle. Failures are reported in the result; only bugs raise."""
        now = self.clock()
        value = threshold if threshold is not None else self.current_threshold()
        report = PollReport(dry_run=dry_run, threshold=value)
        budget = self.settings.schedule.budget
        removed = self.store.installation_state()
        if not dry_run and removed in ("app_uninstalled", "tokens_revoked"):
            report.skipped = f"Slack sent {removed}: polling stopped until the app is reinstalled"
            log.warning("poll skipped: %s", report.skipped)
            return report
        if not dry_run and not self.store.acquire_lease(LEASE, self.holder, now, budget):
            report.skipped = "lease held"
            return report
        run_id = None if dry_run else self.store.start_run(value, now)
        window = send_window(budget.total_seconds())
        self._send_by = self.monotonic() + window
        # At most half the send window for summaries: a slow LLM must not hold the DMs back.
        self._summary_budget = window / 2
        try:
            self._cycle(report, now)
        except (WarehouseError, DeliveryError) as exc:
            report.ran = False
            report.errors.append(str(exc))
            log.error("poll failed: %s", exc)
        except Exception as exc:  # a bug or an unexpected dependency failure: this run only
            report.ran = False
            report.errors.append(f"internal error: {type(exc).__name__} (see the log)")
            log.exception("poll failed")
        finally:
            if run_id is not None:
                self._finish(run_id, report)
                self.store.release_lease(LEASE, self.holder)
        return report

    def _finish(self, run_id: int, report: PollReport) -> None:
        self.store.finish_run(
            run_id,
            self.clock(),
            status="ok" if report.ran else "failed",
            evaluated=report.evaluated,
            above=report.above,
            insufficient=report.insufficient_data,
            sent=sum(a.sent for a in report.alerts),
            failed=sum(not a.sent for a in report.alerts),
            error="; ".join(report.errors) or None,
        )

    def _cycle(self, report: PollReport, now: datetime) -> None:
        if not report.dry_run and self.dispatcher:
            self.dispatcher.reconcile()
        counts = self.warehouse.counts(report.threshold)
        report.evaluated, report.above = counts.evaluated, counts.above
        report.insufficient_data = counts.insufficient
        report.first_poll = not self.store.has_history()
        digest = digest_mode(report.first_poll, report.threshold, self.store.last_ok_threshold())
        opened = self.store.open_alerts()
        crossings, usage = self._scan(report.threshold, opened, report)
        crossings = self._from_crm(crossings, report)
        plan = self._plan(opened, usage, report.threshold, now)
        if not report.dry_run:
            self.store.close_alerts((opened[a].id for a in plan.rearm), now)
        wanted = [r.owner_id for r in crossings]
        wanted += [opened[a].owner_crm_id for a in plan.retries + plan.reminders]
        owners = self.territory.resolve_many(wanted)
        outgoing = self._new_alerts(crossings, owners, report, now)
        outgoing += [self._retry(opened[a], owners) for a in plan.retries]
        self._deliver(outgoing, digest, report)
        self._remind([opened[a] for a in plan.reminders], owners, report, now)

    def _from_crm(self, rows: list[UsageRow], report: PollReport) -> list[UsageRow]:
        """Owners (Account.OwnerId, when the table has no owner column) and account fields.

        The CRM being down holds this run's new alerts back (they cross again next poll)
        rather than sending them ownerless to the fallback channel.
        """
        self._accounts = {}
        if self.crm is None or not rows:
            return rows
        crm, ids = self.crm, [row.account_id for row in rows]

        def read() -> tuple[Mapping[str, str] | None, dict[str, Mapping[str, Any]]]:
            owners = None if self.settings.columns.owner_id else crm.account_owners(ids)
            return owners, dict(crm.account_fields(ids))

        def late() -> tuple[Mapping[str, str] | None, dict[str, Mapping[str, Any]]]:
            raise OwnerLookupError("Salesforce did not answer within the run's budget")

        try:
            # A slow CRM may use at most a third of the run's budget (SPEC 6).
            owners, self._accounts = within(
                self.settings.schedule.budget.total_seconds() / 3, read, late
            )
            if owners is not None:
                rows = [replace(row, owner_id=owners.get(row.account_id)) for row in rows]
        except OwnerLookupError as exc:
            report.errors.append(f"Salesforce: {exc}; new alerts wait for the next poll")
            log.warning("CRM failed: %s", exc)
            return []
        return rows

    def _scan(
        self, threshold: Decimal, opened: dict[str, AlertRecord], report: PollReport
    ) -> tuple[list[UsageRow], dict[str, Decimal | None]]:
        """Stream the rows above; keep only new crossings, and the current usage of open alerts."""
        crossings: dict[str, UsageRow] = {}
        usage: dict[str, Decimal | None] = {}
        duplicates: list[str] = []
        for row in self.warehouse.above(threshold):
            if row.account_id in opened:
                usage[row.account_id] = row.usage_pct
            elif row.account_id in crossings:
                duplicates.append(row.account_id)
            elif row.usage_pct is None:
                continue  # a value the warehouse compared but Python cannot read (text, NaN)
            else:
                crossings[row.account_id] = row
        if duplicates:
            report.errors.append(
                f"{len(duplicates)} row(s) repeat an account_id (e.g. {duplicates[0]}): only the "
                "first alerts; the table must have one row per account"
            )
        missing = [a for a in opened if a not in usage]
        for row in self.warehouse.rows_by_id(missing):
            usage[row.account_id] = row.usage_pct
        return list(crossings.values()), usage

    def _plan(
        self,
        opened: dict[str, AlertRecord],
        usage: dict[str, Decimal | None],
        t: Decimal,
        now: datetime,
    ) -> Any:
        history = self.store.delivery_summary(r.id for r in opened.values())
        episodes = {
            account: Episode(
                alert_id=r.id,
                state=r.state,
                snoozed_until=r.snoozed_until,
                delivered=history.get(r.id, (False, 0))[0],
                attempts=history.get(r.id, (False, 0))[1],
            )
            for account, r in opened.items()
        }
        return plan_open_episodes(
            episodes,
            usage,
            threshold=t,
            rearm_below=self.settings.rule.rearm_below,
            now=now,
            max_attempts=self.settings.delivery.max_attempts,
        )

    def _new_alerts(
        self,
        rows: list[UsageRow],
        owners: dict[str | None, Resolution],
        report: PollReport,
        now: datetime,
    ) -> list[_Outgoing]:
        out = []
        summaries = self._summaries(rows, report, now)
        for row, summary in zip(rows, summaries, strict=True):
            try:
                item = self._open_alert(row, owners[row.owner_id], report, now, summary)
            except Exception as exc:  # one bad row fails that account, never the batch
                log.exception("account %s: cannot open its alert", row.account_id)
                report.errors.append(f"account {row.account_id}: {type(exc).__name__}")
                continue
            if item is not None:
                out.append(item)
        return out

    def _summaries(
        self, rows: list[UsageRow], report: PollReport, now: datetime
    ) -> list[str | None]:
        """Every new crossing's summary at once: the LLM calls run side by side, as one run."""
        unit = self.settings.columns.unit
        inputs = [
            SummaryInput(
                row,
                unit,
                now.date(),
                report.threshold,
                account=self._accounts.get(row.account_id, {}),
            )
            for row in rows
        ]
        try:
            return list(self.summariser.summarise_many(inputs, budget_s=self._summary_budget))
        except Exception:  # a bug in one summary: each account then gets the template's
            log.exception("summaries failed: template summaries this run")
            return [None] * len(rows)

    def _open_alert(
        self,
        row: UsageRow,
        owner: Resolution,
        report: PollReport,
        now: datetime,
        summary: str | None,
    ) -> _Outgoing | None:
        """Build the card and record the alert; None when another replica already has it."""
        first = owner.first_name if isinstance(owner, Owner) else ""
        if summary is None:
            unit = self.settings.columns.unit
            data = SummaryInput(row, unit, now.date(), report.threshold)
            summary = TemplateSummariser().summarise(data)
        card = build_card(
            self.settings,
            row,
            alert_id=new_id(),
            threshold=report.threshold,
            now=now,
            first_name=first,
            summary_mrkdwn=summary,
        )
        if isinstance(owner, Unresolved) and not owner.transient:
            # Stored with the alert, so a re-rendered fallback card keeps saying why.
            card = replace(card, fallback_reason=owner.reason)
        if self.crm is not None:
            card = replace(card, record_url=self.crm.record_url(row.account_id) or card.record_url)
        record = AlertRecord(
            id=card.alert_id,
            account_id=row.account_id,
            state="alerted",
            version=1,
            account_name=row.account_name,
            owner_crm_id=row.owner_id,
            owner_slack_id=owner.slack_user_id if isinstance(owner, Owner) else None,
            usage_pct=row.usage_pct,
            threshold=report.threshold,
            card=card_to_json(card),
            opened_at=now,
            snoozed_until=None,
            acted_by=None,
        )
        if report.dry_run or self.store.create_alert(record, now):
            return _Outgoing(record, card, owner)
        return None

    @staticmethod
    def _owner_of(record: AlertRecord, owners: dict[str | None, Resolution]) -> Resolution:
        """An owner someone picked in Slack ("Assign to…") wins over the CRM's."""
        assigned = (record.card.get("extra") or {}).get("assigned_by")
        if assigned and record.owner_slack_id:
            first = str(record.card.get("first_name") or "")
            return Owner(record.owner_crm_id, record.owner_slack_id, first)
        return owners[record.owner_crm_id]

    def _retry(self, record: AlertRecord, owners: dict[str | None, Resolution]) -> _Outgoing:
        owner = self._owner_of(record, owners)
        card = card_from_json(record.card)
        if isinstance(owner, Owner) and not card.first_name:
            card = Card(**{**card.__dict__, "first_name": owner.first_name})
        return _Outgoing(record, card, owner)

    def _deliver(self, items: list[_Outgoing], digest: bool, report: PollReport) -> None:
        by_owner: dict[str, list[_Outgoing]] = {}
        unresolved: list[tuple[_Outgoing, Unresolved]] = []
        for item in sorted(items, key=lambda i: i.card.usage_pct, reverse=True):
            if isinstance(item.owner, Owner):
                by_owner.setdefault(item.owner.slack_user_id, []).append(item)
            else:
                unresolved.append((item, item.owner))
        for user_id, group in by_owner.items():
            if digest and len(group) > 1:
                cards = [g.card for g in group]
                first = group[0].owner.first_name if isinstance(group[0].owner, Owner) else ""
                message = digest_message(cards, first, report.threshold)
                self._send(group, "digest", user_id, message, report)
            else:
                for item in group:
                    self._send([item], "alert", user_id, alert_message(item.card), report)
        for item, why in unresolved:
            self._send_unresolved(item, why, report)

    def _send_unresolved(self, item: _Outgoing, owner: Unresolved, report: PollReport) -> None:
        if owner.transient:
            self._record_unsent(item, "failed", owner.reason, report)
            line = self._line(item, None, None, "alert", False, None)
            line.error = owner.reason
            report.alerts.append(line)
            return
        fallback = self.settings.territory.fallback_channel
        card = Card(**{**item.card.__dict__, "fallback_reason": owner.reason, "first_name": ""})
        if fallback:
            self._send([item], "fallback", fallback, alert_message(card), report, owner.reason)
            return
        self._record_unsent(item, "undeliverable", owner.reason, report)
        report.alerts.append(self._line(item, None, None, "undeliverable", False, owner.reason))

    def _record_unsent(self, item: _Outgoing, status: str, why: str, report: PollReport) -> None:
        """An alert that could not go out this run: recorded (and counted as an attempt)."""
        if not report.dry_run:
            key = new_id()
            self.store.record_pending(key, [item.record.id], status, None, self.clock())
            self.store.finish_delivery(key, status, self.clock(), error=why)

    def _send(
        self,
        items: list[_Outgoing],
        kind: str,
        recipient: str,
        message: Message,
        report: PollReport,
        reason: str | None = None,
    ) -> None:
        outcome = Outcome(False)
        if not report.dry_run and self.dispatcher and self.monotonic() > self._send_by:
            # Past the budget the lease may pass to another poller: leave it to the next run.
            outcome = Outcome(False, error="run budget used up; sent by the next poll")
        elif not report.dry_run and self.dispatcher:
            ids = [i.record.id for i in items]
            outcome = self.dispatcher.send(new_id(), ids, kind, recipient, message)
            if kind == "fallback" and outcome.error in ("channel_not_found", "not_in_channel"):
                hint = f"fallback channel {recipient}: {outcome.error} — invite the bot there"
                if hint not in report.errors:  # with `/invite @Nudge`
                    report.errors.append(hint)
            if outcome.fatal:
                raise DeliveryError(
                    f"Slack refused the bot token: {outcome.error}", outcome.error or ""
                )
        owner = recipient if recipient.startswith(("U", "W")) else None
        channel = outcome.channel or (None if owner else recipient)
        for item in items:
            line = self._line(item, owner, channel, kind, outcome.sent, reason)
            line.error, line.message = outcome.error, message
            report.alerts.append(line)

    @staticmethod
    def _line(
        item: _Outgoing,
        owner: str | None,
        channel: str | None,
        kind: str,
        sent: bool,
        reason: str | None,
    ) -> AlertReport:
        return AlertReport(
            account_id=item.record.account_id,
            account_name=item.record.account_name,
            usage_pct=round(float(item.card.usage_pct), 2),
            owner=owner,
            channel=channel,
            kind=kind,
            sent=sent,
            reason=reason,
        )

    def _remind(
        self,
        records: list[AlertRecord],
        owners: dict[str | None, Resolution],
        report: PollReport,
        now: datetime,
    ) -> None:
        """A snooze ended while still above: the card comes back and one short DM points to it."""
        cards = self.store.latest_deliveries(r.id for r in records)
        for record in records:
            owner = self._owner_of(record, owners)
            if not isinstance(owner, Owner):
                continue
            card = card_from_json(record.card)
            if not report.dry_run:
                if not self.store.update_alert(
                    record.id, record.version, now, state="alerted", snoozed_until=None
                ):
                    continue
                where = cards.get(record.id)
                if where and where.channel and where.ts and self.dispatcher:
                    try:
                        self.dispatcher.slack.update(where.channel, where.ts, alert_message(card))
                    except DeliveryError as exc:  # the short DM below still goes out
                        if exc.fatal:
                            raise
                        log.warning("cannot update the card of %s: %s", record.id, exc)
            message = reminder_message(card, "", "Your snooze ended")
            self._send(
                [_Outgoing(record, card, owner)], "reminder", owner.slack_user_id, message, report
            )
