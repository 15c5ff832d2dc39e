"""The case lifecycle (bot.lifecycle): every allowed and every refused move, what a move writes, and
that all of it lives in the caller's transaction."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from bot import lifecycle
from bot.lifecycle import ALLOWED, Reply, TransitionRefused
from bot.reminders import store
from storage.audit import Event
from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import AuditEvent, Case, OutboxMessage
from storage.reminders import Reminder
from storage.states import CLOSED_STATES, OPEN_STATES, ActionStatus, CaseState, MatchStatus

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
USER = "U0APPROVER1"
EVENT = Event("case.test", reason="a lifecycle test", target="slack:card")

OPEN_TO = [CaseState.IN_REVIEW, CaseState.APPROVED, CaseState.FAILED, CaseState.DONE, CaseState.DENIED,
           CaseState.DISMISSED]
ALLOWED_MOVES = [(start, to) for start in sorted(OPEN_STATES) for to in OPEN_TO]
REFUSED_MOVES = [pair for pair in itertools.product(CaseState, CaseState) if pair not in ALLOWED_MOVES]


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One SQLite database for the many move tests: each works in a transaction it rolls back."""
    engine = make_engine(f"sqlite:///{Path(tmp_path_factory.mktemp('lifecycle')) / 'lifecycle.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(shared_engine: Engine) -> Iterator[Session]:
    with Session(shared_engine) as session:
        yield session
        session.rollback()


def add_case(session: Session, state: str, call_id: str = "call_lifecycle") -> Case:
    case = Case(call_id=call_id, state=state, is_billing=True, kind="refund")
    session.add(case)
    session.flush()
    return case


def written(session: Session, case: Case) -> tuple[list[AuditEvent], list[OutboxMessage]]:
    session.flush()
    events = list(session.exec(select(AuditEvent).where(AuditEvent.case_id == case.id)).all())
    outbox = list(session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case.id)
                               .order_by(col(OutboxMessage.id))).all())
    return events, outbox


def schedule_reminders(session: Session, case: Case) -> None:
    assert case.id is not None
    for kind, due in (("due", NOW + timedelta(hours=2)), ("escalation", NOW)):
        store.add(session, "schedule", case_id=case.id, kind=kind, dedup_key=f"{case.id}:{kind}", due_at=due,
                  created_at=NOW)
    session.flush()
    store.refresh_next(session, case, NOW, update_card=False)


def reminders_of(session: Session, case: Case) -> list[Reminder]:
    session.flush()
    return list(session.exec(select(Reminder).where(Reminder.case_id == case.id)
                             .execution_options(populate_existing=True)).all())


# -- the stored values and the table -------------------------------------------------------------

def test_stored_values_are_the_ones_rows_already_hold() -> None:
    assert {s.value for s in CaseState} == {"new", "in_review", "approved", "failed", "snoozed", "done",
                                            "denied", "rejected", "dismissed"}
    assert {s.value for s in ActionStatus} == {"awaiting_approval", "running", "succeeded", "failed", "unknown",
                                               "paid", "pending", "requires_action", "canceled"}
    assert {s.value for s in MatchStatus} == {"pending", "matched", "review", "unmatched"}
    assert {s.value for s in CLOSED_STATES} == {"done", "denied", "rejected", "dismissed"}
    assert "dismissed" in CLOSED_STATES and CaseState.NEW == "new"  # members and stored text are one


def test_the_table_covers_every_state_and_closed_states_lead_nowhere() -> None:
    assert set(ALLOWED) == set(CaseState)
    assert all(not ALLOWED[state] for state in CLOSED_STATES)
    assert {pair for pair in itertools.product(CaseState, CaseState) if pair[1] in ALLOWED[pair[0]]} == set(
        ALLOWED_MOVES)


# -- every move ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("start", "to"), ALLOWED_MOVES)
def test_an_allowed_move_sets_state_who_when_and_writes_its_event_card_and_reply(
    session: Session, start: CaseState, to: CaseState
) -> None:
    case = add_case(session, start)
    before = case.card_version
    lifecycle.transition(session, case, to, by=USER, now=NOW, event=EVENT, reply=Reply("moved", "Moved."))
    assert (case.state, case.state_by, case.state_at, case.updated_at) == (to, USER, NOW, NOW)
    events, outbox = written(session, case)
    assert [(e.action, e.actor, e.at, e.reason, e.target, e.call_id) for e in events] == [
        ("case.test", USER, NOW, "a lifecycle test", "slack:card", "call_lifecycle")]
    assert [(row.kind, row.dedup_key, row.text) for row in outbox] == [
        ("card", f"card:{case.id}", None), ("thread", f"thread:{case.id}:moved", "Moved.")]
    assert case.card_version > before


@pytest.mark.parametrize(("start", "to"), REFUSED_MOVES)
def test_a_refused_move_says_why_and_changes_nothing(session: Session, start: CaseState, to: CaseState) -> None:
    case = add_case(session, start)
    with pytest.raises(TransitionRefused) as refused:
        lifecycle.transition(session, case, to, by=USER, now=NOW, event=EVENT, reply=Reply("moved", "Moved."))
    if start in CLOSED_STATES:
        assert str(refused.value) == f"this case is already {start}"
    else:
        assert str(refused.value) == f"a case that is {start} cannot become {to}"
    assert (refused.value.current, refused.value.to) == (start, to)
    assert (case.state, case.state_by, case.state_at) == (start, None, None)
    assert written(session, case) == ([], [])


def test_a_state_finance_desk_does_not_know_is_refused(session: Session) -> None:
    case = add_case(session, "on_fire")
    with pytest.raises(TransitionRefused, match="a state finance-desk does not know"):
        lifecycle.transition(session, case, CaseState.DISMISSED, by=USER, now=NOW, event=EVENT)
    assert case.state == "on_fire"


def test_a_case_without_a_state_is_new(session: Session) -> None:
    assert lifecycle.refusal(None, CaseState.IN_REVIEW) is None
    assert lifecycle.refusal(None, CaseState.NEW) == "a case that is new cannot become new"


# -- closing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("to", sorted(CLOSED_STATES & set(OPEN_TO)))
def test_closing_cancels_reminders_and_pages(session: Session, to: CaseState) -> None:
    case = add_case(session, CaseState.IN_REVIEW)
    schedule_reminders(session, case)
    assert case.next_reminder_at == NOW + timedelta(hours=2)
    lifecycle.transition(session, case, to, by=USER, now=NOW, event=EVENT)
    assert {(r.kind, r.status, r.cancel_reason) for r in reminders_of(session, case)} == {
        ("due", "cancelled", to.value), ("escalation", "cancelled", to.value)}
    assert case.next_reminder_at is None


def test_a_closing_reason_of_its_own_is_what_the_reminders_record(session: Session) -> None:
    case = add_case(session, CaseState.APPROVED)
    schedule_reminders(session, case)
    lifecycle.transition(session, case, CaseState.DONE, by="poof", now=NOW, event=EVENT, close_reason="paid")
    assert {r.cancel_reason for r in reminders_of(session, case)} == {"paid"}


@pytest.mark.parametrize("to", [CaseState.IN_REVIEW, CaseState.APPROVED, CaseState.FAILED])
def test_a_move_between_open_states_keeps_the_reminders(session: Session, to: CaseState) -> None:
    case = add_case(session, CaseState.NEW)
    schedule_reminders(session, case)
    lifecycle.transition(session, case, to, by=USER, now=NOW, event=EVENT)
    assert {r.status for r in reminders_of(session, case)} == {"pending"}
    assert case.next_reminder_at == NOW + timedelta(hours=2)


# -- a provider's result -------------------------------------------------------------------------

def test_a_result_moves_an_open_case(session: Session) -> None:
    case = add_case(session, CaseState.IN_REVIEW)
    moved = lifecycle.settle(session, case, CaseState.DONE, by=USER, now=NOW, event=EVENT,
                             reply=Reply("result", "Done."))
    assert moved and (case.state, case.state_by) == (CaseState.DONE, USER)


@pytest.mark.parametrize("closed", sorted(CLOSED_STATES))
@pytest.mark.parametrize("to", [CaseState.APPROVED, CaseState.FAILED, CaseState.DONE])
def test_a_result_that_lands_after_the_case_closed_is_recorded_without_reopening_it(
    session: Session, closed: CaseState, to: CaseState
) -> None:
    case = add_case(session, closed)
    case.state_by = "U0OWNER"
    schedule_reminders(session, case)
    moved = lifecycle.settle(session, case, to, by=USER, now=NOW, event=EVENT, reply=Reply("result", "Landed."))
    assert not moved and (case.state, case.state_by, case.updated_at) == (closed, "U0OWNER", NOW)
    events, outbox = written(session, case)
    assert [e.action for e in events] == ["case.test"]
    assert [(row.kind, row.text) for row in outbox] == [("card", None), ("thread", "Landed.")]
    # Already closed: its reminders were dealt with when it closed, not again now.
    assert {r.status for r in reminders_of(session, case)} == {"pending"}


# -- one transaction: the caller's ---------------------------------------------------------------

def test_everything_a_move_writes_rolls_back_with_the_callers_transaction(engine: Engine) -> None:
    with Session(engine) as setup:
        case = add_case(setup, CaseState.NEW)
        schedule_reminders(setup, case)
        setup.commit()
        case_id = case.id
    with Session(engine) as session:
        case = session.get(Case, case_id)
        assert case is not None
        lifecycle.transition(session, case, CaseState.DISMISSED, by=USER, now=NOW, event=EVENT,
                             reply=Reply("dismissed", "Dismissed."))
        session.flush()
        session.rollback()
    with Session(engine) as after:
        stored = after.get(Case, case_id)
        assert stored is not None and (stored.state, stored.state_by) == ("new", None)
        assert after.exec(select(AuditEvent).where(AuditEvent.case_id == case_id)).all() == []
        assert after.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id)).all() == []
        assert {r.status for r in after.exec(select(Reminder).where(Reminder.case_id == case_id)).all()} == {
            "pending"}


def test_everything_a_move_writes_commits_with_the_callers_transaction(engine: Engine) -> None:
    with Session(engine) as setup:
        case = add_case(setup, CaseState.NEW)
        schedule_reminders(setup, case)
        setup.commit()
        case_id = case.id
    with Session(engine) as session:
        case = session.get(Case, case_id)
        assert case is not None
        lifecycle.transition(session, case, CaseState.DISMISSED, by=USER, now=NOW, event=EVENT,
                             reply=Reply("dismissed", "Dismissed."))
        session.commit()
    with Session(engine) as after:
        stored = after.get(Case, case_id)
        assert stored is not None and (stored.state, stored.state_by) == ("dismissed", USER)
        assert [e.action for e in after.exec(select(AuditEvent).where(AuditEvent.case_id == case_id)).all()] == [
            "case.test"]
        assert sorted(row.kind for row in after.exec(
            select(OutboxMessage).where(OutboxMessage.case_id == case_id)).all()) == ["card", "thread"]
        assert {r.cancel_reason for r in after.exec(select(Reminder).where(Reminder.case_id == case_id)).all()} == {
            "dismissed"}
