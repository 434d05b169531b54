"""The demo's Slack: a sample workspace directory, and an outbox folder instead of real DMs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blocks.alert import Message
from bot.territory import SlackUser


@dataclass
class Sent:
    """One message the demo would have sent."""

    channel: str
    recipient: str
    ts: str
    message: Message
    path: Path


@dataclass
class OutboxSlack:
    """Implements the Slack gateway offline: look-ups from a fixed directory, posts to files."""

    folder: Path
    users: dict[str, SlackUser] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    @classmethod
    def with_users(cls, folder: Path, users: Iterable[tuple[SlackUser, str]]) -> OutboxSlack:
        """An outbox whose workspace has these (user, email) members."""
        outbox = cls(folder)
        for user, email in users:
            outbox.users[user.id] = user
            outbox.emails[email.lower()] = user.id
        return outbox

    def lookup_by_email(self, email: str) -> SlackUser | None:
        """users.lookupByEmail against the sample workspace."""
        user_id = self.emails.get(email)
        return self.users.get(user_id) if user_id else None

    def user_info(self, user_id: str) -> SlackUser | None:
        """users.info against the sample workspace."""
        return self.users.get(user_id)

    def open_dm(self, user_id: str) -> str:
        """The DM channel id Slack would return."""
        return "D" + user_id[1:]

    def post(self, channel: str, message: Message, metadata: dict[str, Any]) -> tuple[str, str]:
        """Write the message as Slack would receive it to the outbox folder."""
        ts = f"{1_700_000_000 + len(self.sent)}.000100"
        recipient = "U" + channel[1:] if channel.startswith("D") else channel
        first = next((b for b in message.blocks if b["type"] == "header"), None)
        title = first["text"]["text"] if first else message.text
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40]
        path = self.folder / f"{len(self.sent) + 1:03d}-{slug}.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        body = {
            "channel": channel,
            "text": message.text,
            "blocks": message.blocks,
            "metadata": metadata,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        self.sent.append(Sent(channel, recipient, ts, message, path))
        return channel, ts

    def update(self, channel: str, ts: str, message: Message) -> None:
        """chat.update: the demo never updates (one poll only)."""

    def find_delivery(self, channel: str, message_key: str) -> str | None:
        """Nothing is ever unconfirmed in the demo."""
        return None
