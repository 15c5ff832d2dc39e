"""Waiting on the database: the Slack stand-in's condition variable wakes only on Slack traffic, and a
case often changes after the last request, so database state is polled briefly instead."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(check: Callable[[], T | None], timeout: float = 10.0, what: str = "the condition") -> T:
    """`check()`'s first truthy result, polled every 20 ms; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f} s")
        time.sleep(0.02)


def at_once(work: Callable[[str], T], names: tuple[str, ...], timeout: float = 10.0) -> dict[str, T]:
    """`work(name)` for each name in its own thread, all released together (as two processes racing for
    one lease); their results by name."""
    results: dict[str, T] = {}
    barrier = threading.Barrier(len(names))

    def run(name: str) -> None:
        barrier.wait()
        results[name] = work(name)

    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results
