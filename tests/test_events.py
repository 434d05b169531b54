"""Installation events reach the poller: uninstalled means no more polls (SPEC 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Clock
from tests.fakes.slack import FakeSlack
from tests.slackapp import SlackApp
from tests.warehouses import account


@pytest.mark.parametrize("kind", ["app_uninstalled", "tokens_revoked"])
def test_after_uninstall_the_poller_stops_and_says_why(
    tmp_path: Path, slack: FakeSlack, clock: Clock, kind: str
) -> None:
    with SlackApp(tmp_path, slack, clock) as app:
        app.after_a_quiet_first_poll([account(1, 45, 50, owner=1)])
        status, _, _ = app.event({"type": kind}, event_id=f"Ev{kind}")
        assert status == 200
        slack.wait_for(lambda: app.store.installation_state() == kind)
        report = app.poll()
        assert report.skipped and kind in report.skipped
        assert app.posts() == []
        assert app.poll(dry_run=True).alerts  # a dry run still shows what would be sent
