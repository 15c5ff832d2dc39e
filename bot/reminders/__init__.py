"""Follow-up reminders and escalation pages, durable in the database and fired by APScheduler.

Hooks for the rest of the app (each runs inside the caller's transaction, with the case locked):

- `on_case_changed(session, case, policy, now)`: after ingest merges a delivery; schedules,
  reschedules or cancels the case's reminders and schedules its escalation pages. It sets
  Case.next_reminder_at but leaves the card update to its caller (ingest enqueues the card anyway).
- `on_case_closed(session, case, now)`: cancels them all, as bot.lifecycle does when a case closes.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from bot.policy import Policy
from bot.reminders.store import cancel_case, sync_case
from storage.models import Case


def on_case_changed(session: Session, case: Case, policy: Policy, now: datetime) -> None:
    sync_case(session, case, policy, now, update_card=False)


def on_case_closed(session: Session, case: Case, now: datetime, reason: str = "closed") -> None:
    cancel_case(session, case, now, reason)


__all__ = ["on_case_changed", "on_case_closed"]
