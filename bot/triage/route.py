"""Routing: urgency, VIP status, approval need and escalation reasons, from the policy."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.policy import Policy
from bot.triage.model import BillingKind, Extracted, Routing, Urgency

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
# Kinds that move money back to the customer and so need approval above the threshold.
MONEY_OUT = frozenset({BillingKind.REFUND, BillingKind.DUPLICATE_CHARGE})
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
    if kind in MONEY_OUT and fields.amount is None:
        return True, "money back to the customer without a confirmed amount"
    if fields.credit_request:
        return True, "the caller asked for a credit"
    if fields.approval_requested:
        return True, "the call's analysis flagged approval as required"
    return False, None


def route(kind: BillingKind, fields: Extracted, policy: Policy, now: datetime) -> Routing:
    if kind is BillingKind.NOT_BILLING:
        return Routing(
            urgency=Urgency.LOW, is_vip=False, approval_required=False, approval_reason=None,
            escalation_reasons=[], owner=None,
        )
    is_vip = policy.is_vip(email=fields.email, moonclerk_customer_id=fields.moonclerk_customer_id)
    approval_required, approval_reason = _approval(kind, fields, policy)

    reasons: list[str] = []
    if is_vip and kind in PAYMENT_BLOCKERS:
        reasons.append("VIP payment blocker")
    if kind in ALWAYS_ESCALATED:
        reasons.append(ALWAYS_ESCALATED[kind])
    if kind in MONEY_OUT and approval_required and fields.amount is not None:
        reasons.append("refund above the approval threshold")
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
        escalation_reasons=reasons,
        owner=owner or policy.default_finance_owner,
    )


def _is_user_id(value: str) -> bool:
    return value[:1] in {"U", "W"} and value.isalnum() and len(value) <= 20
