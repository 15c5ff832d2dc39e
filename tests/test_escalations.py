"""Escalation pages: each escalated case pages the escalation channel once, naming every reason, with
impact, urgency, customer, amount, owner and the card; a reason that appears later adds one page naming
only it, and no reason is ever paged twice; a follow-up page comes when nobody acts in time.

Deliveries go through the real ingest (routing computes the reasons); time is an injected clock.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

import storage.reminders  # noqa: F401  (registers the reminders table)
from bot import workflow
from bot.ingest import ingest
from bot.policy import Policy
from bot.reminders import escalations, on_case_changed, on_case_closed
from bot.reminders.rows import FireSettings
from bot.reminders.scheduler import ReminderScheduler
from bot.slack.delivery import ChannelPacer, OutboxWorker
from bot.standins import SlackStandIn
from storage.db import session_scope
from storage.models import AuditEvent, Case, OutboxMessage
from storage.reminders import Reminder
from tests.blockkit import assert_valid_message
from tests.clock import Clock
from tests.signing import dumps

SAMPLES = Path(__file__).resolve().parents[1] / "bot" / "samples"
CHANNEL = "C0FINANCE"
ESCALATION_CHANNEL = "C0ESCALATE"
T0 = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=120)  # tests/data/policy.toml: overdue_window_minutes




def call(call_id: str, intent: str, **analysis: Any) -> dict[str, Any]:
    return {"event_type": "call_ended", "payload": {"call": {
        "id": call_id, "status": "completed", "from_number": "14155550142",
        "summary": "Billing call.",
        "post_call_analysis": {"billing_intent": intent, "customer_name": "Dana Whitfield",
                               "customer_email": "dana@whitfield.example", **analysis}}}}


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def deliver(engine: Engine, policy: Policy, payload: dict[str, Any], now: datetime = T0,
            card_ts: str | None = None) -> int:
    """Ingest, then what the wired hook does inside ingest's transaction; optionally mark the card posted."""
    result = ingest(engine, payload, dumps(payload), policy, now)
    assert result.case_id is not None
    with session_scope(engine) as session:
        case = session.get(Case, result.case_id, with_for_update=True)
        assert case is not None
        if card_ts is not None:
            case.slack_channel, case.slack_ts = CHANNEL, card_ts
        on_case_changed(session, case, policy, now)
    return result.case_id


def scheduler(engine: Engine, policy: Policy, clock: Clock, channel: str | None = ESCALATION_CHANNEL
              ) -> ReminderScheduler:
    return ReminderScheduler(engine, FireSettings(policy=policy, escalation_channel=channel, finance_channel=CHANNEL),
                             clock=clock, worker_id="esc")


def pages(engine: Engine, case_id: int | None = None) -> list[OutboxMessage]:
    with Session(engine) as session:
        query = select(OutboxMessage).where(OutboxMessage.kind == "message").order_by(col(OutboxMessage.id))
        if case_id is not None:
            query = query.where(OutboxMessage.case_id == case_id)
        return list(session.exec(query).all())


def rows(engine: Engine, case_id: int, kind: str) -> list[Reminder]:
    with Session(engine) as session:
        return list(session.exec(select(Reminder).where(Reminder.case_id == case_id, Reminder.kind == kind)
                                 .order_by(col(Reminder.id))).all())


RULES = [
    # (call, reasons routing gives it)
    (call("call_failed_renewal", "payment_failed", amount="200.00", currency="USD"), ["failed renewal"]),
    (call("call_duplicate", "double_charge"), ["duplicate charge"]),
    (call("call_dispute", "chargeback", amount="80.00", currency="USD"), ["dispute or chargeback"]),
    (call("call_collections", "past_due"), ["collections-sensitive call"]),
    (call("call_big_refund", "refund_request", amount="900.00", currency="USD"),
     ["refund above the approval threshold"]),
    (call("call_vip", "payment_failed", customer_email="ap@vip.example", amount="12000.00", currency="USD"),
     ["VIP payment blocker", "failed renewal"]),
]


def test_every_escalation_rule_pages_at_once_one_page_per_case(engine: Engine, policy: Policy) -> None:
    cases = {deliver(engine, policy, payload, card_ts=f"1700000000.{n:06d}"): (payload, reasons)
             for n, (payload, reasons) in enumerate(RULES)}
    small_refund = deliver(engine, policy, call("call_small_refund", "refund_request", amount="149.00",
                                                 currency="USD"), card_ts="1700000001.000001")
    clock = Clock(T0 + timedelta(seconds=1))
    assert scheduler(engine, policy, clock).run_once() == sum(len(r) for _, r in RULES)
    assert pages(engine, small_refund) == []  # below the threshold: no page
    for n, (case_id, (_, reasons)) in enumerate(cases.items()):
        for page in pages(engine, case_id):
            text = json.dumps(page.blocks)
            assert page.channel == ESCALATION_CHANNEL and all(reason in (page.text or "") for reason in reasons)
            assert "<!subteam^S0ONCALL>" in (page.text or "") and "<@U0OWNER>" in (page.text or "")
            for label in ("Impact", "Urgency", "Customer", "Amount", "Owner"):
                assert f"*{label}*" in text
            assert f"https://slack.com/archives/{CHANNEL}/p1700000000{n:06d}" in text
            assert "Dana Whitfield" in text or "ap@vip.example" in text
            assert_valid_message({"text": page.text, "blocks": page.blocks})
    assert [len(pages(engine, case_id)) for case_id in cases] == [1] * len(cases)
    vip = next(case_id for case_id, (payload, _) in cases.items() if payload["payload"]["call"]["id"] == "call_vip")
    assert "12,000.00 USD" in json.dumps(pages(engine, vip)[0].blocks) and "Critical" in json.dumps(
        pages(engine, vip)[0].blocks)

    # Retries, later events and restarts never page a reason twice.
    for payload, _ in RULES:
        deliver(engine, policy, payload, now=T0 + timedelta(minutes=1))
        deliver(engine, policy, {**payload, "event_type": "call_analyzed"}, now=T0 + timedelta(minutes=2))
    clock.now += timedelta(minutes=3)
    assert scheduler(engine, policy, clock).run_once() == 0
    assert len(pages(engine)) == len(RULES)


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


def test_vip_failed_renewal_pages_the_escalation_channel_with_a_link_to_the_card(
    engine: Engine, policy: Policy, slack: SlackStandIn,
) -> None:
    clock = Clock(T0)
    case_id = deliver(engine, policy, sample("03_vip_failed_renewal.json"), now=clock.now)
    outbox = OutboxWorker(engine, WebClient(token="xoxb-test", base_url=f"{slack.url}/api/"), CHANNEL,
                          pacer=ChannelPacer(interval=0), clock=clock)
    reminders = scheduler(engine, policy, clock)
    reminders.run_once()
    assert reminders.stats["waiting"] == 3 and pages(engine) == []  # waiting for the card to be posted
    while outbox.run_once():
        pass
    [card] = slack.messages(CHANNEL)
    clock.now += timedelta(seconds=3)
    reminders.run_once()
    while outbox.run_once():
        pass
    # One page, three seconds after the card, naming all three reasons: not three pages.
    posted = slack.messages(ESCALATION_CHANNEL)
    assert len(posted) == 1
    link = f"https://slack.com/archives/{CHANNEL}/p{card['ts'].replace('.', '')}"
    headline = posted[0]["text"]
    assert "VIP payment blocker" in headline and "failed renewal" in headline
    assert "VIP locked out after failed renewal" in headline  # flagged on the call
    for message in posted:
        body = json.dumps(message["blocks"])
        assert link in body and "12,000.00 USD" in body and "Big Customer Inc." in body
        assert "<!subteam^S0ONCALL>" in message["text"] and "<@U0OWNER>" in message["text"]
    assert all(r.status == "sent" for r in rows(engine, case_id, "escalation"))


def test_a_page_waits_briefly_for_its_card_then_goes_without_the_link(engine: Engine, policy: Policy) -> None:
    case_id = deliver(engine, policy, call("call_dispute", "chargeback"), now=T0)
    clock = Clock(T0)
    reminders = scheduler(engine, policy, clock)
    reminders.run_once()
    assert pages(engine) == [] and reminders.stats["waiting"] == 1
    clock.now = T0 + escalations.CARD_WAIT + timedelta(seconds=1)  # the card never came (Slack down)
    reminders.run_once()
    [page] = pages(engine, case_id)
    assert f"<#{CHANNEL}>" in json.dumps(page.blocks) and "call_dispute" in json.dumps(page.blocks)


def test_follow_up_page_when_nobody_acts(engine: Engine, policy: Policy) -> None:
    ignored = deliver(engine, policy, call("call_ignored", "chargeback"), card_ts="1700000000.000001")
    assigned = deliver(engine, policy, call("call_assigned", "chargeback"), card_ts="1700000000.000002")
    reviewed = deliver(engine, policy, call("call_reviewed", "chargeback"), card_ts="1700000000.000003")
    dismissed = deliver(engine, policy, call("call_dismissed", "chargeback"), card_ts="1700000000.000004")
    clock = Clock(T0 + timedelta(seconds=1))
    reminders = scheduler(engine, policy, clock)
    assert reminders.run_once() == 4
    assert {r.due_at for c in (ignored, assigned) for r in rows(engine, c, "escalation_followup")} == {
        clock.now + WINDOW}

    later = clock.now + timedelta(minutes=30)
    # The app and DialNexa keep writing to the audit trail; that is not somebody acting.
    with session_scope(engine) as session:
        session.add(AuditEvent(at=later, actor="finance-desk", action="slack.card_updated", case_id=ignored))
        session.add(AuditEvent(at=later, actor="dialnexa", action="case.updated", case_id=ignored))
    assert workflow.assign_self(engine, assigned, "U0APPROVER1", later).ok  # a person acted, state still new
    with session_scope(engine) as session:  # the state moved on, with no person in the audit trail
        case = session.get(Case, reviewed)
        assert case is not None
        case.state = "in_review"
        session.add(case)
    with session_scope(engine) as session:
        case = session.get(Case, dismissed)
        assert case is not None
        on_case_closed(session, case, later, "dismissed")

    clock.now += WINDOW - timedelta(seconds=5)
    assert reminders.run_once() == 0  # not yet
    clock.now += timedelta(seconds=10)
    # Three follow-ups come up, and with them (120 business minutes after the calls) the approval nudges
    # of the three chargebacks still open: a dispute waits for approval.
    assert reminders.run_once() == 3 + 3
    assert {r.case_id for c in (ignored, assigned, reviewed) for r in rows(engine, c, "approval_nudge")
            if r.status == "sent"} == {ignored, assigned, reviewed}
    followups = [p for p in pages(engine) if "escalation-followup" in p.dedup_key]
    assert [p.case_id for p in followups] == [ignored]
    assert "Still unhandled 120 min" in (followups[0].text or "") and "<!subteam^S0ONCALL>" in (
        followups[0].text or "")
    assert_valid_message({"text": followups[0].text, "blocks": followups[0].blocks})
    assert [r.cancel_reason for r in rows(engine, assigned, "escalation_followup")] == ["acted"]
    assert [r.cancel_reason for r in rows(engine, reviewed, "escalation_followup")] == ["acted"]
    assert [r.cancel_reason for r in rows(engine, dismissed, "escalation_followup")] == ["dismissed"]
    clock.now += WINDOW * 3
    assert reminders.run_once() == 0  # one follow-up, not one per window


def test_no_escalation_channel_logs_and_a_closed_case_pages_nobody(engine: Engine, policy: Policy,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    case_id = deliver(engine, policy, call("call_dispute", "chargeback"), card_ts="1700000000.000001")
    closed = deliver(engine, policy, call("call_closed", "chargeback"), card_ts="1700000000.000002")
    with session_scope(engine) as session:  # closed on a path that does not call the hook
        case = session.get(Case, closed)
        assert case is not None
        case.state = "rejected"
        session.add(case)
    escalations._warned.clear()
    with caplog.at_level(logging.WARNING):
        assert scheduler(engine, policy, Clock(T0 + timedelta(seconds=1)), channel=None).run_once() == 2
    assert pages(engine) == [] and caplog.text.count("ESCALATION_CHANNEL is not set") == 1
    assert [r.cancel_reason for r in rows(engine, case_id, "escalation")] == ["no_channel"]
    assert [r.cancel_reason for r in rows(engine, closed, "escalation")] == ["closed"]


def escalation_reasons(engine: Engine, case_id: int) -> dict[str, str]:
    return {r.reason or "": r.status for r in rows(engine, case_id, "escalation")}


def test_a_reason_that_appears_later_adds_one_page_naming_only_it(engine: Engine, policy: Policy) -> None:
    first = call("call_growing", "payment_failed", amount="200.00", currency="USD")
    case_id = deliver(engine, policy, first, card_ts="1700000000.000001")
    clock = Clock(T0 + timedelta(seconds=1))
    reminders = scheduler(engine, policy, clock)
    reminders.run_once()
    [page] = pages(engine, case_id)
    assert "failed renewal" in (page.text or "")
    # The analysis arrives later with the agent's flag: a second page, about that reason alone.
    flagged = {**call("call_growing", "payment_failed", amount="200.00", currency="USD",
                      escalation_reason="customer says they will cancel"), "event_type": "call_analyzed"}
    deliver(engine, policy, flagged, now=T0 + timedelta(minutes=1))
    clock.now = T0 + timedelta(minutes=1, seconds=1)
    reminders.run_once()
    first_page, second_page = pages(engine, case_id)
    assert first_page.id == page.id
    assert "customer says they will cancel" in (second_page.text or "")
    assert "failed renewal" not in (second_page.text or "")
    # Reasons that come and go and come back, retries, restarts: never a reason paged twice.
    deliver(engine, policy, first, now=T0 + timedelta(minutes=2))
    deliver(engine, policy, flagged, now=T0 + timedelta(minutes=3))
    clock.now = T0 + timedelta(minutes=4)
    scheduler(engine, policy, clock).run_once()
    assert len(pages(engine, case_id)) == 2
    assert escalation_reasons(engine, case_id) == {"failed renewal": "sent",
                                                   "caller or agent: customer says they will cancel": "sent"}


def test_two_processes_firing_one_case_s_reasons_page_it_once(engine: Engine, policy: Policy) -> None:
    from bot.reminders import store

    case_id = deliver(engine, policy, sample("03_vip_failed_renewal.json"), card_ts="1700000000.000001")
    settings = FireSettings(policy=policy, escalation_channel=ESCALATION_CHANNEL, finance_channel=CHANNEL)
    now = T0 + timedelta(seconds=1)
    # Each process holds a claim on some of the case's three reasons when both fire.
    mine = store.claim_due(engine, "process-a", now, limit=1)
    theirs = store.claim_due(engine, "process-b", now)
    assert len(mine) == 1 and len(theirs) == 2
    barrier = threading.Barrier(2)
    outcomes: list[str | None] = []

    def fire(claimed: list[int], worker: str) -> None:
        barrier.wait()
        outcomes.extend(store.fire_batch(engine, claimed, worker, now, settings).values())

    threads = [threading.Thread(target=fire, args=(mine, "process-a")),
               threading.Thread(target=fire, args=(theirs, "process-b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Whichever fired first paged all three; the other found its rows paged already and sent nothing.
    assert outcomes.count("sent") == 1 and outcomes.count(None) == 2
    [page] = pages(engine, case_id)
    assert all(reason in (page.text or "") for reason in escalation_reasons(engine, case_id))
    assert set(escalation_reasons(engine, case_id).values()) == {"sent"}
