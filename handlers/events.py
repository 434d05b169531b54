"""Installation events: on app_uninstalled or tokens_revoked Nudge stops polling (SPEC 6)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App

from bot.services import Services

log = logging.getLogger(__name__)


def removed(services: Services) -> Callable[..., None]:
    """Record the removal; the poller then skips every run until `nudge run` starts again."""

    def listener(ack: Callable[[], None], event: dict[str, Any], body: dict[str, Any]) -> None:
        ack()
        if not services.first_delivery(body):
            return
        kind = str(event.get("type"))
        services.store.add_audit("slack", kind, services.clock(), detail={"event": kind})
        log.warning("Slack sent %s: polling stops until the app is reinstalled", kind)

    return listener


def register(app: App, services: Services) -> None:
    """Register the installation event listeners."""
    app.event("app_uninstalled")(removed(services))
    app.event("tokens_revoked")(removed(services))
