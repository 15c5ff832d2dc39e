"""MoonClerk plan-payment failures become finance cases (or update the customer's open one).

MoonClerk signs nothing, so the webhook body is only a hint: the customer or payment is re-fetched
from MoonClerk's API and only that answer is used.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from bot.ingest import on_case_changed
from bot.lookup import directory
from bot.policy import Policy
from bot.slack.outbox import enqueue_thread
from bot.triage.route import apply_routing
from providers.moonclerk import Customer, MoonClerkClient
from storage.audit import Event, write_audit
from storage.cases import lock_or_create
from storage.db import session_scope
from storage.models import Case
from storage.states import OPEN_STATES, MatchStatus

FAILED_EVENTS = frozenset({"plan_payment_failed", "payment_failed"})
_REASON = "plan payment failed (MoonClerk webhook, re-fetched)"


class MalformedEvent(ValueError):
    """The body is not a MoonClerk event finance-desk can act on; str() names the field, never its value."""


def _what(value: object) -> str:
    """What kind of JSON value this is, for an error message that must not echo the value itself."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "zero or negative" if value <= 0 else "a whole number"
    if isinstance(value, (float, Decimal)):
        return "a number with a fraction"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _record_id(data: dict[str, Any]) -> int:
    value = data.get("id")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)  # a numeric string is tolerated; MoonClerk's own samples send a number
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        problem = "is missing" if value is None else f"must be a positive whole number, not {_what(value)}"
        raise MalformedEvent(f"data.id {problem}")
    return value


def handle_event(engine: Engine, moonclerk: MoonClerkClient, policy: Policy, body: dict[str, Any],
                 now: datetime) -> str:
    """Act on one webhook body. Raises MalformedEvent when a failed-payment event cannot be read,
    ProviderError (NotFound included) when MoonClerk cannot confirm it."""
    event = body.get("event")
    if not isinstance(event, str) or not event.strip():
        raise MalformedEvent(f"event must be a non-empty string, not {_what(event)}")
    kind = body.get("object")
    data = body.get("data")
    hinted = (kind == "payment" and isinstance(data, dict) and str(data.get("status", "")) == "failed"
              and bool(data.get("customer_id")))
    if event not in FAILED_EVENTS and not hinted:
        # Other topics (payment_created, plan_created, ...) are not finance cases: acknowledged, not read.
        return f"ignored: {event} is not a failed plan payment"
    if not isinstance(data, dict):
        raise MalformedEvent(f"data must be an object, not {_what(data)}")
    if kind == "payment":
        payment = moonclerk.get_payment(_record_id(data))
        if payment.status != "failed" or payment.customer_id is None:
            return "ignored: MoonClerk does not report this payment as failed"
        customer = moonclerk.get_customer(payment.customer_id)
    elif kind == "customer":
        customer = moonclerk.get_customer(_record_id(data))
    else:
        raise MalformedEvent(f'object must be "customer" or "payment", not {_what(kind)}')
    directory.write_through(engine, [customer], now)  # just read directly: the directory's copy follows
    return _record_failure(engine, policy, customer, now)


def _record_failure(engine: Engine, policy: Policy, customer: Customer, now: datetime) -> str:
    with session_scope(engine) as session:
        existing = session.exec(
            select(Case).where(Case.moonclerk_customer_id == customer.id, Case.kind == "failed_renewal",
                               col(Case.state).in_(sorted(OPEN_STATES))).order_by(col(Case.id).desc())
        ).first()
        if existing is not None:
            enqueue_thread(session, existing, f"moonclerk-failed:{now.date().isoformat()}",
                           "MoonClerk reports another failed plan payment for this customer.", now)
            write_audit(session, existing, "moonclerk", now,
                        Event("case.updated", outcome="updated", record=f"MoonClerk customer {customer.id}",
                              reason=_REASON))
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
        case.match_status, case.match_score = MatchStatus.MATCHED, 1.0
        apply_routing(case, policy, now)
        case.updated_at = now
        session.add(case)
        write_audit(session, case, "moonclerk", now,
                    Event("case.created", outcome="failed_renewal", record=f"MoonClerk customer {customer.id}",
                          reason=_REASON))
        on_case_changed(session, case, policy, now)  # the card, and the failed-renewal escalation page
        return f"created case {key}"
