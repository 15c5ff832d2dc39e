"""Approver nudges and the follow-up's Done: business-minute maths, one nudge and one page per approval
round (exactly once across restarts), who they mention (dual approval, seniors, delegates), decisions
cancelling them, and Done asking what was done before offering Resolve.

Time is driven: every `now` is passed in or read from an injected clock; nothing sleeps.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from blocks.actions import ActionId, ButtonValue, ReminderValue
from blocks.reminders import DONE_OUTCOMES, done_choice, done_errors, done_modal
from bot import decisions
from bot.actions.authz import Directory
from bot.ingest import ingest
from bot.policy import Policy
from bot.reminders import on_case_changed, store
from bot.reminders.rows import FireSettings
from bot.reminders.schedule import Hours, Kind, add_business_minutes, approval_plan
from bot.reminders.scheduler import ReminderScheduler
from storage.db import session_scope
from storage.decisions import Delegation
from storage.models import AuditEvent, Case, OutboxMessage, ProviderAction
from storage.reminders import Reminder
from tests.blockkit import assert_valid_message, assert_valid_view
from tests.clock import Clock
from tests.signing import dumps

CHANNEL, ESCALATION_CHANNEL = "C0FINANCE", "C0ESCALATE"
MONDAY = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # Monday 10:00 New York (tests/data/policy.toml)
NUDGE_AT = MONDAY + timedelta(minutes=120)  # 12:00 New York
PAGE_AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 480 business minutes: Monday 10-17 (420) + Tuesday 9-10


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def with_policy(policy: Policy, **fields: Any) -> Policy:
    return policy.model_copy(update=fields)


# ---------------------------------------------------------------------------------------------------
# Business minutes


def test_business_minutes_skip_nights_weekends_and_keep_wall_clock_across_dst(policy: Policy) -> None:
    hours = Hours.from_policy(policy.business_hours)
    assert add_business_minutes(MONDAY, 120, hours) == NUDGE_AT
    assert add_business_minutes(MONDAY, 480, hours) == PAGE_AT
    assert add_business_minutes(utc(2026, 11, 20, 21), 120, hours) == utc(2026, 11, 23, 15)  # Fri 16:00 → Mon 10:00
    assert add_business_minutes(utc(2026, 11, 22, 12), 30, hours) == utc(2026, 11, 23, 14, 30)  # Sunday → Mon 09:30
    assert add_business_minutes(utc(2026, 11, 23, 23), 60, hours) == utc(2026, 11, 24, 15)  # after close → next day
    # Friday 16:00 EDT before the November change → Monday 10:00 EST (15:00 UTC, not 14:00).
    assert add_business_minutes(utc(2026, 10, 30, 20), 120, hours) == utc(2026, 11, 2, 15)
    # A long delay walks past the week that `windows_from` looks at: 30 days of business time.
    far = add_business_minutes(MONDAY, 60 * 24 * 30, hours)
    assert far > MONDAY + timedelta(days=100) and far.astimezone(hours.zone).weekday() < 5
    assert add_business_minutes(MONDAY, 0, hours) == MONDAY
    assert [(p.kind, p.due_at) for p in approval_plan(MONDAY, policy)] == [
        (Kind.APPROVAL_NUDGE, NUDGE_AT), (Kind.APPROVAL_ESCALATION, PAGE_AT)]


# ---------------------------------------------------------------------------------------------------
# Helpers


def waiting_case(engine: Engine, policy: Policy, now: datetime = MONDAY, call_id: str = "call_wait",
                 **fields: Any) -> int:
    """A refund waiting for approval, its reminders synced as ingest does on a merge."""
    values: dict[str, Any] = {
        "call_id": call_id, "kind": "refund", "is_billing": True, "owner": "U0OWNER", "created_at": now,
        "updated_at": now, "slack_channel": CHANNEL, "slack_ts": "1700000000.000100", "amount": Decimal("300.00"),
        "currency": "USD", "approval_required": True, "approval_reason": "refund of 300.00 USD",
        "approvals_needed": 1, **fields}
    with session_scope(engine) as session:
        case = Case(**values)
        session.add(case)
        session.flush()
        on_case_changed(session, case, policy, now)
        assert case.id is not None
        return case.id


def resync(engine: Engine, case_id: int, policy: Policy, now: datetime, **fields: Any) -> None:
    with session_scope(engine) as session:
        case = session.get(Case, case_id, with_for_update=True)
        assert case is not None
        for name, value in fields.items():
            setattr(case, name, value)
        session.add(case)
        on_case_changed(session, case, policy, now)


def rows(engine: Engine, case_id: int, kind: str | None = None) -> list[Reminder]:
    with Session(engine) as session:
        query = select(Reminder).where(col(Reminder.case_id) == case_id).order_by(col(Reminder.id))
        if kind is not None:
            query = query.where(col(Reminder.kind) == kind)
        return list(session.exec(query).all())


def case_row(engine: Engine, case_id: int) -> Case:
    with Session(engine) as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case


def posted(engine: Engine, case_id: int, key: str) -> list[OutboxMessage]:
    with Session(engine) as session:
        found = session.exec(select(OutboxMessage).where(col(OutboxMessage.case_id) == case_id)
                             .order_by(col(OutboxMessage.id))).all()
    return [row for row in found if key in row.dedup_key]


def audits(engine: Engine, case_id: int, action: str) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(col(AuditEvent.case_id) == case_id,
                                                          col(AuditEvent.action) == action)).all())


def scheduler(engine: Engine, policy: Policy, clock: Clock, worker_id: str = "w1",
              channel: str | None = ESCALATION_CHANNEL) -> ReminderScheduler:
    settings = FireSettings(policy=policy, escalation_channel=channel, finance_channel=CHANNEL)
    return ReminderScheduler(engine, settings, clock=clock, worker_id=worker_id)


def nudge_text(engine: Engine, case_id: int) -> str:
    [nudge] = posted(engine, case_id, "approval_nudge")
    assert_valid_message({"text": nudge.text, "blocks": nudge.blocks})
    return json.dumps(nudge.blocks) + (nudge.text or "")


# ---------------------------------------------------------------------------------------------------
# Scheduling


def test_a_waiting_case_gets_one_nudge_and_one_page_that_retries_never_duplicate(engine: Engine,
                                                                                 policy: Policy) -> None:
    payload = {"event_type": "call_ended", "payload": {"call": {
        "id": "call_big_refund", "status": "completed", "from_number": "14155550142", "summary": "Refund.",
        "post_call_analysis": {"billing_intent": "refund_request", "customer_name": "Dana Whitfield",
                               "amount": "900.00", "currency": "USD"}}}}
    result = ingest(engine, payload, dumps(payload), policy, MONDAY)  # the "created" path: no cancel statement
    assert result.case_id is not None
    case_id = result.case_id
    assert case_row(engine, case_id).approval_required
    planned = {r.kind: (r.due_at, r.status, r.dedup_key) for r in rows(engine, case_id)
               if r.kind.startswith("approval")}
    assert planned == {"approval_nudge": (NUDGE_AT, "pending", f"{case_id}:approval_nudge:1"),
                       "approval_escalation": (PAGE_AT, "pending", f"{case_id}:approval_escalation:1")}
    assert case_row(engine, case_id).next_reminder_at is None  # not the card's "next reminder"
    for later in (MONDAY + timedelta(minutes=5), MONDAY + timedelta(hours=1)):  # webhook retries, merges
        ingest(engine, payload, dumps(payload), policy, later)
        resync(engine, case_id, policy, later)
    assert len(rows(engine, case_id, "approval_nudge")) == 1 == len(rows(engine, case_id, "approval_escalation"))
    assert rows(engine, case_id, "approval_nudge")[0].due_at == NUDGE_AT  # the wait is not restarted


def test_approval_no_longer_needed_cancels_and_a_new_need_or_round_schedules_again(engine: Engine,
                                                                                   policy: Policy) -> None:
    case_id = waiting_case(engine, policy)
    later = MONDAY + timedelta(minutes=30)
    resync(engine, case_id, policy, later, approval_required=False)
    assert {(r.kind, r.status, r.cancel_reason) for r in rows(engine, case_id)} == {
        ("approval_nudge", "cancelled", "rescheduled"), ("approval_escalation", "cancelled", "rescheduled")}
    resync(engine, case_id, policy, later, approval_required=True)  # needed again: the wait counts from now
    [nudge] = rows(engine, case_id, "approval_nudge")
    assert (nudge.status, nudge.due_at) == ("pending", NUDGE_AT + timedelta(minutes=30))
    resync(engine, case_id, policy, later, approval_round=2)  # a new approval round: its own nudge
    by_key = {r.dedup_key: r.status for r in rows(engine, case_id, "approval_nudge")}
    assert by_key == {f"{case_id}:approval_nudge:1": "cancelled", f"{case_id}:approval_nudge:2": "pending"}
    not_billing = waiting_case(engine, policy, call_id="call_chat", is_billing=False)
    assert rows(engine, not_billing) == []


# ---------------------------------------------------------------------------------------------------
# Firing


def test_the_nudge_fires_once_after_the_business_minutes_even_across_a_restart(engine: Engine,
                                                                              policy: Policy) -> None:
    case_id = waiting_case(engine, policy)
    clock = Clock(NUDGE_AT - timedelta(seconds=1))
    assert scheduler(engine, policy, clock).run_once() == 0  # not yet
    clock.now = NUDGE_AT
    [nudge] = rows(engine, case_id, "approval_nudge")
    assert store.claim_due(engine, "before-restart", clock.now) == [nudge.id]  # ... and the process dies
    assert scheduler(engine, policy, clock, "after-restart").run_once() == 0  # the lease is still live
    clock.now += store.LEASE + timedelta(seconds=1)
    assert scheduler(engine, policy, clock, "after-restart").run_once() == 1  # taken over once it lapsed
    assert nudge.id is not None
    assert store.fire(engine, nudge.id, "before-restart", clock.now, FireSettings(policy=policy)) is None
    assert scheduler(engine, policy, clock, "third").run_once() == 0
    assert len(posted(engine, case_id, "approval_nudge")) == 1
    [event] = audits(engine, case_id, "approval.nudged")
    assert event.actor == "finance-desk" and event.detail["level"] == "thread"
    assert case_row(engine, case_id).next_reminder_at is None


def test_nudge_mentions_approvers_then_only_seniors_when_a_senior_must_decide(engine: Engine,
                                                                             policy: Policy) -> None:
    small = waiting_case(engine, policy, call_id="call_small")  # 300 USD: any approver
    big = waiting_case(engine, policy, call_id="call_big", amount=Decimal("900.00"), senior_needed=True)
    assert scheduler(engine, policy, Clock(NUDGE_AT)).run_once() == 2
    text = nudge_text(engine, small)
    for person in ("<@U0APPROVER1>", "<@U0APPROVER2>", "<@U0SENIOR>", "<!subteam^S0FINANCE>"):
        assert person in text
    assert "Waiting for approval" in text and "1 more needed" in text
    text = nudge_text(engine, big)
    assert "<@U0SENIOR>" in text and "U0APPROVER1" not in text and "S0FINANCE" not in text
    assert "it must be a senior approver" in text


def test_dual_approval_nudge_mentions_only_those_still_needed(engine: Engine, policy: Policy) -> None:
    dual = with_policy(policy, dual_approval_thresholds={"USD": Decimal("200.00")})
    case_id = waiting_case(engine, dual, approvals_needed=2)
    directory = Directory(dual, None)
    first = decisions.approve(engine, directory, case_id, "U0APPROVER1", MONDAY + timedelta(minutes=10))
    assert first.ok and "1 of 2" in first.message
    assert scheduler(engine, dual, Clock(NUDGE_AT)).run_once() == 1
    text = nudge_text(engine, case_id)
    assert "<@U0APPROVER2>" in text and "<@U0SENIOR>" in text and "U0APPROVER1" not in text
    assert "1 approval given" in text and "1 more needed from a different approver" in text


def test_a_delegate_is_mentioned_with_the_person_they_stand_in_for(engine: Engine, policy: Policy) -> None:
    with session_scope(engine) as session:
        session.add(Delegation(delegator="U0SENIOR", delegate="U0OWNER", starts_at=MONDAY - timedelta(days=1),
                               ends_at=MONDAY + timedelta(days=3)))
        session.add(Delegation(delegator="U0APPROVER1", delegate="U0APPROVER2", starts_at=MONDAY - timedelta(days=9),
                               ends_at=MONDAY - timedelta(days=1)))  # over: not mentioned for it
    big = waiting_case(engine, policy, amount=Decimal("900.00"), senior_needed=True)
    scheduler(engine, policy, Clock(NUDGE_AT)).run_once()
    text = nudge_text(engine, big)
    assert "<@U0SENIOR>" in text and "<@U0OWNER>" in text and "U0APPROVER2" not in text
    [event] = audits(engine, big, "approval.nudged")
    assert event.detail["mentioned"] == ["U0SENIOR", "U0OWNER"]


def test_the_escalation_page_fires_once_to_the_escalation_channel_naming_seniors(engine: Engine,
                                                                                policy: Policy) -> None:
    with session_scope(engine) as session:
        session.add(Delegation(delegator="U0SENIOR", delegate="U0OWNER", starts_at=MONDAY,
                               ends_at=MONDAY + timedelta(days=3)))
    case_id = waiting_case(engine, policy)
    clock = Clock(PAGE_AT)
    assert scheduler(engine, policy, clock).run_once() == 2  # nudge (late: the process was down) and page
    assert scheduler(engine, policy, clock, "w2").run_once() == 0
    [page] = posted(engine, case_id, "approval_escalation")
    assert page.kind == "message" and page.channel == ESCALATION_CHANNEL
    assert_valid_message({"text": page.text, "blocks": page.blocks})
    assert "Approval overdue" in (page.text or "")
    assert "<@U0SENIOR>" in (page.text or "") and "<@U0OWNER>" in (page.text or "")
    assert "U0APPROVER1" not in (page.text or "")
    levels = sorted(event.detail["level"] for event in audits(engine, case_id, "approval.nudged"))
    assert levels == ["escalation", "thread"]
    # Without an escalation channel the page is not sent (and said once in the log), like other pages.
    other = waiting_case(engine, policy, call_id="call_other")
    scheduler(engine, policy, Clock(PAGE_AT), channel=None).run_once()
    [row] = rows(engine, other, "approval_escalation")
    assert (row.status, row.cancel_reason) == ("cancelled", "no_channel")


def test_a_decision_cancels_the_nudges(engine: Engine, policy: Policy) -> None:
    directory = Directory(policy, None)
    approved = waiting_case(engine, policy, call_id="call_approved")
    denied = waiting_case(engine, policy, call_id="call_denied")
    stale = waiting_case(engine, policy, call_id="call_stale")
    at = MONDAY + timedelta(minutes=30)
    assert decisions.approve(engine, directory, approved, "U0APPROVER1", at).ok
    assert decisions.deny(engine, directory, denied, "U0APPROVER2", "Outside the refund window", at).ok
    assert {r.cancel_reason for r in rows(engine, approved)} == {"approved"}
    assert {r.status for r in rows(engine, denied)} == {"cancelled"}
    resync(engine, approved, policy, at + timedelta(minutes=1))  # a later webhook does not bring them back
    assert {r.status for r in rows(engine, approved)} == {"cancelled"}
    # Approved on a path that did not cancel them: the row is dropped when it comes up, not posted.
    with session_scope(engine) as session:
        case = session.get(Case, stale)
        assert case is not None
        case.approved_at = at
        session.add(case)
    assert scheduler(engine, policy, Clock(PAGE_AT)).run_once() == 2
    assert {(r.status, r.cancel_reason) for r in rows(engine, stale)} == {("cancelled", "not_waiting")}
    assert all(posted(engine, case_id, "approval_") == [] for case_id in (approved, denied, stale))


# ---------------------------------------------------------------------------------------------------
# Done on a reminder: what was done, and Resolve when nothing else is open


def test_done_outcomes_are_the_resolve_outcomes_and_the_modal_validates(policy: Policy) -> None:
    assert dict(DONE_OUTCOMES) == {str(k): v for k, v in decisions.RESOLUTION_LABELS.items()}
    value = ReminderValue(case_id=7, reminder_id=9)
    view = done_modal(value)
    assert_valid_view(view)
    assert view["callback_id"] == "reminder_done_modal" and ReminderValue.parse(view["private_metadata"]) == value

    def state(outcome: str | None, note: str | None) -> dict[str, Any]:
        return {"state": {"values": {
            "outcome": {"value": {"type": "static_select", "selected_option": {"value": outcome} if outcome else None}},
            "note": {"value": {"type": "plain_text_input", "value": note}}}}}

    assert done_choice(state("refunded", "  ")) == ("refunded", None)
    assert done_errors(*done_choice(state(None, None))) == {"outcome": "Pick an outcome from the list."}
    assert done_errors("made_up", None) == {"outcome": "Pick an outcome from the list."}
    assert "note is needed" in done_errors(*done_choice(state("other", " ")))["note"]
    assert "1000 characters" in done_errors("other", "x" * 1001)["note"]
    assert done_errors("other", "Sent the W-9 by post") == {} == done_errors("question_answered", None)


def _resolve_button(row: OutboxMessage) -> dict[str, Any] | None:
    for block in row.blocks or []:
        for element in block.get("elements", []):
            if element.get("action_id") == ActionId.RESOLVE:
                return dict(element)
    return None


def test_done_records_what_was_done_and_offers_resolve_only_when_nothing_else_is_open(engine: Engine,
                                                                                     policy: Policy) -> None:
    deadline = MONDAY + timedelta(days=1)
    plain_case = waiting_case(engine, policy, call_id="call_plain", approval_required=False,
                              follow_up_deadline=deadline, next_step="Email the receipt")
    assert not store.follow_up_done(engine, plain_case, "U0APPROVER1", MONDAY, "other").ok  # no note
    assert not store.follow_up_done(engine, plain_case, "U0APPROVER1", MONDAY, "made_up").ok
    assert rows(engine, plain_case)[0].status == "pending"  # nothing changed

    done = store.follow_up_done(engine, plain_case, "U0APPROVER1", MONDAY, "other",
                                "Card 4111 1111 1111 1111 refunded by phone")
    assert done.ok and "Resolve" in done.message
    case = case_row(engine, plain_case)
    assert case.follow_up_done_at == MONDAY and case.next_reminder_at is None
    assert {r.status for r in rows(engine, plain_case)} == {"cancelled"}
    [reply] = posted(engine, plain_case, "reminder.done")
    assert_valid_message({"text": reply.text, "blocks": reply.blocks})
    assert "4111" not in json.dumps(reply.blocks) and "marked the follow-up done" in (reply.text or "")
    button = _resolve_button(reply)
    assert button is not None
    assert ButtonValue.parse(button["value"]) == ButtonValue(case_id=plain_case, call_id="call_plain",
                                                             v=case.card_version)
    [event] = audits(engine, plain_case, "reminder.done")
    assert event.detail["outcome"] == "other" and "4111" not in (event.reason or "")

    # A later webhook (a retry, even one with a new deadline) does not plan the follow-up again.
    resync(engine, plain_case, policy, MONDAY + timedelta(hours=1), follow_up_deadline=deadline + timedelta(days=2))
    assert [r for r in rows(engine, plain_case) if r.status == "pending"] == []

    # Still waiting for approval, or a money action under way or needing a person: no Resolve offer.
    waiting = waiting_case(engine, policy, call_id="call_waiting", follow_up_deadline=deadline)
    running = waiting_case(engine, policy, call_id="call_running", approval_required=False,
                           follow_up_deadline=deadline)
    unknown = waiting_case(engine, policy, call_id="call_unknown", approval_required=False,
                           follow_up_deadline=deadline)
    with session_scope(engine) as session:
        for case_id, call_id, status in ((running, "call_running", "running"), (unknown, "call_unknown", "unknown")):
            session.add(ProviderAction(idempotency_key=f"{call_id}:invoice_poof", case_id=case_id, call_id=call_id,
                                       action="invoice_poof", provider="poof", status=status,
                                       requested_by="U0APPROVER1"))
    for case_id in (waiting, running, unknown):
        outcome = store.follow_up_done(engine, case_id, "U0APPROVER1", MONDAY, "question_answered")
        assert outcome.ok and "Resolve" not in outcome.message
        [reply] = posted(engine, case_id, "reminder.done")
        assert _resolve_button(reply) is None
    assert [r.status for r in rows(engine, waiting, "approval_nudge")] == ["pending"]  # Done is not a decision

    # A closed case: refused with its state.
    assert decisions.deny(engine, Directory(policy, None), waiting, "U0APPROVER1", "Not our customer at all",
                          MONDAY).ok
    refused = store.follow_up_done(engine, waiting, "U0APPROVER1", MONDAY, "question_answered")
    assert not refused.ok and "denied" in refused.message


@pytest.mark.parametrize("outcome", ["refunded", "no_action_needed"])
def test_done_with_nothing_pending_at_all_still_offers_resolve(engine: Engine, policy: Policy, outcome: str) -> None:
    case_id = waiting_case(engine, policy, call_id=f"call_{outcome}", approval_required=False, next_step=None)
    assert rows(engine, case_id) == []
    assert store.follow_up_done(engine, case_id, "U0OWNER", MONDAY, outcome).ok
    [reply] = posted(engine, case_id, "reminder.done")
    assert _resolve_button(reply) is not None
