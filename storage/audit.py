"""The one way an audit event is written: who did what to which case, where it went, why, how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from storage.models import AuditEvent, Case
from storage.statements import write_in


@dataclass(frozen=True)
class Event:
    """What happened, apart from who, when and to which case (those come from the caller)."""

    action: str  # e.g. "case.dismissed", "invoice_poof.succeeded"
    outcome: str = "ok"
    reason: str | None = None
    record: str | None = None  # which invoice/payment/customer
    target: str | None = None  # where it was sent
    detail: dict[str, Any] = field(default_factory=dict)


@cache
def _insert() -> Any:
    # A Core insert, compiled once: an ORM row costs a model and a unit-of-work flush, and audit
    # rows are only ever written, never changed, in the transaction that adds them.
    return insert(AuditEvent.__table__)  # type: ignore[attr-defined]


def write_audit(session: Session, case: Case | None, actor: str, now: datetime, event: Event) -> None:
    """Add the event to the caller's transaction: it commits, or rolls back, with the change it records.
    `case` is None for what concerns no case (a delegation)."""
    write_in(session, _insert(), {
        "at": now, "actor": actor, "action": event.action, "case_id": case.id if case else None,
        "call_id": case.call_id if case else None,
        "record": event.record, "target": event.target, "reason": event.reason, "outcome": event.outcome,
        "detail": dict(event.detail),
    })
