"""Decisions on a case (bot.decisions): approve, dual approval, delegation, deny, resolve, callback done,
and the middleware's stale-card refusal, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from slack_bolt import BoltRequest, BoltResponse
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from blocks.actions import ActionId, ButtonValue, CallbackId
from blocks.card import case_card
from blocks.modals import deny_modal, resolve_modal
from bot import decisions
from bot.actions import runner
from bot.actions.authz import Directory
from bot.actions.gates import approval_gate
from bot.actions.runner import ActionContext, InvoiceRequest
from bot.decisions import Resolution
from bot.outcome import Outcome
from bot.policy import Policy
from bot.reminders.schedule import Kind
from bot.reminders.store import sync_case
from bot.runtime import Runtime
from bot.slack.listeners.context import Desk, Prepare
from storage.db import make_engine, session_scope
from storage.decisions import Approval, Delegation
from storage.models import AuditEvent, Case, OutboxMessage
from storage.reminders import Reminder
from tests.cases import load, make_case

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
APPROVER1, APPROVER2, SENIOR, OWNER, STRANGER = "U0APPROVER1", "U0APPROVER2", "U0SENIOR", "U0OWNER", "U0STRANGER"
CARD = "4242 4242 4242 4242"


@pytest.fixture
def directory(policy: Policy) -> Directory:
    # tests/data/policy.toml: approvers U0APPROVER1/2, senior U0SENIOR, USD threshold 500; dual above 1,000.
    dual = policy.model_copy(update={"dual_approval_thresholds": {"USD": Decimal("1000.00")}})
    return Directory(dual, None)


def add_case(engine: Engine, call_id: str = "call_decide", amount: str | None = "300.00", currency: str = "USD",
             **fields: Any) -> int:
    values: dict[str, Any] = {"approval_required": True, "approval_reason": "money back",
                              "amount": Decimal(amount) if amount else None, "currency": currency,
                              "slack_channel": "C0FINANCE", "slack_ts": "1700000000.000100", **fields}
    return make_case(engine, call_id, now=NOW, **values)


def audit(engine: Engine, case_id: int | None = None) -> list[AuditEvent]:
    with Session(engine) as session:
        query = select(AuditEvent).order_by(col(AuditEvent.id))
        if case_id is not None:
            query = query.where(col(AuditEvent.case_id) == case_id)
        return list(session.exec(query).all())


def approvals(engine: Engine, case_id: int) -> list[Approval]:
    with Session(engine) as session:
        return list(session.exec(select(Approval).where(col(Approval.case_id) == case_id)).all())


def threads(engine: Engine, case_id: int) -> list[str]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).where(col(OutboxMessage.case_id) == case_id,
                                                        col(OutboxMessage.kind) == "thread")
                            .order_by(col(OutboxMessage.id))).all()
        return [str(row.text) for row in rows]


def action_ids(case: Case) -> set[str]:
    return {element["action_id"] for block in case_card(case)["blocks"] if block["type"] == "actions"
            for element in block["elements"]}


def approve(engine: Engine, directory: Directory, case_id: int, user: str) -> Outcome:
    return decisions.approve(engine, directory, case_id, user, NOW)


# -- approve -------------------------------------------------------------------------------------

def test_an_approver_approves_and_the_card_and_thread_say_so(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine)
    outcome = approve(engine, directory, case_id, APPROVER1)
    assert outcome.ok and "Approved by <@U0APPROVER1> for 300.00 USD" in outcome.message
    case = load(engine, case_id)
    assert case.state == "approved" and case.state_by == APPROVER1 and case.approved_at == NOW
    assert (case.approved_amount, case.approved_currency) == (Decimal("300.00"), "USD")
    [event] = [e for e in audit(engine, case_id) if e.action == "case.approved"]
    assert event.actor == APPROVER1 and event.detail["final"] is True and event.detail["amount"] == "300.00"
    assert threads(engine, case_id) == [outcome.message]
    assert not {"approve", "deny"} & action_ids(case)  # decided: the decision buttons leave
    assert "Approved by <@U0APPROVER1>" in json.dumps(case_card(case))
    # A second click on a decided case is refused with its state, audited.
    again = approve(engine, directory, case_id, APPROVER2)
    assert not again.ok and "already approved" in again.message
    assert audit(engine, case_id)[-1].action == "decision.refused"


@pytest.mark.parametrize("user", [STRANGER, OWNER])
def test_only_approvers_approve_and_refusals_are_audited(engine: Engine, directory: Directory, user: str) -> None:
    case_id = add_case(engine)
    outcome = approve(engine, directory, case_id, user)
    assert not outcome.ok and "only finance approvers" in outcome.message
    assert load(engine, case_id).approved_at is None
    [event] = audit(engine, case_id)
    assert (event.action, event.actor, event.outcome) == ("decision.refused", user, "refused")


def test_above_the_threshold_only_a_senior_approves(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, amount="800.00")
    refused = approve(engine, directory, case_id, APPROVER1)
    assert not refused.ok and "above the 500.00 USD threshold" in refused.message and "senior" in refused.message
    assert approve(engine, directory, case_id, SENIOR).ok
    assert load(engine, case_id).approvals_given == [{"by": SENIOR, "for": None, "senior": True}]


def test_a_case_that_needs_no_approval_cannot_be_approved(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, approval_required=False)
    outcome = approve(engine, directory, case_id, APPROVER1)
    assert not outcome.ok and "does not need approval" in outcome.message


def test_dual_approval_needs_two_different_people_and_one_senior(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, amount="1500.00")
    first = approve(engine, directory, case_id, APPROVER1)
    assert first.ok and "(1 of 2 approvals)" in first.message
    case = load(engine, case_id)
    assert case.approved_at is None and case.state == "new"
    assert "1 of 2 approvals" in json.dumps(case_card(case))
    # The same person again counts once.
    again = approve(engine, directory, case_id, APPROVER1)
    assert not again.ok and "already counted" in again.message
    # Two approvers but neither a senior: the second slot is a senior's.
    second = approve(engine, directory, case_id, APPROVER2)
    assert not second.ok and "senior" in second.message
    done = approve(engine, directory, case_id, SENIOR)
    assert done.ok and "(2 of 2 approvals)" in done.message
    assert [(a.approver, a.senior) for a in approvals(engine, case_id)] == [(APPROVER1, False), (SENIOR, True)]
    finals = [e.detail["final"] for e in audit(engine, case_id) if e.action == "case.approved"]
    assert finals == [False, True]


def test_two_approvers_at_once_make_one_decision_with_two_approvals(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, amount="1200.00", call_id="call_race")
    barrier = threading.Barrier(2)

    def click(user: str) -> Outcome:
        barrier.wait()
        return approve(engine, directory, case_id, user)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(click, [SENIOR, APPROVER1]))
    assert all(result.ok for result in results)
    assert sorted(a.approver for a in approvals(engine, case_id)) == [APPROVER1, SENIOR]
    finals = [e.detail["final"] for e in audit(engine, case_id) if e.action == "case.approved"]
    assert sorted(finals) == [False, True]  # one decision
    assert load(engine, case_id).state == "approved"


def test_double_clicks_at_once_count_once(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, amount="1200.00", call_id="call_double")
    barrier = threading.Barrier(3)

    def click(_: int) -> Outcome:
        barrier.wait()
        return approve(engine, directory, case_id, SENIOR)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(click, range(3)))
    assert sum(result.ok for result in results) == 1
    assert [a.approver for a in approvals(engine, case_id)] == [SENIOR]
    assert load(engine, case_id).approved_at is None  # still 1 of 2


def test_two_processes_on_one_database_count_each_approval_once(db_url: str, engine: Engine,
                                                                directory: Directory) -> None:
    """Two engines (as two replicas would have) deciding one dual-approval case at once."""
    other = make_engine(db_url)
    try:
        case_id = add_case(engine, amount="1200.00", call_id="call_two_processes")
        barrier = threading.Barrier(2)

        def click(pair: tuple[Engine, str]) -> Outcome:
            barrier.wait()
            return approve(pair[0], directory, case_id, pair[1])

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(click, [(engine, SENIOR), (other, APPROVER2)]))
        assert all(result.ok for result in results)
        assert len(approvals(engine, case_id)) == 2 and load(engine, case_id).state == "approved"
    finally:
        other.dispose()


# -- delegation ----------------------------------------------------------------------------------

def delegate(engine: Engine, delegator: str, to: str, ends_at: datetime = NOW + timedelta(days=2)) -> None:
    with session_scope(engine) as session:
        session.add(Delegation(delegator=delegator, delegate=to, starts_at=NOW - timedelta(hours=1), ends_at=ends_at,
                               created_at=NOW))


def test_a_delegate_acts_at_the_delegators_senior_level(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, amount="800.00")
    assert not approve(engine, directory, case_id, OWNER).ok  # not an approver on their own
    delegate(engine, SENIOR, OWNER)
    outcome = approve(engine, directory, case_id, OWNER)
    assert outcome.ok and "<@U0OWNER> on behalf of <@U0SENIOR>" in outcome.message
    [approval] = approvals(engine, case_id)
    assert (approval.approver, approval.principal, approval.senior) == (OWNER, SENIOR, True)
    event = next(e for e in audit(engine, case_id) if e.action == "case.approved")
    assert event.actor == OWNER and event.detail["on_behalf_of"] == SENIOR
    assert "on behalf of <@U0SENIOR>" in json.dumps(case_card(load(engine, case_id)))


def test_a_delegate_and_the_delegator_are_one_approval_not_two(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, amount="1200.00")
    delegate(engine, SENIOR, APPROVER1)
    assert approve(engine, directory, case_id, APPROVER1).ok  # as the senior's delegate, seniors first
    again = approve(engine, directory, case_id, SENIOR)
    assert not again.ok and "already counted" in again.message


def test_an_ended_delegation_gives_nothing(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, amount="800.00")
    delegate(engine, SENIOR, OWNER, ends_at=NOW)  # ended exactly now
    assert not approve(engine, directory, case_id, OWNER).ok


# -- deny ----------------------------------------------------------------------------------------

def test_deny_closes_with_a_redacted_reason_and_cancels_reminders(engine: Engine, directory: Directory,
                                                                 policy: Policy) -> None:
    case_id = add_case(engine, follow_up_deadline=NOW + timedelta(days=1))
    with session_scope(engine) as session:
        case = session.get(Case, case_id)
        assert case is not None
        sync_case(session, case, policy, NOW)
    outcome = decisions.deny(engine, directory, case_id, APPROVER1, f"Not refundable; card {CARD} was fine", NOW)
    assert outcome.ok
    case = load(engine, case_id)
    assert case.state == "denied" and case.decision_reason is not None
    assert "4242 4242" not in case.decision_reason and "[card ending 4242]" in case.decision_reason
    assert "4242 4242" not in outcome.message and "Denied because" in json.dumps(case_card(case))
    [event] = [e for e in audit(engine, case_id) if e.action == "case.denied"]
    assert event.reason == case.decision_reason
    with Session(engine) as session:
        open_rows = session.exec(select(Reminder).where(col(Reminder.case_id) == case_id,
                                                        col(Reminder.status) == "pending")).all()
    assert open_rows == []
    # Decided: approve and resolve are refused with the current state.
    later = approve(engine, directory, case_id, APPROVER2)
    assert not later.ok and "denied" in later.message


def test_deny_is_for_approvers_and_needs_a_real_reason(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine)
    assert "only finance approvers" in decisions.deny(engine, directory, case_id, OWNER, "a good reason", NOW).message
    assert not decisions.deny(engine, directory, case_id, APPROVER1, "too short", NOW).ok
    assert decisions.parse_deny({"reason": "   short   "}) == {"reason": "Give a reason of 10 to 1000 characters"}
    assert isinstance(decisions.parse_deny({"reason": "x" * 1001}), dict)
    assert decisions.parse_deny({"reason": "  duplicate of case 12  "}) == "duplicate of case 12"


# -- resolve -------------------------------------------------------------------------------------

def test_resolve_closes_as_done_with_outcome_note_and_reference(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, approval_required=False)
    outcome = decisions.resolve(engine, directory, case_id, OWNER, Resolution.QUESTION_ANSWERED,
                                f"told them; they read {CARD}", "ZD-1042", NOW)
    assert outcome.ok
    case = load(engine, case_id)
    assert (case.state, case.resolution, case.resolution_reference) == ("done", "question_answered", "ZD-1042")
    assert case.resolution_note == "told them; they read [card ending 4242]"
    assert [e.detail for e in audit(engine, case_id) if e.action == "case.resolved"] == [
        {"outcome": "question_answered"}]
    again = decisions.resolve(engine, directory, case_id, OWNER, Resolution.OTHER, "again", None, NOW)
    assert not again.ok and "already done" in again.message


def test_a_case_waiting_for_approval_is_not_resolved_as_refunded(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine)
    for outcome in (Resolution.REFUNDED, Resolution.CREDITED):
        refused = decisions.resolve(engine, directory, case_id, APPROVER1, outcome, None, None, NOW)
        assert not refused.ok and "get approval first" in refused.message
    assert approve(engine, directory, case_id, APPROVER1).ok
    assert decisions.resolve(engine, directory, case_id, APPROVER1, Resolution.REFUNDED, None, "ch_3Nq", NOW).ok


def test_resolve_is_for_finance_people(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, approval_required=False)
    refused = decisions.resolve(engine, directory, case_id, STRANGER, Resolution.NO_ACTION_NEEDED, None, None, NOW)
    assert not refused.ok and "only finance people" in refused.message


@pytest.mark.parametrize(("values", "errors"), [
    ({}, {"outcome"}),
    ({"outcome": "teleported"}, {"outcome"}),
    ({"outcome": "other"}, {"note"}),
    ({"outcome": "other", "note": "x" * 1001}, {"note"}),
    ({"outcome": "refunded", "reference": "<!here>"}, {"reference"}),
    ({"outcome": "refunded", "reference": "r" * 201}, {"reference"}),
])
def test_the_resolve_form_is_checked_in_place(values: dict[str, Any], errors: set[str]) -> None:
    parsed = decisions.parse_resolve(values)
    assert isinstance(parsed, dict) and set(parsed) == errors


def test_the_resolve_form_reads_a_good_answer() -> None:
    assert decisions.parse_resolve({"outcome": "other", "note": " rang back ", "reference": " ch_3Nq/42 "}) == (
        Resolution.OTHER, "rang back", "ch_3Nq/42")


# -- callback ------------------------------------------------------------------------------------

def test_a_callback_owed_shows_and_is_marked_done(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, approval_required=False, callback_expected=True, owner=OWNER)
    assert "Callback owed by <@U0OWNER>" in json.dumps(case_card(load(engine, case_id)))
    assert decisions.callback_done(engine, directory, case_id, OWNER, NOW).ok
    case = load(engine, case_id)
    assert case.callback_done_by == OWNER and "callback_done" not in action_ids(case)
    assert not decisions.callback_done(engine, directory, case_id, OWNER, NOW).ok


# -- approval before money -----------------------------------------------------------------------

def test_money_waits_for_approval_and_stays_within_it(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine)
    case = load(engine, case_id)
    assert "needs approval first" in str(approval_gate(case, Decimal("300.00"), "USD"))
    assert approve(engine, directory, case_id, APPROVER1).ok
    case = load(engine, case_id)
    assert approval_gate(case, Decimal("300.00"), "USD") is None
    assert approval_gate(case, Decimal("250.00"), "USD") is None
    assert "only 300.00 USD was approved" in str(approval_gate(case, Decimal("300.01"), "USD"))
    assert "new approval" in str(approval_gate(case, Decimal("300.00"), "EUR"))
    assert approval_gate(load(engine, add_case(engine, call_id="c2", approval_required=False)),
                         Decimal("9000"), "USD") is None


# -- a click on a card older than the case ---------------------------------------------------------

class Inline(Executor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


class Recorder:
    def __init__(self) -> None:
        self.response_url = "https://hooks.slack.test/actions/1"
        self.texts: list[str] = []

    def __call__(self, **kwargs: Any) -> None:
        self.texts.append(str(kwargs.get("text")))


def test_a_click_on_an_older_card_is_refused_with_the_current_state(runtime: Runtime, directory: Directory) -> None:
    engine = runtime.engine
    case_id = add_case(engine, card_version=4)
    desk = Desk(runtime, ActionContext(engine=engine, directory=directory, moonclerk=None, invoices=None,
                                       payouts=None, clock=lambda: NOW, background=Inline()))

    def click(version: int, message_ts: str) -> tuple[int, Recorder]:
        payload = {"type": "block_actions", "user": {"id": APPROVER1}, "trigger_id": "t",
                   "response_url": "https://hooks.slack.test/actions/1",
                   "container": {"type": "message", "message_ts": message_ts},
                   "actions": [{"action_id": ActionId.APPROVE, "block_id": "b", "type": "button",
                                "value": ButtonValue(case_id=case_id, call_id="call_decide", v=version).dump()}]}
        request = BoltRequest(body=json.dumps(payload), headers={"content-type": ["application/json"]})
        respond = Recorder()
        request.context["respond"] = respond
        nexts: list[int] = []
        Prepare(desk).process(req=request, resp=BoltResponse(status=200, body=""),
                              next=lambda: nexts.append(1) or BoltResponse(status=200, body=""))
        return len(nexts), respond

    passed, respond = click(3, "1700000000.000100")
    assert passed == 0 and "This card changed since it was shown to you" in respond.texts[0]
    assert "waiting for approval (0 of 1)" in respond.texts[0]
    [event] = audit(engine, case_id)
    assert event.action == "card.stale_click" and event.detail["clicked_version"] == 3
    assert load(engine, case_id).approved_at is None
    assert click(4, "1700000000.000100")[0] == 1  # the current card
    assert click(3, "1700000000.999999")[0] == 1  # a button in the thread is not the card


def test_the_deny_and_resolve_modals_carry_the_case() -> None:
    case = Case(id=7, call_id="call_m", card_version=2, kind="refund")
    deny_view = deny_modal(case, min_length=10, max_length=1000)
    assert deny_view["callback_id"] == CallbackId.DENY
    assert ButtonValue.parse(deny_view["private_metadata"]) == ButtonValue(case_id=7, call_id="call_m", v=2)
    resolve_view = resolve_modal(case, [(r.value, label) for r, label in decisions.RESOLUTION_LABELS.items()],
                                 note_max=1000, reference_max=200)
    options = resolve_view["blocks"][1]["element"]["options"]
    assert [option["value"] for option in options] == [r.value for r in Resolution]


def test_nudge_kinds_are_cancelled_by_approval(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine)
    with session_scope(engine) as session:
        session.add(Reminder(case_id=case_id, kind=Kind.APPROVAL_NUDGE, dedup_key=f"{case_id}:nudge",
                             due_at=NOW + timedelta(hours=2)))
    assert approve(engine, directory, case_id, APPROVER1).ok
    with Session(engine) as session:
        [row] = session.exec(select(Reminder).where(col(Reminder.case_id) == case_id)).all()
    assert (row.status, row.cancel_reason) == ("cancelled", "approved")


def test_more_than_was_approved_asks_for_a_new_approval_round(engine: Engine, directory: Directory) -> None:
    case_id = add_case(engine, kind="failed_renewal", moonclerk_customer_id=42, invoice_number="INV-9")
    ctx = ActionContext(engine=engine, directory=directory, moonclerk=None, invoices=None, payouts=None,
                        clock=lambda: NOW)
    assert approve(engine, directory, case_id, APPROVER1).ok  # 300.00 USD
    more = InvoiceRequest(amount=Decimal("450.00"), currency="USD", method="paypal")
    asked = runner.submit_invoice(ctx, case_id, APPROVER1, more)
    assert not asked.ok and "only 300.00 USD was approved" in asked.message and "new approval" in asked.message
    case = load(engine, case_id)
    assert (case.approval_round, case.approved_at, case.approvals_given) == (2, None, [])
    assert case.approval_subject == (Decimal("450.00"), "USD") and case.state == "in_review"
    assert "approve" in action_ids(case) and "Round 2" in json.dumps(case_card(case))
    assert [e.action for e in audit(engine, case_id)][-1] == "approval.requested"
    # The same approver may approve the new round; then the larger invoice passes every gate.
    second = approve(engine, directory, case_id, APPROVER1)
    assert second.ok and "450.00 USD" in second.message
    assert [(a.round, a.amount) for a in approvals(engine, case_id)] == [(1, Decimal("300.00")),
                                                                        (2, Decimal("450.00"))]
    passed = runner.submit_invoice(ctx, case_id, APPROVER1, more)
    assert "provider is not configured" in passed.message  # every check before the provider passed
