"""One case lifecycle: which state may follow which, and the one function that moves a case.

Every change of `Case.state` goes through `transition` (or `settle`, for a provider's result), in the
caller's transaction with the case row locked. It refuses a move the table below does not allow
(`TransitionRefused` says why), sets the state with who and when, writes the audit event, cancels the
case's reminders and pages when it closes, and queues the card update and the thread reply: all of
it commits together or not at all.

A closed case stays closed: nothing moves it again, and a provider's result that lands after it
closed is recorded without reopening it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlmodel import Session

from bot.reminders.store import cancel_case
from bot.slack.outbox import enqueue_card, enqueue_thread
from storage.audit import Event, write_audit
from storage.models import Case
from storage.states import CLOSED_STATES, OPEN_STATES, CaseState, is_closed

# Where an open case may go. Staying in review, approved or failed is a move too: a second action,
# a retry, a second routing. Nothing moves a case to `rejected` any more (deny is `denied`); closed
# states lead nowhere.
_FROM_OPEN: Final = frozenset({CaseState.IN_REVIEW, CaseState.APPROVED, CaseState.FAILED, CaseState.DONE,
                               CaseState.DENIED, CaseState.DISMISSED})
ALLOWED: Final[Mapping[CaseState, frozenset[CaseState]]] = {
    state: _FROM_OPEN if state in OPEN_STATES else frozenset() for state in CaseState
}


class TransitionRefused(Exception):
    """A move the lifecycle does not allow; str() is the reason, fit to show the person who asked."""

    def __init__(self, current: str, to: CaseState, reason: str) -> None:
        super().__init__(reason)
        self.current, self.to, self.reason = current, to, reason


@dataclass(frozen=True)
class Reply:
    """One reply in the card's thread; `key` makes it at most once (see bot.slack.outbox)."""

    key: str
    text: str
    blocks: list[dict[str, Any]] | None = None


def closed_reason(state: str | None) -> str | None:
    """Why nobody may act on a case in this state any more, or None while it is open."""
    return f"this case is already {state}" if is_closed(state) else None


def refusal(current: str | None, to: CaseState) -> str | None:
    """Why a case in `current` may not move to `to`, or None when it may."""
    state = current or CaseState.NEW
    closed = closed_reason(state)
    if closed is not None:
        return closed
    if state not in OPEN_STATES:
        return "this case is in a state finance-desk does not know"
    if to not in ALLOWED[CaseState(state)]:
        return f"a case that is {state} cannot become {to}"
    return None


def transition(session: Session, case: Case, to: CaseState, *, by: str, now: datetime, event: Event,
               reply: Reply | None = None, close_reason: str | None = None) -> None:
    """Move the case to `to` as `by` did at `now`, with everything that goes with it (see the module
    docstring). `close_reason` is what cancelled reminders record (default: the new state).

    Raises TransitionRefused, having changed nothing, when the move is not allowed.
    """
    reason = refusal(case.state, to)
    if reason is not None:
        raise TransitionRefused(case.state, to, reason)
    case.state, case.state_by, case.state_at = to, by, now
    _record(session, case, by, now, event, reply, closing=(close_reason or to) if to in CLOSED_STATES else None)


def settle(session: Session, case: Case, to: CaseState, *, by: str, now: datetime, event: Event,
           reply: Reply | None = None, close_reason: str | None = None) -> bool:
    """A provider's result: move the case to `to`, unless it closed while the provider worked; then the
    result is only recorded (audit, card, reply) and the case keeps its state. True when it moved."""
    if is_closed(case.state):
        _record(session, case, by, now, event, reply, closing=None)
        return False
    transition(session, case, to, by=by, now=now, event=event, reply=reply, close_reason=close_reason)
    return True


def _record(session: Session, case: Case, by: str, now: datetime, event: Event, reply: Reply | None, *,
            closing: str | None) -> None:
    """Everything a change writes besides the state; `closing` is the reason when the case just closed."""
    case.updated_at = now
    session.add(case)
    write_audit(session, case, by, now, event)
    if closing is not None:
        cancel_case(session, case, now, closing)
    enqueue_card(session, case, now)
    if reply is not None:
        enqueue_thread(session, case, reply.key, reply.text, now, blocks=reply.blocks)
