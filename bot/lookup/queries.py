"""Read-only queries behind `/finance` and the Home tab, and the `/finance` grammar. No Slack here."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, func, or_
from sqlmodel import Session, col, select

from blocks.home import CaseList, HomeData
from bot.lookup.customers import BadTerm, LookupTerm, parse_term
from storage.decisions import Approval
from storage.mail import MailMessage
from storage.models import AuditEvent, Case, ProviderAction
from storage.reminders import Reminder
from storage.states import CLOSED_STATES, ActionStatus

MAX_COMMAND_TEXT: Final = 500
MAX_CALL_ID: Final = 200
LIST_LIMIT: Final = 15
AUDIT_SHOWN: Final = 20
# storage.reminders: pending → claimed → sent | cancelled; a claimed row has not fired yet.
PENDING_REMINDER: Final = ("pending", "claimed")

_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,199}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

USAGE: Final = (
    "Usage: `/finance lookup <email | +phone | name | customer ID | payment ID>` · "
    "`/finance case <DialNexa call ID>` · `/finance queue` · `/finance help`"
)


# ---------------------------------------------------------------------------------------------------
# The /finance grammar


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Usage:
    problem: str  # safe to show: never echoes the input


@dataclass(frozen=True)
class Lookup:
    term: LookupTerm


@dataclass(frozen=True)
class CaseQuery:
    call_id: str


@dataclass(frozen=True)
class Queue:
    pass


Command = Help | Usage | Lookup | CaseQuery | Queue


def parse_command(text: str | None) -> Command:
    """Validate `/finance …` text; anything not understood becomes Usage with the reason."""
    raw = text or ""
    if len(raw) > MAX_COMMAND_TEXT:
        return Usage(f"That is longer than {MAX_COMMAND_TEXT} characters.")
    if _CONTROL.search(raw):
        return Usage("That has control characters in it.")
    words = raw.split(maxsplit=1)
    if not words or words[0].lower() in {"help", "-h", "--help", "?"}:
        return Help() if len(words) <= 1 else Usage("`help` takes nothing after it.")
    verb, rest = words[0].lower(), (words[1].strip() if len(words) > 1 else "")
    if verb == "lookup":
        try:
            return Lookup(parse_term(rest))
        except BadTerm as exc:
            return Usage(str(exc))
    if verb == "case":
        if not rest:
            return Usage("Give the DialNexa call ID, e.g. `/finance case call_123`.")
        if len(rest) > MAX_CALL_ID:
            return Usage(f"A DialNexa call ID is at most {MAX_CALL_ID} characters.")
        if not _CALL_ID.fullmatch(rest):
            return Usage("A DialNexa call ID is one word of letters, digits and . _ : @ / + = -")
        return CaseQuery(rest)
    if verb == "queue":
        return Queue() if not rest else Usage("`queue` takes nothing after it.")
    return Usage("That is not a /finance command.")


# ---------------------------------------------------------------------------------------------------
# Cases


def _open() -> Any:
    return col(Case.state).not_in(sorted(CLOSED_STATES))


def open_cases_for_customer(engine: Engine, customer_id: int, email: str | None, limit: int = 10) -> list[Case]:
    """Open billing cases tied to this MoonClerk customer, by ID or by the email on file."""
    tied = [col(Case.moonclerk_customer_id) == customer_id]
    if email and email.strip():
        tied.append(func.lower(col(Case.email)) == email.strip().lower())
    with Session(engine) as session:
        query = (select(Case).where(col(Case.is_billing).is_(True), _open(), or_(*tied))
                 .order_by(col(Case.created_at), col(Case.id)).limit(limit))
        return list(session.exec(query).all())


@dataclass(frozen=True)
class ReminderRow:
    kind: str
    due_at: datetime | None
    status: str


@dataclass(frozen=True)
class CaseDetail:
    case: Case
    actions: list[ProviderAction]
    audit: list[AuditEvent]  # the latest AUDIT_SHOWN, oldest first
    audit_total: int
    reminders: list[ReminderRow]
    approvals: list[Approval]  # every round's, oldest first
    emails: list[MailMessage] = field(default_factory=list)  # to the customer (bot.mail), oldest first


def pending_reminders(engine: Engine, case_id: int) -> list[ReminderRow]:
    """Reminders still to fire for a case, soonest first."""
    with Session(engine) as session:
        rows = session.exec(select(Reminder).where(Reminder.case_id == case_id,
                                                   col(Reminder.status).in_(PENDING_REMINDER))
                            .order_by(col(Reminder.due_at))).all()
        return [ReminderRow(row.kind, row.due_at, row.status) for row in rows]


def case_detail(engine: Engine, call_id: str) -> CaseDetail | None:
    with Session(engine) as session:
        case = session.exec(select(Case).where(Case.call_id == call_id)).first()
        if case is None or case.id is None:
            return None
        actions = list(session.exec(select(ProviderAction).where(ProviderAction.case_id == case.id)
                                    .order_by(col(ProviderAction.created_at), col(ProviderAction.id))).all())
        total = session.exec(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.case_id == case.id)).one()
        latest = list(session.exec(select(AuditEvent).where(AuditEvent.case_id == case.id)
                                   .order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
                                   .limit(AUDIT_SHOWN)).all())
        approvals = list(session.exec(select(Approval).where(Approval.case_id == case.id)
                                      .order_by(col(Approval.round), col(Approval.at), col(Approval.id))).all())
        emails = list(session.exec(select(MailMessage).where(MailMessage.case_id == case.id)
                                   .order_by(col(MailMessage.id))).all())
    return CaseDetail(case, actions, list(reversed(latest)), int(total), pending_reminders(engine, case.id),
                      approvals, emails)


def _listed(session: Session, where: list[Any], order: list[Any], limit: int) -> CaseList:
    total = session.exec(select(func.count()).select_from(Case).where(*where)).one()
    cases = list(session.exec(select(Case).where(*where).order_by(*order).limit(limit)).all())
    return CaseList(cases, int(total))


def review_queue(session: Session, limit: int = LIST_LIMIT) -> CaseList:
    """Open billing cases whose caller needs a person to pick the MoonClerk customer, oldest first."""
    where = [col(Case.is_billing).is_(True), _open(), col(Case.match_status) == "review"]
    return _listed(session, where, [col(Case.created_at), col(Case.id)], limit)


def overdue_follow_ups(session: Session, now: datetime, limit: int = LIST_LIMIT) -> CaseList:
    """Open billing cases past their follow-up deadline, the longest overdue first. A follow-up someone
    marked done from its reminder is not overdue any more, even while the case stays open."""
    where = [col(Case.is_billing).is_(True), _open(), col(Case.follow_up_deadline).is_not(None),
             col(Case.follow_up_deadline) < now, col(Case.follow_up_done_at).is_(None)]
    return _listed(session, where, [col(Case.follow_up_deadline), col(Case.id)], limit)


@dataclass(frozen=True)
class QueueView:
    review: CaseList
    overdue: CaseList


def queue(engine: Engine, now: datetime, limit: int = LIST_LIMIT) -> QueueView:
    with Session(engine) as session:
        return QueueView(review_queue(session, limit), overdue_follow_ups(session, now, limit))


# ---------------------------------------------------------------------------------------------------
# Home tab


def awaiting_approval_cases(session: Session) -> list[Case]:
    """Open billing cases that need approval and have not got it, oldest first (everyone's: who may
    decide which is the caller's question, answered in bot.decisions' terms)."""
    query = select(Case).where(col(Case.is_billing).is_(True), _open(), col(Case.approval_required).is_(True),
                               col(Case.approved_at).is_(None)).order_by(col(Case.created_at), col(Case.id))
    return list(session.exec(query).all())


def payouts_to_confirm(session: Session, user: str) -> list[Case]:
    """Open cases with a payout waiting for a second approver other than the one who asked for it."""
    second = select(ProviderAction.case_id).where(ProviderAction.status == ActionStatus.AWAITING_APPROVAL,
                                                  ProviderAction.requested_by != user)
    query = (select(Case).where(col(Case.is_billing).is_(True), _open(), col(Case.id).in_(second))
             .order_by(col(Case.created_at), col(Case.id)))
    return list(session.exec(query).all())


def home_data(
    engine: Engine, user: str, now: datetime, *, is_approver: bool,
    may_decide: Callable[[Case], bool] = lambda _case: True,
    may_confirm: Callable[[Case], bool] = lambda _case: True,
    review_channel: str | None = None, may_resolve: bool = True, limit: int = 8,
) -> HomeData:
    """What one person's Home tab shows. `may_decide` says whether this user may approve or deny a case
    now (their own authority or a delegator's, not already given, senior where one is still needed);
    `may_confirm` whether they may give a waiting payout its second approval. Both come from the
    caller, which sits above bot.decisions in the layers."""
    with Session(engine) as session:
        billing_open = [col(Case.is_billing).is_(True), _open()]
        assigned = _listed(session, [*billing_open, col(Case.owner) == user],
                           [col(Case.created_at), col(Case.id)], limit)
        awaiting = CaseList([], 0)
        payouts = CaseList([], 0)
        if is_approver:
            mine = [case for case in awaiting_approval_cases(session) if may_decide(case)]
            awaiting = CaseList(mine[:limit], len(mine))
            confirm = [case for case in payouts_to_confirm(session, user) if may_confirm(case)]
            payouts = CaseList(confirm[:limit], len(confirm))
        overdue = overdue_follow_ups(session, now, limit)
        review_size = review_queue(session, 0).total
    return HomeData(user=user, is_approver=is_approver, assigned=assigned, awaiting=awaiting, overdue=overdue,
                    review_size=review_size, now=now, review_channel=review_channel, payouts=payouts,
                    may_resolve=may_resolve)
