"""Triage end to end on parsed events: redaction reaches the analysis by key name and by content."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bot.triage.pipeline import redact_analysis, triage
from bot.triage.redact import SuppressedKind
from providers.dialnexa import CallEvent, parse_event

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def test_sensitive_analysis_keys_are_redacted_whatever_the_value_shape() -> None:
    kinds: set[SuppressedKind] = set()
    analysis = {
        "card_number": 4242424242424242, "cvv": 123, "card_expiry": "04/27",
        "bank_account_number": "000123456789", "routing_number": "021000021", "iban": "GB82WEST12345698765432",
        "ssn": "123-45-6789", "vat_id": "GB123456789",
        "nested": {"payment": {"note": "card 4111 1111 1111 1111"}},
        "amount": Decimal("12000.00"), "card_last4": "4242", "card_brand": "Visa", "moonclerk_customer_id": 523425,
        "invoice_number": "INV-1042",
    }
    redacted = redact_analysis(analysis, kinds)
    text = repr(redacted)
    for secret in ("4242424242424242", "000123456789", "021000021", "GB82WEST", "123-45-6789",
                   "GB123456789", "4111 1111 1111 1111", "04/27"):
        assert secret not in text
    assert redacted["cvv"] == "[redacted card_security_code]"
    assert redacted["amount"] == Decimal("12000.00") and redacted["card_last4"] == "4242"
    assert redacted["moonclerk_customer_id"] == 523425 and redacted["invoice_number"] == "INV-1042"
    assert kinds == set(SuppressedKind)


def test_triage_never_keeps_the_raw_transcript() -> None:
    event = parse_event({"event_type": "call_ended", "payload": {"call": {
        "id": "call_t", "status": "completed",
        "transcript": "User: I want a refund. My card is 4242 4242 4242 4242 and my SSN is 123-45-6789.",
        "summary": "Refund request; caller read out card 4242-4242-4242-4242."}}})
    assert isinstance(event, CallEvent)
    result = triage(event, NOW)
    dumped = result.model_dump_json()
    assert "4242 4242 4242 4242" not in dumped and "4242-4242-4242-4242" not in dumped
    assert "123-45-6789" not in dumped
    assert result.suppressed >= {SuppressedKind.CARD_NUMBER, SuppressedKind.TAX_ID}
    assert result.classification.kind.value == "refund"
