"""POST /webhooks/stripe over real HTTP, Stripe on its stand-in (one per module), on SQLite and PostgreSQL.

Events are signed exactly as Stripe signs them (providers.stripe.sign_payload, through the stand-in's
`deliver`); the object each event names is re-fetched from the stand-in, so the tests change the stand-in's
state and deliver events in whatever order, as often as they like. Reminders run on a driven clock.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlmodel import Session, col, func, select

import storage.reminders  # noqa: F401  (registers the reminders table on SQLModel.metadata)
from bot.actions import ledger
from bot.actions.refund_events import follow_refund
from bot.decisions import Resolution
from bot.lookup import directory
from bot.lookup.review import match_case
from bot.reminders.rows import FireSettings
from bot.reminders.scheduler import ReminderScheduler
from bot.runtime import Runtime
from bot.standins import MoonClerkStandIn
from bot.standins.stripe import API_KEY, StripeStandIn
from bot.stripe_events import RESOLUTION_PAYMENT_UPDATED, FetchedDispute, record_dispute
from providers.moonclerk import Customer as MoonClerkCustomer
from providers.moonclerk import MoonClerkClient
from providers.stripe import Dispute, Refund, StripeClient
from storage.cases import lock_or_create
from storage.db import session_scope
from storage.models import AuditEvent, Case, OutboxMessage, ProviderAction, StripeEvent
from storage.reminders import Reminder
from storage.states import ActionStatus, CaseState
from tests.clock import Clock
from tests.conftest import LiveServer, make_settings

SECRET = "whsec_test_current_stripe_endpoint"
OLD_SECRET = "whsec_test_previous_stripe_endpoint"
ESCALATION_CHANNEL = "C0ESCALATE"
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def stripe_api() -> Iterator[StripeStandIn]:
    with StripeStandIn() as standin:
        yield standin


@pytest.fixture(autouse=True)
def _fresh_knobs(stripe_api: StripeStandIn) -> Iterator[None]:
    yield
    stripe_api.clear_faults()
    stripe_api.refund_status = "succeeded"


@pytest.fixture
def server(runtime: Runtime, db_url: str, stripe_api: StripeStandIn) -> Iterator[LiveServer]:
    runtime.settings = make_settings(
        db_url, stripe_api_key=SecretStr(API_KEY), stripe_api_url=stripe_api.url, provider_timeout_seconds=5,
        stripe_webhook_secret=[SecretStr(SECRET), SecretStr(OLD_SECRET)])
    live = LiveServer(runtime).start()
    yield live
    live.stop()


def send(server: LiveServer, stripe_api: StripeStandIn, event: dict[str, Any] | bytes, *, secret: str = SECRET,
         timestamp: int | None = None) -> httpx.Response:
    return stripe_api.deliver(f"{server.url}/webhooks/stripe", event, secret, timestamp=timestamp)


def ok(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    return str(body["result"])


def refused(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False and body["error"] == error, body
    return str(body["detail"])


def count(engine: Engine, model: Any) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def case_by_key(engine: Engine, key: str) -> Case:
    with Session(engine) as session:
        case = session.exec(select(Case).where(Case.call_id == key)).one()
        return case


def audit(engine: Engine, case_id: int | None) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.case_id == case_id)
                                 .order_by(col(AuditEvent.id))).all())


def threads(engine: Engine, case_id: int | None) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id,
                                                             OutboxMessage.kind == "thread")
                                 .order_by(col(OutboxMessage.id))).all())


def reminders(engine: Engine, case_id: int | None) -> list[Reminder]:
    with Session(engine) as session:
        return list(session.exec(select(Reminder).where(Reminder.case_id == case_id)
                                 .order_by(col(Reminder.id))).all())


def in_days(days: float) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def weekday_afternoon(days: int) -> datetime:
    """15:00 in the test policy's New York business hours, on the first weekday at least `days` ahead:
    a deadline with all three reminders (the lead one four hours before, inside business hours)."""
    day = (datetime.now(UTC) + timedelta(days=days)).astimezone(NEW_YORK).date()
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.combine(day, time(15, 0), tzinfo=NEW_YORK).astimezone(UTC)


def new_dispute(stripe_api: StripeStandIn, *, due_by: datetime | None = None, status: str = "needs_response",
                amount_minor: int = 4999, reason: str = "fraudulent") -> tuple[dict[str, Any], dict[str, Any]]:
    customer = stripe_api.add_customer(email="dana@example.com", name="Dana Disputer")
    charge = stripe_api.add_charge(customer=customer["id"], amount_minor=amount_minor)
    dispute = stripe_api.add_dispute(charge["id"], reason=reason, status=status,
                                     due_by=due_by if due_by is not None else in_days(5))
    return charge, dispute


# -- the edge: signature, body, configuration ----------------------------------------------------
# These never reach the database beyond counting nothing was written: SQLite alone keeps the file fast.
edge = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@edge
def test_not_configured_is_a_404_that_says_what_is_missing(runtime: Runtime, db_url: str,
                                                           stripe_api: StripeStandIn) -> None:
    runtime.settings = make_settings(db_url, stripe_webhook_secret=[SecretStr(SECRET)])  # no STRIPE_API_KEY
    live = LiveServer(runtime).start()
    try:
        detail = refused(send(live, stripe_api, stripe_api.event("charge.dispute.created", {"id": "dp_1"})),
                         404, "not_configured")
    finally:
        live.stop()
    assert "STRIPE_API_KEY" in detail and "STRIPE_WEBHOOK_SECRET" in detail


@edge
def test_signatures_forged_stale_missing_and_rotated(server: LiveServer, stripe_api: StripeStandIn) -> None:
    event = stripe_api.event("some.future_event", {"id": "obj_1", "object": "thing"})
    before = len(stripe_api.requests)
    assert "does not match" in refused(send(server, stripe_api, event, secret="whsec_test_forged"),
                                       400, "invalid_signature")
    stale = int(datetime.now(UTC).timestamp()) - 301
    assert "old" in refused(send(server, stripe_api, event, timestamp=stale), 400, "invalid_signature")
    future = int(datetime.now(UTC).timestamp()) + 301
    assert "future" in refused(send(server, stripe_api, event, timestamp=future), 400, "invalid_signature")
    unsigned = httpx.post(f"{server.url}/webhooks/stripe", json=event, timeout=10)
    assert "missing" in refused(unsigned, 400, "invalid_signature")
    # While the secret rotates, a delivery signed with the previous one (or both) is accepted.
    assert ok(send(server, stripe_api, event, secret=OLD_SECRET)).startswith("ignored: some.future_event")
    both = stripe_api.deliver(f"{server.url}/webhooks/stripe", event, "whsec_test_other", extra_secrets=[SECRET])
    assert ok(both).startswith("ignored: ")
    assert len(stripe_api.requests) == before  # nothing was asked of Stripe
    assert count(server.runtime.engine, StripeEvent) == 0


@edge
def test_bodies_that_are_not_events(server: LiveServer, stripe_api: StripeStandIn) -> None:
    assert refused(send(server, stripe_api, b"{not json"), 400, "malformed_json")
    deep = b'{"id": "evt_deep", "type": "charge.dispute.created", "data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    assert refused(send(server, stripe_api, deep), 400, "malformed_json")
    nested = json.dumps({"id": "evt_nested", "type": "x", "created": 1,
                         "data": {"object": {"a": [[[[[[[[[[]]]]]]]]]]}}}).encode()
    assert ok(send(server, stripe_api, nested)).startswith("ignored: ")  # as deep as Stripe's own objects go
    too_nested = b'{"id": "evt_n", "type": "x", "created": 1, "data": {"object": ' + b"[" * 200 + b"]" * 200 + b"}}"
    assert refused(send(server, stripe_api, too_nested), 400, "malformed_json")
    assert refused(send(server, stripe_api, b"[1, 2]"), 400, "malformed_event")
    no_object = json.dumps({"id": "evt_x", "type": "refund.updated", "created": 1, "data": {}}).encode()
    assert refused(send(server, stripe_api, no_object), 400, "malformed_event")
    # Unsigned, a deep body is refused for its signature before anything parses it.
    unsigned = httpx.post(f"{server.url}/webhooks/stripe", content=deep, timeout=30,
                          headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"})
    assert refused(unsigned, 400, "invalid_signature")
    huge = b'{"id": "evt_big", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert "larger than" in refused(send(server, stripe_api, huge), 413, "body_too_large")
    assert count(server.runtime.engine, StripeEvent) == 0


@edge
def test_unknown_types_and_unknown_objects_are_200_ignored(server: LiveServer, stripe_api: StripeStandIn) -> None:
    calls = len(stripe_api.requests)
    assert ok(send(server, stripe_api, stripe_api.event("customer.created", {"id": "cus_x"}))).startswith(
        "ignored: customer.created is not an event")
    assert len(stripe_api.requests) == calls
    result = ok(send(server, stripe_api, stripe_api.event("charge.refunded", {"id": "ch_nosuchcharge"})))
    # Stripe answers an unknown charge with a 404, the stand-in with an empty list: ignored either way.
    assert result.startswith("ignored: ") and result.endswith("charge ch_nosuchcharge"), result
    assert ok(send(server, stripe_api, stripe_api.event("charge.dispute.created", {"id": "dp_nosuch"}))) == \
        "ignored: Stripe has no dispute dp_nosuch"
    assert ok(send(server, stripe_api, stripe_api.event("refund.updated", {"id": "re_../../v1/balance"}))) == \
        "ignored: the event names no Stripe object"
    assert count(server.runtime.engine, Case) == 0


@edge
def test_api_version_mismatch_is_logged_once(server: LiveServer, stripe_api: StripeStandIn,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.web.stripe")
    version = f"2019-01-01.{uuid.uuid4().hex[:8]}"  # warned once per process: a version no other test sent
    for _ in range(2):
        event = stripe_api.event("customer.updated", {"id": "cus_v"})
        event["api_version"] = version
        ok(send(server, stripe_api, event))
    warnings = [r for r in caplog.records if version in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


# -- disputes ------------------------------------------------------------------------------------

def test_a_dispute_opens_one_case_and_a_replay_changes_nothing(server: LiveServer,
                                                               stripe_api: StripeStandIn) -> None:
    engine = server.runtime.engine
    due = weekday_afternoon(5)
    charge, dispute = new_dispute(stripe_api, due_by=due)
    event = stripe_api.event("charge.dispute.created", dispute)
    assert ok(send(server, stripe_api, event)) == f"created case stripe:dispute:{dispute['id']}"
    case = case_by_key(engine, f"stripe:dispute:{dispute['id']}")
    assert (case.kind, case.is_billing, case.state) == ("dispute", True, CaseState.NEW)
    assert (case.amount, case.currency) == (Decimal("49.99"), "USD")
    assert case.dispute_reason == "Stripe chargeback: the cardholder says they did not authorise the payment"
    assert (case.stripe_charge_id, case.stripe_dispute_id, case.stripe_dispute_status) == (
        charge["id"], dispute["id"], "needs_response")
    assert case.stripe_customer_id == charge["customer"] and case.account_id == charge["customer"]
    assert (case.customer_name, case.email) == ("Dana Disputer", "dana@example.com")
    assert case.follow_up_deadline == due and case.next_step is not None
    assert case.next_step.startswith("Submit evidence in Stripe by ") and case.next_step.endswith(" UTC")
    assert case.match_status == "pending"  # the match worker looks the cus_ reference up in the directory
    assert "dispute or chargeback" in case.escalation_reasons and case.owner
    kinds = {r.kind for r in reminders(engine, case.id) if r.status == "pending"}
    assert {"lead", "due", "overdue", "escalation"} <= kinds
    [created] = [e for e in audit(engine, case.id) if e.action == "case.created"]
    assert created.actor == "stripe" and created.record == f"Stripe dispute {dispute['id']}"

    state = (count(engine, AuditEvent), count(engine, OutboxMessage), count(engine, Reminder),
             len(stripe_api.calls(f"/v1/disputes/{dispute['id']}")))
    assert ok(send(server, stripe_api, event)) == "duplicate: this event was already processed"
    assert (count(engine, AuditEvent), count(engine, OutboxMessage), count(engine, Reminder),
            len(stripe_api.calls(f"/v1/disputes/{dispute['id']}"))) == state
    with Session(engine) as session:
        row = session.get(StripeEvent, event["id"])
        assert row is not None and row.outcome == f"created case stripe:dispute:{dispute['id']}"
        assert row.type == "charge.dispute.created" and row.object_id == dispute["id"]


def test_deliveries_of_one_event_racing_each_other_act_once(server: LiveServer,
                                                            stripe_api: StripeStandIn) -> None:
    _, dispute = new_dispute(stripe_api)
    event = stripe_api.event("charge.dispute.created", dispute)
    with ThreadPoolExecutor(4) as pool:
        results = sorted(pool.map(lambda _: ok(send(server, stripe_api, event)), range(4)))
    assert results[0] == f"created case stripe:dispute:{dispute['id']}", results
    assert all(result.startswith("duplicate") for result in results[1:]), results
    engine = server.runtime.engine
    assert (count(engine, Case), count(engine, StripeEvent)) == (1, 1)
    case = case_by_key(engine, f"stripe:dispute:{dispute['id']}")
    assert len([e for e in audit(engine, case.id) if e.action == "case.created"]) == 1


def test_stripe_down_is_a_503_and_stripes_retry_processes_it(server: LiveServer,
                                                             stripe_api: StripeStandIn) -> None:
    _, dispute = new_dispute(stripe_api)
    event = stripe_api.event("charge.dispute.created", dispute)
    stripe_api.fail_next(f"/v1/disputes/{dispute['id']}", 503, headers={"Stripe-Should-Retry": "false"})
    assert refused(send(server, stripe_api, event), 503, "provider_unavailable") == \
        "could not confirm with Stripe; retry later"
    assert count(server.runtime.engine, StripeEvent) == 0 and count(server.runtime.engine, Case) == 0
    assert ok(send(server, stripe_api, event)).startswith("created case ")


def test_a_database_failure_is_a_503(server: LiveServer, stripe_api: StripeStandIn) -> None:
    engine = server.runtime.engine
    _, dispute = new_dispute(stripe_api)
    event = stripe_api.event("charge.dispute.created", dispute)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_events RENAME TO audit_events_gone"))
    try:
        assert refused(send(server, stripe_api, event), 503, "storage_unavailable") == \
            "the event could not be stored; retry later"
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE audit_events_gone RENAME TO audit_events"))
    assert count(engine, StripeEvent) == 0  # rolled back with the effects
    assert ok(send(server, stripe_api, event)).startswith("created case ")


def test_closed_before_created_creates_and_closes_then_created_changes_nothing(
    server: LiveServer, stripe_api: StripeStandIn,
) -> None:
    engine = server.runtime.engine
    _, dispute = new_dispute(stripe_api)
    created = stripe_api.event("charge.dispute.created", dispute)
    won = stripe_api.set_dispute(dispute["id"], status="won")
    key = f"stripe:dispute:{dispute['id']}"
    assert ok(send(server, stripe_api, stripe_api.event("charge.dispute.closed", won))) == \
        f"created and closed case {key} (dispute won)"
    case = case_by_key(engine, key)
    assert (case.state, case.state_by, case.stripe_dispute_status) == (CaseState.DONE, "stripe", "won")
    assert (case.resolution, case.resolution_reference) == ("other", dispute["id"])
    assert case.resolution_note == "Stripe dispute won: the payment stands"
    assert not [r for r in reminders(engine, case.id) if r.status == "pending"]  # no reminder, no page
    [closed] = [e for e in audit(engine, case.id) if e.action == "stripe_dispute.closed"]
    assert closed.outcome == "won" and closed.actor == "stripe"
    [reply] = threads(engine, case.id)
    assert "won" in (reply.text or "")

    events, outbox = count(engine, AuditEvent), count(engine, OutboxMessage)
    assert ok(send(server, stripe_api, created)).startswith(f"unchanged: case {key}")  # the late `created`
    # A delivery that read the dispute before it was decided, committing after: not recorded over "won".
    with StripeClient(API_KEY, stripe_api.url) as client:
        earlier = Dispute(**{**client.get_dispute(dispute["id"]).__dict__, "status": "needs_response"})
    with session_scope(engine) as session:
        assert record_dispute(session, server.runtime.policy, FetchedDispute(earlier, None, None),
                              datetime.now(UTC)).startswith(f"unchanged: dispute {dispute['id']} was already won")
    assert (count(engine, AuditEvent), count(engine, OutboxMessage), count(engine, Case)) == (events, outbox, 1)
    assert case_by_key(engine, key).stripe_dispute_status == "won"


def test_updated_before_created_and_lost_closes_with_outcome_lost(server: LiveServer,
                                                                   stripe_api: StripeStandIn) -> None:
    engine = server.runtime.engine
    _, dispute = new_dispute(stripe_api)
    created = stripe_api.event("charge.dispute.created", dispute)
    reviewing = stripe_api.set_dispute(dispute["id"], status="under_review")
    key = f"stripe:dispute:{dispute['id']}"
    assert ok(send(server, stripe_api, stripe_api.event("charge.dispute.updated", reviewing))) == f"created case {key}"
    case = case_by_key(engine, key)
    assert case.stripe_dispute_status == "under_review" and case.follow_up_done_at is not None
    assert not [r for r in reminders(engine, case.id) if r.status == "pending" and r.kind in ("lead", "due")]
    assert ok(send(server, stripe_api, created)).startswith("unchanged: ")

    # The deadline moves (Stripe asks for more evidence): the reminders follow, one reply says so.
    later = in_days(9)
    again = stripe_api.set_dispute(dispute["id"], status="needs_response", due_by=later)
    assert ok(send(server, stripe_api, stripe_api.event("charge.dispute.updated", again))) == \
        f"updated case {key}: dispute needs_response"
    case = case_by_key(engine, key)
    assert case.follow_up_deadline == later and case.follow_up_done_at is None
    assert max(r.due_at for r in reminders(engine, case.id) if r.status == "pending" and r.kind == "due") == later
    [reply] = threads(engine, case.id)
    assert "now needs a response (was under review" in (reply.text or "")
    assert "Dana" not in (reply.text or "")  # only Stripe's facts, never the customer's details

    lost = stripe_api.set_dispute(dispute["id"], status="lost")
    assert ok(send(server, stripe_api, stripe_api.event("charge.dispute.closed", lost))) == \
        f"closed case {key} (dispute lost)"
    case = case_by_key(engine, key)
    assert case.state == CaseState.DONE and case.resolution_note is not None and "lost" in case.resolution_note
    [closed] = [e for e in audit(engine, case.id) if e.action == "stripe_dispute.closed"]
    assert closed.outcome == "lost"
    assert not [r for r in reminders(engine, case.id) if r.status == "pending"]


def test_the_match_worker_finds_the_moonclerk_customer_by_its_stripe_reference(
    server: LiveServer, stripe_api: StripeStandIn,
) -> None:
    # MoonClerk's sample customer 523425 (a VIP in the test policy) carries cus_4SOZuEc4cxP5L7. The Stripe
    # customer has no other detail: the reference alone decides, confirmed by a MoonClerk read. (A Stripe
    # email that differs from MoonClerk's would send it to review instead: never a guess.)
    engine = server.runtime.engine
    customer = stripe_api.add_customer("cus_4SOZuEc4cxP5L7")
    charge = stripe_api.add_charge(customer=customer["id"], amount_minor=1500)
    dispute = stripe_api.add_dispute(charge["id"], reason="product_not_received", due_by=in_days(6))
    ok(send(server, stripe_api, stripe_api.event("charge.dispute.created", dispute)))
    case = case_by_key(engine, f"stripe:dispute:{dispute['id']}")
    assert (case.match_status, case.moonclerk_customer_id) == ("pending", None)
    with MoonClerkStandIn() as moonclerk, MoonClerkClient(moonclerk.api_key, moonclerk.url) as client:
        assert case.id is not None
        outcome = match_case(engine, client, case.id, None, datetime.now(UTC), policy=server.runtime.policy)
    assert outcome.status == "matched", outcome
    case = case_by_key(engine, case.call_id)
    assert case.moonclerk_customer_id == 523425 and case.is_vip
    assert "VIP payment blocker" in case.escalation_reasons


def test_a_dispute_joins_the_open_case_of_its_charge(server: LiveServer, stripe_api: StripeStandIn) -> None:
    engine = server.runtime.engine
    charge, dispute = new_dispute(stripe_api)
    with session_scope(engine) as session:
        case, _ = lock_or_create(session, "call-refund-request-1")
        case.kind, case.is_billing, case.payment_id = "refund", True, charge["id"]
        case.amount, case.currency = Decimal("49.99"), "USD"
        session.add(case)
    result = ok(send(server, stripe_api, stripe_api.event("charge.dispute.created", dispute)))
    assert result == "joined case call-refund-request-1: dispute needs_response"
    case = case_by_key(engine, "call-refund-request-1")
    assert (case.kind, case.stripe_dispute_id, case.stripe_charge_id) == ("refund", dispute["id"], charge["id"])
    assert "dispute or chargeback" in case.escalation_reasons  # the dispute pages even on a refund case
    assert count(engine, Case) == 1
    [joined] = threads(engine, case.id)
    assert "disputed this charge" in (joined.text or "")
    lost = stripe_api.set_dispute(dispute["id"], status="lost")
    assert ok(send(server, stripe_api, stripe_api.event("charge.dispute.closed", lost))) == \
        "updated case call-refund-request-1: dispute lost"
    case = case_by_key(engine, "call-refund-request-1")
    assert case.state == CaseState.NEW and case.stripe_dispute_status == "lost"
    assert "do not refund the charge as well" in (threads(engine, case.id)[-1].text or "")


def test_a_dispute_deadline_drives_reminders_and_one_page(server: LiveServer, stripe_api: StripeStandIn) -> None:
    engine, policy = server.runtime.engine, server.runtime.policy
    due = weekday_afternoon(3)
    _, dispute = new_dispute(stripe_api, due_by=due)
    ok(send(server, stripe_api, stripe_api.event("charge.dispute.created", dispute)))
    case = case_by_key(engine, f"stripe:dispute:{dispute['id']}")
    planned = {r.kind: r.due_at for r in reminders(engine, case.id) if r.status == "pending"}
    assert planned["due"] == due and planned["lead"] < due < planned["overdue"]

    clock = Clock(datetime.now(UTC) + timedelta(minutes=2))  # past the wait for a card to link to
    settings = FireSettings(policy=policy, escalation_channel=ESCALATION_CHANNEL, finance_channel="C0FINANCE")
    scheduler = ReminderScheduler(engine, settings, clock=clock, worker_id="w-stripe")
    scheduler.run_once()
    # An update of the dispute (funds withdrawn) pages nothing new.
    ok(send(server, stripe_api, stripe_api.event("charge.dispute.funds_withdrawn", dispute)))
    for kind in ("lead", "due", "overdue"):
        clock.now = planned[kind] + timedelta(seconds=1)
        scheduler.run_once()
    with Session(engine) as session:
        posted = list(session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case.id)).all())
    pages = [m for m in posted if m.dedup_key.startswith(f"message:{case.id}:escalation:")]
    assert len(pages) == 1 and pages[0].channel == ESCALATION_CHANNEL
    assert "dispute or chargeback" in (pages[0].text or "")
    fired = [m for m in posted if m.kind == "thread" and ":reminder:" in m.dedup_key]
    assert len(fired) == 3
    sent = {r.kind for r in reminders(engine, case.id) if r.status == "sent"}
    assert {"lead", "due", "overdue", "escalation"} <= sent


# -- refunds -------------------------------------------------------------------------------------

def refund_case(engine: Engine, call_id: str, *, status: ActionStatus, reference: str | None,
                charge: str) -> tuple[int, int]:
    """A refund case and its ledger row, as bot.actions.refunds leaves them."""
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        case, _ = lock_or_create(session, call_id)
        case.kind, case.is_billing, case.stripe_charge_id, case.state = "refund", True, charge, CaseState.APPROVED
        case.amount, case.currency = Decimal("30.00"), "USD"
        session.add(case)
        session.flush()
        assert case.id is not None
        row, created = ledger.claim(session, case_id=case.id, call_id=call_id, action="refund_stripe",
                                    provider="stripe", user="U0APPROVER1", status=status, amount=Decimal("30.00"),
                                    currency="USD", params={"charge": charge}, now=now)
        assert created and row.id is not None
        ledger.set_values(session, row.id, provider_reference=reference)
        return case.id, row.id


def make_refund(stripe_api: StripeStandIn, call_id: str | None, *, status: str = "pending") -> tuple[str, str]:
    charge = stripe_api.add_charge(customer=stripe_api.add_customer()["id"], amount_minor=5000)
    stripe_api.refund_status = status
    with StripeClient(API_KEY, stripe_api.url) as client:
        refund = client.create_refund(charge["id"], Decimal("30.00"), "USD", "requested_by_customer",
                                      idempotency_key=f"{call_id or 'x'}:refund_stripe:{charge['id']}",
                                      metadata={"dialnexa_call_id": call_id} if call_id else {})
    return charge["id"], refund.id


def ledger_row(engine: Engine, row_id: int) -> ProviderAction:
    with Session(engine) as session:
        row = session.get(ProviderAction, row_id)
        assert row is not None
        return row


def test_a_refund_follows_from_pending_to_succeeded(server: LiveServer, stripe_api: StripeStandIn) -> None:
    engine = server.runtime.engine
    charge, refund_id = make_refund(stripe_api, "call-refund-ok")
    case_id, row_id = refund_case(engine, "call-refund-ok", status=ActionStatus.PENDING, reference=refund_id,
                                  charge=charge)
    assert ok(send(server, stripe_api, stripe_api.event("refund.created", stripe_api.refund(refund_id)))) == \
        f"unchanged: refund {refund_id} is pending"
    done = stripe_api.set_refund(refund_id, status="succeeded")
    event = stripe_api.event("refund.updated", done)
    assert ok(send(server, stripe_api, event)) == f"refund {refund_id}: pending → succeeded"
    row = ledger_row(engine, row_id)
    assert (row.status, row.provider_reference, row.error) == ("succeeded", refund_id, None)
    case = case_by_key(engine, "call-refund-ok")
    assert (case.action_label, case.action_status, case.action_reference) == ("refund_stripe", "succeeded", refund_id)
    assert (case.state, case.state_by) == (CaseState.DONE, "stripe")
    [succeeded] = [e for e in audit(engine, case_id) if e.action == "refund_stripe.succeeded"]
    assert succeeded.actor == "stripe" and succeeded.detail["from"] == "pending"
    [reply] = threads(engine, case_id)
    assert f"`{refund_id}` succeeded: 30.00 USD" in (reply.text or "").replace("$", "")
    # The same state again, by a replay, another event or the runner itself: nothing more.
    assert ok(send(server, stripe_api, event)).startswith("duplicate")
    assert ok(send(server, stripe_api, stripe_api.event("charge.refunded", stripe_api.charge(charge)))) == \
        f"unchanged: refund {refund_id} is succeeded"
    assert follow_refund(engine, refund_from(stripe_api, refund_id), datetime.now(UTC)).startswith("unchanged")
    assert len(threads(engine, case_id)) == 1


def refund_from(stripe_api: StripeStandIn, refund_id: str) -> Refund:
    with StripeClient(API_KEY, stripe_api.url) as client:
        return client.get_refund(refund_id)


def test_a_lost_answer_is_found_by_metadata_and_a_failure_follows(server: LiveServer,
                                                                  stripe_api: StripeStandIn) -> None:
    engine = server.runtime.engine
    charge, refund_id = make_refund(stripe_api, "call-refund-lost")
    case_id, row_id = refund_case(engine, "call-refund-lost", status=ActionStatus.UNKNOWN, reference=None,
                                  charge=charge)
    assert ok(send(server, stripe_api, stripe_api.event("charge.refunded", stripe_api.charge(charge)))) == \
        f"refund {refund_id}: unknown → pending"
    assert ledger_row(engine, row_id).provider_reference == refund_id
    assert case_by_key(engine, "call-refund-lost").state == CaseState.APPROVED
    failed = stripe_api.set_refund(refund_id, status="failed", failure_reason="expired_or_canceled_card")
    assert ok(send(server, stripe_api, stripe_api.event("refund.failed", failed))) == \
        f"refund {refund_id}: pending → failed"
    row = ledger_row(engine, row_id)
    assert row.status == "failed" and row.error is not None and "expired or was cancelled" in row.error
    case = case_by_key(engine, "call-refund-lost")
    assert (case.state, case.action_status) == (CaseState.FAILED, "failed")
    assert "the card has expired or was cancelled" in (threads(engine, case_id)[-1].text or "")
    # Final: a stale "pending" read (an older event fetched before the failure) never moves it back.
    stale = Refund(**{**refund_from(stripe_api, refund_id).__dict__, "status": "pending"})
    assert follow_refund(engine, stale, datetime.now(UTC)) == \
        f"unchanged: refund {refund_id} is pending, the ledger keeps failed"


def test_refunds_finance_desk_did_not_make_or_an_earlier_attempts_are_ignored(
    server: LiveServer, stripe_api: StripeStandIn,
) -> None:
    engine = server.runtime.engine
    _, foreign = make_refund(stripe_api, None)
    assert ok(send(server, stripe_api, stripe_api.event("refund.updated", stripe_api.refund(foreign)))) == \
        f"ignored: refund {foreign} was not made by finance-desk"
    charge, refund_id = make_refund(stripe_api, "call-refund-retry")
    _, row_id = refund_case(engine, "call-refund-retry", status=ActionStatus.RUNNING, reference=None, charge=charge)
    older = Refund(**{**refund_from(stripe_api, refund_id).__dict__, "status": "failed"})
    assert follow_refund(engine, older, datetime.now(UTC), latest=False).startswith("ignored: ")
    assert ledger_row(engine, row_id).status == "running"
    with session_scope(engine) as session:
        ledger.set_values(session, row_id, provider_reference="re_previousattempt")
    previous = Refund(**{**older.__dict__, "id": "re_previousattempt"})
    assert "a retry is running" in follow_refund(engine, previous, datetime.now(UTC))
    assert follow_refund(engine, refund_from(stripe_api, refund_id), datetime.now(UTC)) == \
        f"refund {refund_id}: running → pending"


# -- failed invoice payments ---------------------------------------------------------------------

def test_a_failed_invoice_payment_creates_then_updates_one_case(server: LiveServer,
                                                                stripe_api: StripeStandIn) -> None:
    engine = server.runtime.engine
    customer = stripe_api.add_customer(email="ivy@example.com", name="Ivy Invoice")
    subscription = stripe_api.add_subscription(customer["id"], status="past_due")
    invoice = stripe_api.add_invoice(customer["id"], amount_minor=2500, subscription=subscription["id"],
                                     attempt_count=1)
    key = f"stripe:invoice:{invoice['id']}"
    assert ok(send(server, stripe_api, stripe_api.event("invoice.payment_failed", invoice))) == f"created case {key}"
    case = case_by_key(engine, key)
    assert (case.kind, case.is_billing, case.payment_status) == ("failed_renewal", True, "failed")
    assert (case.amount, case.currency, case.invoice_number) == (Decimal("25.00"), "USD", invoice["number"])
    assert case.payment_platform_url == invoice["hosted_invoice_url"] and case.subscription_id == subscription["id"]
    assert (case.customer_name, case.email, case.stripe_customer_id) == ("Ivy Invoice", "ivy@example.com",
                                                                         customer["id"])
    assert "failed renewal" in case.escalation_reasons

    second = stripe_api.add_invoice(customer["id"], amount_minor=2500, subscription=subscription["id"],
                                    attempt_count=2, id=invoice["id"], number=invoice["number"])
    assert ok(send(server, stripe_api, stripe_api.event("invoice.payment_failed", second))) == \
        f"updated open case {key}"
    assert count(engine, Case) == 1
    [reply] = threads(engine, case.id)
    assert "(attempt 2): 25.00 USD still due" in (reply.text or "").replace("$", "")
    # Paid meanwhile: a late event about the failure changes nothing.
    stripe_api.add_invoice(customer["id"], status="paid", amount_minor=2500, id=invoice["id"],
                           number=invoice["number"])
    assert ok(send(server, stripe_api, stripe_api.event("invoice.payment_failed", second))).startswith(
        f"ignored: invoice {invoice['id']} is paid now")


def test_a_paid_invoice_closes_its_failed_renewal_case(server: LiveServer, stripe_api: StripeStandIn) -> None:
    # stripe_events sits below bot.decisions, so it names the resolution by its stored value.
    assert Resolution.PAYMENT_UPDATED.value == RESOLUTION_PAYMENT_UPDATED
    engine = server.runtime.engine
    customer = stripe_api.add_customer(email="pat@example.com", name="Pat Paid")
    invoice = stripe_api.add_invoice(customer["id"], amount_minor=4200, attempt_count=1)
    key = f"stripe:invoice:{invoice['id']}"
    # Still open: "paid" is not believed from the event, only from Stripe's own answer.
    assert ok(send(server, stripe_api, stripe_api.event("invoice.paid", invoice))) == \
        f"ignored: invoice {invoice['id']} is open now, not paid"
    assert ok(send(server, stripe_api, stripe_api.event("invoice.payment_failed", invoice))) == f"created case {key}"

    paid = stripe_api.add_invoice(customer["id"], status="paid", amount_minor=4200, id=invoice["id"],
                                  number=invoice["number"])
    assert ok(send(server, stripe_api, stripe_api.event("invoice.paid", paid))) == f"closed case {key}: invoice paid"
    case = case_by_key(engine, key)
    assert (case.state, case.state_by, case.payment_status) == ("done", "stripe", "paid")
    assert (case.resolution, case.resolution_reference) == ("payment_updated", invoice["id"])
    assert case.next_reminder_at is None
    [closed] = [e for e in audit(engine, case.id) if e.action == "stripe_invoice.paid"]
    assert (closed.actor, closed.outcome, closed.target) == ("stripe", "paid", "stripe")
    replies = [(t.text or "").replace("$", "") for t in threads(engine, case.id)]
    assert any("paid (42.00 USD). The case is closed." in text for text in replies)
    # Another delivery of the news (a new event ID) finds nothing open to close.
    assert ok(send(server, stripe_api, stripe_api.event("invoice.paid", paid))) == \
        f"ignored: no open failed-renewal case for invoice {invoice['id']}"


def test_a_failed_invoice_joins_the_moonclerk_customers_open_case(server: LiveServer,
                                                                  stripe_api: StripeStandIn) -> None:
    engine = server.runtime.engine
    customer = stripe_api.add_customer(email="mo@example.com", name="Mo Clerk")
    directory.write_through(engine, [MoonClerkCustomer.model_validate(
        {"id": 777001, "name": "Mo Clerk", "email": "mo@example.com", "customer_reference": customer["id"]})])
    with session_scope(engine) as session:
        case, _ = lock_or_create(session, "moonclerk:777001:2026-12-01")
        case.kind, case.is_billing, case.moonclerk_customer_id = "failed_renewal", True, 777001
        session.add(case)
    invoice = stripe_api.add_invoice(customer["id"], amount_minor=1200, attempt_count=1)
    assert ok(send(server, stripe_api, stripe_api.event("invoice.payment_failed", invoice))) == \
        "updated open case moonclerk:777001:2026-12-01"
    case = case_by_key(engine, "moonclerk:777001:2026-12-01")
    assert (case.stripe_customer_id, case.invoice_number, case.amount) == (customer["id"], invoice["number"],
                                                                          Decimal("12.00"))
    assert count(engine, Case) == 1
    [updated] = [e for e in audit(engine, case.id) if e.action == "case.updated"]
    assert updated.actor == "stripe" and updated.detail["moonclerk_customers"] == [777001]
