"""POST /webhooks/dialnexa: verify, parse, store, answer. Nothing here talks to Slack."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from multiprocessing import get_context
from multiprocessing.connection import wait
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.ingest import IngestResult, ingest
from bot.logs import setup_logging
from bot.policy import Policy
from bot.runtime import Runtime
from bot.web.errors import Refusal, storage_unavailable
from bot.web.limits import parse_json, read_body
from bot.web.signature import SignatureError, verify
from providers.dialnexa import NotACallEvent
from storage.db import make_engine

log = logging.getLogger(__name__)

# Writers queue for a thread, in order, rather than inside SQLite's busy handler, which sleeps up to 100
# ms and is unfair: on SQLite one thread, since one writer holds the database at a time anyway (with four,
# 16 deliveries in flight saw a p99 of ~240 ms and single waits of 0.7-2 s; with one, ~100 ms and ~110 ms
# at the same CPU per delivery, bench.ingest). On PostgreSQL, whose locks are per row, four.
INGEST_THREADS = {"sqlite": 1}
INGEST_THREADS_DEFAULT = 4
# Triage of a large body can take a second of CPU, most of it Python holding the GIL. In a thread of
# this process, every other thread (the event loop, ordinary ingests holding SQLite's write lock,
# Slack acks) would wait up to the GIL switch interval each time it wants the GIL back: with 1 MiB
# hostile bodies arriving, ordinary deliveries went from a p99 of ~40 ms to ~2 s (bench.ingest
# --adversarial). Larger bodies are therefore ingested by one worker process, queueing there among
# themselves. Most calls' bodies are 3-12 KB; the bound is low because a body just under it still runs
# here, and four hostile ones at 60 KB in the four threads took ordinary p99 to ~700 ms.
LARGE_BODY_BYTES = 16 * 1024

# Set once in the worker process by its initializer: that process's own engine and policy.
_worker_state: dict[str, Any] = {}


def _parse_and_ingest(runtime: Runtime, raw: bytes) -> IngestResult:
    # Parsed here, in the ingest thread, rather than on the event loop that every request shares.
    return ingest(runtime.engine, parse_json(raw), raw, runtime.policy, datetime.now(UTC))


def _start_worker(database_url: str, policy: Policy, log_level: int) -> None:
    # When cores are short, the scheduler serves acks and ordinary calls first: large bodies can wait.
    os.nice(10)
    setup_logging(log_level)
    _worker_state.update(engine=make_engine(database_url), policy=policy)
    # Triage of a large body makes hundreds of thousands of small objects that die with it and hold no
    # cycles; the default thresholds would run the collector over them again and again (a third of
    # the time of a hostile 1 MiB body). Rare collections are enough in this single-purpose process.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    threading.Thread(target=_exit_with_server, name="server-watch", daemon=True).start()


def _exit_with_server() -> None:
    # A killed server (SIGKILL, out of memory) tells its worker nothing, and the worker holds its own
    # task queue open, so it would wait forever. multiprocessing hands a spawned child its parent's
    # sentinel, which becomes ready the moment the parent is gone: wait on it, then leave.
    server = multiprocessing.parent_process()
    if server is not None:
        wait([server.sentinel])
    os._exit(0)


def _ingest_in_worker(raw: bytes) -> IngestResult:
    return ingest(_worker_state["engine"], parse_json(raw), raw, _worker_state["policy"], datetime.now(UTC))


class LargeBodyWorker:
    """The one process that ingests large bodies; started on first use, and again if it dies."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            database_url = self.runtime.engine.url.render_as_string(hide_password=False)
            level = logging.getLogger().getEffectiveLevel()
            # spawn, not fork: this process runs threads (uvicorn's, Slack's workers) that fork would copy mid-step.
            self._pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_start_worker,
                                             initargs=(database_url, self.runtime.policy, level))
        return self._pool

    async def ingest(self, raw: bytes) -> IngestResult:
        pool = self._executor()
        try:
            return await asyncio.wrap_future(pool.submit(_ingest_in_worker, raw))
        except BrokenProcessPool:
            # It died mid-delivery (killed, out of memory): the next large body starts a fresh one.
            if self._pool is pool:
                self._pool = None
            raise

    def close(self) -> None:
        """Stop the worker process, after the body it is ingesting, if any."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def dialnexa_endpoint(runtime: Runtime, large: LargeBodyWorker) -> Callable[[Request], object]:
    # The endpoint's own threads (INGEST_THREADS), deliveries queueing for them in order: a hop
    # through asyncio's executor costs about half of what anyio's to_thread (limiter, cancel scope) does
    # on every delivery. The threads exit with the app (when it is collected) or the interpreter.
    size = INGEST_THREADS.get(runtime.engine.dialect.name, INGEST_THREADS_DEFAULT)
    threads = ThreadPoolExecutor(size, thread_name_prefix="dialnexa-ingest")

    async def store(raw: bytes) -> IngestResult:
        if len(raw) > LARGE_BODY_BYTES:
            return await large.ingest(raw)
        # The request's context variables go along, as to_thread would carry them.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(threads, context.run, _parse_and_ingest, runtime, raw)

    async def endpoint(request: Request) -> Response:
        raw = await read_body(request)
        try:
            verify(request.headers, raw, runtime.settings.webhook_secrets(), now=time.time())
        except SignatureError as exc:
            log.warning("dialnexa delivery refused: %s", exc)
            raise Refusal(401, "invalid_signature", str(exc)) from None
        try:
            result = await store(raw)
        except Refusal:
            raise  # malformed JSON: the body is parsed off the event loop, in the ingest thread or worker
        except NotACallEvent as exc:
            raise Refusal(400, "not_a_call_event", str(exc)) from None
        except RecursionError:
            # The body's nesting, not an outage: a retry cannot help. No traceback: a thousand frames
            # cost ~0.2 s to format and redact, per delivery, on a body anyone with the secret can repeat.
            log.error("dialnexa delivery nests deeper than triage can read; not stored")
            raise Refusal(400, "too_deeply_nested", "the body nests deeper than finance-desk can read") from None
        except Exception:
            # The database or the large-body worker failed; DialNexa retries non-2xx answers, so the
            # delivery is not lost.
            log.exception("dialnexa delivery could not be stored")
            raise storage_unavailable("delivery") from None
        if runtime.wake_workers is not None and result.is_billing and result.outcome == "stored":
            runtime.wake_workers()
        if runtime.on_case_stored is not None and result.is_billing and result.outcome == "stored" and result.call_id:
            runtime.on_case_stored(result.call_id)
        return JSONResponse(
            {"ok": True, "outcome": result.outcome, "call_id": result.call_id, "created": result.created}
        )

    return endpoint
