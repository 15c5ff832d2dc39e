"""APScheduler wiring: a BackgroundScheduler that claims and fires due reminders.

APScheduler keeps only its own timer jobs, in memory: the durable state is the reminders table, so a
restart loses nothing. Three jobs share one pass function (which never runs twice at once here; across
processes the database claim keeps it exactly-once):

- "reminders-poll": every `interval_seconds`, and once at start - the catch-up pass, which fires what
  fell due while no process was running (marked late);
- "reminders-next": a one-off timer at the next due time when that comes before the next poll, so
  reminders fire on time rather than up to one interval late;
- "reminders-wake": a one-off run now, when `wake()` is called (e.g. after ingest scheduled a page).

`finance-desk serve`, `socket` and `worker` run it beside the outbox worker; `finance-desk worker --drain`
fires what is due, sends the outbox and exits.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from slack_sdk import WebClient
from sqlalchemy import Engine

from bot.delegations import notify_delegations
from bot.metrics import MeteredWebClient
from bot.polling import new_worker_id
from bot.reminders import store
from bot.reminders.rows import FireSettings
from bot.runtime import Runtime
from bot.slack.delivery import OutboxWorker
from storage.models import utcnow

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 15.0
DEFAULT_BATCH = 100
# Rows fired per transaction: one commit for many rows; small enough to keep case locks brief.
DEFAULT_FIRE_BATCH = 20
HOUSEKEEPING_SECONDS = 60.0
WAKE_DELAY = timedelta(seconds=0.5)


class ReminderScheduler:
    def __init__(
        self,
        engine: Engine,
        settings: FireSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        batch: int = DEFAULT_BATCH,
        fire_batch: int = DEFAULT_FIRE_BATCH,
        lease: timedelta = store.LEASE,
        worker_id: str | None = None,
        on_fired: Callable[[], None] = lambda: None,
        housekeeping: Callable[[], None] | None = None,
        client: WebClient | None = None,
    ) -> None:
        self.engine = engine
        # Sends the direct messages when a delegation starts or ends (bot.delegations), each pass.
        self.client = client
        self.settings = settings
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.batch = batch
        self.fire_batch = max(1, fire_batch)
        self.lease = lease
        self.worker_id = worker_id or new_worker_id()
        self.on_fired = on_fired
        # Other periodic upkeep that needs this process's timer (e.g. recovering stale provider calls).
        self.housekeeping = housekeeping
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
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 3, "misfire_grace_time": None}
        )
        scheduler.add_job(self._tick, "interval", seconds=self.interval_seconds, id="reminders-poll",
                          next_run_time=datetime.now(UTC))
        if self.housekeeping is not None:
            scheduler.add_job(self._housekeep, "interval", seconds=HOUSEKEEPING_SECONDS, id="housekeeping",
                              next_run_time=datetime.now(UTC))
        scheduler.start()
        self._scheduler = scheduler

    def stop(self, wait: bool = True) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=wait)
            self._scheduler = None

    def wake(self) -> None:
        """Run a pass soon (from any thread): e.g. ingest just scheduled an escalation page.

        A burst of wakes makes one pass, WAKE_DELAY after the first: a page waits for its card
        anyway, and a pass per delivery would cost the webhook more than the delivery itself.
        """
        scheduler = self._scheduler
        if scheduler is None or scheduler.get_job("reminders-wake") is not None:
            return
        scheduler.add_job(self._tick, "date", run_date=datetime.now(UTC) + WAKE_DELAY, id="reminders-wake",
                          replace_existing=True)

    def wait_for_passes(self, count: int, timeout: float = 10.0) -> bool:
        """Block until `count` passes have completed (for tests and start-up checks)."""
        with self._passed:
            return self._passed.wait_for(lambda: self._passes >= count, timeout)

    @property
    def passes(self) -> int:
        return self._passes

    def _housekeep(self) -> None:
        assert self.housekeeping is not None
        try:
            self.housekeeping()
        except Exception:
            log.exception("housekeeping failed; the next run retries")

    # -- passes --------------------------------------------------------------------------------
    def _tick(self) -> None:
        # Jobs may overlap (a poll during a long catch-up): only one pass runs, the others ask it to
        # go round once more and return at once.
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
            for start in range(0, len(claimed), self.fire_batch):
                chunk = claimed[start:start + self.fire_batch]
                outcomes = store.fire_batch(self.engine, chunk, self.worker_id, self.clock(), self.settings)
                for outcome in outcomes.values():
                    self.stats[outcome or "lost"] += 1
            handled += len(claimed)
            if len(claimed) < self.batch:
                break
        if handled:
            log.info("reminders: %s", dict(self.stats))
            self.on_fired()
        if self.client is not None:
            try:
                notify_delegations(self.engine, self.client, self.clock(), self.settings.policy.business_hours.zone)
            except Exception:
                log.exception("delegation messages failed; the next pass retries")
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
                  interval_seconds: float = DEFAULT_INTERVAL_SECONDS, batch: int = DEFAULT_BATCH,
                  housekeeping: Callable[[], None] | None = None,
                  client: WebClient | None = None) -> ReminderScheduler:
    """The scheduler for a running finance-desk process; `on_fired` should wake the outbox worker.
    `client` sends delegation messages; by default one is made from the bot token, when there is one."""
    return ReminderScheduler(runtime.engine, fire_settings(runtime), interval_seconds=interval_seconds,
                             batch=batch, on_fired=on_fired or (lambda: None), housekeeping=housekeeping,
                             client=client or _client(runtime))


def _client(runtime: Runtime) -> WebClient | None:
    token = runtime.settings.slack_bot_token
    if token is None:
        return None
    return MeteredWebClient(token=token.get_secret_value(), base_url=runtime.settings.slack_api_url, timeout=10)


def drain(outbox: OutboxWorker, reminders: ReminderScheduler) -> dict[str, Any]:
    """Fire everything due, then send everything the outbox holds; returns what this process did."""
    fired = reminders.run_once()
    while outbox.run_once():
        pass
    return {"worker": reminders.worker_id, "fired": fired, "stats": dict(reminders.stats)}
