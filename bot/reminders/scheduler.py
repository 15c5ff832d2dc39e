"""APScheduler wiring: a BackgroundScheduler that claims and fires due reminders.

APScheduler keeps only its own timer jobs, in memory: the durable state is the reminders table, so a
restart loses nothing. Three jobs share one pass function (which never runs twice at once here; across
processes the database claim keeps it exactly-once):

- "reminders-poll": every `interval_seconds`, and once at start - the catch-up pass, which fires what
  fell due while no process was running (marked late);
- "reminders-next": a one-off timer at the next due time when that comes before the next poll, so
  reminders fire on time rather than up to one interval late;
- "reminders-wake": a one-off run now, when `wake()` is called (e.g. after ingest scheduled a page).

`python -m bot.reminders.scheduler` runs it on its own (with the outbox worker); `--drain` fires what is
due, sends the outbox and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from bot.reminders import store
from bot.reminders.store import FireSettings
from bot.runtime import Runtime
from storage.models import utcnow

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 15.0
DEFAULT_BATCH = 100


class ReminderScheduler:
    def __init__(
        self,
        engine: Engine,
        settings: FireSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        batch: int = DEFAULT_BATCH,
        lease: timedelta = store.LEASE,
        worker_id: str | None = None,
        on_fired: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.batch = batch
        self.lease = lease
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.on_fired = on_fired
        self.stats: Counter[str] = Counter()
        self._scheduler: Any = None
        self._running = threading.Lock()
        self._again = threading.Event()
        self._passes = 0
        self._passed = threading.Condition()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the timers; the first pass (the catch-up) runs at once in the background."""
        scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        scheduler.add_job(self._tick, "interval", seconds=self.interval_seconds, id="reminders-poll",
                          next_run_time=datetime.now(UTC))
        scheduler.start()
        self._scheduler = scheduler

    def stop(self, wait: bool = True) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=wait)
            self._scheduler = None

    def wake(self) -> None:
        """Run a pass now (from any thread): e.g. ingest just scheduled an escalation page."""
        if self._scheduler is not None:
            self._scheduler.add_job(self._tick, id="reminders-wake", replace_existing=True)

    def wait_for_passes(self, count: int, timeout: float = 10.0) -> bool:
        """Block until `count` passes have completed (for tests and start-up checks)."""
        with self._passed:
            return self._passed.wait_for(lambda: self._passes >= count, timeout)

    @property
    def passes(self) -> int:
        return self._passes

    # -- passes --------------------------------------------------------------------------------
    def _tick(self) -> None:
        if not self._running.acquire(blocking=False):
            self._again.set()  # the running pass goes round once more
            return
        try:
            while True:
                self._again.clear()
                try:
                    self.run_once()
                except Exception:
                    log.exception("reminder pass failed; the next one retries")
                if not self._again.is_set():
                    break
            self._plan_next()
        finally:
            self._running.release()
            with self._passed:
                self._passes += 1
                self._passed.notify_all()

    def run_once(self) -> int:
        """Claim and fire everything due now, batch by batch; returns how many rows were handled."""
        handled = 0
        while True:
            now = self.clock()
            claimed = store.claim_due(self.engine, self.worker_id, now, limit=self.batch, lease=self.lease)
            if not claimed:
                break
            for reminder_id in claimed:
                outcome = store.fire(self.engine, reminder_id, self.worker_id, self.clock(), self.settings)
                self.stats[outcome or "lost"] += 1
            handled += len(claimed)
            if len(claimed) < self.batch:
                break
        if handled:
            log.info("reminders: %s", dict(self.stats))
            self.on_fired()
        return handled

    def _plan_next(self) -> None:
        if self._scheduler is None:
            return
        try:
            soonest = store.next_due(self.engine)
        except Exception:
            log.exception("could not read the next reminder time")
            return
        if soonest is None:
            return
        wait = (soonest - self.clock()).total_seconds()
        if wait < self.interval_seconds:
            run_at = datetime.now(UTC) + timedelta(seconds=max(0.0, wait))
            self._scheduler.add_job(self._tick, "date", run_date=run_at, id="reminders-next",
                                    replace_existing=True)


def fire_settings(runtime: Runtime) -> FireSettings:
    settings = runtime.settings
    return FireSettings(policy=runtime.policy, escalation_channel=settings.escalation_channel,
                        finance_channel=settings.finance_channel)


def scheduler_for(runtime: Runtime, *, on_fired: Callable[[], None] | None = None,
                  interval_seconds: float = DEFAULT_INTERVAL_SECONDS, batch: int = DEFAULT_BATCH) -> ReminderScheduler:
    """The scheduler for a running finance-desk process; `on_fired` should wake the outbox worker."""
    return ReminderScheduler(runtime.engine, fire_settings(runtime), interval_seconds=interval_seconds,
                             batch=batch, on_fired=on_fired or (lambda: None))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.reminders.scheduler",
                                     description="Fire due reminders and escalation pages (and send them).")
    parser.add_argument("--drain", action="store_true", help="fire what is due, send the outbox, then exit")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="rows claimed per database round trip")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_SECONDS, help="poll interval, seconds")
    args = parser.parse_args(argv)

    from bot.config import ConfigError, load_settings
    from bot.logs import setup_logging
    from bot.policy import PolicyError
    from bot.runtime import build_runtime
    from bot.slack.service import outbox_worker, web_client

    setup_logging(logging.INFO)
    try:
        runtime = build_runtime(load_settings(require_slack=True))
    except (ConfigError, PolicyError) as exc:
        for line in exc.problems:
            print(f"finance-desk: {line}", file=sys.stderr)
        return 2
    outbox = outbox_worker(runtime, web_client(runtime))
    reminders = scheduler_for(runtime, on_fired=outbox.wake, interval_seconds=args.interval, batch=args.batch)
    if args.drain:
        fired = reminders.run_once()
        while outbox.run_once():
            pass
        print(json.dumps({"worker": reminders.worker_id, "fired": fired, "stats": dict(reminders.stats)}))
        return 0
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    outbox.start()
    reminders.start()
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        reminders.stop()
        outbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
