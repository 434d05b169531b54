"""Bolt listeners: thin — parse, call the engine in `bot`, render with `blocks`."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App

from bot.delivery import web_client
from bot.services import Services
from handlers import actions, commands, events, home

log = logging.getLogger(__name__)
SORRY = "Sorry, something went wrong on Nudge's side. Please try again in a minute."


def on_error(
    error: Exception, body: dict[str, Any], respond: Any = None, client: Any = None
) -> None:
    """One handler for every unhandled error: the log gets the traceback, the user one line."""
    log.error("listener failed", exc_info=error)
    user = (body.get("user") or {}).get("id") if isinstance(body.get("user"), dict) else None
    try:
        if respond is not None and body.get("response_url"):
            respond(text=SORRY, response_type="ephemeral", replace_original=False)
        elif client is not None and user:  # e.g. a click in App Home: nothing to reply to
            client.chat_postMessage(channel=user, text=SORRY)
    except Exception:  # the answer is best effort; the log already has the cause
        log.warning("could not tell the user about the error", exc_info=True)


class _TokenFromClient(logging.Filter):
    """Bolt also reads SLACK_BOT_TOKEN from the environment and warns that the client's token
    wins; they are the same token, so the warning would only alarm admins."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


BOLT_LOG = logging.getLogger("nudge.slack")
BOLT_LOG.addFilter(_TokenFromClient())


def build_app(services: Services) -> App:
    """The Bolt app, built once, with every listener registered."""
    settings = services.settings
    assert settings.slack_bot_token is not None
    secret = settings.slack_signing_secret
    app = App(
        logger=BOLT_LOG,
        signing_secret=secret.get_secret_value() if secret else None,
        request_verification_enabled=secret is not None,
        client=web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url),
        token_verification_enabled=False,
        process_before_response=False,
    )
    app.error(on_error)
    commands.register(app, services)
    actions.register(app, services)
    home.register(app, services)
    events.register(app, services)
    return app
