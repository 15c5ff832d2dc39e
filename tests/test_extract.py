from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.triage.extract import KEYS, TEXT_LIMIT, extract
from bot.triage.model import Extracted
from storage.models import Case
from tests.linear import BOUND, doubling_ratio

# A Wednesday morning, so weekday phrases have a fixed meaning.
NOW = datetime(2026, 3, 11, 10, 0, tzinfo=UTC)
CALLER = "+14155550123"


def run(
    analysis: dict[str, Any] | None = None,
    summary: str | None = None,
    transcript: str = "",
    *,
    recording: str | None = None,
    transcript_url: str | None = None,
    caller_phone: str | None = CALLER,
    now: datetime = NOW,
) -> Extracted:
    return extract(
        analysis or {},
        summary,
        transcript,
        call_recording_url=recording,
        call_transcript_url=transcript_url,
        caller_phone=caller_phone,
        now=now,
    )


def _no_floats(value: object) -> None:
    assert not isinstance(value, float), value
    if isinstance(value, dict):
        for item in value.values():
            _no_floats(item)


# --- the DialNexa sample ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal("49.0"), Decimal("49.0")),
        ("49.00", Decimal("49.00")),
        (49.0, Decimal("49.0")),
        (49, Decimal(49)),
    ],
)
def test_dialnexa_sample(amount: object, expected: Decimal) -> None:
    analysis = {
        "invoice_number": "INV-1042",
        "amount": amount,
        "currency": "USD",
        "refund_reason": "duplicate charge",
    }
    fields = run(analysis)
    assert fields.invoice_number == "INV-1042"
    assert isinstance(fields.amount, Decimal)
    assert fields.amount == expected
    assert fields.currency == "USD"
    assert fields.refund_reason == "duplicate charge"
    assert fields.phone == CALLER
    _no_floats(fields.model_dump())


def test_no_float_anywhere_even_from_float_analysis_values() -> None:
    fields = run(
        {"amount": 49.99, "currency": "usd", "moonclerk_customer_id": 53453.0, "credit_request": 10.5}
    )
    assert fields.amount == Decimal("49.99")
    assert isinstance(fields.amount, Decimal)
    assert fields.credit_request == "10.5"
    _no_floats(fields.model_dump())


# --- money --------------------------------------------------------------------------------------------

TEXT_AMOUNTS: list[tuple[str, Decimal, str]] = [
    ("Caller was charged $1,249.00 on the annual plan.", Decimal("1249.00"), "USD"),
    ("The charge was 49.99 USD.", Decimal("49.99"), "USD"),
    ("The charge was USD 49.99.", Decimal("49.99"), "USD"),
    ("A charge of €30 appeared.", Decimal("30"), "EUR"),
    ("A charge of £12.50 appeared.", Decimal("12.50"), "GBP"),
    ("Invoice total was 1,000 EUR.", Decimal("1000"), "EUR"),
    ("She paid ¥5000 for the plan.", Decimal("5000"), "JPY"),
    ("He was billed 30 euros.", Decimal("30"), "EUR"),
    ("He was billed 20 dollars.", Decimal("20"), "USD"),
    ("The renewal was C$20.", Decimal("20"), "CAD"),
    ("The renewal was 250INR.", Decimal("250"), "INR"),
    ("Refund of $5 and then another $10.", Decimal("5"), "USD"),
]


@pytest.mark.parametrize(("summary", "amount", "currency"), TEXT_AMOUNTS)
def test_amount_from_summary(summary: str, amount: Decimal, currency: str) -> None:
    fields = run(summary=summary)
    assert isinstance(fields.amount, Decimal)
    assert (fields.amount, fields.currency) == (amount, currency)


def test_amount_from_transcript_when_summary_has_none() -> None:
    fields = run(summary="Caller wants a refund.", transcript="Caller: it was $19.99 last month.")
    assert (fields.amount, fields.currency) == (Decimal("19.99"), "USD")


@pytest.mark.parametrize(
    "summary",
    [
        "The caller mentioned 49.99 but no currency.",
        "I'll try 50 more times.",  # TRY is a currency code, "try" is not
        "There are 3 seats on the plan.",
        "Refund of -$49 was reversed.",
        "Invoice INV-1042 due 2026-12-01.",
    ],
)
def test_text_never_yields_an_amount_without_a_currency(summary: str) -> None:
    fields = run(summary=summary)
    assert fields.amount is None
    assert fields.currency is None


@pytest.mark.parametrize(
    ("analysis", "amount", "currency"),
    [
        ({"amount": "49.00"}, Decimal("49.00"), None),  # router sends this to review
        ({"amount": Decimal("12"), "currency": "unknown"}, Decimal("12"), None),
        ({"amount": "1,249.50", "currency": "eur"}, Decimal("1249.50"), "EUR"),
        ({"amount": "49.99 USD"}, Decimal("49.99"), "USD"),
        ({"amount": "€30"}, Decimal("30"), "EUR"),
        ({"amount": "$20", "currency": "USD"}, Decimal("20"), "USD"),
        ({"amount": "€30", "currency": "USD"}, None, "USD"),  # disagreement: no amount to act on
        ({"amount": -5, "currency": "USD"}, None, "USD"),
        ({"amount": "-5.00", "currency": "USD"}, None, "USD"),
        ({"amount": "forty nine", "currency": "USD"}, None, "USD"),
        ({"amount": True, "currency": "USD"}, None, "USD"),
        ({"amount": Decimal("NaN"), "currency": "USD"}, None, "USD"),
        ({"amount": "unknown", "currency": "GBP"}, None, "GBP"),
    ],
)
def test_amount_from_analysis(analysis: dict[str, Any], amount: Decimal | None, currency: str | None) -> None:
    fields = run(analysis)
    assert fields.amount == amount
    assert fields.amount is None or isinstance(fields.amount, Decimal)
    assert fields.currency == currency


def test_an_unparseable_analysis_amount_is_not_replaced_from_the_text() -> None:
    fields = run({"amount": "lots", "currency": "USD"}, summary="Caller was charged $99.")
    assert fields.amount is None


def test_analysis_currency_fills_in_a_text_amount_that_agrees() -> None:
    assert run({"currency": "USD"}, summary="Charged $99 twice.").amount == Decimal("99")
    disagreeing = run({"currency": "EUR"}, summary="Charged $99 twice.")
    assert (disagreeing.amount, disagreeing.currency) == (None, "EUR")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("usd", "USD"),
        ("$", "USD"),
        ("dollars", "USD"),
        ("Euro", "EUR"),
        ("€", "EUR"),
        ("pounds", "GBP"),
        ("£", "GBP"),
        ("rupees", "INR"),
        ("yen", "JPY"),
        ("C$", "CAD"),
        ("A$", "AUD"),
        (" jpy ", "JPY"),
        ("bucks", None),
        ("XYZ", None),
        ("", None),
    ],
)
def test_currency_aliases(raw: str, code: str | None) -> None:
    fields = run({"amount": "10", "currency": raw})
    assert fields.currency == code


# --- identifiers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [
        ({"invoice_number": "INV-1042"}, "INV-1042"),
        ({"invoice_number": " inv-1042 "}, "INV-1042"),
        ({"invoice": "INV 2026-00017"}, "INV-2026-00017"),
        ({"invoice_id": "a 10 42"}, "A1042"),
        ({"invoice_number": 10423}, "10423"),
        ({"invoice_number": "[redacted]"}, None),
        ({"invoice_number": "unknown"}, None),
        ({"invoice_number": "pending"}, None),
    ],
)
def test_invoice_number_from_analysis(analysis: dict[str, Any], expected: str | None) -> None:
    assert run(analysis).invoice_number == expected


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ("Caller asked about INV-1042.", "INV-1042"),
        ("Caller asked about INV 2026-00017 again.", "INV-2026-00017"),
        ("Caller asked about inv1042.", "INV-1042"),
        ("Caller gave invoice number 10423.", "10423"),
        ("Caller gave invoice number is 104 23.", "10423"),
        ("Caller gave invoice #88123.", "88123"),
        ("The invoice in_1La8pLqS2UnhPZ is wrong.", "in_1La8pLqS2UnhPZ"),
        ("Caller asked about the invoice from May.", None),
        ("Card [card ending 4242] was used for invoice [redacted].", None),
    ],
)
def test_invoice_number_from_text(summary: str, expected: str | None) -> None:
    assert run(summary=summary).invoice_number == expected


@pytest.mark.parametrize(
    ("text", "payment_id", "subscription_id"),
    [
        ("Charge ch_3NabcDEF12 was taken.", "ch_3NabcDEF12", None),
        ("Intent pi_3Nxyz987abc failed.", "pi_3Nxyz987abc", None),
        ("Payout py_1Abc23456 went out.", "py_1Abc23456", None),
        ("The payment ID is 1348394.", "1348394", None),
        ("Transaction ID 24675z8a from Poof.", "24675z8a", None),
        ("Subscription sub_1MowQVLkdIwHu7ix renews monthly.", None, "sub_1MowQVLkdIwHu7ix"),
        ("Subscription ID: 77821.", None, "77821"),
        ("Payment ID [card ending 4242].", None, None),
        ("Paid with [card ending 4242] and [redacted iban], payment no longer works.", None, None),
    ],
)
def test_payment_and_subscription_ids_from_text(
    text: str, payment_id: str | None, subscription_id: str | None
) -> None:
    fields = run(summary=None, transcript=f"Caller: {text}")
    assert (fields.payment_id, fields.subscription_id) == (payment_id, subscription_id)


MARKERS = ["[card ending 4242]", "[redacted iban]", "[redacted]", "****4242", "[redacted account number]"]


@pytest.mark.parametrize("marker", MARKERS)
def test_redaction_markers_are_never_ids(marker: str) -> None:
    analysis = {
        "account_id": marker,
        "account_number": marker,
        "payment_id": marker,
        "subscription_id": marker,
        "invoice_number": marker,
        "customer_name": marker,
        "crypto_address": marker,
        "phone": marker,
        "email": marker,
    }
    text = f"My account number is {marker}, payment ID {marker}, invoice {marker}, amount {marker}."
    fields = run(analysis, summary=text, transcript=f"Caller: {text}")
    assert fields.account_id is None
    assert fields.payment_id is None
    assert fields.subscription_id is None
    assert fields.invoice_number is None
    assert fields.customer_name is None
    assert fields.crypto_address is None
    assert fields.amount is None
    assert fields.phone == CALLER
    assert fields.email is None


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [
        ({"account_id": "ACME-42"}, "ACME-42"),
        ({"account": "CUST 001"}, None),  # a phrase, not a reference
        ({"account_number": 778812}, "778812"),
        ({"account": "business"}, None),
        ({"account_id": "", "account": "GHS430"}, "GHS430"),
    ],
)
def test_account_id(analysis: dict[str, Any], expected: str | None) -> None:
    assert run(analysis).account_id == expected


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [
        ({"moonclerk_customer_id": 53453}, 53453),
        ({"moonclerk_customer_id": "53453"}, 53453),
        ({"customer_id": Decimal("12742")}, 12742),
        ({"customer_id": "cus_NffrFeUfNV2Hib"}, None),
        ({"customer_id": True}, None),
        ({"customer_id": -3}, None),
        ({"customer_id": Decimal("1.5")}, None),
    ],
)
def test_moonclerk_customer_id(analysis: dict[str, Any], expected: int | None) -> None:
    assert run(analysis).moonclerk_customer_id == expected


# --- people and contact -------------------------------------------------------------------------------


def test_analysis_key_spellings() -> None:
    fields = run(
        {
            "caller_name": "  Jane   Doe ",
            "Email": "Jane.Doe@Example.COM",
            "payment_id": "ch_3NabcDEF12",
            "subscription_id": "sub_1MowQVLkdIwHu7ix",
            "country": "DE",
            "payment_status": "Failed",
            "dispute_reason": "Product not received",
            "credit_request": "Ten dollars of account credit",
            "approval_required": "yes",
            "owner": "U012ABCDEF",
            "escalation_reason": "VIP customer threatening to churn",
            "next_step": "Finance to confirm the refund by email",
            "callback_expected": "true",
            "crm_link": "https://crm.example.com/accounts/42",
            "zendesk_url": "https://acme.zendesk.com/agent/tickets/981",
            "payment_link": "https://www.poof.io/checkout/session/abc",
            "transcript_url": "https://dialnexa.example/t/1",
            "recording_url": "https://dialnexa.example/r/1",
            "customer_claim": "Says the renewal price was never agreed.",
        }
    )
    assert fields.customer_name == "Jane Doe"
    assert fields.email == "jane.doe@example.com"
    assert fields.payment_id == "ch_3NabcDEF12"
    assert fields.subscription_id == "sub_1MowQVLkdIwHu7ix"
    assert fields.tax_region == "DE"
    assert fields.payment_status == "failed"
    assert fields.dispute_reason == "Product not received"
    assert fields.credit_request == "Ten dollars of account credit"
    assert fields.approval_requested is True
    assert fields.finance_owner == "U012ABCDEF"
    assert fields.escalation_reason == "VIP customer threatening to churn"
    assert fields.next_step == "Finance to confirm the refund by email"
    assert fields.callback_expected is True
    assert fields.crm_url == "https://crm.example.com/accounts/42"
    assert fields.support_ticket_url == "https://acme.zendesk.com/agent/tickets/981"
    assert fields.payment_platform_url == "https://www.poof.io/checkout/session/abc"
    assert fields.transcript_url == "https://dialnexa.example/t/1"
    assert fields.recording_url == "https://dialnexa.example/r/1"
    assert fields.caller_claim == "Says the renewal price was never agreed."


def test_email_and_recipient_from_text() -> None:
    fields = run(
        summary="Caller (Sam@Acme.io) asked us to send the invoice to accounts-payable@acme.io.",
    )
    assert fields.email == "sam@acme.io"
    assert fields.recipient_email == "accounts-payable@acme.io"


def test_recipient_alone_is_not_assumed_to_be_the_customer() -> None:
    fields = run(summary="Send the receipt to bookkeeper@firm.example.")
    assert fields.recipient_email == "bookkeeper@firm.example"
    assert fields.email is None


def test_recipient_from_analysis() -> None:
    fields = run({"send_to": "AP@Acme.io", "recipient_email": "not an email"})
    assert fields.recipient_email == "ap@acme.io"


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [
        ({}, CALLER),
        ({"phone": "+44 20 7946 0958"}, "+442079460958"),
        ({"phone_number": "442079460958"}, "+442079460958"),
        ({"callback_number": "(415) 555-0199"}, "+14155550199"),  # local number, caller is on +1
        ({"phone": "call me"}, CALLER),
        ({"phone": "12"}, CALLER),
    ],
)
def test_phone(analysis: dict[str, Any], expected: str) -> None:
    assert run(analysis).phone == expected


def test_phone_absent_everywhere() -> None:
    assert run(caller_phone=None).phone is None


# --- booleans, payout ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("yes", True),
        ("No", False),
        ("TRUE", True),
        ("false", False),
        (1, True),
        (0, False),
        ("maybe", None),
        ("unknown", None),
        (None, None),
    ],
)
def test_booleans(raw: object, expected: bool | None) -> None:
    fields = run({"approval_required": raw, "payout_consent": raw, "callback_expected": raw})
    assert fields.approval_requested is expected
    assert fields.payout_consent is expected
    assert fields.callback_expected is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, "yes"), ("yes", "yes"), ("no", None), (False, None), ("false", None), (0, None), ("N/A", None)],
)
def test_credit_request_never_says_no_as_text(raw: object, expected: str | None) -> None:
    # The router reads any credit_request text as a request, so "no" must not survive as text.
    assert run({"credit_request": raw}).credit_request == expected


def test_payout_fields() -> None:
    fields = run(
        {
            "payout_recipient": "Jane Doe",
            "payout_consent": "yes",
            "crypto": "Bitcoin",
            "crypto_address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        }
    )
    assert fields.payout_recipient == "Jane Doe"
    assert fields.payout_consent is True
    assert fields.crypto == "bitcoin"
    assert fields.crypto_address == "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("ETH", "ethereum"), ("sol", "solana"), ("Solana", "solana"), ("BTC", "bitcoin"), ("unknown", None)],
)
def test_crypto_names(raw: str, expected: str | None) -> None:
    assert run({"crypto": raw}).crypto == expected


@pytest.mark.parametrize(
    "address", ["my wallet", "0x12", "[redacted wallet]", "bc1q ar0s rrr7 xfkv y5l6 43ly"]
)
def test_bad_crypto_addresses(address: str) -> None:
    assert run({"crypto_address": address}).crypto_address is None


# --- dates --------------------------------------------------------------------------------------------

FRIDAY_5PM = datetime(2026, 3, 13, 17, 0, tzinfo=UTC)

DEADLINES: list[tuple[object, datetime | None]] = [
    ("2026-03-20", datetime(2026, 3, 20, 17, 0, tzinfo=UTC)),
    ("2026-03-20T09:30:00Z", datetime(2026, 3, 20, 9, 30, tzinfo=UTC)),
    ("2026-03-20T09:30:00-05:00", datetime(2026, 3, 20, 14, 30, tzinfo=UTC)),
    ("2026-03-20T09:30:00", datetime(2026, 3, 20, 9, 30, tzinfo=UTC)),
    ("tomorrow", datetime(2026, 3, 12, 17, 0, tzinfo=UTC)),
    ("within 24 hours", NOW + timedelta(hours=24)),
    ("24 hours", NOW + timedelta(hours=24)),
    ("2 days", NOW + timedelta(days=2)),
    ("within 2 hours", NOW + timedelta(hours=2)),
    ("in 2 days", NOW + timedelta(days=2)),
    ("in two days", NOW + timedelta(days=2)),
    ("within a week", NOW + timedelta(days=7)),
    ("by Friday", FRIDAY_5PM),
    ("Friday", FRIDAY_5PM),
    ("by Monday", datetime(2026, 3, 16, 17, 0, tzinfo=UTC)),
    ("by Wednesday", datetime(2026, 3, 11, 17, 0, tzinfo=UTC)),  # today, still before close
    ("next Wednesday", datetime(2026, 3, 18, 17, 0, tzinfo=UTC)),
    ("next week", NOW + timedelta(days=7)),
    ("end of day", datetime(2026, 3, 11, 17, 0, tzinfo=UTC)),
    ("end of week", FRIDAY_5PM),
    ("within 3 business days", datetime(2026, 3, 16, 10, 0, tzinfo=UTC)),
    ("March 20", datetime(2026, 3, 20, 17, 0, tzinfo=UTC)),
    (datetime(2026, 3, 12, 8, 0, tzinfo=UTC), datetime(2026, 3, 12, 8, 0, tzinfo=UTC)),
    (date(2026, 3, 12), datetime(2026, 3, 12, 17, 0, tzinfo=UTC)),
    (int(datetime(2026, 3, 12, 8, 0, tzinfo=UTC).timestamp()), datetime(2026, 3, 12, 8, 0, tzinfo=UTC)),
    # Parse errors and implausible values never become a deadline, least of all one long past.
    ("2019-01-01", None),
    ("1970-01-01T00:00:00Z", None),
    (0, None),
    ("2031-01-01", None),
    ("2026-02-30", None),
    ("asap-ish", None),
    ("", None),
    ("unknown", None),
    (True, None),
]


@pytest.mark.parametrize(("raw", "expected"), DEADLINES)
def test_follow_up_deadline_from_analysis(raw: object, expected: datetime | None) -> None:
    fields = run({"follow_up_deadline": raw})
    assert fields.follow_up_deadline == expected
    if fields.follow_up_deadline is not None:
        assert fields.follow_up_deadline.utcoffset() == timedelta(0)


def test_naive_now_is_taken_as_utc() -> None:
    fields = run({"deadline": "tomorrow"}, now=NOW.replace(tzinfo=None))
    assert fields.follow_up_deadline == datetime(2026, 3, 12, 17, 0, tzinfo=UTC)


def test_by_friday_said_on_friday_evening_is_next_friday() -> None:
    friday_evening = datetime(2026, 3, 13, 19, 0, tzinfo=UTC)
    fields = run({"follow_up_by": "by Friday"}, now=friday_evening)
    assert fields.follow_up_deadline == datetime(2026, 3, 20, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ("Caller was charged twice. Agent promised a callback by Friday.", FRIDAY_5PM),
        ("Finance will follow up within 24 hours.", NOW + timedelta(hours=24)),
        ("Agent will send the receipt tomorrow.", datetime(2026, 3, 12, 17, 0, tzinfo=UTC)),
        ("Finance will get back to the caller next week.", NOW + timedelta(days=7)),
        ("Follow up on 2026-03-18.", datetime(2026, 3, 18, 17, 0, tzinfo=UTC)),
        # A date that is not about following up is not a follow-up deadline.
        ("The invoice is due tomorrow.", None),
        ("Caller will travel next week.", None),
    ],
)
def test_follow_up_deadline_from_summary(summary: str, expected: datetime | None) -> None:
    assert run(summary=summary).follow_up_deadline == expected


def test_analysis_deadline_wins_over_summary() -> None:
    fields = run({"deadline": "2026-03-25"}, summary="We will call back tomorrow.")
    assert fields.follow_up_deadline == datetime(2026, 3, 25, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("analysis", "summary", "expected"),
    [
        ({"due_date": "2026-12-01"}, None, date(2026, 12, 1)),
        ({"due_date": "2026-12-01T22:00:00-05:00"}, None, date(2026, 12, 1)),
        ({"due_date": "December 1, 2026"}, None, date(2026, 12, 1)),
        ({"due_date": "1 Dec 2026"}, None, date(2026, 12, 1)),
        ({"due_date": "13/04/2026"}, None, date(2026, 4, 13)),
        ({"due_date": "03/04/2026"}, None, None),  # March or April: not guessed
        ({"due_date": "soon"}, None, None),
        ({}, "The invoice is due on 2026-12-01.", date(2026, 12, 1)),
        ({}, "Payment was due December 1.", date(2026, 12, 1)),
        ({}, "It is due March 1st and now overdue.", date(2026, 3, 1)),
        ({}, "The renewal is due tomorrow.", date(2026, 3, 12)),
        ({}, "The late fee is due to a duplicate charge on March 3.", None),
    ],
)
def test_due_date(analysis: dict[str, Any], summary: str | None, expected: date | None) -> None:
    assert run(analysis, summary=summary).due_date == expected


# --- claim, status, callback --------------------------------------------------------------------------


def test_caller_claim_falls_back_to_the_first_summary_sentence() -> None:
    fields = run(summary="Caller believes the March renewal was charged twice. Agent logged a ticket.")
    assert fields.caller_claim == "Caller believes the March renewal was charged twice."


def test_caller_claim_keeps_redaction_markers_readable() -> None:
    fields = run(summary="Caller says [card ending 4242] was charged twice.")
    assert fields.caller_claim == "Caller says [card ending 4242] was charged twice."


@pytest.mark.parametrize("key", ["caller_claim", "customer_claim", "issue", "request"])
def test_caller_claim_from_analysis(key: str) -> None:
    fields = run({key: "Wants the late fee removed"}, summary="Something else entirely.")
    assert fields.caller_claim == "Wants the late fee removed"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Her payment was declined twice.", "declined"),
        ("The payment is still pending.", "pending"),
        ("The charge was refunded already.", "refunded"),
        ("Nothing about status here.", None),
    ],
)
def test_payment_status_from_text(text: str, status: str | None) -> None:
    assert run(summary=text).payment_status == status


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ("Caller requested a callback about the refund.", True),
        ("Please call me back, the caller said.", True),
        ("Caller was satisfied.", None),
    ],
)
def test_callback_from_summary(summary: str, expected: bool | None) -> None:
    assert run(summary=summary).callback_expected is expected


def test_callback_from_analysis_overrides_summary() -> None:
    assert (
        run({"callback_requested": "no"}, summary="Caller requested a callback.").callback_expected is False
    )


# --- links --------------------------------------------------------------------------------------------


def test_event_links_are_used_when_analysis_has_none() -> None:
    fields = run(recording="https://dialnexa.example/rec/9", transcript_url="https://dialnexa.example/t/9")
    assert fields.recording_url == "https://dialnexa.example/rec/9"
    assert fields.transcript_url == "https://dialnexa.example/t/9"


def test_analysis_links_win_over_event_links() -> None:
    fields = run({"recording_url": "https://a.example/r"}, recording="https://dialnexa.example/rec/9")
    assert fields.recording_url == "https://a.example/r"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "ftp://files.example/x",
        "crm.example.com/42",
        "https://",
        "http://exa mple.com",
        "mailto:a@b.co",
        "[redacted url]",
        "unknown",
    ],
)
def test_only_http_links(url: str) -> None:
    fields = run(
        {"crm_url": url, "ticket_url": url, "payment_platform_url": url, "recording_url": url},
        recording=url,
        transcript_url=url,
    )
    assert fields.crm_url is None
    assert fields.support_ticket_url is None
    assert fields.payment_platform_url is None
    assert fields.recording_url is None
    assert fields.transcript_url is None


# --- text hygiene -------------------------------------------------------------------------------------


def test_text_fields_are_stripped_and_bounded() -> None:
    long = "word " * 400
    fields = run(
        {"refund_reason": long, "escalation_reason": "  spaced   out\n reason  ", "next_step": long},
        summary=long,
    )
    assert fields.refund_reason is not None and len(fields.refund_reason) <= TEXT_LIMIT
    assert fields.next_step is not None and len(fields.next_step) <= TEXT_LIMIT
    assert fields.caller_claim is not None and len(fields.caller_claim) <= TEXT_LIMIT
    assert fields.escalation_reason == "spaced out reason"


def test_missing_values_are_missing() -> None:
    analysis = {
        key: value
        for key, value in zip(
            ["customer_name", "email", "invoice_number", "refund_reason", "finance_owner", "tax_region"],
            ["", "unknown", "N/A", None, "n/a", "  "],
            strict=True,
        )
    }
    fields = run(analysis)
    assert fields.model_dump(exclude_none=True) == {"phone": CALLER}


def test_empty_call() -> None:
    fields = run(caller_phone=None)
    assert fields.model_dump(exclude_none=True) == {}


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=60),
    st.sampled_from(
        ["[card ending 4242]", "yes", "tomorrow", "2026-13-45", "$-1", "€1,0,0", "1e400", "INV-"]
    ),
    st.lists(st.integers(), max_size=2),
)
_KEYS = st.sampled_from(
    [
        "amount",
        "currency",
        "invoice_number",
        "payment_id",
        "account_id",
        "due_date",
        "follow_up_deadline",
        "deadline",
        "phone",
        "email",
        "customer_id",
        "crypto",
        "crypto_address",
        "approval_required",
        "credit_request",
        "recording_url",
        "callback_expected",
        "customer_name",
        "tax_region",
        "issue",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    analysis=st.dictionaries(_KEYS, _VALUES, max_size=8),
    summary=st.one_of(st.none(), st.text(max_size=200)),
    transcript=st.text(max_size=200),
)
def test_extract_never_fails_and_never_floats(
    analysis: dict[str, Any], summary: str | None, transcript: str
) -> None:
    fields = run(analysis, summary=summary, transcript=transcript)
    _no_floats(fields.model_dump())
    assert fields.amount is None or (isinstance(fields.amount, Decimal) and fields.amount >= 0)
    if fields.follow_up_deadline is not None:
        assert fields.follow_up_deadline.utcoffset() == timedelta(0)
        assert fields.follow_up_deadline >= NOW - timedelta(days=1)


@settings(max_examples=200, deadline=None)
@given(
    number=st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False),
    symbol=st.sampled_from(["$", "€", "£"]),
)
def test_symbol_amounts_round_trip(number: Decimal, symbol: str) -> None:
    fields = run(summary=f"Caller was charged {symbol}{number:,} today.")
    assert fields.amount == number


# --- linear time on hostile text ----------------------------------------------------------------------

ADVERSARIAL_UNITS = [
    "$1234567,9,9.1x ", "-$1 ", "1 XYZ ", "a@a.a@", "_a@b.co", "%a", "'a", "invoice number ", "invoice #12 34 5x ",
    "[a]", "[" * 40 + "] ", "xxxx1 ", "sent to x ", "send it to ", "2026-11-22 ", "2026-02-30-", "due x! ",
    "due to ", "payment id abcd ", "March 3 ", "follow up. ", "1.1.1.1,1,1 ",
]


def _triage_text(text: str) -> object:
    return run({}, text, text)


@pytest.mark.parametrize("unit", ADVERSARIAL_UNITS)
def test_doubling_a_hostile_text_at_most_about_doubles_the_cost(unit: str) -> None:
    ratio = doubling_ratio(_triage_text, unit, 100_000)
    assert ratio < BOUND, f"{unit!r}: doubling the input multiplied the cost by {ratio:.1f}"


def test_a_card_number_given_as_the_amount_is_not_money() -> None:
    fields = run({"amount": "4242 4242 4242 4242.00", "currency": "USD"})
    assert fields.amount is None
    assert run({"amount": 4111111111111111}).amount is None


def test_an_absurd_amount_is_dropped_not_stored() -> None:
    assert run({"amount": "1" * 40, "currency": "USD"}).amount is None
    assert run(summary="Caller was charged $" + "9" * 30 + " by mistake.").amount is None


def test_values_that_would_not_fit_their_column_are_dropped() -> None:
    assert run({"amount": "0." + "1" * 1000, "currency": "USD"}).amount is None
    assert run({"crypto": "a coin whose name is far longer than any real coin's name"}).crypto is None
    assert run({"crypto": "usdc"}).crypto == "usd coin"


def test_every_captured_field_is_a_column_and_is_read_from_its_own_name() -> None:
    columns = Case.__table__.c  # type: ignore[attr-defined]
    for name in Extracted.model_fields:
        assert name in columns, name
        assert name in KEYS[name], name
    assert set(KEYS) == set(Extracted.model_fields)


def test_a_captured_value_is_not_refused_for_its_length() -> None:
    # Column lengths are the table's; the triage result holds whatever extraction let through.
    long_email = "a" * 600 + "@example.com"
    assert Extracted(recipient_email=long_email).recipient_email == long_email
