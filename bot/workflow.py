"""Case changes made by people from the card in Slack: plain functions, testable without Slack.

Each change is one transaction: the case, its audit event, the card update and the thread reply
commit together (see bot.lifecycle), so a crash leaves either all of them or none.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from bot import lifecycle
from bot.lifecycle import Reply, TransitionRefused
from bot.outcome import Outcome
from bot.slack.outbox import enqueue_card, enqueue_thread
from storage.audit import Event, write_audit
from storage.db import session_scope
from storage.models import Case
from storage.states import CaseState, is_closed

__all__ = ["Outcome", "assign_self", "dismiss", "route_to_review"]

_FROM_CARD = "slack:card"


def _move(engine: Engine, case_id: int, user: str, now: datetime, to: CaseState, action: str, reason: str,
          reply: str) -> Outcome:
    with session_scope(engine) as session:
        case = session.get(Case, case_id, with_for_update=True)
        if case is None:
            return Outcome(False, "That case no longer exists.")
        try:
            lifecycle.transition(session, case, to, by=user, now=now,
                                 event=Event(action, reason=reason, target=_FROM_CARD),
                                 reply=Reply(f"{action}:{now.timestamp()}", reply))
        except TransitionRefused as refused:
            return Outcome(False, f"{refused.reason.capitalize()}; nothing was changed.")
    return Outcome(True, reply)


def assign_self(engine: Engine, case_id: int, user: str, now: datetime) -> Outcome:
    """Take ownership: the state stays as it is (so no transition), but the change is audited alike."""
    reply = f"<@{user}> took ownership of this case."
    with session_scope(engine) as session:
        case = session.get(Case, case_id, with_for_update=True)
        if case is None:
            return Outcome(False, "That case no longer exists.")
        if is_closed(case.state):
            return Outcome(False, f"This case is already {case.state}; nothing was changed.")
        case.owner, case.updated_at = user, now
        session.add(case)
        write_audit(session, case, user, now,
                    Event("case.assigned", reason="assigned from the card", target=_FROM_CARD))
        enqueue_card(session, case, now)
        enqueue_thread(session, case, f"case.assigned:{now.timestamp()}", reply, now)
    return Outcome(True, reply)


def route_to_review(engine: Engine, case_id: int, user: str, now: datetime) -> Outcome:
    return _move(engine, case_id, user, now, CaseState.IN_REVIEW, "case.routed_to_review",
                 "routed to review from the card", f"<@{user}> sent this case to finance review.")


def dismiss(engine: Engine, case_id: int, user: str, now: datetime) -> Outcome:
    return _move(engine, case_id, user, now, CaseState.DISMISSED, "case.dismissed", "dismissed from the card",
                 f"<@{user}> dismissed this case: no finance action needed.")
