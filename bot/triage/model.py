"""What triage produces from one call: classification, extracted fields and routing."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel


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


class Extracted(BaseModel):
    """Fields the seeds ask DialNexa to capture. Every field optional; text is already redacted."""

    customer_name: str | None = None
    account_id: str | None = None
    email: str | None = None
    phone: str | None = None
    moonclerk_customer_id: int | None = None
    invoice_number: str | None = None
    payment_id: str | None = None
    subscription_id: str | None = None
    tax_region: str | None = None
    amount: Decimal | None = None
    currency: str | None = None  # ISO 4217, only ever set together with amount or from the call
    due_date: date | None = None
    payment_status: str | None = None
    caller_claim: str | None = None  # what the caller asked for or believes is wrong
    refund_reason: str | None = None
    dispute_reason: str | None = None
    credit_request: str | None = None
    approval_requested: bool | None = None
    finance_owner: str | None = None
    escalation_reason: str | None = None
    next_step: str | None = None
    follow_up_deadline: datetime | None = None  # UTC
    callback_expected: bool | None = None
    recipient_email: str | None = None  # where a document or link should go
    payout_recipient: str | None = None
    payout_consent: bool | None = None
    crypto: str | None = None
    crypto_address: str | None = None
    transcript_url: str | None = None
    recording_url: str | None = None
    crm_url: str | None = None
    support_ticket_url: str | None = None
    payment_platform_url: str | None = None


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
    escalation_reasons: list[str]
    owner: str | None  # Slack user ID
