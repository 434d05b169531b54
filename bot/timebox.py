"""Give a slow call a deadline: answer the user in time, let the late work finish unseen."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="nudge-timebox")


def within(seconds: float, work: Callable[[], T], late: Callable[[], T]) -> T:
    """`work()` if done within `seconds`, else `late()` (the work goes on, its result dropped)."""
    future = _POOL.submit(work)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        log.warning("gave up waiting after %.1f s; answering without it", seconds)
        return late()
