"""The card's Stripe refund: the charge listed (never guessed), gated, made at most once per call.

Real HTTP throughout: Slack requests signed as Slack signs them, MoonClerk, Slack and Stripe on local
stand-ins (Stripe's one server shared by the module; each test has its own customer and charges)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.runtime import Runtime
from bot.standins.stripe import StripeStandIn
from storage.models import AuditEvent, Case, ProviderAction
from tests.blockkit import assert_valid_view
from tests.slackapp import SlackApp
from tests.test_actions import at_once

_numbers = itertools.count(1)
# Gates and the modal's contents touch no storage race: SQLite only. Everything about "exactly once"
# (double click, two approvers, restarts, retries) runs on PostgreSQL too.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def stripe() -> Iterator[StripeStandIn]:
    standin = StripeStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def app(runtime: Runtime, db_url: str, stripe: StripeStandIn) -> Iterator[SlackApp]:
    application = SlackApp(runtime, db_url, stripe=stripe, provider_timeout=2.0)
    yield application
    application.stop()


class Customer:
    """A caller who is a MoonClerk customer whose Stripe customer holds charges."""

    def __init__(self, app: SlackApp, stripe: StripeStandIn) -> None:
        n = next(_numbers)
        self.stripe_id = stripe.add_customer(email=f"payer{n}@example.com", name=f"Payer {n}")["id"]
        self.moonclerk_id = int(app.moonclerk.add_customer(
            email=f"payer{n}@example.com", name=f"Payer {n}", customer_reference=self.stripe_id)["id"])
        self.n = n


def refund_call(customer: Customer, *, amount: str = "49.00", kind: str = "refund_request",
                **analysis: Any) -> dict[str, Any]:
    return {"event_type": "call_ended", "payload": {"call": {
        "id": f"call_refund_{customer.n}", "status": "completed", "from_number": "14155550142",
        "summary": "The customer was charged for a cancelled plan and asked for the money back.",
        "post_call_analysis": {"billing_intent": kind, "moonclerk_customer_id": customer.moonclerk_id,
                               "amount": amount, "currency": "USD", "refund_reason": "cancelled before renewal",
                               **analysis}}}}


def ledger(app: SlackApp) -> list[ProviderAction]:
    with Session(app.runtime.engine) as session:
        return list(session.exec(select(ProviderAction)).all())


def refunds_of(stripe: StripeStandIn, charge_id: str) -> list[dict[str, Any]]:
    return [r for r in stripe.refunds if r["charge"] == charge_id]


def open_modal(app: SlackApp, case: Case, user: str = "U0APPROVER1") -> dict[str, Any]:
    """Click the card's refund button; the loading modal opens, then Stripe's charges replace it."""
    assert app.click(case, "refund_stripe", user).status_code == 200
    loading = app.opened_view()
    assert "Looking up the charge" in json.dumps(loading) and "submit" not in loading
    update = app.slack.wait_until(lambda: app.slack.calls("views.update") or None, 10)[-1]
    body = update.json or update.form or {}
    view = body["view"]
    view = json.loads(view) if isinstance(view, str) else dict(view)
    assert_valid_view(view)
    return view


def values(charge_id: str, amount: str = "49.00", reason: str = "requested_by_customer") -> dict[str, Any]:
    return {"charge": charge_id, "amount": amount, "reason": reason}


def test_an_approved_refund_runs_once_with_the_call_as_its_key(app: SlackApp, stripe: StripeStandIn) -> None:
    customer = Customer(app, stripe)
    charge = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd")
    case = app.deliver(refund_call(customer))
    assert "refund_stripe" in json.dumps(app.card(case))
    view = open_modal(app, case)
    text = json.dumps(view, ensure_ascii=False)
    # One candidate: preselected; only the card's brand and last 4 are shown.
    assert charge["id"] in text and "····4242" in text and "initial_option" in text
    assert app.submit(view, "U0APPROVER1", values(charge["id"])).status_code == 200
    done = app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    [made] = refunds_of(stripe, charge["id"])
    assert made["amount"] == 4900 and made["metadata"]["dialnexa_call_id"] == case.call_id
    assert made["metadata"]["approved_by"] == "U0APPROVER1"
    assert made["metadata"]["finance_desk_case_id"] == str(case.id)
    post = [r for r in stripe.calls("/v1/refunds") if r.method == "POST"][-1]
    assert post.headers["idempotency-key"] == f"{case.call_id}:refund_stripe"
    [row] = ledger(app)
    assert row.status == "succeeded" and row.provider_reference == made["id"] and row.currency == "USD"
    assert done.state == "done" and done.action_reference == made["id"]
    app.slack.wait_until(lambda: any("Stripe refund" in t and made["id"] in t for t in app.thread_texts(done))
                         or None, 10)
    # A second submit (double click, Slack retry) makes nothing more.
    app.submit(view, "U0APPROVER2", values(charge["id"]))
    app.slack.wait_until(lambda: len(app.slack.calls("chat.postEphemeral")) >= 2 or None, 10)
    assert len(refunds_of(stripe, charge["id"])) == 1


def test_two_approvers_at_once_make_one_refund(app: SlackApp, stripe: StripeStandIn) -> None:
    customer = Customer(app, stripe)
    charge = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd")
    case = app.deliver(refund_call(customer))
    view = open_modal(app, case)
    stripe.delay("/v1/refunds", 0.3)
    statuses = at_once(lambda user: app.submit(view, user, values(charge["id"])).status_code,
                       ["U0APPROVER1", "U0APPROVER2"])
    assert statuses == [200, 200]
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    app.slack.wait_until(lambda: len(app.slack.calls("chat.postEphemeral")) >= 2 or None, 10)
    assert len(refunds_of(stripe, charge["id"])) == 1 and len(ledger(app)) == 1


@sqlite_only
def test_several_charges_are_listed_and_none_is_guessed(app: SlackApp, stripe: StripeStandIn) -> None:
    customer = Customer(app, stripe)
    first = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd")
    second = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd", brand="mastercard",
                               last4="4444")
    stripe.add_charge(customer=customer.stripe_id, amount_minor=1000, currency="usd")  # another amount
    case = app.deliver(refund_call(customer, kind="duplicate_charge", refund_reason="charged twice"))
    view = open_modal(app, case)
    text = json.dumps(view, ensure_ascii=False)
    assert first["id"] in text and second["id"] in text and "····4444" in text
    charge_block = next(b for b in view["blocks"] if b.get("block_id") == "charge")
    assert len(charge_block["element"]["options"]) == 2 and "initial_option" not in charge_block["element"]
    reason_block = next(b for b in view["blocks"] if b.get("block_id") == "reason")
    assert reason_block["element"]["initial_option"]["value"] == "duplicate"


@sqlite_only
def test_gates_refuse_or_route_before_stripe_is_asked(app: SlackApp, stripe: StripeStandIn) -> None:
    customer = Customer(app, stripe)
    stranger = stripe.add_customer(email="someone@example.com")["id"]
    foreign = stripe.add_charge(customer=stranger, amount_minor=4900, currency="usd")
    mine = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd", amount_refunded=4000)
    old = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd",
                            created=datetime.now(UTC) - timedelta(days=200))
    case = app.deliver(refund_call(customer))
    view = open_modal(app, case)
    posts_before = len([r for r in stripe.calls("/v1/refunds") if r.method == "POST"])

    app.submit(view, "U0APPROVER1", values(mine["id"], amount="49.00"))
    assert "still refundable" in app.slack.wait_until(
        lambda: [t for t in ephemerals(app) if "refundable" in t] or None, 10)[-1]
    app.submit(view, "U0APPROVER1", values(old["id"]))
    assert "older than 180 days" in app.slack.wait_until(
        lambda: [t for t in ephemerals(app) if "180 days" in t] or None, 10)[-1]
    app.submit(view, "U0STRANGER", values(mine["id"], amount="9.00"))
    app.submit(view, "U0APPROVER1", values(foreign["id"]))
    review = app.wait(case.call_id, lambda c: c.state == "in_review")
    assert review.action_status is None
    assert [r for r in stripe.calls("/v1/refunds") if r.method == "POST"][posts_before:] == []
    with Session(app.runtime.engine) as session:
        outcomes = session.exec(select(AuditEvent.action).where(AuditEvent.case_id == case.id)).all()
    assert outcomes.count("action.refused") >= 2 and "case.routed_to_review" in outcomes
    # A senior approver may refund the old charge.
    app.submit(view, "U0SENIOR", values(old["id"]))
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    assert len(refunds_of(stripe, old["id"])) == 1


def ephemerals(app: SlackApp) -> list[str]:
    return [json.dumps(c.json or c.form or {}) for c in app.slack.calls("chat.postEphemeral")]


@sqlite_only
def test_a_disputed_charge_is_refused_with_the_dispute_path(app: SlackApp, stripe: StripeStandIn) -> None:
    customer = Customer(app, stripe)
    charge = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd")
    stripe.add_dispute(charge["id"], status="needs_response", due_by=datetime.now(UTC) + timedelta(days=5))
    case = app.deliver(refund_call(customer))
    view = open_modal(app, case)
    app.submit(view, "U0APPROVER1", values(charge["id"]))
    text = app.slack.wait_until(lambda: [t for t in ephemerals(app) if "disputed" in t] or None, 10)[-1]
    assert "dispute path" in text and refunds_of(stripe, charge["id"]) == []


def test_a_timeout_then_a_retry_reuses_the_key_and_makes_one_refund(app: SlackApp, stripe: StripeStandIn) -> None:
    customer = Customer(app, stripe)
    charge = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd")
    case = app.deliver(refund_call(customer))
    view = open_modal(app, case)
    # Stripe makes the refund and the answer is lost: the SDK retries under the same key and gets the replay.
    stripe.lose_next_refund_response()
    app.submit(view, "U0APPROVER1", values(charge["id"]))
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    keys = {r.headers["idempotency-key"] for r in stripe.calls("/v1/refunds")
            if r.method == "POST" and r.headers.get("idempotency-key", "").startswith(case.call_id)}
    assert keys == {f"{case.call_id}:refund_stripe"}
    assert len(refunds_of(stripe, charge["id"])) == 1


def test_a_refund_left_running_by_a_dead_process_is_reconciled_once(app: SlackApp, stripe: StripeStandIn) -> None:
    from bot.slack.service import action_context, recover_provider_calls

    customer = Customer(app, stripe)
    charge = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd")
    case = app.deliver(refund_call(customer))
    view = open_modal(app, case)
    # Every attempt fails at Stripe's door after the refund is made: the outcome is unknown.
    stripe.lose_next_refund_response(times=3)
    app.submit(view, "U0APPROVER1", values(charge["id"]))
    unknown = app.wait(case.call_id, lambda c: c.action_status == "unknown")
    assert len(refunds_of(stripe, charge["id"])) == 1
    card = app.slack.wait_until(
        lambda: ((c := app.card(unknown)) and "Reconcile with Stripe" in json.dumps(c) and c) or None, 10)
    assert "retry_action" not in json.dumps(card)
    recover_provider_calls(app.runtime, action_context(app.runtime, app.service.client))()  # nothing running
    app.click(unknown, "reconcile_action", "U0APPROVER2", block_id="ledger:refund_stripe")
    done = app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    [made] = refunds_of(stripe, charge["id"])
    assert done.action_reference == made["id"]


def test_reconcile_resends_with_the_same_key_when_stripe_lists_nothing(app: SlackApp, stripe: StripeStandIn) -> None:
    from bot.actions import ledger as ledger_rows
    from bot.slack.service import action_context, recover_provider_calls
    from storage.db import session_scope

    customer = Customer(app, stripe)
    charge = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd")
    case = app.deliver(refund_call(customer))
    assert case.id is not None
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with session_scope(app.runtime.engine) as session:
        # What a process that died before its request left leaves behind.
        ledger_rows.claim(session, case_id=case.id, call_id=case.call_id, action="refund_stripe", provider="stripe",
                          user="U0APPROVER1", status="running", amount=Decimal("49.00"), currency="USD",
                          params={"charge": charge["id"], "reason": "requested_by_customer",
                                  "idempotency_key": f"{case.call_id}:refund_stripe",
                                  "key_used_at": an_hour_ago.isoformat()}, now=an_hour_ago)
    recover_provider_calls(app.runtime, action_context(app.runtime, app.service.client))()
    unknown = app.wait(case.call_id, lambda c: c.action_status == "unknown")
    app.click(unknown, "reconcile_action", "U0APPROVER1", block_id="ledger:refund_stripe")
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    [made] = refunds_of(stripe, charge["id"])
    assert made["metadata"]["dialnexa_call_id"] == case.call_id


def test_a_failed_refund_says_why_and_is_retried_under_a_new_key(app: SlackApp, stripe: StripeStandIn) -> None:
    customer = Customer(app, stripe)
    charge = stripe.add_charge(customer=customer.stripe_id, amount_minor=4900, currency="usd")
    case = app.deliver(refund_call(customer))
    view = open_modal(app, case)
    stripe.reject_next_refund("balance_insufficient")
    app.submit(view, "U0APPROVER1", values(charge["id"]))
    failed = app.wait(case.call_id, lambda c: c.action_status == "failed")
    assert "top up the Stripe balance" in (failed.action_error or "") and failed.state == "failed"
    app.slack.wait_until(lambda: "retry_action" in json.dumps(app.card(failed)) or None, 10)
    app.click(failed, "retry_action", "U0APPROVER2", block_id="ledger:refund_stripe")
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    keys = [r.headers["idempotency-key"] for r in stripe.calls("/v1/refunds") if r.method == "POST"
            and r.headers.get("idempotency-key", "").startswith(case.call_id)]
    assert keys[0] == f"{case.call_id}:refund_stripe" and keys[-1] == f"{case.call_id}:refund_stripe:retry2"
    assert len(refunds_of(stripe, charge["id"])) == 1


@sqlite_only
def test_a_case_needing_approval_shows_no_refund_until_approved(app: SlackApp, stripe: StripeStandIn) -> None:
    customer = Customer(app, stripe)
    charge = stripe.add_charge(customer=customer.stripe_id, amount_minor=60000, currency="usd")
    case = app.deliver(refund_call(customer, amount="600.00", approval_required=True))
    assert "refund_stripe" not in json.dumps(app.card(case))
    app.click(case, "refund_stripe", "U0SENIOR")  # a stale card's button: refused, nothing opens
    assert "approval first" in app.ephemeral_for("refund_stripe-U0SENIOR")
    approved = app.approve(case, "U0SENIOR")
    view = open_modal(app, approved, "U0SENIOR")
    app.submit(view, "U0SENIOR", values(charge["id"], amount="600.00"))
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    assert len(refunds_of(stripe, charge["id"])) == 1
