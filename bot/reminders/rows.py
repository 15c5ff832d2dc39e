"""The reminders table's rows, below both the store and the escalation pages: statuses, the statements
that write rows, and what firing one needs.

Both bot.reminders.store (reminders, scheduling, firing) and bot.reminders.escalations (pages) write
rows through these, so neither imports the other for them: the store calls the escalations, never the
other way round.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from bot.policy import Policy
from bot.reminders.schedule import APPROVAL_KINDS, REMINDER_KINDS, SCHEDULED_KINDS
from storage.models import Case
from storage.reminders import Reminder
from storage.statements import write_in

PENDING, CLAIMED, SENT, CANCELLED = "pending", "claimed", "sent", "cancelled"
OPEN = (PENDING, CLAIMED)
# Fired more than this after its due time counts as late (the process was down or stopped).
LATE_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class FireSettings:
    policy: Policy
    escalation_channel: str | None = None
    finance_channel: str | None = None
    late_after: timedelta = LATE_AFTER


def owner_of(case: Case, policy: Policy) -> str | None:
    return case.owner or policy.default_finance_owner


def reminders_table() -> Any:
    return Reminder.__table__  # type: ignore[attr-defined]


def reason_digest(reason: str) -> str:
    return hashlib.sha256(reason.encode("utf-8")).hexdigest()[:16]


@cache
def _statements(dialect: str) -> dict[str, Any]:
    """Core statements built once per dialect (compiled once, then only bound): sync runs inside every
    ingest transaction, so it must stay cheap."""
    table = reminders_table()
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    rearm = {"status": PENDING, "cancel_reason": None, "due_at": insert.excluded.due_at, "claimed_by": None,
             "claim_expires_at": None, "late": False}
    cancelled: dict[str, Any] = {"status": CANCELLED, "cancel_reason": bindparam("why"), "claimed_by": None,
                                 "claim_expires_at": None}
    return {
        # A deadline that changes back revives the rows it had; sent or done rows stay as they are.
        "schedule": insert.on_conflict_do_update(
            index_elements=["dedup_key"], set_=rearm,
            where=and_(table.c.status == CANCELLED, table.c.cancel_reason == "rescheduled"),
        ),
        # A snooze is a person's request: it re-arms its row whatever state that row is in.
        "snooze": insert.on_conflict_do_update(
            index_elements=["dedup_key"],
            set_={**rearm, "sent_at": None, "created_by": insert.excluded.created_by,
                  "reason": insert.excluded.reason},
        ),
        "once": insert.on_conflict_do_nothing(index_elements=["dedup_key"]),
        # The case's planned reminders that are no longer planned (the deadline moved or went away), and
        # approval nudges no longer wanted (approval is no longer needed, or a new round began): one
        # statement for both, so a merge costs no extra round trip. "schedule" revives them if they
        # are planned again.
        "cancel_stale": update(table).where(
            table.c.case_id == bindparam("case"),
            table.c.kind.in_([k.value for k in (*SCHEDULED_KINDS, *APPROVAL_KINDS)]),
            table.c.status.in_(OPEN), table.c.dedup_key.not_in(bindparam("keep", expanding=True)),
        ).values(**cancelled),
        "cancel": update(table).where(
            table.c.case_id == bindparam("case"), table.c.status.in_(OPEN),
            table.c.kind.in_(bindparam("kinds", expanding=True)),
        ).values(**cancelled),
        "next": select(func.min(table.c.due_at)).where(
            table.c.case_id == bindparam("case"), table.c.kind.in_([k.value for k in REMINDER_KINDS]),
            table.c.status.in_(OPEN),
        ),
    }


def run(session: Session, name: str, params: dict[str, Any] | list[dict[str, Any]]) -> Any:
    return write_in(session, _statements(session.get_bind().dialect.name)[name], params)


@cache
def _defaults() -> dict[str, Any]:
    # Column defaults live on the model; computed once and copied into each row (a model per row costs
    # more than the insert).
    return Reminder(case_id=0, kind="-", dedup_key="-", due_at=datetime(2000, 1, 1, tzinfo=UTC)).model_dump(
        exclude={"id", "case_id", "kind", "dedup_key", "due_at", "created_at"})


def row_params(*, case_id: int, kind: str, dedup_key: str, due_at: datetime, created_at: datetime,
               **fields: Any) -> dict[str, Any]:
    """The parameters of one reminders row, column defaults filled in."""
    return {**_defaults(), "case_id": case_id, "kind": kind, "dedup_key": dedup_key, "due_at": due_at,
            "created_at": created_at, **fields}


def add(session: Session, statement: str, **fields: Any) -> None:
    """Insert one row with `statement`: "schedule", "snooze" (upserts, see above) or "once"."""
    run(session, statement, row_params(**fields))


def add_many(session: Session, statement: str, rows: list[dict[str, Any]]) -> None:
    """`add` for several rows in one round trip (an executemany)."""
    if rows:
        run(session, statement, rows)
