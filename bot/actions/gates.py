"""The seeds' gates: a provider action runs only when the call gave enough to justify it.

Each gate returns the reason the case must go to review instead, or None when it may proceed.
"""

from __future__ import annotations

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
