"""All four peers live on this machine at once: Snowflake (fakesnow), Salesforce, OpenAI and
Slack fakes over HTTP — the DMs carry LLM summaries and Salesforce links (issue 4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.salesforce import SalesforceCRM
from tests.conftest import Clock
from tests.fakes.openai import FakeOpenAI
from tests.fakes.salesforce import CONSUMER_KEY, CONSUMER_SECRET, FakeSalesforce
from tests.fakes.slack import FakeSlack
from tests.harness import Harness, owner_user
from tests.warehouses import create_usage_table, fake_snowflake, sf_id


@pytest.fixture
def peers(tmp_path: Path, slack: FakeSlack, clock: Clock) -> Iterator[dict[str, Any]]:
    """Snowflake + Salesforce + OpenAI + Slack; 12 accounts above 75 % owned by 3 CRM users."""
    with fake_snowflake() as url, FakeSalesforce() as salesforce, FakeOpenAI() as llm:
        for n in range(1, 4):
            crm_id, _, email = owner_user(n)
            salesforce.add_user(crm_id, f"  {email.upper()} ", first_name=f"Crm{n}")
        for n in range(12):
            salesforce.add_account(
                sf_id("001", n),
                sf_id("005", n % 3 + 1),
                Name=f"Account {n}",
                Industry="Logistics",
                NumberOfEmployees=40 + n,
            )
        settings = {
            "columns": {"owner_id": ""},  # owners come from Salesforce Account.OwnerId
            "territory": {"csv": ""},  # and their emails from Salesforce User
            "salesforce_domain": "acme",
            "salesforce_consumer_key": CONSUMER_KEY,
            "salesforce_consumer_secret": CONSUMER_SECRET,
            "openai_api_key": "sk-test-key",
            "openai_base_url": llm.url,
        }
        harness = Harness(tmp_path, slack, clock, settings=settings, warehouse_url=url)
        harness.crm = SalesforceCRM.from_settings(harness.settings, session=salesforce.session())
        create_usage_table(url, [])
        harness.poll()  # a quiet first poll: what follows are ordinary crossings
        # No owner in the warehouse: the table's owner_id is empty and [columns] owner_id unset.
        rows = [
            (
                sf_id("001", n),
                f"Account {n}",
                f"account{n}.example",
                None,
                40 + n % 5,
                50,
                "starter",
            )
            for n in range(12)
        ]
        create_usage_table(url, rows)
        yield {"harness": harness, "salesforce": salesforce, "llm": llm}


def test_dms_carry_llm_summaries_and_salesforce_links(
    peers: dict[str, Any], slack: FakeSlack
) -> None:
    harness: Harness = peers["harness"]
    report = harness.poll()
    assert report.ran, report.errors
    assert sorted((a.owner, a.sent) for a in report.alerts) == sorted(
        [(owner_user(n % 3 + 1)[1], True) for n in range(12)]
    )
    posts = harness.posts()
    assert len(posts) == 12
    text = json.dumps(posts)
    assert "upgrade" in text and "Here's a summary created by a bot" in text  # the LLM's words
    assert f"/lightning/r/Account/{sf_id('001', 4)}/view" in text  # the Lightning record page
    assert "Hi Crm1!" in text  # the CRM first name wins
    llm: FakeOpenAI = peers["llm"]
    assert len(llm.requests) == 12
    # CRM fields leave only when [summary] send_fields lists them (empty here).
    assert all("Logistics" not in request.user_prompt for request in llm.requests)
    salesforce: FakeSalesforce = peers["salesforce"]
    assert len(salesforce.queries) == 3  # owners, users, account fields: one batch each


def test_with_the_llm_failing_the_dms_carry_the_template(peers: dict[str, Any]) -> None:
    llm: FakeOpenAI = peers["llm"]
    llm.insufficient_quota(times=100)
    report = peers["harness"].poll()
    assert report.ran and len(report.alerts) == 12 and all(a.sent for a in report.alerts)
    # The run's circuit opens at the first refusal: only calls already in flight (at most the
    # concurrency, 8) were made, not one per account.
    assert 1 <= len(llm.requests) <= 8
    assert all("left in the quota" in json.dumps(p["blocks"]) for p in peers["harness"].posts())


def test_salesforce_down_holds_new_alerts_for_the_next_poll(peers: dict[str, Any]) -> None:
    salesforce: FakeSalesforce = peers["salesforce"]
    salesforce.fail("query", status=503, code="SERVER_UNAVAILABLE", message="down", times=50)
    harness: Harness = peers["harness"]
    report = harness.poll()
    assert report.ran and report.alerts == [] and "Salesforce" in report.errors[0]
    assert harness.posts() == []
