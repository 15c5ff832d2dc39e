"""Escalation pages: the cases finance must hear about at once, and a follow-up when nobody acts.

Routing (bot.triage.route) puts the reasons on the case: VIP payment blockers, failed renewals,
duplicate charges, disputes and chargebacks, collections-sensitive calls, refunds above the approval
threshold (and anything the caller or agent flagged). Each (case, reason) becomes one row in the
reminders table, due at once; that row is the record that the reason was paged, so no reason is ever
paged twice, even across processes and restarts. Firing one of a case's rows pages every reason of the
case not paged yet, in one page, and marks all their rows sent: a case with three reasons gets one page
naming all three, and a reason that appears later gets one page naming only it. The first page schedules
one follow-up, which pages again after the policy's overdue window unless somebody acted: the case left
"new", or a person (a Slack user, not the app or DialNexa) did anything recorded in the audit trail since
the page.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from blocks.format import is_user_id
from blocks.reminders import card_reference, escalation_message
from bot.reminders.rows import (
    CANCELLED,
    OPEN,
    PENDING,
    SENT,
    FireSettings,
    add,
    add_many,
    owner_of,
    reason_digest,
    row_params,
)
from bot.reminders.schedule import Kind
from bot.slack.outbox import enqueue_message
from storage.models import AuditEvent, Case
from storage.reminders import Reminder
from storage.states import CaseState

log = logging.getLogger(__name__)

# A page waits this long for its card to be posted (normally about a second), so it can link to it.
CARD_WAIT = timedelta(seconds=60)
CARD_RETRY = timedelta(seconds=2)


_warned: set[str] = set()


def _no_channel(case: Case) -> None:
    # Said once per process at WARNING (with the fix), then per case at DEBUG: not a flood.
    if "no_channel" not in _warned:
        _warned.add("no_channel")
        log.warning("escalation pages are off: ESCALATION_CHANNEL is not set (set it to a channel ID, C…, and "
                    "invite the app there); case %s was not paged", case.id)
    else:
        log.debug("case %s not paged: ESCALATION_CHANNEL is not set", case.id)


def schedule(session: Session, case: Case, now: datetime) -> None:
    """One page per (case, reason), due now; idempotent (a reason already paged is not paged again)."""
    assert case.id is not None
    add_many(session, "once", [
        row_params(case_id=case.id, kind=Kind.ESCALATION.value, reason=str(reason)[:500],
            dedup_key=f"{case.id}:escalation:{reason_digest(str(reason))}", due_at=now, created_at=now)
        for reason in case.escalation_reasons or [] if reason
    ])


def fire_page(session: Session, case: Case, row: Reminder, now: datetime, late: bool,
              settings: FireSettings) -> str:
    policy = settings.policy
    if not settings.escalation_channel:
        _no_channel(case)
        row.status, row.cancel_reason = CANCELLED, "no_channel"
        return CANCELLED
    if case.slack_ts is None and now - row.created_at < CARD_WAIT:
        row.status, row.due_at = PENDING, now + CARD_RETRY
        return "waiting"
    paged = sorted([row, *(_page_along(other, now, late) for other in _unpaged(session, row))],
                   key=lambda item: item.id or 0)
    reasons = [item.reason or "escalated" for item in paged]
    message = escalation_message(
        case, reasons, owner=owner_of(case, policy), oncall_group=policy.oncall_user_group,
        card=card_reference(case, settings.finance_channel), late_due_at=row.due_at if late else None,
        zone=policy.business_hours.zone,
    )
    key = reason_digest("\n".join(reasons))
    enqueue_message(session, case, f"escalation:{key}", settings.escalation_channel, message["text"], now,
                    blocks=message["blocks"])
    assert case.id is not None
    # One follow-up per case, counted from the first page.
    add(session, "once", case_id=case.id, kind=Kind.ESCALATION_FOLLOWUP.value,
        dedup_key=f"{case.id}:escalation_followup",
        due_at=now + timedelta(minutes=policy.reminders.overdue_window_minutes), created_at=now)
    return SENT


def _unpaged(session: Session, row: Reminder) -> list[Reminder]:
    """The case's other reasons not paged yet, locked: they go in this page (the case row is locked
    already, so a second process firing one of them waits, then finds it sent)."""
    return list(session.exec(
        select(Reminder).where(col(Reminder.case_id) == row.case_id, col(Reminder.kind) == Kind.ESCALATION,
                               col(Reminder.status).in_(OPEN), col(Reminder.id) != row.id)
        .order_by(col(Reminder.id)).with_for_update().execution_options(populate_existing=True)
    ).all())


def _page_along(other: Reminder, now: datetime, late: bool) -> Reminder:
    """Mark a reason's row sent with the page that names it."""
    other.status, other.sent_at, other.late = SENT, now, late
    other.claimed_by, other.claim_expires_at = None, None
    return other


def human_acted(session: Session, case: Case, since: datetime) -> bool:
    """Somebody acted: the case left "new", or a person did anything on it since `since`."""
    if (case.state or CaseState.NEW) != CaseState.NEW:
        return True
    actors = session.exec(
        select(AuditEvent.actor).where(col(AuditEvent.case_id) == case.id, col(AuditEvent.at) >= since)
    ).all()
    return any(is_user_id(actor) for actor in actors)


def fire_followup(session: Session, case: Case, row: Reminder, now: datetime, settings: FireSettings) -> str:
    policy = settings.policy
    if not settings.escalation_channel:
        row.status, row.cancel_reason = CANCELLED, "no_channel"
        return CANCELLED
    if human_acted(session, case, row.created_at):
        row.status, row.cancel_reason = CANCELLED, "acted"
        return CANCELLED
    reasons = session.exec(
        select(Reminder.reason).where(col(Reminder.case_id) == case.id, col(Reminder.kind) == Kind.ESCALATION,
                                      col(Reminder.status) == SENT).order_by(col(Reminder.id))
    ).all()
    message = escalation_message(
        case, [reason for reason in reasons if reason], owner=owner_of(case, policy),
        oncall_group=policy.oncall_user_group, card=card_reference(case, settings.finance_channel),
        followup_minutes=policy.reminders.overdue_window_minutes,
    )
    enqueue_message(session, case, "escalation-followup", settings.escalation_channel, message["text"], now,
                    blocks=message["blocks"])
    return SENT
