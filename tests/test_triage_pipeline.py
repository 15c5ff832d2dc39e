"""Triage end to end on parsed events: redaction reaches the analysis by key name and by content."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bot.triage.pipeline import redact_analysis, triage
from bot.triage.redact import SuppressedKind
from providers.dialnexa import CallEvent, parse_event, parse_transcript
from tests.linear import BOUND, doubling_ratio

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


def _deep(depth: int) -> list[object]:
    root: list[object] = []
    inner = root
    for _ in range(depth - 1):
        child: list[object] = []
        inner.append(child)
        inner = child
    return root


def test_deep_nesting_anywhere_is_dropped_and_named_not_a_crash() -> None:
    body = {"event_type": "call_analyzed", "payload": {"call": {
        "id": "call_deep", "status": "completed", "metadata": {"x": _deep(600)},
        "transcript": [{"role": "user", "text": "I want a refund"}, {"role": "agent", "text": _deep(600)}],
        "post_call_analysis": {"billing_intent": "refund_request", "blob": [_deep(600)],
                               "shallow": {"b": [1, [2, [3]]]}}}}}
    event = parse_event(body)
    assert isinstance(event, CallEvent)
    too_deep = "nested deeper than 32 levels"
    assert event.dropped == {"analysis.blob": too_deep, "metadata.x": too_deep}
    result = triage(event, NOW)
    assert result.classification.kind.value == "refund" and result.dropped == event.dropped
    # The redactor's own walk is bounded too, whatever it is handed.
    assert redact_analysis({"deep": _deep(600)}, set())["deep"] is not None


def test_urls_with_sensitive_values_are_dropped_and_counted() -> None:
    event = parse_event({"event_type": "call_analyzed", "payload": {"call": {
        "id": "call_links", "status": "completed",
        "recording_url": "https://rec.example/4111%201111%201111%201111.mp3",
        "transcript_url": "https://logs.example/t/123",
        "post_call_analysis": {"billing_intent": "refund_request",
                               "payment_platform_url": "https://pay.example/iban/GB82WEST12345698765432"}}}})
    assert isinstance(event, CallEvent)
    result = triage(event, NOW)
    assert result.fields.recording_url is None and result.fields.payment_platform_url is None
    assert result.fields.transcript_url == "https://logs.example/t/123"
    assert {SuppressedKind.CARD_NUMBER, SuppressedKind.IBAN} <= result.suppressed


def test_the_call_s_own_text_fields_are_redacted() -> None:
    event = parse_event({"event_type": "call_ended", "payload": {"call": {
        "id": "call_fields", "status": "completed", "hangup_reason": "card 4242 4242 4242 4242 read out"}}})
    assert isinstance(event, CallEvent)
    result = triage(event, NOW)
    assert "4242 4242" not in (result.call_text["hangup_reason"] or "")
    assert SuppressedKind.CARD_NUMBER in result.suppressed


def test_escalation_reasons_come_from_every_signal() -> None:
    from bot.policy import Policy
    from bot.triage.model import BillingKind, Extracted
    from bot.triage.route import route

    fields = Extracted(refund_reason="duplicate charge", amount=Decimal("20"), currency="USD")
    routing = route(BillingKind.REFUND, fields, Policy(), NOW, summary="Customer was double charged.")
    reasons = routing.escalation_reasons
    assert reasons.count("duplicate charge") == 1
    quiet = route(BillingKind.REFUND, Extracted(refund_reason="changed my mind"), Policy(), NOW,
                  summary="Customer wants a refund; this is not a dispute.")
    assert "dispute or chargeback" not in quiet.escalation_reasons


def _parse_one_turn(text: str) -> object:
    turns = parse_transcript("Agent: hello\n" + text)
    assert len(turns) == 1
    return turns


def test_transcript_continuation_lines_cost_linear_time() -> None:
    assert doubling_ratio(_parse_one_turn, "and then some more words on this line\n", 800_000) < BOUND


def test_a_dropped_key_is_named_redacted_and_cut() -> None:
    key = "card 4242 4242 4242 4242 " + "x" * 5000
    event = parse_event({"event_type": "call_analyzed", "payload": {"call": {
        "id": "call_keys", "status": "completed", "post_call_analysis": {key: [_deep(100)]}}}})
    assert isinstance(event, CallEvent)
    result = triage(event, NOW)
    (name,) = result.dropped
    assert "4242 4242" not in name and len(name) < 200
    assert SuppressedKind.CARD_NUMBER in result.suppressed
