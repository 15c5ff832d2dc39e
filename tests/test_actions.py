"""Approver clicks run MoonClerk and Poof actions: authorised, gated, at most once, audited.

Everything over real HTTP: Slack requests signed as Slack signs them, providers on local stand-ins."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from bot.actions.authz import Directory, refusal
from bot.actions.runner import reconcile_match
from bot.policy import Policy
from bot.runtime import Runtime
from providers.poof import Transaction
from storage.models import AuditEvent, ProviderAction
from tests.blockkit import assert_valid_view
from tests.slackapp import POOF_WEBHOOK_SECRET, SlackApp

VERIFIED_EMAIL = "ryan@moonclerk.com"  # the seeded MoonClerk customer 523425's own address


def renewal(call_id: str = "call_renewal", amount: str = "200.00", currency: str = "USD",
            **analysis: Any) -> dict[str, Any]:
    return {"event_type": "call_ended", "payload": {"call": {
        "id": call_id, "status": "completed", "from_number": "12125550199",
        "summary": "Customer's renewal failed; they asked for an invoice to pay by another method.",
        "post_call_analysis": {"billing_intent": "payment_failed", "customer_email": VERIFIED_EMAIL,
                               "moonclerk_customer_id": 523425, "subscription_id": "sub_3oLgqlp4MgTZC3",
                               "amount": amount, "currency": currency, **analysis}}}}


def refund_with_payout(call_id: str = "call_payout") -> dict[str, Any]:
    return {"event_type": "call_ended", "payload": {"call": {
        "id": call_id, "status": "completed", "from_number": "14155550142",
        "summary": "Customer was refunded in crypto as agreed.",
        "post_call_analysis": {
            "billing_intent": "refund_request", "customer_email": "payee@example.com", "invoice_number": "INV-77",
            "moonclerk_customer_id": 5150,  # a verified identity: payouts go to matched callers only
            "amount": "120.00", "currency": "USD", "refund_reason": "service outage credit",
            "payout_recipient": "Payee Ltd", "payout_consent": "yes", "crypto": "solana",
            "crypto_address": "5PEmyGfzdVuwGWVRcRAqZ9FyrNkxqSzNKGvk5Rtvh276",
            "promised_next_step": "Finance sends the refund as a Solana payout today"}}}}

SYSTEM_ACTORS = ("dialnexa", "finance-desk")


@pytest.fixture
def app(runtime: Runtime, db_url: str) -> Iterator[SlackApp]:
    application = SlackApp(runtime, db_url)
    yield application
    application.stop()


def ledger(app: SlackApp) -> list[ProviderAction]:
    with Session(app.runtime.engine) as session:
        return list(session.exec(select(ProviderAction)).all())


def audit_actions(app: SlackApp) -> list[str]:
    with Session(app.runtime.engine) as session:
        return list(session.exec(select(AuditEvent.action).where(col(AuditEvent.actor).not_in(SYSTEM_ACTORS))).all())


def at_once(act: Callable[[str], int], users: list[str]) -> list[int]:
    """Run `act` for each user in its own thread, all released at the same moment; their results."""
    barrier = threading.Barrier(len(users))
    results: list[int] = []

    def run(user: str) -> None:
        barrier.wait()
        results.append(act(user))

    threads = [threading.Thread(target=run, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def invoice_values(**overrides: Any) -> dict[str, Any]:
    return {"amount": "200.00", "currency": "USD", "method": "paypal", "send_to": VERIFIED_EMAIL,
            "override": [], **overrides}


# -- thresholds (pure policy) --------------------------------------------------------------------

@pytest.mark.parametrize(("user", "amount", "currency", "allowed"), [
    ("U0APPROVER1", "499.99", "USD", True),
    ("U0APPROVER1", "500.00", "USD", True),
    ("U0APPROVER1", "500.01", "USD", False),
    ("U0SENIOR", "500.01", "USD", True),
    ("U0APPROVER1", "450.00", "EUR", True),
    ("U0APPROVER1", "450.01", "EUR", False),
    ("U0APPROVER1", "60000", "JPY", True),
    ("U0APPROVER1", "60001", "JPY", False),
    ("U0APPROVER1", "10.00", "GBP", False),  # no threshold for GBP: only seniors
    ("U0SENIOR", "10.00", "GBP", True),
    ("U0STRANGER", "1.00", "USD", False),
])
def test_thresholds_per_currency(policy: Policy, user: str, amount: str, currency: str, allowed: bool) -> None:
    assert (refusal(Directory(policy, None), user, Decimal(amount), currency) is None) is allowed


# -- invoices ------------------------------------------------------------------------------------

def test_unauthorised_click_calls_no_provider(app: SlackApp) -> None:
    case = app.deliver(renewal())
    assert app.click(case, "invoice_poof", "U0STRANGER").status_code == 200
    assert "only finance people" in app.ephemeral_for("invoice_poof-U0STRANGER")
    assert app.poof.invoice_count == 0 and not app.slack.calls("views.open")
    assert audit_actions(app) == ["action.refused"]


def test_user_group_members_are_approvers(app: SlackApp) -> None:
    case = app.deliver(renewal())
    assert app.click(case, "invoice_poof", "U0GROUPMEMBER").status_code == 200
    assert app.opened_view()["callback_id"] == "invoice_poof_modal"


def test_invoice_runs_once_and_updates_the_card(app: SlackApp) -> None:
    case = app.deliver(renewal())
    assert app.click(case, "invoice_poof", "U0APPROVER1").status_code == 200
    view = app.opened_view()
    assert "200.00" in json.dumps(view) and VERIFIED_EMAIL in json.dumps(view)
    response = app.submit(view, "U0APPROVER1", invoice_values())
    assert response.status_code == 200 and response.text in ("", "{}")
    done = app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    assert app.poof.invoice_count == 1
    invoice = app.poof.calls("/api/v1/create_fiat_invoice")[0].json
    assert invoice is not None and invoice["amount"] == "200.00" and invoice["currency"] == "USD"
    [row] = ledger(app)
    assert row.idempotency_key == f"{case.call_id}:invoice_poof" and row.status == "succeeded"
    assert row.provider_reference and done.action_reference == row.provider_reference
    app.slack.wait_until(lambda: row.provider_reference in json.dumps(app.card(done)) or None, 10)
    app.slack.wait_until(lambda: any("Poof invoice" in t for t in app.thread_texts(done)) or None, 10)
    # A second submission (a double click, a Slack retry) never makes a second invoice.
    app.submit(view, "U0APPROVER2", invoice_values())
    app.slack.wait_until(lambda: len(app.slack.calls("chat.postEphemeral")) >= 2 or None, 10)
    assert app.poof.invoice_count == 1
    assert "already succeeded" in json.dumps(app.slack.calls("chat.postEphemeral")[-1].json or {})


def test_two_approvers_submitting_at_once_make_one_invoice(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0APPROVER1")
    view = app.opened_view()
    app.poof.delay("/api/v1/create_fiat_invoice", 0.5)
    statuses = at_once(lambda user: app.submit(view, user, invoice_values()).status_code,
                       ["U0APPROVER1", "U0APPROVER2"])
    assert statuses == [200, 200]
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    app.slack.wait_until(lambda: len(app.slack.calls("chat.postEphemeral")) >= 2 or None, 10)
    assert len(app.poof.calls("/api/v1/create_fiat_invoice")) == 1
    assert len(ledger(app)) == 1


def test_modal_edits_are_validated_in_the_modal(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0APPROVER1")
    view = app.opened_view()
    response = app.submit(view, "U0APPROVER1", invoice_values(amount="-5", currency="XYZ", send_to="nope"))
    body = response.json()
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"amount", "currency", "send_to"}
    response = app.submit(view, "U0APPROVER1", invoice_values(amount="12.345"))
    assert "decimal places" in response.json()["errors"]["amount"]
    assert app.poof.invoice_count == 0


def test_above_threshold_needs_a_senior_approver(app: SlackApp) -> None:
    case = app.deliver(renewal(amount="900.00"))
    app.click(case, "invoice_poof", "U0APPROVER1")
    assert "senior approver" in app.ephemeral_for("invoice_poof-U0APPROVER1")
    assert not app.slack.calls("views.open")
    # Approval comes before money: the senior's invoice waits for the case's approval.
    app.click(case, "invoice_poof", "U0SENIOR")
    assert "needs approval first" in app.ephemeral_for("invoice_poof-U0SENIOR")
    app.approve(case, "U0SENIOR")
    app.click(case, "invoice_poof", "U0SENIOR", response_name="invoice-approved")
    view = app.opened_view()
    # An approver editing the amount above the threshold inside the modal is refused too.
    app.submit(view, "U0APPROVER1", invoice_values(amount="900.00"))
    app.slack.wait_until(lambda: app.slack.calls("chat.postEphemeral") or None, 10)
    assert app.poof.invoice_count == 0
    app.submit(view, "U0SENIOR", invoice_values(amount="900.00"))
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    assert app.poof.invoice_count == 1


def test_recipient_mismatch_goes_to_review_or_needs_a_senior_override(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0APPROVER1")
    view = app.opened_view()
    app.submit(view, "U0APPROVER1", invoice_values(send_to="someone.else@example.com"))
    app.wait(case.call_id, lambda c: c.state == "in_review")
    app.submit(view, "U0APPROVER1", invoice_values(send_to="someone.else@example.com", override=["override"]))
    app.slack.wait_until(lambda: any("senior approver" in json.dumps(c.json or {})
                                     for c in app.slack.calls("chat.postEphemeral")) or None, 10)
    assert app.poof.invoice_count == 0
    app.submit(view, "U0SENIOR", invoice_values(send_to="someone.else@example.com", override=["override"]))
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    assert app.poof.invoice_count == 1
    with Session(app.runtime.engine) as session:
        sent = session.exec(select(AuditEvent).where(AuditEvent.action == "invoice_poof.succeeded")).one()
    assert sent.target == "case thread (payment link for someone.else@example.com)" and sent.actor == "U0SENIOR"


def test_invoice_gate_sends_an_unclear_case_to_review(app: SlackApp) -> None:
    payload = renewal()
    analysis = payload["payload"]["call"]["post_call_analysis"]
    for key in ("customer_email", "moonclerk_customer_id", "subscription_id"):
        del analysis[key]
    case = app.deliver(payload)
    app.click(case, "invoice_poof", "U0APPROVER1")
    assert "review" in app.ephemeral_for("invoice_poof-U0APPROVER1").lower()
    reviewed = app.wait(case.call_id, lambda c: c.state == "in_review")
    app.slack.wait_until(lambda: any("matched caller" in t for t in app.thread_texts(reviewed)) or None, 10)
    assert app.poof.invoice_count == 0


def test_failed_invoice_shows_the_error_and_can_be_retried(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0APPROVER1")
    view = app.opened_view()
    app.poof.fail_next("/api/v1/create_fiat_invoice", 400, body={"error": "invalid payment method"})
    app.submit(view, "U0APPROVER1", invoice_values())
    failed = app.wait(case.call_id, lambda c: c.action_status == "failed")
    assert failed.action_error and "invalid payment method" in failed.action_error
    card = app.slack.wait_until(
        lambda: ((c := app.card(failed)) and "retry_action" in json.dumps(c) and c) or None, 10)
    retry_block = next(b for b in card["blocks"] if "retry_action" in json.dumps(b))
    app.click(failed, "retry_action", "U0APPROVER2", block_id=retry_block["block_id"])
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    assert app.poof.invoice_count == 1 and len(app.poof.calls("/api/v1/create_fiat_invoice")) == 2


def test_poof_webhook_marks_the_invoice_paid(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0APPROVER1")
    app.submit(app.opened_view(), "U0APPROVER1", invoice_values())
    sent = app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    payment_id = sent.action_reference
    assert payment_id
    url = f"{app.server.url}/webhooks/poof"
    forged = app.poof.webhook_payload(payment_id, "wrong-secret")
    assert httpx.post(url, json=forged).status_code == 401
    unpaid = httpx.post(url, json=app.poof.webhook_payload(payment_id, POOF_WEBHOOK_SECRET))
    assert unpaid.status_code == 200 and "not paid" in unpaid.json()["result"]  # re-fetched, not trusted
    app.poof.mark_paid(payment_id)
    paid = httpx.post(url, json=app.poof.webhook_payload(payment_id, POOF_WEBHOOK_SECRET))
    assert paid.status_code == 200 and paid.json()["result"] == "invoice marked paid"
    done = app.wait(case.call_id, lambda c: c.state == "done" and c.action_status == "paid")
    app.slack.wait_until(lambda: any("paid" in t for t in app.thread_texts(done)) or None, 10)
    again = httpx.post(url, json=app.poof.webhook_payload(payment_id, POOF_WEBHOOK_SECRET))
    assert again.json()["result"] == "already marked paid"


# -- payouts -------------------------------------------------------------------------------------

CONFIRMED_ADDRESS = "5PEmyGfzdVuwGWVRcRAqZ9FyrNkxqSzNKGvk5Rtvh276"  # refund_with_payout's address
OTHER_ADDRESS = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"


def payout_values(**overrides: Any) -> dict[str, Any]:
    return {"amount": "120.00", "currency": "USD", "crypto": "solana", "crypto_amount": "0.85",
            "address": CONFIRMED_ADDRESS, "override": [], **overrides}


def test_payout_needs_two_different_approvers(app: SlackApp) -> None:
    case = app.deliver(refund_with_payout())
    app.click(case, "payout_poof", "U0APPROVER1")
    view = app.opened_view()
    bad = app.submit(view, "U0APPROVER1", payout_values(crypto="ethereum"))
    assert "address" in bad.json()["errors"]
    app.submit(view, "U0APPROVER1", payout_values())
    waiting = app.wait(case.call_id, lambda c: c.action_status == "awaiting_approval")
    app.slack.wait_until(lambda: any("second, different approver" in t for t in app.thread_texts(waiting)) or None,
                         10)
    app.click(waiting, "confirm_payout", "U0APPROVER1")
    assert "two different approvers" in app.ephemeral_for("confirm_payout-U0APPROVER1")
    assert app.poof.payout_count == 0
    app.click(waiting, "confirm_payout", "U0APPROVER2")
    done = app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    assert done.state == "done" and app.poof.payout_count == 1
    [row] = ledger(app)
    assert (row.requested_by, row.approved_by) == ("U0APPROVER1", "U0APPROVER2")
    # Poof is asked for the crypto amount the approvers saw, never the fiat value in crypto units.
    [sent] = app.poof.calls("/api/v2/payouts")
    assert sent.json == {"amount": "0.85", "crypto": "solana", "address": CONFIRMED_ADDRESS}
    assert app.poof.balance("solana") == Decimal("1000") - Decimal("0.85")


def test_payout_modal_needs_a_crypto_amount(app: SlackApp) -> None:
    case = app.deliver(refund_with_payout())
    app.click(case, "payout_poof", "U0APPROVER1")
    view = app.opened_view()
    assert_valid_view(view)
    for bad in ("", "0", "-1", "abc", "0." + "1" * 19):
        answer = app.submit(view, "U0APPROVER1", payout_values(crypto_amount=bad))
        assert "crypto_amount" in answer.json()["errors"], bad
    assert not ledger(app)


def test_payout_to_another_address_goes_to_review_or_needs_a_senior_override(app: SlackApp) -> None:
    case = app.deliver(refund_with_payout())
    app.click(case, "payout_poof", "U0APPROVER1")
    view = app.opened_view()
    app.submit(view, "U0APPROVER1", payout_values(address=OTHER_ADDRESS))
    reviewed = app.wait(case.call_id, lambda c: c.state == "in_review")
    app.slack.wait_until(lambda: any("wallet address confirmed on the call" in t
                                     for t in app.thread_texts(reviewed)) or None, 10)
    app.submit(view, "U0APPROVER1", payout_values(address=OTHER_ADDRESS, override=["override"]))
    app.slack.wait_until(lambda: any("senior approver" in json.dumps(c.json or {})
                                     for c in app.slack.calls("chat.postEphemeral")) or None, 10)
    assert not ledger(app)
    app.submit(view, "U0SENIOR", payout_values(address=OTHER_ADDRESS, override=["override"]))
    waiting = app.wait(case.call_id, lambda c: c.action_status == "awaiting_approval")
    [row] = ledger(app)
    assert row.params["address"] == OTHER_ADDRESS and row.params["override_recipient"] is True
    app.click(waiting, "confirm_payout", "U0APPROVER2")
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    assert [c.json["address"] for c in app.poof.calls("/api/v2/payouts")] == [OTHER_ADDRESS]


def test_a_failed_payout_is_retried_only_with_two_approvers_again(app: SlackApp) -> None:
    case = app.deliver(refund_with_payout())
    app.click(case, "payout_poof", "U0APPROVER1")
    app.submit(app.opened_view(), "U0APPROVER1", payout_values())
    waiting = app.wait(case.call_id, lambda c: c.action_status == "awaiting_approval")
    app.poof.fail_next("/api/v2/payouts", 400, body={"error": "invalid amount"})
    app.click(waiting, "confirm_payout", "U0APPROVER2")
    failed = app.wait(case.call_id, lambda c: c.action_status == "failed")
    card = app.slack.wait_until(
        lambda: ((c := app.card(failed)) and "retry_action" in json.dumps(c) and c) or None, 10)
    retry_block = next(b for b in card["blocks"] if "retry_action" in json.dumps(b))
    app.click(failed, "retry_action", "U0APPROVER2", block_id=retry_block["block_id"])
    again = app.wait(case.call_id, lambda c: c.action_status == "awaiting_approval")
    assert len(app.poof.calls("/api/v2/payouts")) == 1  # the retry alone sent nothing
    app.click(again, "confirm_payout", "U0APPROVER2", response_name="same-person")
    assert "two different approvers" in app.ephemeral_for("same-person")
    assert len(app.poof.calls("/api/v2/payouts")) == 1
    app.click(again, "confirm_payout", "U0APPROVER1", response_name="other-person")
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    assert len(app.poof.calls("/api/v2/payouts")) == 2 and app.poof.payout_count == 1
    [row] = ledger(app)
    assert (row.requested_by, row.approved_by) == ("U0APPROVER2", "U0APPROVER1")


def test_payout_that_times_out_is_unknown_and_never_sent_twice(runtime: Runtime, db_url: str) -> None:
    app = SlackApp(runtime, db_url, provider_timeout=0.5)
    try:
        case = app.deliver(refund_with_payout())
        app.click(case, "payout_poof", "U0APPROVER1")
        app.submit(app.opened_view(), "U0APPROVER1", payout_values())
        app.wait(case.call_id, lambda c: c.action_status == "awaiting_approval")
        app.poof.delay("/api/v2/payouts", 2.0)
        app.click(case, "confirm_payout", "U0APPROVER2")
        unknown = app.wait(case.call_id, lambda c: c.action_status == "unknown")
        card = app.slack.wait_until(
            lambda: ((c := app.card(unknown)) and "reconcile_action" in json.dumps(c) and c) or None, 10)
        assert "retry_action" not in json.dumps(card)
        # Neither a retry nor a second confirmation sends another payout.
        reconcile_block = next(b for b in card["blocks"] if "reconcile_action" in json.dumps(b))
        app.click(unknown, "retry_action", "U0APPROVER1", block_id=reconcile_block["block_id"])
        assert "Only a failed action" in app.ephemeral_for("retry_action-U0APPROVER1")
        app.click(unknown, "confirm_payout", "U0SENIOR")
        assert "already unknown" in app.ephemeral_for("confirm_payout-U0SENIOR")
        app.poof.wait_until(lambda: app.poof.payout_count == 1 or None, 10)  # the slow one did land
        assert len(app.poof.calls("/api/v2/payouts")) == 1
        # Reconcile finds it in Poof's transactions and records it, still without a second payout.
        app.click(unknown, "reconcile_action", "U0APPROVER1", block_id=reconcile_block["block_id"])
        app.wait(case.call_id, lambda c: c.action_status == "succeeded")
        assert len(app.poof.calls("/api/v2/payouts")) == 1
    finally:
        app.stop()


def test_payout_gate_requires_consent(app: SlackApp) -> None:
    payload = refund_with_payout()
    payload["payload"]["call"]["post_call_analysis"]["payout_consent"] = "no"
    case = app.deliver(payload)
    app.click(case, "payout_poof", "U0APPROVER1")
    assert "consent" in app.ephemeral_for("payout_poof-U0APPROVER1")
    assert app.poof.payout_count == 0 and not app.slack.calls("views.open")


# -- MoonClerk notes and the audit export --------------------------------------------------------

def test_moonclerk_note_verifies_the_record_and_runs_once(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "note_moonclerk", "U0APPROVER1")
    assert "written" in app.ephemeral_for("note_moonclerk-U0APPROVER1")
    assert app.moonclerk.calls("/customers/523425")
    noted = app.wait(case.call_id, lambda c: c.action_label == "note_moonclerk")
    texts = app.slack.wait_until(lambda: [t for t in app.thread_texts(noted) if "MoonClerk note" in t] or None, 10)
    assert "https://app.moonclerk.com/manage/" in texts[0] and case.call_id in texts[0]
    app.click(case, "note_moonclerk", "U0APPROVER2", response_name="second")
    assert "already" in app.ephemeral_for("second")
    assert audit_actions(app).count("moonclerk.note") == 1


def test_audit_export(app: SlackApp, tmp_path: Any) -> None:
    from datetime import UTC, datetime

    from bot.audit_export import export

    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0STRANGER")
    app.ephemeral_for("invoice_poof-U0STRANGER")
    import io

    out = io.StringIO()
    count = export(app.runtime.engine, datetime(2000, 1, 1, tzinfo=UTC), "jsonl", out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == len(rows) >= 2
    refused = next(r for r in rows if r["action"] == "action.refused")
    assert refused["actor"] == "U0STRANGER" and refused["call_id"] == case.call_id and refused["reason"]
    csv_out = io.StringIO()
    export(app.runtime.engine, datetime(2000, 1, 1, tzinfo=UTC), "csv", csv_out)
    assert csv_out.getvalue().splitlines()[0] == "at,actor,action,call_id,record,target,reason,outcome,detail"
    assert copy.deepcopy(rows)  # rows are plain JSON


# -- MoonClerk webhook ---------------------------------------------------------------------------

def test_moonclerk_failed_plan_payment_becomes_a_case_then_updates_it(runtime: Runtime, db_url: str) -> None:
    from pydantic import SecretStr

    app = SlackApp(runtime, db_url)
    try:
        runtime.settings = runtime.settings.model_copy(
            update={"moonclerk_webhook_token": SecretStr("tok_" + "x" * 24)})
        customer = app.moonclerk.add_customer(name="Renewal Co", email="ap@renewal.example",
                                              subscription={"status": "past_due"})
        url = f"{app.server.url}/webhooks/moonclerk/tok_{'x' * 24}"
        body = {"event": "plan_payment_failed", "object": "customer", "data": {"id": customer["id"]}}
        assert httpx.post(f"{app.server.url}/webhooks/moonclerk/wrong", json=body).status_code == 404
        first = httpx.post(url, json=body)
        assert first.status_code == 200 and first.json()["result"].startswith("created case moonclerk:")
        call_id = first.json()["result"].split()[-1]
        case = app.wait(call_id, lambda c: c.slack_ts is not None)
        assert case.kind == "failed_renewal" and case.moonclerk_customer_id == customer["id"]
        assert case.amount == Decimal("12.00") and case.currency == "USD"
        assert app.moonclerk.calls(f"/customers/{customer['id']}")  # re-fetched, not trusted
        again = httpx.post(url, json=body)
        assert again.json()["result"] == f"updated open case {call_id}"
        ignored = httpx.post(url, json={"event": "payment_created", "object": "payment", "data": {"id": 1}})
        assert ignored.status_code == 200 and ignored.json()["result"].startswith("ignored")
        missing = httpx.post(url, json={"event": "plan_payment_failed", "object": "customer", "data": {"id": 999999}})
        assert missing.status_code == 200 and "no such record" in missing.json()["result"]
    finally:
        app.stop()


def test_a_moonclerk_outage_is_not_taken_for_a_recipient_mismatch(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0APPROVER1")
    view = app.opened_view()
    app.moonclerk.fail_next("/customers/523425", 401, body={"error": "unauthorized"})
    app.submit(view, "U0APPROVER1", invoice_values())
    app.slack.wait_until(lambda: any("could not be reached to verify" in json.dumps(c.json or {})
                                     for c in app.slack.calls("chat.postEphemeral")) or None, 10)
    assert app.case(case.call_id).state == "new" and app.poof.invoice_count == 0 and not ledger(app)


def _row(action: str, **params: Any) -> ProviderAction:
    return ProviderAction(idempotency_key=f"call_x:{action}", case_id=1, call_id="call_x", action=action,
                          provider="poof", status="unknown", requested_by="U0APPROVER1", amount=Decimal("120.00"),
                          currency="USD", params=params)


def test_reconcile_matches_on_identifiers_never_on_amount_alone() -> None:
    invoice = _row("invoice_poof", method="paypal")
    same_amount = Transaction.model_validate({"payment_id": "p1", "amount": "120.00", "paid": "yes"})
    tagged = Transaction.model_validate({"payment_id": "p2", "amount": "120.00", "paid": "no",
                                         "metadata": {"external": {"dialnexa_call_id": "call_x"}}})
    assert not reconcile_match(invoice, same_amount) and reconcile_match(invoice, tagged)
    payout = _row("payout_poof", crypto="solana", crypto_amount="0.85", address=CONFIRMED_ADDRESS)
    sent = {"payment_id": "t1", "amount": "0.85", "paid": "payout", "payment_method": "solana",
            "metadata": {"external": {}, "address": CONFIRMED_ADDRESS, "due": "0"}}
    assert reconcile_match(payout, Transaction.model_validate(sent))
    for change in ({"amount": "120.00"}, {"payment_method": "bitcoin"},
                   {"metadata": {"external": {}, "address": OTHER_ADDRESS}}, {"metadata": {}}):
        assert not reconcile_match(payout, Transaction.model_validate({**sent, **change})), change


def test_a_call_left_running_by_a_dead_process_becomes_unknown_with_reconcile(app: SlackApp) -> None:
    from datetime import UTC, datetime, timedelta

    from bot.actions import ledger as ledger_rows
    from bot.slack.service import action_context, recover_provider_calls
    from storage.db import session_scope

    case = app.deliver(renewal())
    assert case.id is not None
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    with session_scope(app.runtime.engine) as session:
        # What a process that died inside the Poof call leaves behind.
        ledger_rows.claim(session, case_id=case.id, call_id=case.call_id, action="invoice_poof", provider="poof",
                          user="U0APPROVER1", status="running", amount=Decimal("200.00"), currency="USD",
                          params={"method": "paypal"}, now=long_ago)
    recover = recover_provider_calls(app.runtime, action_context(app.runtime, app.service.client))
    recover()
    [row] = ledger(app)
    assert row.status == "unknown" and "in flight" in (row.error or "")
    unknown = app.wait(case.call_id, lambda c: c.action_status == "unknown")
    card = app.slack.wait_until(
        lambda: ((c := app.card(unknown)) and "reconcile_action" in json.dumps(c) and c) or None, 10)
    assert "retry_action" not in json.dumps(card) and app.poof.invoice_count == 0
    recover()  # nothing left to recover; the row is not touched again
    assert [r.status for r in ledger(app)] == ["unknown"]


def test_a_note_after_a_failed_invoice_keeps_its_retry_button(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0APPROVER1")
    app.poof.fail_next("/api/v1/create_fiat_invoice", 400, body={"error": "invalid payment method"})
    app.submit(app.opened_view(), "U0APPROVER1", invoice_values())
    failed = app.wait(case.call_id, lambda c: c.action_status == "failed")
    app.click(failed, "note_moonclerk", "U0APPROVER2")
    assert "written" in app.ephemeral_for("note_moonclerk-U0APPROVER2")
    noted = app.wait(case.call_id, lambda c: any("MoonClerk note" in t for t in app.thread_texts(c)))
    assert noted.action_status == "failed"
    card = app.slack.wait_until(lambda: ((c := app.card(noted)) and "retry_action" in json.dumps(c) and c) or None,
                                10)
    assert card


def test_two_second_approvers_confirming_at_once_send_one_payout(app: SlackApp) -> None:
    case = app.deliver(refund_with_payout())
    app.click(case, "payout_poof", "U0APPROVER1")
    app.submit(app.opened_view(), "U0APPROVER1", payout_values())
    waiting = app.wait(case.call_id, lambda c: c.action_status == "awaiting_approval")
    app.poof.delay("/api/v2/payouts", 0.5)
    statuses = at_once(lambda user: app.click(waiting, "confirm_payout", user, response_name=f"race-{user}")
                       .status_code, ["U0APPROVER2", "U0SENIOR"])
    assert statuses == [200, 200]
    app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    assert len(app.poof.calls("/api/v2/payouts")) == 1 and app.poof.payout_count == 1
    answers = [app.ephemeral_for(f"race-{u}") for u in ("U0APPROVER2", "U0SENIOR")]
    assert sum("first" in a or "already" in a for a in answers) == 1, answers


# -- a case closed while an action is on its way ---------------------------------------------------

def ephemeral_texts(app: SlackApp) -> list[str]:
    return [str((call.json or call.form or {}).get("text", "")) for call in app.slack.calls("chat.postEphemeral")]


def test_a_case_dismissed_while_the_invoice_modal_is_open_refuses_the_submit(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0APPROVER1")
    view = app.opened_view()
    app.click(case, "dismiss", "U0OWNER")
    app.wait(case.call_id, lambda c: c.state == "dismissed")
    assert app.submit(view, "U0APPROVER1", invoice_values()).status_code == 200
    answer = app.slack.wait_until(lambda: [t for t in ephemeral_texts(app) if "already dismissed" in t] or None, 10)
    assert "Nothing was sent to any provider" in answer[0]
    assert app.poof.invoice_count == 0 and not app.poof.calls("/api/v1/create_fiat_invoice") and not ledger(app)
    assert app.case(case.call_id).state == "dismissed"
    with Session(app.runtime.engine) as session:
        refused = session.exec(select(AuditEvent).where(AuditEvent.action == "action.refused")).one()
    assert refused.actor == "U0APPROVER1" and refused.detail == {"action": "invoice_poof"}
    assert refused.reason == "this case is already dismissed"
    # Clicking the button again (an old card) opens no modal at all.
    app.click(case, "invoice_poof", "U0APPROVER2")
    assert "already dismissed" in app.ephemeral_for("invoice_poof-U0APPROVER2")
    assert len(app.slack.calls("views.open")) == 1


def test_a_payout_waiting_for_its_second_approver_is_not_sent_once_the_case_is_dismissed(app: SlackApp) -> None:
    case = app.deliver(refund_with_payout())
    app.click(case, "payout_poof", "U0APPROVER1")
    app.submit(app.opened_view(), "U0APPROVER1", payout_values())
    waiting = app.wait(case.call_id, lambda c: c.action_status == "awaiting_approval")
    app.click(waiting, "dismiss", "U0OWNER")
    app.wait(case.call_id, lambda c: c.state == "dismissed")
    app.click(waiting, "confirm_payout", "U0APPROVER2")
    assert "already dismissed" in app.ephemeral_for("confirm_payout-U0APPROVER2")
    assert not app.poof.calls("/api/v2/payouts") and app.poof.payout_count == 0
    assert [row.status for row in ledger(app)] == ["awaiting_approval"]
    assert app.case(case.call_id).state == "dismissed"


def test_a_dismiss_while_the_invoice_is_in_flight_is_not_undone_when_it_lands(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0APPROVER1")
    view = app.opened_view()
    app.poof.delay("/api/v1/create_fiat_invoice", 1.0)
    app.submit(view, "U0APPROVER1", invoice_values())
    app.poof.wait_for("/api/v1/create_fiat_invoice", timeout=10)  # claimed and on its way to Poof
    app.click(case, "dismiss", "U0OWNER")
    app.wait(case.call_id, lambda c: c.state == "dismissed")
    landed = app.wait(case.call_id, lambda c: c.action_status == "succeeded")
    # The ending is recorded (the invoice exists at Poof), but the case stays dismissed.
    assert landed.state == "dismissed" and landed.state_by == "U0OWNER" and app.poof.invoice_count == 1
    assert [row.status for row in ledger(app)] == ["succeeded"]
    app.slack.wait_until(lambda: any("stays dismissed" in t for t in app.thread_texts(landed)) or None, 10)
    card = app.slack.wait_until(
        lambda: ((c := app.card(landed)) and landed.action_reference
                 and landed.action_reference in json.dumps(c) and c) or None, 10)
    assert "invoice_poof" not in json.dumps(card)  # a closed card offers no money action


def test_retry_and_note_on_a_dismissed_case_are_refused(app: SlackApp) -> None:
    case = app.deliver(renewal())
    app.click(case, "invoice_poof", "U0APPROVER1")
    app.poof.fail_next("/api/v1/create_fiat_invoice", 400, body={"error": "invalid payment method"})
    app.submit(app.opened_view(), "U0APPROVER1", invoice_values())
    failed = app.wait(case.call_id, lambda c: c.action_status == "failed")
    card = app.slack.wait_until(
        lambda: ((c := app.card(failed)) and "retry_action" in json.dumps(c) and c) or None, 10)
    retry_block = next(b for b in card["blocks"] if "retry_action" in json.dumps(b))
    lookups = len(app.moonclerk.calls("/customers/523425"))  # the invoice verified its recipient
    app.click(failed, "dismiss", "U0OWNER")
    app.wait(case.call_id, lambda c: c.state == "dismissed")
    app.click(failed, "retry_action", "U0APPROVER2", block_id=retry_block["block_id"])
    assert "already dismissed" in app.ephemeral_for("retry_action-U0APPROVER2")
    app.click(failed, "note_moonclerk", "U0APPROVER2")
    assert "already dismissed" in app.ephemeral_for("note_moonclerk-U0APPROVER2")
    assert len(app.poof.calls("/api/v1/create_fiat_invoice")) == 1
    assert len(app.moonclerk.calls("/customers/523425")) == lookups
    assert [row.status for row in ledger(app)] == ["failed"]
    assert audit_actions(app).count("action.refused") == 2
