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

Approver nudges live here too: a case waiting for approval gets one nudge in its thread (the people
who may decide it now, and their delegates), then one page to the escalation channel mentioning the
senior approvers. Both are reminder rows scheduled by the store's sync and fired exactly once by the
same claim machinery; a decision cancels them (bot.decisions), and a row that comes up after the case
stopped waiting is cancelled instead of posted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from blocks.format import is_user_id, mention
from blocks.reminders import approval_nudge_message, approval_page_message, card_reference, escalation_message, group
from bot.delegations import delegates_of
from bot.policy import Policy
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
from bot.slack.outbox import enqueue_message, enqueue_thread
from storage.audit import Event, write_audit
from storage.models import AuditEvent, Case
from storage.reminders import Reminder
from storage.states import CaseState, is_closed

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


# ---------------------------------------------------------------------------------------------------
# Approver nudges

# Who the app is in the audit trail: not a Slack user, so a nudge never counts as a person acting.
APP_ACTOR = "finance-desk"


def awaiting_approval(case: Case) -> bool:
    """The case needs approval and has not got it (bot.decisions.awaiting_approval; decisions sits above
    this layer, so the rule is repeated here)."""
    return case.is_billing and case.approval_required and case.approved_at is None and not is_closed(case.state)


@dataclass(frozen=True)
class Deciders:
    """Who may move a waiting case forward now, and what is still missing."""

    users: list[str]  # named approvers still needed, then the active delegates of those (policy order)
    groups: list[str]  # user groups of the same role (their members are not resolved here)
    missing: int  # approvals still missing
    senior_missing: bool  # one of them must come from a senior approver
    given: int  # approvals given this round


def deciders(session: Session, case: Case, policy: Policy, now: datetime, *, seniors_only: bool = False) -> Deciders:
    """The people a nudge mentions: approvers who have not approved this round (by themselves or through
    a delegate), only seniors when the approvals left can only come from a senior (or `seniors_only`),
    and the active delegate of each of them.

    Mirrors bot.decisions.approve: a non-senior approval is taken while a senior can still give one of
    the approvals left, so with two missing on a senior-level case every approver is asked.
    """
    approvals = case.approvals_given or []
    needed = policy.approvals_needed(case.amount, case.currency)
    missing = max(1, needed - len(approvals))  # waiting means at least one is missing
    senior_missing = (policy.senior_reason(case.amount, case.currency) is not None
                      and not any(item.get("senior") for item in approvals))
    seniors = seniors_only or (senior_missing and missing <= 1)
    taken = {person for item in approvals for person in (item.get("by"), item.get("for")) if person}
    roles = [policy.senior_approvers] if seniors else [policy.approvers, policy.senior_approvers]
    named = [user for user in dict.fromkeys(user for role in roles for user in role.users) if user not in taken]
    delegates = delegates_of(session, named, now)
    users = list(dict.fromkeys([*named, *(delegates[user] for user in named if user in delegates)]))
    users = [user for user in users if user not in taken]
    groups = list(dict.fromkeys(group_id for role in roles for group_id in role.user_groups))
    return Deciders(users, groups, missing, senior_missing, len(approvals))


def _fallback(case: Case, policy: Policy) -> str | None:
    """Who to ping when the policy names no approver of the needed kind: on-call, else the owner."""
    return group(policy.oncall_user_group) or mention(owner_of(case, policy))


def _nudged(session: Session, case: Case, now: datetime, level: str, found: Deciders, row: Reminder) -> None:
    write_audit(session, case, APP_ACTOR, now, Event(
        "approval.nudged", target="slack:thread" if level == "thread" else "slack:escalation",
        reason="waiting for approval", detail={
            "level": level, "round": case.approval_round, "mentioned": found.users, "groups": found.groups,
            "missing": found.missing, "senior_missing": found.senior_missing, "reminder_id": row.id}))


def fire_nudge(session: Session, case: Case, row: Reminder, now: datetime, settings: FireSettings) -> str:
    """The one nudge in the thread of a case still waiting for approval."""
    if not awaiting_approval(case):
        row.status, row.cancel_reason = CANCELLED, "not_waiting"
        return CANCELLED
    policy = settings.policy
    found = deciders(session, case, policy, now)
    message = approval_nudge_message(
        case, users=found.users, groups=found.groups, missing=found.missing, senior_missing=found.senior_missing,
        given=found.given, waiting_since=row.created_at, zone=policy.business_hours.zone,
        fallback=_fallback(case, policy))
    enqueue_thread(session, case, f"approval_nudge:{case.approval_round}", message["text"], now,
                   blocks=message["blocks"])
    _nudged(session, case, now, "thread", found, row)
    return SENT


def fire_approval_page(session: Session, case: Case, row: Reminder, now: datetime, settings: FireSettings) -> str:
    """The one page to the escalation channel, mentioning the senior approvers, when approval takes too long."""
    if not awaiting_approval(case):
        row.status, row.cancel_reason = CANCELLED, "not_waiting"
        return CANCELLED
    if not settings.escalation_channel:
        _no_channel(case)
        row.status, row.cancel_reason = CANCELLED, "no_channel"
        return CANCELLED
    policy = settings.policy
    found = deciders(session, case, policy, now, seniors_only=True)
    message = approval_page_message(
        case, users=found.users, groups=found.groups, missing=found.missing, senior_missing=found.senior_missing,
        given=found.given, waiting_since=row.created_at, zone=policy.business_hours.zone,
        card=card_reference(case, settings.finance_channel), fallback=_fallback(case, policy))
    enqueue_message(session, case, f"approval_escalation:{case.approval_round}", settings.escalation_channel,
                    message["text"], now, blocks=message["blocks"])
    _nudged(session, case, now, "escalation", found, row)
    return SENT
