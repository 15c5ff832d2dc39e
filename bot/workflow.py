"""Case state changes made by people in Slack: plain functions, testable without Slack.

Each change is one transaction: the case, its audit event, the card update and the thread reply
commit together, so a crash leaves either all of them or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from blocks.card import CLOSED_STATES
from bot.reminders import on_case_closed
from bot.slack.outbox import enqueue_card, enqueue_thread
from storage.db import session_scope
from storage.models import AuditEvent, Case


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str  # shown to the person who clicked, ephemerally


def _change(
    engine: Engine, case_id: int, user: str, now: datetime, *, action: str, state: str | None,
    owner: str | None, reply: str, reason: str,
) -> Outcome:
    with session_scope(engine) as session:
        case = session.get(Case, case_id, with_for_update=True)
        if case is None:
            return Outcome(False, "That case no longer exists.")
        if case.state in CLOSED_STATES:
            return Outcome(False, f"This case is already {case.state}; nothing was changed.")
        if state is not None:
            case.state, case.state_by, case.state_at = state, user, now
        if owner is not None:
            case.owner = owner
        case.updated_at = now
        session.add(case)
        session.add(
            AuditEvent(at=now, actor=user, action=action, case_id=case.id, call_id=case.call_id,
                       target="slack:card", reason=reason, outcome="ok")
        )
        if case.state in CLOSED_STATES:
            on_case_closed(session, case, now, reason=case.state)
        enqueue_card(session, case, now)
        enqueue_thread(session, case, f"{action}:{now.timestamp()}", reply, now)
    return Outcome(True, reply)


def assign_self(engine: Engine, case_id: int, user: str, now: datetime) -> Outcome:
    return _change(engine, case_id, user, now, action="case.assigned", state=None, owner=user,
                   reply=f"<@{user}> took ownership of this case.", reason="assigned from the card")


def route_to_review(engine: Engine, case_id: int, user: str, now: datetime) -> Outcome:
    return _change(engine, case_id, user, now, action="case.routed_to_review", state="in_review", owner=None,
                   reply=f"<@{user}> sent this case to finance review.", reason="routed to review from the card")


def dismiss(engine: Engine, case_id: int, user: str, now: datetime) -> Outcome:
    return _change(engine, case_id, user, now, action="case.dismissed", state="dismissed", owner=None,
                   reply=f"<@{user}> dismissed this case: no finance action needed.", reason="dismissed from the card")
