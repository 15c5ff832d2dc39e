"""Reminders in the database: schedule, claim, fire, snooze, done, reassign. Plain functions.

Exactly once comes from the database: a row is claimed by an atomic UPDATE with a lease (like the
outbox), and firing it is one transaction that locks the case, marks the row sent and writes the
Slack message to the outbox. A worker whose lease was taken over finds the row no longer claimed by
it and does nothing; the outbox row's own unique key is a second guard.

Lock order everywhere is case row first, then its reminder rows (as ingest does), so PostgreSQL
never deadlocks two writers on one case.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, update
from sqlmodel import Session, col, select

from blocks.actions import ButtonValue
from blocks.format import is_user_id
from blocks.reminders import done_errors, done_reply, policy_date, reminder_message
from bot.outcome import Outcome
from bot.policy import Policy
from bot.reminders import escalations
from bot.reminders.rows import (
    CANCELLED,
    CLAIMED,
    OPEN,
    PENDING,
    SENT,
    FireSettings,
    add,
    add_many,
    owner_of,
    reminders_table,
    row_params,
    run,
)
from bot.reminders.schedule import APPROVAL_KINDS, REMINDER_KINDS, Hours, Kind, approval_plan, effective_deadline, plan
from bot.slack.outbox import enqueue_card, enqueue_thread
from bot.triage.redact import redact
from storage.audit import Event, write_audit
from storage.db import session_scope
from storage.models import Case, ProviderAction
from storage.reminders import Reminder
from storage.states import ActionStatus, is_closed

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
SNOOZE_STEP = timedelta(hours=1)
# A row whose firing raised this many times (one per claim) is cancelled as "failed".
MAX_ATTEMPTS = 5


def _key(case_id: int, kind: str, due_at: datetime) -> str:
    return f"{case_id}:{kind}:{int(due_at.timestamp())}"


def _approval_key(case: Case, kind: str) -> str:
    return f"{case.id}:{kind}:{case.approval_round}"


def is_open(case: Case) -> bool:
    return case.is_billing and not is_closed(case.state)


def deadline_of(case: Case, policy: Policy) -> tuple[datetime | None, bool]:
    """The deadline reminders are planned around, and whether it was implied (no date on the call)."""
    hours = Hours.from_policy(policy.business_hours)
    deadline = effective_deadline(case.follow_up_deadline, case.next_step, case.created_at, hours)
    return deadline, deadline is not None and case.follow_up_deadline is None


# ---------------------------------------------------------------------------------------------------
# Scheduling (inside the caller's transaction)


def sync_case(session: Session, case: Case, policy: Policy, now: datetime, *, update_card: bool = True,
              created: bool = False) -> None:
    """Make the case's reminders and escalation pages match the case. Idempotent; call it after
    every change (ingest does), in the same transaction, with the case row locked.

    `update_card=False` when the caller enqueues the card in this transaction anyway (ingest does).
    `created=True` when this transaction created the case: it has no reminder rows yet, so there is
    nothing to cancel and its next reminder is the earliest row added here (two statements fewer).
    """
    assert case.id is not None
    if not is_open(case):
        if not created:
            cancel_case(session, case, now, "closed", update_card=update_card)
        return
    deadline, _ = deadline_of(case, policy)
    # A follow-up marked done stays done: a later webhook (a retry, or one repeating the promise) plans
    # no reminders for it again.
    planned = plan(deadline, policy) if deadline is not None and case.follow_up_done_at is None else []
    # Waiting for approval: a nudge and a page, counted from the first sync that sees the wait (the
    # case's creation, normally). Their keys carry the approval round, not the due time, so a retry or a
    # restart never adds a second, and a new round gets its own.
    nudges = approval_plan(now, policy) if escalations.awaiting_approval(case) else []
    if not created:
        keys = [_key(case.id, item.kind, item.due_at) for item in planned]
        keys += [_approval_key(case, item.kind) for item in nudges]
        run(session, "cancel_stale", {"case": case.id, "keep": keys, "why": "rescheduled"})
    # Reminders already in the past when planned are not sent one after another: only the latest of
    # due/overdue goes out (at once); a lead reminder that has passed is pointless.
    past = [item for item in planned if item.due_at <= now and item.kind is not Kind.LEAD]
    rows = [
        row_params(case_id=case.id, kind=item.kind.value, due_at=item.due_at,
                   dedup_key=_key(case.id, item.kind, item.due_at), created_at=now)
        for item in [item for item in planned if item.due_at > now] + past[-1:]
    ]
    rows += [row_params(case_id=case.id, kind=item.kind.value, due_at=item.due_at,
                        dedup_key=_approval_key(case, item.kind), created_at=now,
                        reason=f"waiting for approval (round {case.approval_round})")
             for item in nudges]
    add_many(session, "schedule", rows)
    escalations.schedule(session, case, now)
    if created:
        # Every row added is pending (no key of a new case can clash with an older row); only the
        # follow-up reminders count as the card's next reminder.
        soonest = min((row["due_at"] for row in rows if row["kind"] in REMINDER_KINDS), default=None)
        _set_next(session, case, soonest, now, update_card=update_card)
    else:
        refresh_next(session, case, now, update_card=update_card)


ALL_KINDS = [kind.value for kind in Kind]


def cancel_case(session: Session, case: Case, now: datetime, reason: str,
                kinds: Iterable[str] | None = None, *, update_card: bool = True) -> int:
    """Cancel the case's pending reminders (all kinds unless given); the card's next reminder is cleared."""
    assert case.id is not None
    result = run(session, "cancel", {"case": case.id, "kinds": list(kinds or ALL_KINDS), "why": reason})
    refresh_next(session, case, now, update_card=update_card)
    return int(result.rowcount)


def refresh_next(session: Session, case: Case, now: datetime, *, update_card: bool = True) -> bool:
    """Keep Case.next_reminder_at (shown on the card) equal to the earliest pending reminder.

    Reads the reminders table directly: flush ORM changes to Reminder rows before calling.
    """
    return _set_next(session, case, run(session, "next", {"case": case.id}).scalar(), now, update_card=update_card)


def _set_next(session: Session, case: Case, soonest: datetime | None, now: datetime, *, update_card: bool) -> bool:
    if soonest == case.next_reminder_at:
        return False
    case.next_reminder_at = soonest
    if case not in session:  # adding walks every mapped attribute; ingest's case is there
        session.add(case)
    if update_card and case.is_billing:
        enqueue_card(session, case, now)
    return True


# ---------------------------------------------------------------------------------------------------
# Claiming and firing


def claim_due(engine: Engine, worker_id: str, now: datetime, *, limit: int = 100,
              lease: timedelta = LEASE) -> list[int]:
    """Claim up to `limit` due rows for this worker, oldest first; rows another worker holds under a
    live lease are skipped, rows whose lease expired (a dead worker) are claimed again."""
    table = reminders_table()
    due = or_(and_(table.c.status == PENDING, table.c.due_at <= now),
              and_(table.c.status == CLAIMED, table.c.claim_expires_at < now))
    with session_scope(engine) as session:
        pick = select(table.c.id).where(due).order_by(table.c.due_at, table.c.id).limit(limit)
        if session.get_bind().dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        # Materialised: PostgreSQL may otherwise run a LIMIT ... SKIP LOCKED sub-select once per row
        # it updates and claim more than `limit` rows.
        picked = pick.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
        claimed = session.execute(
            update(table)
            .where(table.c.id.in_(select(picked.c.id)), due)
            .values(status=CLAIMED, claimed_by=worker_id, claim_expires_at=now + lease,
                    attempts=table.c.attempts + 1)
            .returning(table.c.id, table.c.due_at)
        ).all()
    return [row_id for row_id, _ in sorted(claimed, key=lambda pair: (pair[1], pair[0]))]


def next_due(engine: Engine) -> datetime | None:
    with session_scope(engine) as session:
        soonest: datetime | None = session.exec(
            select(func.min(Reminder.due_at)).where(col(Reminder.status) == PENDING)
        ).one()
    return soonest


def fire(engine: Engine, reminder_id: int, worker_id: str, now: datetime, settings: FireSettings) -> str | None:
    """Fire one claimed row: "sent", "cancelled", "waiting" (an escalation waiting for its card),
    "failed" (gave up after MAX_ATTEMPTS errors), or None when this worker no longer holds the claim
    (nothing was done)."""
    return fire_batch(engine, [reminder_id], worker_id, now, settings)[reminder_id]


def fire_batch(engine: Engine, reminder_ids: list[int], worker_id: str, now: datetime,
               settings: FireSettings) -> dict[int, str | None]:
    """Fire claimed rows in one transaction (one commit for the batch, not one per row). If anything
    fails, each row is fired in its own transaction, so one bad row cannot hold up the others."""
    if len(reminder_ids) > 1:
        try:
            with session_scope(engine) as session:
                return _fire_all(session, reminder_ids, worker_id, now, settings)
        except Exception:
            log.exception("firing %s reminders together failed; firing them one by one", len(reminder_ids))
    outcomes: dict[int, str | None] = {}
    for reminder_id in reminder_ids:
        try:
            with session_scope(engine) as session:
                outcomes.update(_fire_all(session, [reminder_id], worker_id, now, settings))
        except Exception:
            log.exception("reminder %s could not be fired; it is retried when its lease runs out", reminder_id)
            outcomes[reminder_id] = _give_up(engine, reminder_id, worker_id)
    return outcomes


def _give_up(engine: Engine, reminder_id: int, worker_id: str) -> str | None:
    """After MAX_ATTEMPTS failed claims a row is cancelled ("failed") instead of retried for ever."""
    table = reminders_table()
    with session_scope(engine) as session:
        stopped = session.execute(
            update(table).where(table.c.id == reminder_id, table.c.claimed_by == worker_id,
                                table.c.status == CLAIMED, table.c.attempts >= MAX_ATTEMPTS)
            .values(status=CANCELLED, cancel_reason="failed", claimed_by=None, claim_expires_at=None)
        ).rowcount  # type: ignore[attr-defined]
    return "failed" if stopped else None


def _fire_all(session: Session, reminder_ids: list[int], worker_id: str, now: datetime,
              settings: FireSettings) -> dict[int, str | None]:
    outcomes: dict[int, str | None] = dict.fromkeys(reminder_ids)
    case_ids = sorted(set(session.exec(select(Reminder.case_id).where(col(Reminder.id).in_(reminder_ids))).all()))
    if not case_ids:
        return outcomes
    # Cases first, in id order, then their reminder rows: the lock order ingest uses, and the same
    # order in every worker, so batches never deadlock each other.
    cases = {case.id: case for case in session.exec(
        select(Case).where(col(Case.id).in_(case_ids)).order_by(col(Case.id)).with_for_update()
        .execution_options(populate_existing=True)).all()}
    rows = session.exec(
        select(Reminder).where(col(Reminder.id).in_(reminder_ids))
        .order_by(col(Reminder.case_id), col(Reminder.due_at), col(Reminder.id)).with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for row in rows:
        assert row.id is not None
        outcomes[row.id] = _fire_row(session, cases.get(row.case_id), row, worker_id, now, settings)
    return outcomes


def _fire_row(session: Session, case: Case | None, row: Reminder, worker_id: str, now: datetime,
              settings: FireSettings) -> str | None:
    if row.status != CLAIMED or row.claimed_by != worker_id:
        return None  # the lease ran out and another worker took it, or it was cancelled meanwhile
    row.claimed_by, row.claim_expires_at = None, None
    session.add(row)
    if case is None or not is_open(case):
        row.status, row.cancel_reason = CANCELLED, "closed"
        return CANCELLED
    late = now - row.due_at > settings.late_after
    if row.kind in REMINDER_KINDS:
        outcome = _fire_reminder(session, case, row, now, late, settings)
    elif row.kind == Kind.ESCALATION:
        outcome = escalations.fire_page(session, case, row, now, late, settings)
    elif row.kind == Kind.ESCALATION_FOLLOWUP:
        outcome = escalations.fire_followup(session, case, row, now, settings)
    elif row.kind == Kind.APPROVAL_NUDGE:
        outcome = escalations.fire_nudge(session, case, row, now, settings)
    elif row.kind == Kind.APPROVAL_ESCALATION:
        outcome = escalations.fire_approval_page(session, case, row, now, settings)
    else:
        log.error("reminder %s has unknown kind %r; cancelled", row.id, row.kind)
        row.status, row.cancel_reason = CANCELLED, "unknown_kind"
        outcome = CANCELLED
    if outcome == SENT:
        row.status, row.sent_at, row.late = SENT, now, late
    if row.kind in REMINDER_KINDS:
        session.flush()
        refresh_next(session, case, now)
    return outcome


def _fire_reminder(session: Session, case: Case, row: Reminder, now: datetime, late: bool,
                   settings: FireSettings) -> str:
    assert row.id is not None
    policy = settings.policy
    deadline, implied = deadline_of(case, policy)
    message = reminder_message(
        case, row.id, row.kind, deadline=deadline, implied=implied, owner=owner_of(case, policy),
        oncall_group=policy.oncall_user_group, zone=policy.business_hours.zone,
        late_due_at=row.due_at if late else None, snoozed_by=row.created_by,
    )
    enqueue_thread(session, case, f"reminder:{row.id}:{int(row.due_at.timestamp())}", message["text"], now,
                   blocks=message["blocks"])
    return SENT


# ---------------------------------------------------------------------------------------------------
# What people do from a reminder or the card (each one audited transaction)


def _audit(session: Session, case: Case, user: str, action: str, now: datetime, reason: str,
           detail: dict[str, Any] | None = None) -> None:
    write_audit(session, case, user, now, Event(action, reason=reason, target="slack:reminder", detail=detail or {}))


def _locked_open_case(session: Session, case_id: int) -> Case | Outcome:
    case = session.get(Case, case_id, with_for_update=True, populate_existing=True)
    if case is None:
        return Outcome(False, "That case no longer exists.")
    if not is_open(case):
        return Outcome(False, f"This case is already {case.state}; its reminders are off.")
    return case


# A money action still under way or needing a person: the case is not finished while one stands.
_ACTION_OPEN = (ActionStatus.RUNNING, ActionStatus.AWAITING_APPROVAL, ActionStatus.FAILED, ActionStatus.UNKNOWN)


def nothing_open(session: Session, case: Case) -> bool:
    """Nothing is left to do on the case but resolve it: no reminder or nudge pending, no money action
    waiting, and no approval waiting."""
    if escalations.awaiting_approval(case):
        return False
    reminder = session.exec(select(Reminder.id).where(
        col(Reminder.case_id) == case.id, col(Reminder.kind).in_([*REMINDER_KINDS, *APPROVAL_KINDS]),
        col(Reminder.status).in_(OPEN)).limit(1)).first()
    if reminder is not None:
        return False
    action = session.exec(select(ProviderAction.id).where(
        col(ProviderAction.case_id) == case.id, col(ProviderAction.status).in_([str(s) for s in _ACTION_OPEN]))
        .limit(1)).first()
    return action is None


def follow_up_done(engine: Engine, case_id: int, user: str, now: datetime, outcome: str,
                   note: str | None = None) -> Outcome:
    """The follow-up is done (`outcome`, one of blocks.reminders.DONE_OUTCOMES, and a note, required for
    "other"): the case's reminders are cancelled and it is recorded; the case stays open. When nothing
    else is open on it, the thread reply offers Resolve."""
    note = note.strip() if note and note.strip() else None
    errors = done_errors(outcome, note)
    if errors:
        return Outcome(False, " ".join(errors.values()))
    # What a person typed is redacted like call text before it is stored or shown.
    note = (redact(note).text.strip() or None) if note else None
    with session_scope(engine) as session:
        case = _locked_open_case(session, case_id)
        if isinstance(case, Outcome):
            return case
        cancelled = cancel_case(session, case, now, "done", kinds=REMINDER_KINDS, update_card=False)
        case.follow_up_done_at, case.updated_at = now, now
        _audit(session, case, user, "reminder.done", now, note or "follow-up marked done from a reminder",
               {"outcome": outcome, "cancelled": cancelled})
        enqueue_card(session, case, now)  # after every card change here, so the Resolve button's version is current
        assert case.id is not None
        resolve = (ButtonValue(case_id=case.id, call_id=case.call_id, v=case.card_version).dump()
                   if nothing_open(session, case) else None)
        reply = done_reply(user, outcome, note, resolve_value=resolve)
        enqueue_thread(session, case, f"reminder.done:{now.timestamp()}", reply["text"], now, blocks=reply["blocks"])
    answer = reply["text"]
    if resolve is not None:
        answer += " Nothing else is open on it: press Resolve in the thread when it is finished."
    return Outcome(True, answer)


def snooze(engine: Engine, case_id: int, source_id: int, until: datetime, user: str, now: datetime,
           policy: Policy) -> Outcome:
    """Bring reminder `source_id` back at `until` as a snoozed reminder (snoozing it again moves it)."""
    if until <= now:
        return Outcome(False, "Pick a time in the future.")
    with session_scope(engine) as session:
        case = _locked_open_case(session, case_id)
        if isinstance(case, Outcome):
            return case
        assert case.id is not None
        source = session.get(Reminder, source_id, with_for_update=True)
        if source is None or source.case_id != case.id:
            return Outcome(False, "That reminder is out of date.")
        if source.status in OPEN and source.kind == Kind.SNOOZED:
            # Snoozing a snooze that has not fired yet just moves it.
            source.due_at, source.status, source.claimed_by, source.claim_expires_at = until, PENDING, None, None
            source.created_by = user
            session.add(source)
        else:
            if source.status in OPEN:
                source.status, source.cancel_reason = CANCELLED, "snoozed"
                session.add(source)
            add(session, "snooze", case_id=case.id, kind=Kind.SNOOZED.value,
                dedup_key=f"{case.id}:snoozed:from:{source_id}", due_at=until, created_at=now, created_by=user,
                reason=f"snoozed from the {source.kind} reminder")
        _audit(session, case, user, "reminder.snoozed", now, "reminder snoozed",
               {"reminder_id": source_id, "until": until.isoformat()})
        session.flush()
        refresh_next(session, case, now)
    return Outcome(True, f"💤 <@{user}> snoozed this reminder until {policy_date(until, policy.business_hours.zone)}.")


def snooze_next(engine: Engine, case_id: int, user: str, now: datetime, policy: Policy) -> Outcome:
    """The card's Snooze button: the case's next reminder comes an hour later (or, with none
    pending, a snoozed reminder comes an hour from now)."""
    with session_scope(engine) as session:
        case = _locked_open_case(session, case_id)
        if isinstance(case, Outcome):
            return case
        assert case.id is not None
        upcoming = session.exec(
            select(Reminder).where(col(Reminder.case_id) == case.id, col(Reminder.kind).in_(REMINDER_KINDS),
                                   col(Reminder.status) == PENDING)
            .order_by(col(Reminder.due_at), col(Reminder.id)).limit(1).with_for_update()
        ).first()
        if upcoming is not None:
            before = upcoming.due_at
            upcoming.due_at = before + SNOOZE_STEP
            session.add(upcoming)
            until = upcoming.due_at
            detail = {"reminder_id": upcoming.id, "from": before.isoformat(), "until": until.isoformat()}
        else:
            until = now + SNOOZE_STEP
            add(session, "snooze", case_id=case.id, kind=Kind.SNOOZED.value, dedup_key=f"{case.id}:snoozed:card",
                due_at=until, created_at=now, created_by=user, reason="snoozed from the card")
            detail = {"until": until.isoformat()}
        _audit(session, case, user, "reminder.snoozed", now, "snoozed from the card", detail)
        session.flush()
        refresh_next(session, case, now)
    when = policy_date(until, policy.business_hours.zone)
    if upcoming is not None:
        return Outcome(True, f"💤 Snoozed: the next reminder now comes {when}.")
    return Outcome(True, f"💤 Snoozed: no reminder was pending, so one comes {when}.")


def reassign(engine: Engine, case_id: int, new_owner: str, user: str, now: datetime) -> Outcome:
    """Give the case (and so its reminders' mentions) to another person."""
    if not is_user_id(new_owner):
        return Outcome(False, "Pick a person to reassign the follow-up to.")
    with session_scope(engine) as session:
        case = _locked_open_case(session, case_id)
        if isinstance(case, Outcome):
            return case
        if case.owner == new_owner:
            return Outcome(True, f"<@{new_owner}> already owns this case.")
        previous = case.owner
        case.owner, case.updated_at = new_owner, now
        _audit(session, case, user, "case.reassigned", now, "reassigned from a reminder",
               {"from": previous, "to": new_owner})
        enqueue_card(session, case, now)
        reply = f"<@{user}> reassigned this case to <@{new_owner}>."
        enqueue_thread(session, case, f"case.reassigned:{now.timestamp()}", reply, now)
    return Outcome(True, reply)
