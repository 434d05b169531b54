"""The poll schedule (APScheduler 3) — every replica schedules; the database lease picks one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import ScheduleSection
from bot.store import Store

log = logging.getLogger(__name__)
JOB_ID = "nudge-poll"


def trigger(schedule: ScheduleSection) -> Any:
    """`cron` (in `timezone`) when set, else every `every`."""
    if schedule.cron:
        return CronTrigger.from_crontab(schedule.cron, timezone=schedule.timezone)
    return IntervalTrigger(seconds=int(schedule.every.total_seconds()), timezone=schedule.timezone)


def due_now(store: Store, every: timedelta, now: datetime) -> bool:
    """At start: poll at once when the last successful poll is older than one interval."""
    for run in store.recent_runs(20):
        if run["status"] == "ok":
            return bool(now - run["started_at"] >= every)
    return True


def _log_event(event: JobExecutionEvent) -> None:
    if event.code == EVENT_JOB_MISSED:
        log.warning("poll run at %s was missed (the scheduler was busy)", event.scheduled_run_time)
    elif event.exception is not None:
        log.error("poll run failed: %s", event.exception)


def start_scheduler(
    schedule: ScheduleSection, run_poll: Callable[[], object], *, run_now: bool
) -> BackgroundScheduler:
    """Start the poll job: one instance at a time, late runs still run, missed runs coalesce."""
    scheduler = BackgroundScheduler(
        timezone=schedule.timezone,
        job_defaults={
            "coalesce": True,  # one catch-up run after downtime, not N (F09)
            "max_instances": 1,
            "misfire_grace_time": int(max(60, schedule.every.total_seconds() / 2)),
        },
    )
    scheduler.add_listener(_log_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    scheduler.add_job(run_poll, trigger(schedule), id=JOB_ID, replace_existing=True)
    scheduler.start()
    if run_now:
        job = scheduler.get_job(JOB_ID)
        if job is not None:
            job.modify(next_run_time=datetime.now(job.trigger.timezone))
    return scheduler
