"""Routing: urgency, VIP status, approval need and escalation reasons, from the policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.policy import Policy
from bot.triage.classify import kinds_in
from bot.triage.model import BillingKind, Extracted, Routing, Urgency
from storage.models import Case

# Kinds that stop a customer paying or being served: a VIP with one of these is escalated at once.
PAYMENT_BLOCKERS = frozenset(
    {
        BillingKind.FAILED_RENEWAL,
        BillingKind.PAYMENT_STATUS,
        BillingKind.DUPLICATE_CHARGE,
        BillingKind.DISPUTE,
        BillingKind.COLLECTIONS,
        BillingKind.REFUND,
    }
)
# Kinds that move money out (back to a customer, or to a partner) and so need approval above the threshold.
MONEY_OUT = frozenset({BillingKind.REFUND, BillingKind.DUPLICATE_CHARGE, BillingKind.PAYOUT_REQUEST})
# Characters of the summary read for secondary signals; real summaries are a few hundred.
SIGNAL_SCAN = 20_000
ALWAYS_ESCALATED = {
    BillingKind.FAILED_RENEWAL: "failed renewal",
    BillingKind.DUPLICATE_CHARGE: "duplicate charge",
    BillingKind.DISPUTE: "dispute or chargeback",
    BillingKind.COLLECTIONS: "collections-sensitive call",
}


def _approval(kind: BillingKind, fields: Extracted, policy: Policy) -> tuple[bool, str | None]:
    if kind is BillingKind.DISPUTE:
        return True, "disputes and chargebacks always go to finance review"
    if fields.amount is not None and fields.currency is None:
        return True, "an amount was mentioned without a currency"
    if fields.amount is not None and fields.currency is not None:
        threshold = policy.threshold(fields.currency)
        if threshold is None:
            if kind in MONEY_OUT or fields.credit_request:
                return True, f"no approval threshold is set for {fields.currency}"
        elif fields.amount > threshold:
            return True, f"{fields.amount} {fields.currency} is above the {threshold} {fields.currency} threshold"
    if kind is BillingKind.PAYOUT_REQUEST and fields.amount is None:
        return True, "a payout without a confirmed amount"
    if kind in MONEY_OUT and fields.amount is None:
        return True, "money back to the customer without a confirmed amount"
    if fields.credit_request:
        return True, "the caller asked for a credit"
    if fields.approval_requested:
        return True, "the call's analysis flagged approval as required"
    return False, None


def signal_kinds(kind: BillingKind, fields: Extracted, summary: str | None) -> list[BillingKind]:
    """The primary kind, then every other kind the call's own words name: the refund or dispute reason,
    the caller's claim and the summary (a duplicate charge the analysis filed as a refund request)."""
    kinds = [kind]
    # Routing runs inside ingest's write transaction, so only the start of a very long summary is read.
    for text in (fields.refund_reason, fields.dispute_reason, fields.caller_claim, (summary or "")[:SIGNAL_SCAN]):
        for found in kinds_in(text) if text else []:
            if found not in kinds:
                kinds.append(found)
    return kinds


def route(
    kind: BillingKind, fields: Extracted, policy: Policy, now: datetime, *, summary: str | None = None
) -> Routing:
    if kind is BillingKind.NOT_BILLING:
        return Routing(
            urgency=Urgency.LOW, is_vip=False, approval_required=False, approval_reason=None,
            escalation_reasons=[], owner=None,
        )
    is_vip = policy.is_vip(email=fields.email, moonclerk_customer_id=fields.moonclerk_customer_id)
    approval_required, approval_reason = _approval(kind, fields, policy)

    # Reasons come from every signal on the call, not from the primary kind alone.
    kinds = signal_kinds(kind, fields, summary)
    reasons: list[str] = []
    if is_vip and any(signal in PAYMENT_BLOCKERS for signal in kinds):
        reasons.append("VIP payment blocker")
    reasons += [ALWAYS_ESCALATED[signal] for signal in kinds if signal in ALWAYS_ESCALATED]
    if kind in MONEY_OUT and approval_required and fields.amount is not None:
        reasons.append(
            "payout above the approval threshold" if kind is BillingKind.PAYOUT_REQUEST
            else "refund above the approval threshold"
        )
    if fields.escalation_reason:
        reasons.append(f"caller or agent: {fields.escalation_reason}")

    deadline_soon = fields.follow_up_deadline is not None and fields.follow_up_deadline - now < timedelta(hours=24)
    if is_vip and reasons:
        urgency = Urgency.CRITICAL
    elif reasons or deadline_soon:
        urgency = Urgency.HIGH
    elif kind in {BillingKind.BILLING_QUESTION, BillingKind.DOCUMENT_RESEND} and fields.follow_up_deadline is None:
        urgency = Urgency.LOW
    else:
        urgency = Urgency.NORMAL

    owner = fields.finance_owner if fields.finance_owner and _is_user_id(fields.finance_owner) else None
    return Routing(
        urgency=urgency,
        is_vip=is_vip,
        approval_required=approval_required,
        approval_reason=approval_reason,
        approvals_needed=policy.approvals_needed(fields.amount, fields.currency) if approval_required else 0,
        senior_needed=approval_required and policy.senior_reason(fields.amount, fields.currency) is not None,
        escalation_reasons=reasons,
        owner=owner or policy.owner_for(kind.value),
    )


def _is_user_id(value: str) -> bool:
    return value[:1] in {"U", "W"} and value.isalnum() and len(value) <= 20


def routing_values(case: Case, policy: Policy, now: datetime, *, set_owner: bool = True) -> dict[str, Any]:
    """What apply_routing sets on the case, without setting it."""
    fields = Extracted.model_validate(case, from_attributes=True)
    routing = route(BillingKind(case.kind), fields, policy, now, summary=case.summary)
    values: dict[str, Any] = {
        "urgency": routing.urgency.value,
        "is_vip": routing.is_vip,
        "approval_required": routing.approval_required,
        "approval_reason": routing.approval_reason,
        "approvals_needed": routing.approvals_needed,
        "senior_needed": routing.senior_needed,
        "escalation_reasons": routing.escalation_reasons,
    }
    if set_owner:
        values["owner"] = routing.owner
    return values


def apply_routing(case: Case, policy: Policy, now: datetime, *, set_owner: bool = True) -> None:
    """Urgency, VIP status, approval and escalation reasons (and the owner, unless a person set one)."""
    for name, value in routing_values(case, policy, now, set_owner=set_owner).items():
        setattr(case, name, value)
