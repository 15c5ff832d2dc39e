"""Graceful stop: hand this process's claimed-but-unfinished rows back at once.

A claim is a lease; a stopped process's rows would otherwise wait out their lease (a minute) before
another replica takes them. Only rows still claimed by the given workers and not finished are touched,
so a row another process has since claimed is left alone.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from storage.db import session_scope
from storage.models import OutboxMessage
from storage.reminders import Reminder

log = logging.getLogger(__name__)


def release_leases(engine: Engine, worker_ids: list[str]) -> int:
    """Returns how many rows were handed back."""
    if not worker_ids:
        return 0
    try:
        with session_scope(engine) as session:
            outbox = session.execute(
                update(OutboxMessage)
                .where(col(OutboxMessage.claimed_by).in_(worker_ids), col(OutboxMessage.sent_at).is_(None))
                .values(claimed_by=None, claim_expires_at=None)
            )
            reminders = session.execute(
                update(Reminder)
                .where(col(Reminder.claimed_by).in_(worker_ids), col(Reminder.status) == "claimed")
                .values(status="pending", claimed_by=None, claim_expires_at=None)
            )
    except SQLAlchemyError as exc:
        log.warning("could not release leases at shutdown (%s); they expire on their own", type(exc).__name__)
        return 0
    released = getattr(outbox, "rowcount", 0) or 0, getattr(reminders, "rowcount", 0) or 0
    if any(released):
        log.info("released %s outbox and %s reminder lease(s) at shutdown", *released)
    return int(sum(released))
