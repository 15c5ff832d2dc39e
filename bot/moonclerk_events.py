"""MoonClerk plan-payment failures become finance cases (or update the customer's open one).

MoonClerk signs nothing, so the webhook body is only a hint: the customer or payment is re-fetched
from MoonClerk's API and only that answer is used.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from bot.ingest import apply_routing, on_case_changed
from bot.policy import Policy
from bot.slack.outbox import enqueue_thread
from providers.moonclerk import Customer, MoonClerkClient
from storage.cases import lock_or_create
from storage.db import session_scope
from storage.models import AuditEvent, Case

FAILED_EVENTS = frozenset({"plan_payment_failed", "payment_failed"})
OPEN_STATES = ("new", "in_review", "approved", "failed")


def handle_event(engine: Engine, moonclerk: MoonClerkClient, policy: Policy, body: dict[str, Any],
                 now: datetime) -> str:
    event = str(body.get("event", ""))
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    assert isinstance(data, dict)
    if body.get("object") == "payment" and str(data.get("status", "")) == "failed" and data.get("customer_id"):
        payment = moonclerk.get_payment(int(data["id"]))
        if payment.status != "failed" or payment.customer_id is None:
            return "ignored: MoonClerk does not report this payment as failed"
        customer = moonclerk.get_customer(payment.customer_id)
    elif event in FAILED_EVENTS and body.get("object") == "customer" and data.get("id") is not None:
        customer = moonclerk.get_customer(int(data["id"]))
    else:
        return f"ignored: {event or 'event'} is not a failed plan payment"
    return _record_failure(engine, policy, customer, now)


def _record_failure(engine: Engine, policy: Policy, customer: Customer, now: datetime) -> str:
    with session_scope(engine) as session:
        existing = session.exec(
            select(Case).where(Case.moonclerk_customer_id == customer.id, Case.kind == "failed_renewal",
                               col(Case.state).in_(OPEN_STATES)).order_by(col(Case.id).desc())
        ).first()
        if existing is not None:
            enqueue_thread(session, existing, f"moonclerk-failed:{now.date().isoformat()}",
                           "MoonClerk reports another failed plan payment for this customer.", now)
            session.add(AuditEvent(at=now, actor="moonclerk", action="case.updated", case_id=existing.id,
                                   call_id=existing.call_id, record=f"MoonClerk customer {customer.id}",
                                   reason="plan payment failed (MoonClerk webhook, re-fetched)", outcome="updated"))
            return f"updated open case {existing.call_id}"
        # No DialNexa call started this case, so its key names the source and the billing period.
        period = customer.subscription.current_period_start if customer.subscription else None
        key = f"moonclerk:{customer.id}:{(period or now).date().isoformat()}"
        case, created = lock_or_create(session, key)
        if not created:
            return f"already recorded as {key}"
        plan = customer.plan
        case.kind, case.is_billing, case.rule, case.confidence = "failed_renewal", True, "moonclerk.webhook", 1.0
        case.classification_source, case.stage, case.call_status = "moonclerk", "call_analyzed", "moonclerk"
        case.customer_name, case.email, case.moonclerk_customer_id = customer.name, customer.email, customer.id
        case.subscription_id = customer.subscription.subscription_reference if customer.subscription else None
        if plan is not None and plan.amount_decimal is not None:
            case.amount, case.currency = plan.amount_decimal, plan.currency
        case.payment_status = "failed"
        case.payment_platform_url = customer.management_url
        case.caller_claim = "MoonClerk reported a failed plan payment"
        case.match_status, case.match_score = "matched", 1.0
        apply_routing(case, policy, now)
        case.updated_at = now
        session.add(case)
        session.add(AuditEvent(at=now, actor="moonclerk", action="case.created", case_id=case.id, call_id=key,
                               record=f"MoonClerk customer {customer.id}", outcome="failed_renewal",
                               reason="plan payment failed (MoonClerk webhook, re-fetched)"))
        on_case_changed(session, case, policy, now)  # the card, and the failed-renewal escalation page
        return f"created case {key}"
