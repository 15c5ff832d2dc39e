"""The fields captured from a call, declared once.

`CaseFields` is the base of both the triage result (bot.triage.model.Extracted) and the cases table
(storage.models.Case). Each field says here what it holds, its column, and the DialNexa analysis keys
extraction reads it from, so a new field is one line in one place.

Lengths are column types (`AutoString(n)`), not pydantic `max_length`: as a constraint it would bind the
triage result too, and an over-long value would fail triage itself instead of meeting the table's limit
as it always has.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel
from sqlmodel import AutoString, Field, SQLModel

from storage.types import DecimalString, UTCDateTime


class AnalysisKeys(tuple[str, ...]):
    """The analysis keys a field is read from, in order: the first present value that reads wins.

    Only extraction reads these (see analysis_keys). They are not pydantic aliases: the table has
    columns named like other fields' keys (`state`, `owner`, `approval_required`), and extraction
    skips a present value it cannot read, which an alias would not.
    """

    def __new__(cls, *keys: str) -> AnalysisKeys:
        return super().__new__(cls, keys)


def _text(length: int, *, index: bool = False) -> Any:
    return Field(default=None, sa_type=AutoString(length=length), index=index)


class CaseFields(SQLModel):
    """Fields the seeds ask DialNexa to capture. Every field optional; text is already redacted."""

    customer_name: Annotated[
        str | None, AnalysisKeys("customer_name", "name", "caller_name", "customer", "full_name")
    ] = _text(500, index=True)
    account_id: Annotated[
        str | None, AnalysisKeys("account_id", "account", "account_number", "customer_account")
    ] = _text(500)
    email: Annotated[
        str | None, AnalysisKeys("customer_email", "email", "caller_email", "email_address")
    ] = _text(500, index=True)
    phone: Annotated[
        str | None, AnalysisKeys("phone", "phone_number", "customer_phone", "caller_phone", "callback_number")
    ] = _text(20)
    moonclerk_customer_id: Annotated[
        int | None, AnalysisKeys("moonclerk_customer_id", "customer_id")
    ] = Field(default=None, index=True)
    invoice_number: Annotated[
        str | None, AnalysisKeys("invoice_number", "invoice", "invoice_id", "invoice_no")
    ] = _text(500, index=True)
    payment_id: Annotated[
        str | None, AnalysisKeys("payment_id", "transaction_id", "charge_id")
    ] = _text(500, index=True)
    subscription_id: Annotated[str | None, AnalysisKeys("subscription_id", "subscription")] = _text(500)
    tax_region: Annotated[
        str | None, AnalysisKeys("tax_region", "country", "state", "region", "tax_country")
    ] = _text(500)
    amount: Annotated[
        Decimal | None, AnalysisKeys("amount", "charge_amount", "refund_amount", "disputed_amount")
    ] = Field(default=None, sa_type=DecimalString)
    # ISO 4217, only ever set together with amount or from the call
    currency: Annotated[str | None, AnalysisKeys("currency", "currency_code")] = _text(3)
    due_date: Annotated[date | None, AnalysisKeys("due_date", "invoice_due_date", "payment_due_date")] = None
    payment_status: Annotated[str | None, AnalysisKeys("payment_status", "payment_state")] = _text(500)
    # What the caller asked for or believes is wrong
    caller_claim: Annotated[
        str | None, AnalysisKeys("caller_claim", "customer_claim", "issue", "request", "claim", "complaint")
    ] = _text(500)
    refund_reason: Annotated[str | None, AnalysisKeys("refund_reason")] = _text(500)
    dispute_reason: Annotated[str | None, AnalysisKeys("dispute_reason", "chargeback_reason")] = _text(500)
    credit_request: Annotated[
        str | None, AnalysisKeys("credit_request", "credit_requested", "credit")
    ] = _text(500)
    approval_requested: Annotated[
        bool | None, AnalysisKeys("approval_required", "approval_requested", "needs_approval", "requires_approval")
    ] = None
    finance_owner: Annotated[str | None, AnalysisKeys("finance_owner", "owner", "assigned_to")] = _text(500)
    escalation_reason: Annotated[
        str | None, AnalysisKeys("escalation_reason", "escalate_reason")
    ] = _text(500)
    next_step: Annotated[
        str | None, AnalysisKeys("promised_next_step", "next_step", "next_steps", "follow_up_action")
    ] = _text(500)
    # Always UTC
    follow_up_deadline: Annotated[
        datetime | None,
        AnalysisKeys("follow_up_deadline", "deadline", "follow_up_by", "follow_up_date", "callback_by"),
    ] = Field(default=None, sa_type=UTCDateTime, index=True)
    callback_expected: Annotated[
        bool | None, AnalysisKeys("callback_expected", "callback_requested", "expects_callback", "wants_callback")
    ] = None
    # Where a document or link should go
    recipient_email: Annotated[
        str | None, AnalysisKeys("recipient_email", "send_to", "send_to_email")
    ] = _text(500)
    payout_recipient: Annotated[str | None, AnalysisKeys("payout_recipient")] = _text(500)
    payout_consent: Annotated[bool | None, AnalysisKeys("payout_consent", "consent_to_payout")] = None
    crypto: Annotated[
        str | None, AnalysisKeys("crypto", "cryptocurrency", "crypto_currency", "coin")
    ] = _text(40)
    crypto_address: Annotated[
        str | None, AnalysisKeys("crypto_address", "wallet_address", "payout_address")
    ] = _text(200)
    transcript_url: Annotated[str | None, AnalysisKeys("transcript_url", "transcript_link")] = _text(3000)
    recording_url: Annotated[str | None, AnalysisKeys("recording_url", "recording_link")] = _text(3000)
    crm_url: Annotated[
        str | None, AnalysisKeys("crm_url", "crm_link", "hubspot_url", "salesforce_url")
    ] = _text(3000)
    support_ticket_url: Annotated[
        str | None,
        AnalysisKeys("support_ticket", "support_ticket_url", "ticket_url", "zendesk_url", "ticket_link"),
    ] = _text(3000)
    payment_platform_url: Annotated[
        str | None,
        AnalysisKeys(
            "payment_platform_url", "payment_link", "payment_url", "moonclerk_url", "poof_url", "stripe_url"
        ),
    ] = _text(3000)


def analysis_keys(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """Each field's analysis keys, by field name, for the fields that have them."""
    return {
        name: keys
        for name, info in model.model_fields.items()
        for keys in info.metadata
        if isinstance(keys, AnalysisKeys)
    }
