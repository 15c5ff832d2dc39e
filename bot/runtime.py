"""Everything a running finance-desk process shares: settings, policy, database, background work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from bot.config import Settings
from bot.policy import Policy, load_policy
from storage.db import make_engine
from storage.migrate import upgrade


@dataclass
class Runtime:
    settings: Settings
    policy: Policy
    engine: Engine
    # Set when the outbox worker and reminder scheduler run in this process: nudges them (a new card,
    # an escalation page due now) instead of waiting for their polls.
    wake_workers: Callable[[], None] | None = None
    extra_routes: list[Any] = field(default_factory=list)
    _problems: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def report_problem(self, key: str, message: str) -> None:
        with self._lock:
            self._problems[key] = message

    def clear_problem(self, key: str) -> None:
        with self._lock:
            self._problems.pop(key, None)

    def health_problems(self) -> list[str]:
        with self._lock:
            return list(self._problems.values())


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    policy = load_policy(settings.finance_desk_policy)
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    return Runtime(settings=settings, policy=policy, engine=engine)
