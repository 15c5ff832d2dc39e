"""The loop the outbox workers share: a daemon thread that runs one pass after another while there is
work, and otherwise waits for `poll_seconds` or a `wake()` (a new row was queued)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    """Who holds a lease: host, process and a random part, so two processes never look like one."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class PollingWorker(ABC):
    """Subclasses give `run_once` (how many rows it handled) and may add `after_pass`."""

    thread_name = "worker"
    what = "pass"  # for the log line when a pass fails

    def __init__(self, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def run_once(self) -> int:
        """One pass: how many rows it handled (0 means wait before the next)."""

    def after_pass(self) -> None:  # noqa: B027 - an optional hook, not every worker has periodic work
        """Periodic work beside the passes; its failure is logged and retried like theirs."""

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("%s failed; retrying", self.what)
                busy = 0
            try:
                self.after_pass()
            except Exception:
                log.exception("%s: periodic work failed; retrying", self.what)
            if not busy:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
