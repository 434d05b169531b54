"""Listeners: the card's actions — Snooze, Mark contacted, Open in Salesforce, Assign to…"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from blocks import ids
from bot import actions as engine
from bot.errors import DeliveryError
from bot.services import Services
from bot.store import AlertRecord

log = logging.getLogger(__name__)
BAD_SNOOZE = "That snooze choice isn't one Nudge offers; nothing was changed."


class ActionListeners:
    """One bound method per action id; each acks first, then works (Slack's 3-second rule)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def snooze(
        self,
        ack: Ack,
        body: dict[str, Any],
        action: dict[str, Any],
        respond: Respond,
        client: WebClient,
    ) -> None:
        """Snooze the alert for the chosen number of days."""
        ack()
        days = engine.snooze_days((action.get("selected_option") or {}).get("value", ""))
        if days is None:
            self._tell(body, respond, client, BAD_SNOOZE)
            return
        self._act(body, action, respond, client, engine.Change(engine.SNOOZE, days=days))

    def mark_contacted(
        self,
        ack: Ack,
        body: dict[str, Any],
        action: dict[str, Any],
        respond: Respond,
        client: WebClient,
    ) -> None:
        """Mark the alert contacted: the episode needs nothing more."""
        ack()
        self._act(body, action, respond, client, engine.Change(engine.CONTACTED))

    def open_salesforce(self, ack: Ack) -> None:
        """A URL button: the browser opens the record; Slack still sends the click to be acked."""
        ack()

    def assign(
        self,
        ack: Ack,
        body: dict[str, Any],
        action: dict[str, Any],
        respond: Respond,
        client: WebClient,
    ) -> None:
        """Route a fallback-channel alert to the chosen user."""
        ack()
        user_id = body["user"]["id"]
        if not self._allowed(body, respond, client, user_id):
            return
        s = self.services
        result = engine.assign(
            s.store,
            s.slack,
            s.clock,
            action.get("block_id", ""),
            user_id,
            action.get("selected_user") or "",
            s.pacer,
        )
        self._finish(body, respond, client, result)

    def _act(
        self,
        body: dict[str, Any],
        action: dict[str, Any],
        respond: Respond,
        client: WebClient,
        change: engine.Change,
    ) -> None:
        user_id = body["user"]["id"]
        if not self._allowed(body, respond, client, user_id):
            return
        s = self.services
        result = engine.apply(s.store, s.clock, action.get("block_id", ""), user_id, change)
        self._finish(body, respond, client, result)

    def _allowed(
        self, body: dict[str, Any], respond: Respond, client: WebClient, user: str
    ) -> bool:
        verdict = self.services.access.member(user)
        if not verdict.allowed:
            self._tell(body, respond, client, verdict.reason)
        return verdict.allowed

    def _finish(
        self, body: dict[str, Any], respond: Respond, client: WebClient, result: engine.Result
    ) -> None:
        """Explain what needs explaining, then show the alert's state where the click came from."""
        if result.note:
            self._tell(body, respond, client, result.note)
        if result.record is not None:
            self._update_card(body, respond, client, result.record, result.applied)
        if (body.get("container") or {}).get("type") == "view":
            from handlers.home import publish_home  # the Home tab has no message of its own

            publish_home(client, self.services, body["user"]["id"])

    def _update_card(
        self,
        body: dict[str, Any],
        respond: Respond,
        client: WebClient,
        record: AlertRecord,
        applied: bool,
    ) -> None:
        try:
            self._refresh(body, record)
        except DeliveryError as exc:
            log.warning("cannot update the card of %s: %s", record.id, exc)
            if applied:
                line = f"Done, but Slack didn't let Nudge update the card ({exc.code or 'error'})."
                self._tell(body, respond, client, line)

    def _refresh(self, body: dict[str, Any], record: AlertRecord) -> None:
        """chat.update the same message (its D… channel from the payload, F04), or, for a click
        in App Home, the DM card where it lives."""
        s = self.services
        container = body.get("container") or {}
        if container.get("type") == "view" or container.get("is_ephemeral"):
            where = engine.card_location(s.store, record)  # no message of its own to update
        else:
            where = (container.get("channel_id", ""), container.get("message_ts", ""))
        if where and where[0] and where[1]:
            engine.refresh_message(s.store, s.slack, where[0], where[1], record.id)

    def _tell(self, body: dict[str, Any], respond: Respond, client: WebClient, text: str) -> None:
        """A short ephemeral line to the clicker, never replacing the card."""
        if body.get("response_url"):
            respond(text=text, response_type="ephemeral", replace_original=False)
            return
        user_id = body["user"]["id"]
        channel = (body.get("container") or {}).get("channel_id") or (
            body.get("channel") or {}
        ).get("id")
        if not channel:  # App Home: say it in the user's DM with Nudge
            channel = self.services.slack.open_dm(user_id)
        client.chat_postEphemeral(channel=channel, user=user_id, text=text)


def register(app: App, services: Services) -> None:
    """Register the card's action listeners."""
    listeners = ActionListeners(services)
    app.action(ids.SNOOZE)(listeners.snooze)
    app.action(ids.CONTACTED)(listeners.mark_contacted)
    app.action(ids.OPEN_SALESFORCE)(listeners.open_salesforce)
    app.action(ids.ASSIGN)(listeners.assign)
