"""What triage produces from one call: classification, extracted fields and routing."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from storage.fields import CaseFields


class BillingKind(StrEnum):
    BILLING_QUESTION = "billing_question"
    REFUND = "refund"
    DISPUTE = "dispute"  # disputes and chargebacks
    PAYMENT_STATUS = "payment_status"
    SUBSCRIPTION_CHANGE = "subscription_change"
    FAILED_RENEWAL = "failed_renewal"
    DUPLICATE_CHARGE = "duplicate_charge"
    TAX_OR_ADDRESS = "tax_or_address"
    DOCUMENT_RESEND = "document_resend"
    COLLECTIONS = "collections"
    PAYOUT_REQUEST = "payout_request"  # commissions, affiliate and partner payouts, withdrawals
    NOT_BILLING = "not_billing"


KIND_LABELS: dict[BillingKind, str] = {
    BillingKind.BILLING_QUESTION: "Billing question",
    BillingKind.REFUND: "Refund request",
    BillingKind.DISPUTE: "Dispute / chargeback",
    BillingKind.PAYMENT_STATUS: "Payment status",
    BillingKind.SUBSCRIPTION_CHANGE: "Subscription change",
    BillingKind.FAILED_RENEWAL: "Failed renewal",
    BillingKind.DUPLICATE_CHARGE: "Duplicate charge",
    BillingKind.TAX_OR_ADDRESS: "Tax / billing address",
    BillingKind.DOCUMENT_RESEND: "Invoice / document resend",
    BillingKind.COLLECTIONS: "Collections",
    BillingKind.PAYOUT_REQUEST: "Payout request",
    BillingKind.NOT_BILLING: "Not billing",
}


class Classification(BaseModel):
    kind: BillingKind
    rule: str  # which rule fired, e.g. "analysis.billing_intent=refund_request" or "rules.refund"
    confidence: float  # 0..1, how sure the rule is; not money
    source: Literal["analysis", "rules", "none"]
    evidence: str | None = None  # short, already-redacted snippet that made the rule fire

    @property
    def is_billing(self) -> bool:
        return self.kind is not BillingKind.NOT_BILLING


class Extracted(CaseFields):
    """What extraction found in one call: the captured fields, declared once in storage.fields."""


class Urgency(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


class Routing(BaseModel):
    urgency: Urgency
    is_vip: bool
    approval_required: bool
    approval_reason: str | None
    # While approval is required: how many different approvers, and whether one must be a senior.
    approvals_needed: int = 0
    senior_needed: bool = False
    escalation_reasons: list[str]
    owner: str | None  # Slack user ID
