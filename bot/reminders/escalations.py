"""Escalation pages: the cases finance must hear about at once, and a follow-up when nobody acts.

Routing (bot.triage.route) puts the reasons on the case: VIP payment blockers, failed renewals,
duplicate charges, disputes and chargebacks, collections-sensitive calls, refunds above the approval
threshold (and anything the caller or agent flagged). Each (case, reason) becomes one row in the
reminders table, due at once, and so is paged exactly once, even across processes and restarts; its
message is an outbox row keyed by the reason. The first page schedules one follow-up, which pages again
after the policy's overdue window unless somebody acted: the case left "new", or a person (a Slack
user, not the app or DialNexa) did anything recorded in the audit trail since the page.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from blocks.format import is_user_id
from blocks.reminders import card_reference, escalation_message
from bot.reminders.schedule import Kind
from bot.reminders.store import (
    CANCELLED,
    PENDING,
    SENT,
    FireSettings,
    add,
    add_many,
    owner_of,
    reason_digest,
    row_params,
)
from bot.slack.outbox import enqueue_message
from storage.models import AuditEvent, Case
from storage.reminders import Reminder

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
    reason = row.reason or "escalated"
    message = escalation_message(
        case, [reason], owner=owner_of(case, policy), oncall_group=policy.oncall_user_group,
        card=card_reference(case, settings.finance_channel), late_due_at=row.due_at if late else None,
        zone=policy.business_hours.zone,
    )
    enqueue_message(session, case, f"escalation:{reason_digest(reason)}", settings.escalation_channel,
                    message["text"], now, blocks=message["blocks"])
    assert case.id is not None
    # One follow-up per case, counted from the first page.
    add(session, "once", case_id=case.id, kind=Kind.ESCALATION_FOLLOWUP.value,
        dedup_key=f"{case.id}:escalation_followup",
        due_at=now + timedelta(minutes=policy.reminders.overdue_window_minutes), created_at=now)
    return SENT


def human_acted(session: Session, case: Case, since: datetime) -> bool:
    """Somebody acted: the case left "new", or a person did anything on it since `since`."""
    if (case.state or "new") != "new":
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
