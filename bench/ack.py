"""Ack latency: concurrent signed slash commands and clicks against the running HTTP app.

Run by hand:  .venv/bin/python -m bench.ack [--concurrency 50] [--rounds 4]
Prints p50 / p99 / max time to the HTTP response (Slack's limit is 3 000 ms) per request kind.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from blocks import ids
from tests.conftest import BOT_TOKEN, Clock
from tests.fakes.slack import FakeSlack
from tests.slackapp import SlackApp, block_actions
from tests.warehouses import account


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(send: Callable[[int], tuple[int, bytes, float]], n: int, workers: int) -> list[float]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(send, range(n)))
    bad = [status for status, _, _ in results if status != 200]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed: {bad[:5]}")
    return [seconds * 1000 for _, _, seconds in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    n = args.concurrency * args.rounds
    admin = "U0OWNER0001"
    with (
        FakeSlack(token=BOT_TOKEN) as slack,
        tempfile.TemporaryDirectory() as folder,
        SlackApp(Path(folder), slack, Clock(), owners=3, settings={"admins": admin}) as app,
    ):
        app.after_a_quiet_first_poll([account(i, 45, 50, owner=i % 3 + 1) for i in range(60)])
        app.poll()
        posts = app.posts()

        def click(i: int, action_id: str, value: dict[str, object]) -> tuple[int, bytes, float]:
            post = posts[i % len(posts)]
            actions = next(b for b in post["blocks"] if b["type"] == "actions")
            return app.interaction(
                block_actions(
                    post,
                    post["channel"],
                    {"action_id": action_id, "block_id": actions["block_id"], **value},
                    user_id="U0OWNER000" + post["channel"][-1],
                )
            )

        kinds: dict[str, Callable[[int], tuple[int, bytes, float]]] = {
            "/usage-threshold show": lambda i: app.command("/usage-threshold", "show", admin),
            "/usage-summary account7.example": lambda i: app.command(
                "/usage-summary", "account7.example", admin
            ),
            "Snooze (select)": lambda i: click(
                i, ids.SNOOZE, {"type": "static_select", "selected_option": {"value": "7d"}}
            ),
            "Mark contacted (button)": lambda i: click(
                i, ids.CONTACTED, {"type": "button", "value": "x"}
            ),
        }
        print(f"{'request':34} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        worst = 0.0
        for name, send in kinds.items():
            started = time.monotonic()
            times = measure(send, n, args.concurrency)
            worst = max(worst, percentile(times, 0.99))
            p50, p99 = statistics.median(times), percentile(times, 0.99)
            took = time.monotonic() - started
            print(f"{name:34} {n:>5} {p50:8.1f} {p99:8.1f} {max(times):8.1f}   ({took:.1f} s)")
        print(
            f"summary: worst p99 ack {worst:.1f} ms with {args.concurrency} concurrent"
            " requests (Slack allows 3000 ms)"
        )


if __name__ == "__main__":
    main()
