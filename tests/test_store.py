"""The state database: migrated on first use, safe to open concurrently, CAS and leases."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from bot.store import AlertRecord, Store, new_id
from tests.conftest import Clock


def _record(clock: Clock, account: str = "001") -> AlertRecord:
    return AlertRecord(
        id=new_id(),
        account_id=account,
        state="alerted",
        version=1,
        account_name="Acme",
        owner_crm_id=None,
        owner_slack_id=None,
        usage_pct=Decimal("82.5"),
        threshold=Decimal(75),
        card={"x": 1},
        opened_at=clock(),
        snoozed_until=None,
        acted_by=None,
    )


def test_first_use_creates_the_latest_schema_and_reopening_is_a_no_op(state_url: str) -> None:
    store = Store.open(state_url)
    tables = set(inspect(store.engine).get_table_names())
    assert {"alerts", "deliveries", "poll_runs", "threshold_changes", "audit", "leases"} <= tables
    Store.open(state_url)
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0001"


def test_replicas_starting_together_migrate_once(state_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            Store.open(state_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_one_open_alert_per_account_even_from_two_writers(state_url: str, clock: Clock) -> None:
    store = Store.open(state_url)
    assert store.create_alert(_record(clock), clock())
    assert not store.create_alert(_record(clock), clock())
    opened = store.open_alerts()["001"]
    assert opened.usage_pct == Decimal("82.5") and opened.opened_at == clock()
    store.close_alerts([opened.id], clock())
    assert store.create_alert(_record(clock), clock())  # a new episode after re-arm


def test_compare_and_set_on_the_alert_version(state_url: str, clock: Clock) -> None:
    store = Store.open(state_url)
    record = _record(clock)
    store.create_alert(record, clock())
    assert store.update_alert(record.id, 1, clock(), state="contacted", acted_by="U1")
    assert not store.update_alert(record.id, 1, clock(), state="snoozed")
    assert store.alert(record.id).state == "contacted"  # type: ignore[union-attr]


def test_lease_is_exclusive_until_it_expires(state_url: str, clock: Clock) -> None:
    store = Store.open(state_url)
    ttl = timedelta(minutes=5)
    assert store.acquire_lease("poll", "a", clock(), ttl)
    assert not store.acquire_lease("poll", "b", clock(), ttl)
    assert store.acquire_lease("poll", "a", clock(), ttl)  # renewal by its holder
    clock.advance(minutes=5, seconds=1)
    assert store.acquire_lease("poll", "b", clock(), ttl)
    store.release_lease("poll", "b")
    assert store.acquire_lease("poll", "c", clock(), ttl)


def test_threshold_changes_are_stored_with_who_old_new_when(state_url: str, clock: Clock) -> None:
    store = Store.open(state_url)
    assert store.stored_threshold() is None
    store.set_threshold(Decimal("62.5"), None, "U0ADMIN", clock())
    store.set_threshold(Decimal(80), Decimal("62.5"), "U0ADMIN", clock())
    assert store.stored_threshold() == Decimal(80)


def test_upgrading_a_database_of_the_first_released_schema_keeps_alerts_and_deliveries(
    state_url: str, clock: Clock
) -> None:
    from alembic import command
    from alembic.config import Config

    from bot.store import MIGRATIONS, make_engine

    engine = make_engine(state_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")  # the first released schema
    old = Store(engine)
    record = _record(clock)
    old.create_alert(record, clock())
    old.record_pending("m1", [record.id], "alert", "U0DANA", clock())
    old.finish_delivery("m1", "sent", clock(), channel="D0DANA", ts="1.2")
    upgraded = Store.open(state_url)  # migrates to the latest revision
    assert upgraded.open_alerts()["001"].id == record.id
    assert upgraded.latest_deliveries([record.id])[record.id].ts == "1.2"
