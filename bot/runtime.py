"""Everything a running finance-desk process shares: settings, policy, database, background work."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from bot.config import Settings
from bot.policy import Policy, load_policy
from storage.db import make_engine, session_scope
from storage.migrate import upgrade
from storage.models import HealthProblem, utcnow

log = logging.getLogger(__name__)
_PROCESS = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Runtime:
    settings: Settings
    policy: Policy
    engine: Engine
    # Set when the outbox worker and reminder scheduler run in this process: nudges them (a new card,
    # an escalation page due now) instead of waiting for their polls.
    wake_workers: Callable[[], None] | None = None
    # Set when Stripe is configured: refresh, without waiting, the Stripe line of the cards that name a
    # Stripe object a webhook just changed, or of the case a call just stored (bot.stripe_status).
    on_stripe_object: Callable[[Mapping[str, Any]], object] | None = None
    on_case_stored: Callable[[str], None] | None = None
    extra_routes: list[Any] = field(default_factory=list)
    _problems: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def report_problem(self, key: str, message: str) -> None:
        """Record a problem no retry fixes; every process sharing the database reports it on /healthz."""
        with self._lock:
            self._problems[key] = message
        try:
            with session_scope(self.engine) as session:
                row = session.get(HealthProblem, key) or HealthProblem(key=key, message=message, reported_by=_PROCESS)
                row.message, row.reported_at, row.reported_by = message[:1000], utcnow(), _PROCESS
                session.add(row)
        except SQLAlchemyError as exc:
            log.warning("could not record health problem %s in the database (%s)", key, exc.__class__.__name__)

    def clear_problem(self, key: str) -> None:
        """Clear one problem, or every problem whose key starts with `prefix` for a key `prefix*`."""
        prefix = key[:-1] if key.endswith("*") else None
        with self._lock:
            for known in [k for k in self._problems if k == key or (prefix is not None and k.startswith(prefix))]:
                self._problems.pop(known)
        match = col(HealthProblem.key).startswith(prefix) if prefix is not None else col(HealthProblem.key) == key
        try:
            with session_scope(self.engine) as session:
                session.execute(delete(HealthProblem).where(match))
        except SQLAlchemyError as exc:
            log.warning("could not clear health problem %s in the database (%s)", key, exc.__class__.__name__)

    def health_problems(self) -> list[str]:
        """This process's problems and those any other process recorded in the database."""
        with self._lock:
            problems = dict(self._problems)
        try:
            with Session(self.engine) as session:
                for row in session.exec(select(HealthProblem).order_by(col(HealthProblem.key))):
                    problems.setdefault(row.key, row.message)
        except SQLAlchemyError:
            pass  # /healthz reports the database itself
        return [problems[key] for key in sorted(problems)]


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    policy = load_policy(settings.finance_desk_policy)
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    return Runtime(settings=settings, policy=policy, engine=engine)
