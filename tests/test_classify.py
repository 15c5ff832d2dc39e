from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.triage.classify import EVIDENCE_LIMIT, RULES, classify
from bot.triage.model import BillingKind
from tests.linear import BOUND, doubling_ratio

K = BillingKind


# --- analysis ---------------------------------------------------------------------------------------

ANALYSIS_CASES: list[tuple[dict[str, Any], BillingKind, str]] = [
    ({"billing_intent": "refund_request"}, K.REFUND, "analysis.billing_intent=refund_request"),
    ({"billing_intent": "charge_dispute"}, K.DISPUTE, "analysis.billing_intent=charge_dispute"),
    ({"intent": "chargeback"}, K.DISPUTE, "analysis.intent=chargeback"),
    ({"billing_intent": "invoice_resend"}, K.DOCUMENT_RESEND, "analysis.billing_intent=invoice_resend"),
    ({"category": "receipt"}, K.DOCUMENT_RESEND, "analysis.category=receipt"),
    ({"topic": "statement"}, K.DOCUMENT_RESEND, "analysis.topic=statement"),
    ({"request_type": "tax_form"}, K.DOCUMENT_RESEND, "analysis.request_type=tax_form"),
    ({"billing_intent": "payment_failed"}, K.FAILED_RENEWAL, "analysis.billing_intent=payment_failed"),
    ({"call_type": "failed_payment"}, K.FAILED_RENEWAL, "analysis.call_type=failed_payment"),
    ({"intent": "renewal_failed"}, K.FAILED_RENEWAL, "analysis.intent=renewal_failed"),
    ({"billing_intent": "billing_question"}, K.BILLING_QUESTION, "analysis.billing_intent=billing_question"),
    (
        {"billing_intent": "address_or_tax_change"},
        K.TAX_OR_ADDRESS,
        "analysis.billing_intent=address_or_tax_change",
    ),
    (
        {"billing_intent": "cancel_subscription"},
        K.SUBSCRIPTION_CHANGE,
        "analysis.billing_intent=cancel_subscription",
    ),
    ({"intent": "upgrade"}, K.SUBSCRIPTION_CHANGE, "analysis.intent=upgrade"),
    ({"billing_intent": "payout_request"}, K.PAYOUT_REQUEST, "analysis.billing_intent=payout_request"),
    ({"intent": "commission_payout"}, K.PAYOUT_REQUEST, "analysis.intent=commission_payout"),
    ({"intent": "downgrade"}, K.SUBSCRIPTION_CHANGE, "analysis.intent=downgrade"),
    ({"category": "duplicate_charge"}, K.DUPLICATE_CHARGE, "analysis.category=duplicate_charge"),
    ({"category": "double_charge"}, K.DUPLICATE_CHARGE, "analysis.category=double_charge"),
    ({"reason": "collections"}, K.COLLECTIONS, "analysis.reason=collections"),
    ({"reason": "past_due"}, K.COLLECTIONS, "analysis.reason=past_due"),
    ({"reason": "overdue_payment"}, K.COLLECTIONS, "analysis.reason=overdue_payment"),
    ({"request_type": "payment_status"}, K.PAYMENT_STATUS, "analysis.request_type=payment_status"),
    # Values are matched case-insensitively and with spaces or hyphens for underscores.
    ({"billing_intent": "Refund Request"}, K.REFUND, "analysis.billing_intent=refund_request"),
    ({"Billing_Intent": "CHARGE-DISPUTE"}, K.DISPUTE, "analysis.billing_intent=charge_dispute"),
    # The first usable key wins; "unknown" or "other" in an earlier key does not decide.
    ({"billing_intent": "unknown", "intent": "refund_request"}, K.REFUND, "analysis.intent=refund_request"),
    ({"billing_intent": "other", "category": "collections"}, K.COLLECTIONS, "analysis.category=collections"),
]


@pytest.mark.parametrize(("analysis", "kind", "rule"), ANALYSIS_CASES)
def test_analysis_intent_decides(analysis: dict[str, Any], kind: BillingKind, rule: str) -> None:
    # The summary points elsewhere on purpose: an explicit analysis intent outranks the rules.
    result = classify(analysis, "Caller asked about pricing.", "")
    assert (result.kind, result.rule, result.source) == (kind, rule, "analysis")
    assert 0.9 <= result.confidence <= 0.95
    assert result.evidence is not None and len(result.evidence) <= EVIDENCE_LIMIT


def test_every_billing_kind_is_reachable_from_analysis_and_rules() -> None:
    from_analysis = {kind for _, kind, _ in ANALYSIS_CASES}
    from_rules = {kind for _, _, kind, _ in RULE_CASES}
    billing = set(BillingKind) - {BillingKind.NOT_BILLING}
    assert from_analysis == billing
    assert from_rules == billing


@pytest.mark.parametrize("value", ["unknown", "", "N/A", None, "other", "book_appointment", "general"])
def test_undecided_analysis_falls_back_to_rules(value: object) -> None:
    result = classify({"billing_intent": value, "intent": value}, "Caller wants a refund for last month.", "")
    assert (result.kind, result.rule, result.source) == (K.REFUND, "rules.refund", "rules")


def test_undecided_analysis_and_no_billing_words_is_not_billing() -> None:
    result = classify({"intent": "book_appointment"}, "Caller booked a cleaning for Tuesday.", "")
    assert (result.kind, result.rule, result.source) == (K.NOT_BILLING, "rules.no_billing_terms", "none")


def test_free_text_reason_is_read_by_the_specific_rules() -> None:
    result = classify({"reason": "Customer says they were double charged in May"}, None, "")
    assert result.kind is K.DUPLICATE_CHARGE
    assert result.rule == "analysis.reason~rules.duplicate_charge"
    assert result.source == "analysis"
    assert result.evidence == "Customer says they were double charged in May"


# --- analysis without an intent: infer from billing fields -------------------------------------------

DIALNEXA_SAMPLE_AMOUNTS = [Decimal("49.0"), "49.00", 49.0]


@pytest.mark.parametrize("amount", DIALNEXA_SAMPLE_AMOUNTS)
def test_dialnexa_sample_is_a_duplicate_charge_from_its_refund_reason(amount: object) -> None:
    analysis = {
        "invoice_number": "INV-1042",
        "amount": amount,
        "currency": "USD",
        "refund_reason": "duplicate charge",
    }
    result = classify(analysis, None, "")
    # Duplicate charges outrank refunds in the rules, and the refund reason says which it is.
    assert (result.kind, result.rule, result.source) == (
        K.DUPLICATE_CHARGE,
        "analysis.refund_reason",
        "analysis",
    )
    assert 0.8 <= result.confidence < 0.9
    assert result.evidence == "refund_reason: duplicate charge"


INFERRED_CASES: list[tuple[dict[str, Any], BillingKind, str]] = [
    ({"refund_reason": "service outage", "amount": "20"}, K.REFUND, "analysis.refund_reason"),
    ({"refund_reason": "unauthorized charge on the account"}, K.DISPUTE, "analysis.refund_reason"),
    ({"dispute_reason": "did not receive the goods"}, K.DISPUTE, "analysis.dispute_reason"),
    ({"credit_request": "yes"}, K.REFUND, "analysis.credit_request"),
    ({"credit_request": Decimal("15")}, K.REFUND, "analysis.credit_request"),
    ({"invoice_number": "INV-7", "amount": Decimal("12.5")}, K.BILLING_QUESTION, "analysis.invoice_number"),
    ({"payment_id": "ch_3Nabc123", "amount": "9.99"}, K.BILLING_QUESTION, "analysis.payment_id"),
]


@pytest.mark.parametrize(("analysis", "kind", "rule"), INFERRED_CASES)
def test_billing_fields_without_intent_are_inferred(
    analysis: dict[str, Any], kind: BillingKind, rule: str
) -> None:
    result = classify(analysis, None, "")
    assert (result.kind, result.rule, result.source) == (kind, rule, "analysis")
    assert 0.7 <= result.confidence < 0.9


@pytest.mark.parametrize("value", ["no", "false", False, "unknown", "", 0])
def test_a_declined_credit_request_infers_nothing(value: object) -> None:
    result = classify({"credit_request": value}, None, "")
    assert result.kind is K.NOT_BILLING


def test_a_specific_rule_beats_a_generic_inference() -> None:
    analysis = {"invoice_number": "INV-1042", "amount": Decimal("49.00")}
    result = classify(analysis, "Caller asked us to resend the invoice to her accountant.", "")
    assert (result.kind, result.rule, result.source) == (K.DOCUMENT_RESEND, "rules.document_resend", "rules")


def test_a_generic_rule_does_not_override_the_inference() -> None:
    analysis = {"invoice_number": "INV-1042", "amount": Decimal("49.00")}
    result = classify(analysis, "Caller had a question about an invoice.", "")
    assert (result.kind, result.rule) == (K.BILLING_QUESTION, "analysis.invoice_number")


# --- rules --------------------------------------------------------------------------------------------

RULE_CASES: list[tuple[str, str, BillingKind, str]] = [
    (
        "Partner asked for the March commission to be paid out in USDC on Polygon.",
        "paid out",
        K.PAYOUT_REQUEST,
        "rules.payout_request",
    ),
    ("Affiliate wants their affiliate earnings sent.", "affiliate earnings", K.PAYOUT_REQUEST, "rules.payout_request"),
    ("Caller asked to withdraw the balance to a wallet.", "withdraw", K.PAYOUT_REQUEST, "rules.payout_request"),
    (
        "Caller was charged twice for the March invoice.",
        "charged twice",
        K.DUPLICATE_CHARGE,
        "rules.duplicate_charge",
    ),
    ("Customer says she was double charged.", "double charged", K.DUPLICATE_CHARGE, "rules.duplicate_charge"),
    (
        "There is a duplicate charge on the card.",
        "duplicate charge",
        K.DUPLICATE_CHARGE,
        "rules.duplicate_charge",
    ),
    ("Caller filed a chargeback with the bank.", "chargeback", K.DISPUTE, "rules.dispute"),
    ("Caller wants to dispute the annual fee.", "dispute", K.DISPUTE, "rules.dispute"),
    ("Caller said I didn't authorize this renewal.", "didn't authorize", K.DISPUTE, "rules.dispute"),
    ("Caller reports a fraudulent charge.", "fraudulent charge", K.DISPUTE, "rules.dispute"),
    ("Caller reports an unauthorized charge.", "unauthorized charge", K.DISPUTE, "rules.dispute"),
    ("The renewal failed last night.", "renewal failed", K.FAILED_RENEWAL, "rules.failed_renewal"),
    ("Her payment failed at renewal.", "payment failed", K.FAILED_RENEWAL, "rules.failed_renewal"),
    ("His card was declined.", "card was declined", K.FAILED_RENEWAL, "rules.failed_renewal"),
    ("Caller couldn't renew online.", "couldn't renew", K.FAILED_RENEWAL, "rules.failed_renewal"),
    ("The subscription lapsed in May.", "subscription lapsed", K.FAILED_RENEWAL, "rules.failed_renewal"),
    ("The account is past due.", "past due", K.COLLECTIONS, "rules.collections"),
    ("Caller asked about the overdue balance.", "overdue balance", K.COLLECTIONS, "rules.collections"),
    ("Caller received a letter from collections.", "collections", K.COLLECTIONS, "rules.collections"),
    ("Caller wants a payment plan.", "payment plan", K.COLLECTIONS, "rules.collections"),
    ("Caller asked how much they owe.", "they owe", K.COLLECTIONS, "rules.collections"),
    ("Caller wants a refund.", "refund", K.REFUND, "rules.refund"),
    ("Caller wants their money back.", "money back", K.REFUND, "rules.refund"),
    ("Caller asked us to reimburse the fee.", "reimburse", K.REFUND, "rules.refund"),
    ("Please resend the invoice.", "resend the invoice", K.DOCUMENT_RESEND, "rules.document_resend"),
    ("Caller said send me a receipt.", "send me a receipt", K.DOCUMENT_RESEND, "rules.document_resend"),
    ("Caller needs a copy of my invoice.", "copy of my invoice", K.DOCUMENT_RESEND, "rules.document_resend"),
    ("Caller needs the March statement.", "statement", K.DOCUMENT_RESEND, "rules.document_resend"),
    ("Caller needs a tax form.", "tax form", K.DOCUMENT_RESEND, "rules.document_resend"),
    ("Caller needs our W-9.", "W-9", K.DOCUMENT_RESEND, "rules.document_resend"),
    ("Caller needs a 1099 for last year.", "1099", K.DOCUMENT_RESEND, "rules.document_resend"),
    ("Caller wants to fix the billing address.", "billing address", K.TAX_OR_ADDRESS, "rules.tax_or_address"),
    ("Caller gave a new VAT number.", "VAT number", K.TAX_OR_ADDRESS, "rules.tax_or_address"),
    ("The school is tax exempt.", "tax exempt", K.TAX_OR_ADDRESS, "rules.tax_or_address"),
    ("Caller said change my address please.", "change my address", K.TAX_OR_ADDRESS, "rules.tax_or_address"),
    (
        "Caller asked to cancel my subscription.",
        "cancel my subscription",
        K.SUBSCRIPTION_CHANGE,
        "rules.subscription_change",
    ),
    (
        "Caller wants to upgrade to the team plan.",
        "upgrade",
        K.SUBSCRIPTION_CHANGE,
        "rules.subscription_change",
    ),
    ("Caller wants to downgrade the plan.", "downgrade", K.SUBSCRIPTION_CHANGE, "rules.subscription_change"),
    ("Caller asked to change my plan.", "change my plan", K.SUBSCRIPTION_CHANGE, "rules.subscription_change"),
    (
        "Caller asked: did my payment go through?",
        "did my payment go through",
        K.PAYMENT_STATUS,
        "rules.payment_status",
    ),
    ("Caller asked for the payment status.", "payment status", K.PAYMENT_STATUS, "rules.payment_status"),
    (
        "Caller asked has my payment been received.",
        "has my payment",
        K.PAYMENT_STATUS,
        "rules.payment_status",
    ),
    ("Caller had a question about an invoice.", "invoice", K.BILLING_QUESTION, "rules.billing_question"),
    ("Caller asked why the bill went up.", "the bill", K.BILLING_QUESTION, "rules.billing_question"),
    ("Caller asked about a charge on the card.", "charge", K.BILLING_QUESTION, "rules.billing_question"),
    ("Caller asked how to make a payment.", "payment", K.BILLING_QUESTION, "rules.billing_question"),
    ("Caller asked about pricing for seats.", "pricing", K.BILLING_QUESTION, "rules.billing_question"),
    ("Caller was billed on the 3rd.", "billed", K.BILLING_QUESTION, "rules.billing_question"),
]


@pytest.mark.parametrize(("summary", "phrase", "kind", "rule"), RULE_CASES)
def test_rule_fires_in_summary(summary: str, phrase: str, kind: BillingKind, rule: str) -> None:
    result = classify({}, summary, "")
    assert (result.kind, result.rule, result.source) == (kind, rule, "rules")
    assert result.evidence is not None and phrase.lower() in result.evidence.lower()


@pytest.mark.parametrize(("summary", "phrase", "kind", "rule"), RULE_CASES)
def test_rule_fires_in_transcript_only_with_less_confidence(
    summary: str, phrase: str, kind: BillingKind, rule: str
) -> None:
    from_summary = classify({}, summary, "")
    transcript = f"Agent: How can I help?\nCaller: {summary}"
    from_transcript = classify({}, None, transcript)
    assert (from_transcript.kind, from_transcript.rule, from_transcript.source) == (kind, rule, "rules")
    assert from_transcript.confidence < from_summary.confidence
    assert from_transcript.evidence is not None and phrase.lower() in from_transcript.evidence.lower()


def test_confidence_tiers() -> None:
    summary_only = classify({}, "Caller wants a refund.", "")
    transcript_only = classify({}, None, "Caller: I want a refund.")
    both = classify({}, "Caller wants a refund.", "Caller: I want a refund.")
    assert summary_only.confidence == pytest.approx(0.8)
    assert transcript_only.confidence == pytest.approx(0.65)
    assert both.confidence == pytest.approx(0.85)
    generic = classify({}, "Caller asked about an invoice.", "")
    assert generic.confidence < summary_only.confidence


PRIORITY_CASES: list[tuple[str | None, str, BillingKind, str]] = [
    # Rule order inside one text.
    ("Caller was charged twice and wants a refund.", "", K.DUPLICATE_CHARGE, "rules.duplicate_charge"),
    ("Caller will file a chargeback unless refunded.", "", K.DISPUTE, "rules.dispute"),
    ("Card declined, now the account is past due.", "", K.FAILED_RENEWAL, "rules.failed_renewal"),
    ("Caller wants a refund and a copy of my invoice.", "", K.REFUND, "rules.refund"),
    # A specific rule in the summary beats an earlier rule seen only in the transcript.
    ("Caller wants a refund.", "Agent: Is this a chargeback?\nCaller: No.", K.REFUND, "rules.refund"),
    # A specific rule anywhere beats the generic billing terms, even in the summary.
    (
        "Caller had a question about an invoice.",
        "Caller: I was double charged.",
        K.DUPLICATE_CHARGE,
        "rules.duplicate_charge",
    ),
]


@pytest.mark.parametrize(("summary", "transcript", "kind", "rule"), PRIORITY_CASES)
def test_rule_priority(summary: str | None, transcript: str, kind: BillingKind, rule: str) -> None:
    result = classify({}, summary, transcript)
    assert (result.kind, result.rule) == (kind, rule)


def test_rules_are_named_and_ordered() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    assert all(name.startswith("rules.") for name in names)
    assert names.index("rules.duplicate_charge") < names.index("rules.refund")
    assert names.index("rules.dispute") < names.index("rules.refund")
    assert names[-1] == "rules.billing_question"
    assert [rule.name for rule in RULES if rule.generic] == ["rules.billing_question"]


NOT_BILLING_CASES: list[tuple[str | None, str]] = [
    ("Caller booked a dental cleaning for Tuesday at 3pm.", "Agent: Which day works?\nCaller: Tuesday."),
    ("Caller could not log in; the agent reset the password.", "Caller: The app crashes when I open it."),
    ("Prospect asked for a product demo next week.", "Caller: Can someone show me the dashboard?"),
    ("This call is not about billing; caller needs tech support.", ""),
    (None, "Caller: Hi, this is Bill. I want to reschedule my appointment."),
    ("Caller asked who is in charge of the support team.", ""),
    ("Caller wants the verification code resent.", ""),
    ("Caller does not want a refund, just wanted to say thanks.", ""),
]


@pytest.mark.parametrize(("summary", "transcript"), NOT_BILLING_CASES)
def test_not_billing(summary: str | None, transcript: str) -> None:
    result = classify({}, summary, transcript)
    assert (result.kind, result.rule, result.source) == (K.NOT_BILLING, "rules.no_billing_terms", "none")
    assert 0.6 <= result.confidence <= 0.7
    assert not result.is_billing


def test_no_text_at_all_is_not_billing_with_low_confidence() -> None:
    result = classify({}, None, "")
    assert (result.kind, result.source) == (K.NOT_BILLING, "none")
    assert result.confidence < 0.5


def test_negation_only_skips_the_negated_mention() -> None:
    result = classify({}, "Caller does not want a refund, she wants to cancel my subscription.", "")
    assert result.kind is K.SUBSCRIPTION_CHANGE


def test_evidence_is_short_and_from_the_matching_text() -> None:
    long_summary = ("The caller spent a long time describing their business. " * 5) + (
        "Eventually they said they were charged twice for the same order and it was very frustrating "
        "because they had already contacted support several times about the same issue last month."
    )
    result = classify({}, long_summary, "")
    assert result.kind is K.DUPLICATE_CHARGE
    assert result.evidence is not None
    assert len(result.evidence) <= EVIDENCE_LIMIT
    assert "charged twice" in result.evidence


def test_redacted_markers_do_not_confuse_the_rules() -> None:
    result = classify({}, "Caller read out [card ending 4242] and [redacted iban] and wants a refund.", "")
    assert (result.kind, result.rule) == (K.REFUND, "rules.refund")


@settings(max_examples=200, deadline=None)
@given(
    analysis=st.dictionaries(
        st.sampled_from(
            [
                "billing_intent",
                "intent",
                "reason",
                "refund_reason",
                "credit_request",
                "amount",
                "invoice_number",
                "x",
            ]
        ),
        st.one_of(st.none(), st.text(max_size=40), st.integers(), st.booleans(), st.decimals(allow_nan=True)),
        max_size=4,
    ),
    summary=st.one_of(st.none(), st.text(max_size=300)),
    transcript=st.text(max_size=300),
)
def test_classify_never_fails(analysis: dict[str, Any], summary: str | None, transcript: str) -> None:
    result = classify(analysis, summary, transcript)
    assert 0.0 <= result.confidence <= 1.0
    assert result.evidence is None or len(result.evidence) <= EVIDENCE_LIMIT
    assert result.source in {"analysis", "rules", "none"}


@pytest.mark.parametrize(
    "marker", ["[redacted card_number]", "[card ending 4242]", "[redacted bank_account]", "[redacted tax_id]"]
)
def test_redaction_markers_alone_are_not_billing_terms(marker: str) -> None:
    result = classify({}, f"Caller read out {marker} by mistake while booking a table.", "")
    assert result.kind is K.NOT_BILLING


def test_evidence_keeps_the_marker_text() -> None:
    result = classify({}, "Caller says [card ending 4242] was charged twice.", "")
    assert result.evidence == "Caller says [card ending 4242] was charged twice."


def test_words_between_charged_and_twice() -> None:
    result = classify({}, None, "Caller: I was charged $49.99 twice on INV-1042.")
    assert (result.kind, result.rule) == (K.DUPLICATE_CHARGE, "rules.duplicate_charge")
    assert result.evidence == "Caller: I was charged $49.99 twice on INV-1042."


def test_a_known_value_in_any_key_beats_free_text_in_an_earlier_key() -> None:
    analysis = {"reason": "caller wants a refund eventually", "request_type": "payment_status"}
    result = classify(analysis, None, "")
    assert (result.kind, result.rule) == (K.PAYMENT_STATUS, "analysis.request_type=payment_status")


# --- linear time on hostile text ----------------------------------------------------------------------

ADVERSARIAL_UNITS = [
    "no refund ", "not about a refund, ", "charged 1.1.1.1.1.1.1.1 ", "[a]", "[" * 40 + "] ", "bank statement ",
    "in charge ", "vat 1 ", "a@a.a@", "$1,1,1 ", "do not need a refund\n", "upgrade " * 3 + ". ",
]


def _triage_text(text: str) -> object:
    return classify({}, text, text)


@pytest.mark.parametrize("unit", ADVERSARIAL_UNITS)
def test_doubling_a_hostile_text_at_most_about_doubles_the_cost(unit: str) -> None:
    ratio = doubling_ratio(_triage_text, unit, 200_000)
    assert ratio < BOUND, f"{unit!r}: doubling the input multiplied the cost by {ratio:.1f}"


def test_negation_and_lookbehind_emulation_keep_their_meaning() -> None:
    assert classify({}, "Caller does not need a refund, the bank statement is fine.", "").kind is K.NOT_BILLING
    assert classify({}, "Not about billing; she wants a refund.", "").kind is K.REFUND
    assert classify({}, "The manager in charge called.", "").kind is K.NOT_BILLING
    # A negation on the line before does not reach across the line break.
    assert classify({}, None, "User: no\nUser: refund my payment").kind is K.REFUND


def test_paying_out_of_pocket_is_no_payout_request() -> None:
    result = classify({}, "Caller paid out of pocket for the renewal and wants a refund.", "")
    assert result.kind is K.REFUND
    assert classify({}, "I had to pay out of pocket.", "").kind is not K.PAYOUT_REQUEST


def test_kinds_in_names_every_specific_signal() -> None:
    from bot.triage.classify import kinds_in

    assert kinds_in("Charged twice, so she wants a refund; no dispute.") == [K.DUPLICATE_CHARGE, K.REFUND]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_match_of_a_rule_holds_one_of_its_words(rule: Any, data: st.DataObject) -> None:
    """A rule skips texts without any of its `needs` words, so every match must hold one, in any case
    and spelling the pattern allows (Python's `re` reads these patterns as re2 does, and generates
    from them: case variants included, such as the Kelvin sign for "k")."""
    term = re.compile(rule.term, re.IGNORECASE)
    found = data.draw(st.from_regex(term, fullmatch=True))
    assert any(word in found.casefold() for word in rule.needs), (rule.name, found)
