"""The seeds' gates: a provider action runs only when the call gave enough to justify it.

Each gate returns the reason the case must go to review instead, or None when it may proceed.
"""

from __future__ import annotations

from decimal import Decimal

from providers.currency import format_amount
from storage.models import Case


def invoice_gate(case: Case) -> str | None:
    missing = []
    if not case.caller_matched:
        missing.append("a matched caller (a verified MoonClerk customer)")
    if not (case.invoice_number or case.payment_id or case.subscription_id or case.moonclerk_customer_id is not None):
        missing.append("a clear destination record (invoice, payment, subscription or MoonClerk customer)")
    if case.amount is None or case.currency is None:
        missing.append("an amount with its currency")
    return f"an invoice needs {', '.join(missing)}" if missing else None


def payout_gate(case: Case) -> str | None:
    missing = []
    if not (case.payout_recipient or case.crypto_address):
        missing.append("a confirmed recipient")
    if case.payout_consent is not True:
        missing.append("the caller's consent")
    if not case.crypto:
        missing.append("the payout channel (which cryptocurrency)")
    if not (case.refund_reason or case.caller_claim or case.credit_request):
        missing.append("the purpose of the payment")
    if not case.next_step:
        missing.append("the follow-up promised on the call")
    return f"a payout needs {', '.join(missing)}" if missing else None


def note_gate(case: Case) -> str | None:
    if not case.has_moonclerk_reference:
        return "a MoonClerk note needs a MoonClerk customer or payment to verify"
    return None


def recipient_mismatch(recipient: str | None, verified: str | None) -> bool:
    """A document or payment link may only go to the verified customer's own address."""
    if not recipient:
        return False
    return verified is None or recipient.strip().lower() != verified.strip().lower()


def approval_gate(case: Case, amount: Decimal | None, currency: str | None) -> str | None:
    """Approval comes before money: on a case that needs it, nothing runs until it is approved, and then
    only up to the amount and in the currency approved."""
    if not case.approval_required:
        return None
    if case.approved_at is None:
        why = f" ({case.approval_reason})" if case.approval_reason else ""
        return f"this case needs approval first{why}: approve it on the card, then run this action"
    if amount is None or case.approved_amount is None:
        return None
    if currency != case.approved_currency:
        return (f"the approval was for {case.approved_currency or 'an amount without a currency'}, not {currency}; "
                "a different currency needs a new approval")
    if amount > case.approved_amount:
        approved = format_amount(case.approved_amount, case.approved_currency or "")
        return f"only {approved} was approved; more needs a new approval"
    return None


def beyond_approval(case: Case, amount: Decimal | None, currency: str | None) -> bool:
    """An approved case asked for more than was approved (or in another currency): a new round is due."""
    if not case.approval_required or case.approved_at is None or amount is None or case.approved_amount is None:
        return False
    return currency != case.approved_currency or amount > case.approved_amount


def identity_gate(case: Case) -> str | None:
    """Money sent out goes only to a verified person: a matched caller, or a senior's audited override."""
    if case.caller_matched:
        return None
    return ("a payout needs a verified identity: a caller matched to a MoonClerk customer (or picked in review), "
            "or a senior approver's override in the payout form")
