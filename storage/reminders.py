"""The reminders table: follow-up reminders and escalation pings, durable in the database.

A row is one thing that must happen once at `due_at`: a reminder in the card's thread (lead, due,
overdue, snoozed) or a page to the escalation channel (escalation, escalation_followup). Any number
of processes claim due rows with an atomic UPDATE and a lease (like the outbox) and fire each in one
transaction that also writes its outbox row, so every row fires exactly once.

`dedup_key` makes scheduling idempotent: scheduling the same reminder twice (a webhook retry, two
processes) upserts one row, and a changed deadline yields new keys while the old rows are cancelled.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class Reminder(SQLModel, table=True):
    __tablename__ = "reminders"
    __table_args__ = (
        UniqueConstraint("dedup_key", name="uq_reminders_dedup_key"),
        # The claim query: status = 'pending' AND due_at <= now, ordered by due_at.
        Index("ix_reminders_status_due_at", "status", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    # lead | due | overdue | snoozed (reminders in the card's thread);
    # escalation | escalation_followup (pages to the escalation channel)
    kind: str = Field(max_length=30)
    dedup_key: str = Field(max_length=300)
    # For escalations: the routing reason paged; for snoozes: what was snoozed.
    reason: str | None = Field(default=None, max_length=500)
    due_at: datetime = _ts()
    # pending → claimed → sent | cancelled (a claim whose lease expires is claimed again)
    status: str = Field(default="pending", max_length=20)
    # Why a row was cancelled: rescheduled | done | closed | snoozed | acted | no_channel
    cancel_reason: str | None = Field(default=None, max_length=40)
    claimed_by: str | None = Field(default=None, max_length=100)
    claim_expires_at: datetime | None = _ts(default=None)
    attempts: int = 0
    sent_at: datetime | None = _ts(default=None)
    # Fired well after its due time (e.g. the process was down): the message says so.
    late: bool = False
    created_at: datetime = _ts(default_factory=_utcnow)
    # The Slack user who created it (a snooze), else None for the scheduler.
    created_by: str | None = Field(default=None, max_length=40)
