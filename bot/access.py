"""Who may do what (SPEC 1.2): guests never; `set` for admins; `/usage-summary` for viewers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.delivery import SlackWeb
from bot.territory import SlackUser

CACHE_S = 300.0


@dataclass(frozen=True)
class Verdict:
    """Allowed, or refused with the short line the user sees."""

    allowed: bool
    reason: str = ""


ALLOWED = Verdict(True)


class Access:
    """Answers from users.info (guest and admin flags) and the viewers user group, cached."""

    def __init__(
        self,
        slack: SlackWeb,
        admins: frozenset[str],
        viewers: str = "",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slack = slack
        self.admins = admins
        self.viewers = viewers
        self.monotonic = monotonic
        self._users: dict[str, tuple[float, SlackUser | None]] = {}
        self._group: tuple[float, set[str]] | None = None

    def user(self, user_id: str) -> SlackUser | None:
        """users.info, cached for a few minutes."""
        cached = self._users.get(user_id)
        if cached and self.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        user = self.slack.user_info(user_id)
        self._users[user_id] = (self.monotonic(), user)
        return user

    def member(self, user_id: str) -> Verdict:
        """Everyone but guests (restricted users) and unknown or deactivated users."""
        user = self.user(user_id)
        if user is None or user.deleted:
            return Verdict(False, "Nudge doesn't know your Slack account.")
        if user.is_restricted:
            return Verdict(False, "Sorry, Nudge isn't available to guest accounts.")
        return ALLOWED

    def admin(self, user_id: str) -> Verdict:
        """NUDGE_ADMINS plus workspace admins and owners."""
        verdict = self.member(user_id)
        if not verdict.allowed:
            return verdict
        user = self.user(user_id)
        if user_id in self.admins or (user is not None and user.is_admin):
            return ALLOWED
        return Verdict(False, "Only Nudge admins can change the threshold. Ask one of them.")

    def viewer(self, user_id: str) -> Verdict:
        """Members of NUDGE_VIEWERS (when set) and admins."""
        verdict = self.member(user_id)
        if not verdict.allowed or not self.viewers:
            return verdict
        if self.admin(user_id).allowed or user_id in self._viewer_ids():
            return ALLOWED
        return Verdict(False, "`/usage-summary` is limited to the Nudge viewers group.")

    def _viewer_ids(self) -> set[str]:
        if self._group is None or self.monotonic() - self._group[0] >= CACHE_S:
            self._group = (self.monotonic(), self.slack.usergroup_members(self.viewers))
        return self._group[1]
