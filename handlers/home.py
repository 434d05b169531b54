"""Listeners: App Home — each AE's accounts above the threshold, published on every open."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from blocks.alert import Card
from blocks.home import NEXT, PREVIOUS, home_view, refusal_view
from bot.cards import card_from_json
from bot.services import Services
from bot.store import AlertRecord


def _card(record: AlertRecord) -> Card:
    """The stored card with the alert's current state (the record is the source of truth)."""
    card = card_from_json(record.card)
    return replace(
        card,
        state=record.state,
        until=record.snoozed_until,
        actor_id=record.acted_by or card.actor_id,
    )


def publish_home(client: WebClient, services: Services, user_id: str, page: int = 0) -> None:
    """views.publish the user's Home tab at `page`; guests get a view saying Nudge isn't theirs."""
    verdict = services.access.member(user_id)
    if not verdict.allowed:
        view = refusal_view(verdict.reason)
    else:
        cards = [_card(r) for r in services.store.open_alerts_for_owner(user_id)]
        view = home_view(cards, page=page, now=services.clock())
    client.views_publish(user_id=user_id, view=view)


def _page(action: dict[str, Any]) -> int:
    try:
        return int(action.get("value", "0"))
    except ValueError:
        return 0  # not a page number we built: show the first page


def register(app: App, services: Services) -> None:
    """Register the App Home listeners: the tab opened, Previous / Next."""

    def home_opened(
        ack: Ack, event: dict[str, Any], body: dict[str, Any], client: WebClient
    ) -> None:
        ack()  # Bolt acks events itself; kept so every listener reads the same way
        if event.get("tab") == "home" and services.first_delivery(body):
            publish_home(client, services, event["user"])

    def turn_page(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        publish_home(client, services, body["user"]["id"], _page(action))

    app.event("app_home_opened")(home_opened)
    app.action(PREVIOUS)(turn_page)
    app.action(NEXT)(turn_page)
