"""API efficiency: Salesforce queries and Slack look-ups for 1 000 crossings across 40 owners.

Run by hand:  .venv/bin/python -m bench.calls [--accounts 1000] [--owners 40]
Owners come from Salesforce (Account.OwnerId, User emails), as with no owner column.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from bot.salesforce import SalesforceCRM
from tests.conftest import BOT_TOKEN, Clock
from tests.fakes.salesforce import CONSUMER_KEY, CONSUMER_SECRET, FakeSalesforce
from tests.fakes.slack import FakeSlack
from tests.harness import Harness, owner_user
from tests.warehouses import account, sf_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--owners", type=int, default=40)
    args = parser.parse_args()
    with (
        FakeSlack(token=BOT_TOKEN) as slack,
        FakeSalesforce() as salesforce,
        tempfile.TemporaryDirectory() as folder,
    ):
        for n in range(1, args.owners + 1):
            crm_id, _, email = owner_user(n)
            salesforce.add_user(crm_id, email, first_name=f"Owner{n}")
        for n in range(args.accounts):
            salesforce.add_account(sf_id("001", n), sf_id("005", n % args.owners + 1), Name=f"A{n}")
        settings = {
            "columns": {"owner_id": ""},
            "territory": {"csv": ""},
            "salesforce_domain": "acme",
            "salesforce_consumer_key": CONSUMER_KEY,
            "salesforce_consumer_secret": CONSUMER_SECRET,
        }
        h = Harness(Path(folder), slack, Clock(), owners=args.owners, settings=settings)
        crm = SalesforceCRM.from_settings(h.settings, session=salesforce.session())
        h.crm = crm
        h.after_a_quiet_first_poll(
            [account(n, 45, 50, owner=n % args.owners + 1) for n in range(args.accounts)]
        )
        before = len(salesforce.queries)
        first = h.poll()
        soql_first = len(salesforce.queries) - before
        lookups_first = len(slack.calls_to("users.lookupByEmail"))
        opens_first = len(slack.calls_to("conversations.open"))
        h.set_rows(
            [
                account(n, 45, 50, owner=n % args.owners + 1)
                for n in range(args.accounts, 2 * args.accounts)
            ]
        )
        for n in range(args.accounts, 2 * args.accounts):
            salesforce.add_account(sf_id("001", n), sf_id("005", n % args.owners + 1), Name=f"A{n}")
        h.clock.advance(minutes=15)
        h.poll()
        lookups_next = len(slack.calls_to("users.lookupByEmail")) - lookups_first
        ideal = math.ceil(args.accounts / 200)
        rows = [
            ("crossings sent (first poll)", sum(a.sent for a in first.alerts), args.accounts),
            (
                "SOQL: Account owners + fields, User",
                soql_first,
                2 * ideal + math.ceil(args.owners / 200),
            ),
            ("users.lookupByEmail, first poll", lookups_first, args.owners),
            ("users.lookupByEmail, next poll", lookups_next, 0),
            ("conversations.open, first poll", opens_first, args.owners),
        ]
        print(f"{'measure':40} {'value':>8} {'target':>8}")
        for name, value, target in rows:
            print(f"{name:40} {value:>8} {target:>8}")
        print(
            f"summary: {soql_first} SOQL queries, {lookups_first} then {lookups_next} email "
            f"look-ups, {opens_first} DM opens for {args.accounts} crossings, {args.owners} owners"
        )


if __name__ == "__main__":
    main()
