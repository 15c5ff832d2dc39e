"""MoonClerk and Poof clients over real HTTP against the local stand-ins (no mocked httpx)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from bot.standins.moonclerk import ACCEPT, MoonClerkStandIn
from bot.standins.poof import PoofStandIn
from providers.base import (
    HttpClient,
    NotFound,
    OutcomeUnknown,
    Provider,
    ProviderError,
    ProviderResult,
    retry_after_seconds,
    scrub,
)
from providers.moonclerk import Customer, MoonClerkClient, Payment
from providers.poof import (
    FIAT_METHODS,
    KNOWN_CRYPTOS,
    PoofClient,
    Transaction,
    address_problem,
    verify_webhook_secret,
)

MC_KEY = "mc_live_7Hq2SECRETkey9"
POOF_KEY = "poofSECRETkey_4b7Zx21q"
BTC_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


class Sleeps(list[float]):
    """An injected `sleep` that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def moonclerk() -> Iterator[MoonClerkStandIn]:
    with MoonClerkStandIn(api_key=MC_KEY) as standin:
        yield standin


@pytest.fixture
def empty_moonclerk() -> Iterator[MoonClerkStandIn]:
    with MoonClerkStandIn(api_key=MC_KEY, seed=False) as standin:
        yield standin


@pytest.fixture
def mc(moonclerk: MoonClerkStandIn, sleeps: Sleeps) -> Iterator[MoonClerkClient]:
    with MoonClerkClient(MC_KEY, moonclerk.url, timeout=5.0, sleep=sleeps) as client:
        yield client


@pytest.fixture
def poof() -> Iterator[PoofStandIn]:
    with PoofStandIn(api_key=POOF_KEY, balance="5") as standin:
        yield standin


@pytest.fixture
def pc(poof: PoofStandIn, sleeps: Sleeps) -> Iterator[PoofClient]:
    with PoofClient(POOF_KEY, poof.url, timeout=5.0, sleep=sleeps) as client:
        yield client


# --------------------------------------------------------------------------------------------- MoonClerk


def test_customers_are_paged_with_count_and_offset_until_a_short_page(empty_moonclerk: MoonClerkStandIn) -> None:
    for n in range(25):
        empty_moonclerk.add_customer(id=1000 + n, email=f"c{n}@example.com")
    with MoonClerkClient(MC_KEY, empty_moonclerk.url) as client:
        customers = list(client.list_customers(page_size=10))
    assert [c.id for c in customers] == [1000 + n for n in range(25)]
    calls = empty_moonclerk.calls("/customers")
    assert [(r.query["count"], r.query["offset"]) for r in calls] == [("10", "0"), ("10", "10"), ("10", "20")]
    assert calls[0].headers["authorization"] == f"Token token={MC_KEY}"
    assert calls[0].headers["accept"] == ACCEPT


def test_a_full_last_page_costs_one_empty_request_and_default_page_is_100(empty_moonclerk: MoonClerkStandIn) -> None:
    for _ in range(20):
        empty_moonclerk.add_customer()
    with MoonClerkClient(MC_KEY, empty_moonclerk.url) as client:
        assert len(list(client.list_customers(page_size=10))) == 20
        assert [r.query["offset"] for r in empty_moonclerk.calls("/customers")] == ["0", "10", "20"]
        empty_moonclerk.clear_requests()
        assert len(list(client.list_customers())) == 20
    assert [(r.query["count"], r.query["offset"]) for r in empty_moonclerk.calls("/customers")] == [("100", "0")]


def test_lists_are_lazy_and_filters_are_checked_before_any_request(mc: MoonClerkClient,
                                                                  moonclerk: MoonClerkStandIn) -> None:
    pages = mc.list_payments()
    assert moonclerk.calls("/payments") == []
    assert len(list(pages)) == 1
    with pytest.raises(ValueError, match="successful"):
        mc.list_payments(status="active")  # the docs' own example uses this value; it is not a payment status
    with pytest.raises(ValueError, match="page_size"):
        mc.list_customers(page_size=101)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        mc.list_payments(date_from="April 8")
    assert len(moonclerk.calls("/payments")) == 1


def test_payments_filtered_by_customer_and_dates(mc: MoonClerkClient, moonclerk: MoonClerkStandIn) -> None:
    mine = [moonclerk.add_payment(customer_id=77, amount=2500 + n, date=f"2024-03-0{n + 1}T10:00:00Z")
            for n in range(3)]
    moonclerk.add_payment(customer_id=78, amount=999, date="2024-03-02T10:00:00Z")
    found = list(mc.list_payments(customer_id=77, date_from=date(2024, 3, 2),
                                  date_to=datetime(2024, 3, 3, 23, 0, tzinfo=UTC), status="successful"))
    assert sorted(p.id for p in found) == sorted(p["id"] for p in mine[1:])
    assert {p.customer_id for p in found} == {77}
    query = moonclerk.calls("/payments")[-1].query
    assert query == {"customer_id": "77", "date_from": "2024-03-02", "date_to": "2024-03-03",
                     "status": "successful", "count": "100", "offset": "0"}


def test_customer_and_payment_fields_and_money_are_exact(mc: MoonClerkClient, moonclerk: MoonClerkStandIn) -> None:
    customer = mc.get_customer(523425)
    assert isinstance(customer, Customer)
    assert customer.management_url == mc.customer_url(customer) == "https://app.moonclerk.com/manage/xyz1234567"
    assert customer.status == "active"
    assert customer.plan is not None and customer.plan.amount == 1200
    assert customer.plan.amount_decimal == Decimal("12.00") and str(customer.plan.money) == "12.00 USD"
    assert customer.payment_method is not None and customer.payment_method.last4 == "4242"
    # Card expiry is neither modelled nor kept as an extra field.
    assert "exp_month" not in repr(customer) and "exp_year" not in customer.model_dump_json()

    payment = mc.get_payment(1348394)
    assert isinstance(payment, Payment)
    assert payment.amount == 1000 and payment.currency == "USD"
    assert payment.amount_decimal == Decimal("10.00") and isinstance(payment.amount_decimal, Decimal)
    assert payment.fee_decimal == Decimal("0.59") and payment.amount_refunded_decimal == Decimal("0.00")

    yen = moonclerk.add_payment(currency="jpy", amount=1500, fee=45)
    fetched = mc.get_payment(yen["id"])
    assert fetched.currency == "JPY" and fetched.amount_decimal == Decimal("1500")
    assert str(fetched.money) == "1,500 JPY"

    form = mc.get_form(234456)
    assert form.payment_volume_money is not None and form.payment_volume_money.amount == Decimal("76.65")
    assert [f.id for f in mc.list_forms()] == [234456]


def test_legacy_payment_source_key_is_accepted(mc: MoonClerkClient, moonclerk: MoonClerkStandIn) -> None:
    legacy = moonclerk.add_payment(payment_method=None,
                                   payment_source={"type": "bank_account", "last4": "6789", "bank_name": "First Bank",
                                                   "exp_month": 1, "exp_year": 2030})
    payment = mc.get_payment(legacy["id"])
    assert payment.payment_method is not None
    assert (payment.payment_method.last4, payment.payment_method.bank_name) == ("6789", "First Bank")
    assert "2030" not in payment.model_dump_json()


def test_missing_customer_is_not_found(mc: MoonClerkClient, moonclerk: MoonClerkStandIn) -> None:
    with pytest.raises(NotFound) as caught:
        mc.get_customer(999999)
    assert caught.value.status == 404 and not caught.value.retryable and caught.value.provider == "moonclerk"
    assert len(moonclerk.calls("/customers/999999")) == 1
    with pytest.raises(ValueError):
        mc.get_customer("../payments")  # type: ignore[arg-type]


def test_a_429_is_retried_after_the_retry_after_wait(mc: MoonClerkClient, moonclerk: MoonClerkStandIn,
                                                     sleeps: Sleeps) -> None:
    moonclerk.fail_next("/customers/523425", 429, headers={"Retry-After": "3"})
    assert mc.get_customer(523425).id == 523425
    assert len(moonclerk.calls("/customers/523425")) == 2
    assert sleeps == [3.0]


def test_5xx_retries_back_off_then_give_up_as_retryable(mc: MoonClerkClient, moonclerk: MoonClerkStandIn,
                                                        sleeps: Sleeps, caplog: pytest.LogCaptureFixture) -> None:
    moonclerk.fail_next("/payments", 503, times=4)
    with caplog.at_level(logging.WARNING, logger="providers"), pytest.raises(ProviderError) as caught:
        list(mc.list_payments())
    error = caught.value
    assert type(error) is ProviderError and error.retryable and error.status == 503
    assert "MoonClerk" in str(error) and "4 attempts" in str(error)
    assert len(moonclerk.calls("/payments")) == 4
    # Three waits between four attempts, growing and jittered within [ceiling/2, ceiling].
    assert len(sleeps) == 3
    for wait, ceiling in zip(sleeps, (0.5, 1.0, 2.0), strict=True):
        assert ceiling / 2 <= wait <= ceiling
    assert "retrying" in caplog.text and MC_KEY not in caplog.text

    moonclerk.fail_next("/payments", 502, times=3)
    assert len(list(mc.list_payments())) == 1  # recovers on the fourth attempt


def test_wrong_key_is_a_non_retryable_error_that_never_shows_the_key(moonclerk: MoonClerkStandIn,
                                                                     sleeps: Sleeps,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    wrong = "mc_live_WRONGkey_0000"
    with caplog.at_level(logging.DEBUG), MoonClerkClient(wrong, moonclerk.url, sleep=sleeps) as client:
        with pytest.raises(ProviderError) as caught:
            client.get_customer(523425)
        assert wrong not in repr(client)
    error = caught.value
    assert error.status == 401 and not error.retryable and not isinstance(error, OutcomeUnknown)
    assert "Invalid API key" in str(error)
    for text in (str(error), repr(error), caplog.text):
        assert wrong not in text
    assert sleeps == [] and len(moonclerk.calls("/customers/523425")) == 1


def test_non_json_error_bodies_are_tolerated(mc: MoonClerkClient, moonclerk: MoonClerkStandIn) -> None:
    moonclerk.fail_next("/forms", 400, body="count must be an integer\n")
    with pytest.raises(ProviderError) as caught:
        list(mc.list_forms())
    assert caught.value.status == 400 and "count must be an integer" in str(caught.value)
    moonclerk.fail_next("/forms", 400, body=b"<html><body>Bad Request</body></html>")
    with pytest.raises(ProviderError, match=r"\(HTTP 400\)\.$"):
        list(mc.list_forms())


def test_a_key_echoed_by_the_provider_is_scrubbed(moonclerk: MoonClerkStandIn) -> None:
    moonclerk.fail_next("/customers/1", 403, body={"error": {"message": f"key {MC_KEY} is disabled"}})
    with MoonClerkClient(MC_KEY, moonclerk.url) as client, pytest.raises(ProviderError) as caught:
        client.get_customer(1)
    assert MC_KEY not in str(caught.value) and "[redacted] is disabled" in str(caught.value)
    assert scrub({"x-poof-signature": "s", "a": [f"x{MC_KEY}"]}, [MC_KEY]) == {"a": ["x[redacted]"]}


# --------------------------------------------------------------------------------------------- Poof


def test_fiat_invoice_sends_a_decimal_string_and_links_to_the_transaction(pc: PoofClient, poof: PoofStandIn) -> None:
    result = pc.create_fiat_invoice(Decimal("149"), "usd", "paypal", success_url="https://example.com/thanks",
                                    metadata={"dialnexa_call_id": "call_1"})
    assert isinstance(result, ProviderResult) and result.provider == "poof"
    request = poof.calls("/api/v1/create_fiat_invoice")[0]
    assert request.json == {"amount": "149.00", "payment": "paypal", "currency": "USD",
                            "success_url": "https://example.com/thanks", "metadata": {"dialnexa_call_id": "call_1"}}
    assert request.headers["authorization"] == POOF_KEY
    assert request.headers["content-type"] == "application/json"
    assert result.reference is not None and result.url == f"{poof.url}/checkout/session/{result.reference}"

    pending = pc.get_transaction(result.reference)
    assert not pending.is_paid and pending.paid == "no"
    poof.mark_paid(result.reference)
    paid = pc.get_transaction(result.reference)
    assert paid.is_paid and paid.amount == Decimal("149.00") and isinstance(paid.amount, Decimal)
    assert paid.external_metadata == {"dialnexa_call_id": "call_1"}

    pc.create_fiat_invoice(Decimal("1500"), "JPY", "cashapp")
    yen = poof.calls("/api/v1/create_fiat_invoice")[-1].json
    assert yen is not None and yen["amount"] == "1500"


@pytest.mark.parametrize(
    ("amount", "currency", "problem"),
    [
        (Decimal("10.001"), "USD", "at most 2 decimal places"),
        (Decimal("0"), "USD", "above zero"),
        (Decimal("NaN"), "USD", "above zero"),
        (10.5, "USD", "never a float"),
        (Decimal("10"), "dollarz", "ISO 4217"),
    ],
)
def test_bad_invoice_input_is_refused_before_sending(pc: PoofClient, poof: PoofStandIn, amount: object,
                                                     currency: str, problem: str) -> None:
    with pytest.raises(ProviderError, match=problem) as caught:
        pc.create_fiat_invoice(amount, currency, "paypal")  # type: ignore[arg-type]
    assert not caught.value.retryable
    assert poof.calls("/api/v1/create_fiat_invoice") == []


def test_payout_is_sent_once_and_listed(pc: PoofClient, poof: PoofStandIn) -> None:
    result = pc.send_payout(Decimal("0.0100"), "Bitcoin", BTC_ADDRESS)
    request = poof.calls("/api/v2/payouts")[0]
    assert request.json == {"amount": "0.0100", "crypto": "bitcoin", "address": BTC_ADDRESS}
    assert result.reference is not None and result.url is None
    assert result.raw["remaining_balance"] == "4.9900"
    listed = pc.list_transactions()
    assert [t.payment_id for t in listed] == [result.reference]
    assert listed[0].paid == "payout" and not listed[0].is_paid and listed[0].amount == Decimal("0.0100")


def test_payout_slower_than_the_timeout_is_unknown_and_never_repeated(poof: PoofStandIn, sleeps: Sleeps) -> None:
    poof.delay("/api/v2/payouts", 2)
    started = time.monotonic()
    with PoofClient(POOF_KEY, poof.url, timeout=0.5, sleep=sleeps) as client, pytest.raises(OutcomeUnknown) as caught:
        client.send_payout(Decimal("1"), "ethereum", "0x" + "ab" * 20)
    assert time.monotonic() - started < 1.5
    assert "unknown: check poof" in str(caught.value).lower() and not caught.value.retryable
    with pytest.raises(TimeoutError):
        poof.wait_for("/api/v2/payouts", timeout=1.0, count=2)
    assert len(poof.calls("/api/v2/payouts")) == 1 and sleeps == []
    # Why it is "unknown" rather than "failed": the slow request did pay out in the end.
    poof.wait_until(lambda: poof.payout_count == 1, 3.0, "the delayed payout never completed")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_payout_server_error_is_one_request_and_not_retryable(pc: PoofClient, poof: PoofStandIn, sleeps: Sleeps,
                                                              status: int) -> None:
    poof.fail_next("/api/v2/payouts", status)
    with pytest.raises(ProviderError) as caught:
        pc.send_payout(Decimal("1"), "solana", "5PEmyGfzdVuwGWVRcRAqZ9FyrNkxqSzNKGvk5Rtvh276")
    # A server error on a write leaves its effect indeterminate: reported as unknown, never retried.
    assert isinstance(caught.value, OutcomeUnknown) and caught.value.status == status
    assert not caught.value.retryable
    assert len(poof.calls("/api/v2/payouts")) == 1 and sleeps == [] and poof.payout_count == 0


def test_payout_rate_limited_or_refused_is_a_definite_failure(pc: PoofClient, poof: PoofStandIn) -> None:
    poof.fail_next("/api/v2/payouts", 429)
    with pytest.raises(ProviderError) as limited:
        pc.send_payout(Decimal("1"), "btc", BTC_ADDRESS)
    assert type(limited.value) is ProviderError and limited.value.retryable and "nothing was done" in str(limited.value)
    with pytest.raises(ProviderError) as refused:
        pc.send_payout(Decimal("6"), "btc", BTC_ADDRESS)  # more than the stand-in's balance of 5
    assert type(refused.value) is ProviderError and refused.value.status == 400 and not refused.value.retryable
    assert "insufficient balance" in str(refused.value)
    assert len(poof.calls("/api/v2/payouts")) == 2 and poof.payout_count == 0


def test_payout_to_an_unreachable_poof_was_never_sent(sleeps: Sleeps) -> None:
    with PoofStandIn(api_key=POOF_KEY) as gone:
        url = gone.url
    with PoofClient(POOF_KEY, url, timeout=2.0, sleep=sleeps) as client, pytest.raises(ProviderError) as caught:
        client.send_payout(Decimal("1"), "btc", BTC_ADDRESS)
    assert not isinstance(caught.value, OutcomeUnknown) and caught.value.retryable
    assert "nothing was sent" in str(caught.value) and sleeps == []


def test_payout_to_a_malformed_address_is_refused_before_sending(pc: PoofClient, poof: PoofStandIn) -> None:
    with pytest.raises(ProviderError, match="does not look like a Bitcoin address"):
        pc.send_payout(Decimal("1"), "bitcoin", "0x" + "ab" * 20)
    with pytest.raises(ProviderError, match="not a cryptocurrency"):
        pc.send_payout(Decimal("1"), "monopoly-money", BTC_ADDRESS)
    assert poof.calls("/api/v2/payouts") == []


def test_transaction_reads_are_retried_and_missing_ones_not_found(pc: PoofClient, poof: PoofStandIn,
                                                                  sleeps: Sleeps) -> None:
    invoice = pc.create_fiat_invoice(Decimal("20"), "EUR", "venmo")
    assert invoice.reference is not None
    poof.fail_next("/api/v1/transaction", 503)
    assert pc.get_transaction(invoice.reference).currency == "EUR"
    assert len(poof.calls("/api/v1/transaction")) == 2 and len(sleeps) == 1
    with pytest.raises(NotFound):
        pc.get_transaction("nope")


def test_poof_wrong_key_error_is_plain_and_keyless(poof: PoofStandIn) -> None:
    wrong = "poofWRONGkey_aaaaaaaaaa"
    with PoofClient(wrong, poof.url) as client, pytest.raises(ProviderError) as caught:
        client.list_transactions()
    assert caught.value.status == 401 and not caught.value.retryable
    assert "invalid authorization" in str(caught.value) and wrong not in str(caught.value) + repr(caught.value)


def test_webhook_secret_is_compared_and_never_kept(poof: PoofStandIn, pc: PoofClient) -> None:
    invoice = pc.create_fiat_invoice(Decimal("5"), "USD", "skrill")
    assert invoice.reference is not None
    body = poof.webhook_payload(invoice.reference, "whsec_poof_shared")
    assert verify_webhook_secret(body, "whsec_poof_shared")
    assert not verify_webhook_secret(body, "whsec_poof_other")
    assert not verify_webhook_secret({k: v for k, v in body.items() if k != "x-poof-signature"}, "whsec_poof_shared")
    assert not verify_webhook_secret({**body, "x-poof-signature": 12345}, "12345")
    assert not verify_webhook_secret({"x-poof-signature": ""}, "")
    transaction = Transaction.model_validate(body)
    assert "whsec_poof_shared" not in repr(transaction) + transaction.model_dump_json()


@pytest.mark.parametrize(
    ("crypto", "address", "ok"),
    [
        ("bitcoin", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", True),
        ("btc", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", True),
        ("bitcoin", BTC_ADDRESS, True),
        ("bitcoin", BTC_ADDRESS.upper(), False),
        ("bitcoin", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN0", False),  # 0 is not base58
        ("bitcoin", "0x" + "ab" * 20, False),
        ("ethereum", "0x52908400098527886E0F7030069857D2E4169EE7", True),
        ("polygon", "0x52908400098527886E0F7030069857D2E4169EE", False),
        ("bsc", "0x" + "0" * 40, True),
        ("solana", "5PEmyGfzdVuwGWVRcRAqZ9FyrNkxqSzNKGvk5Rtvh276", True),
        ("solana", "5PEmyGfzdVuwGWVRcRAqZ9FyrNkxqSzNKGvk5Rtvh27l", False),  # l is not base58
        ("litecoin", "LaMT348PWRnrqeeWArpwQPbuanpXDZGEUz", True),
        ("ltc", "ltc1qg82vs7fd7eaxw8d8uqupzqz2l8lxn0vs4fcvva", True),
        ("dogecoin", "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L", True),
        ("doge", "LaMT348PWRnrqeeWArpwQPbuanpXDZGEUz", False),
        ("ethereum", " 0x" + "ab" * 20, False),
        ("ethereum", "", False),
        ("xrp", "rEb8TK3gBgk5auZkwc6sHnwrGVJH8DuaLh", False),
    ],
)
def test_address_problem(crypto: str, address: str, ok: bool) -> None:
    problem = address_problem(crypto, address)
    assert (problem is None) is ok
    if problem:
        assert problem[0].isupper() or problem.startswith(crypto)


def test_interface_constants_and_protocol(pc: PoofClient, mc: MoonClerkClient) -> None:
    providers: list[Provider] = [pc, mc]
    assert [p.name for p in providers] == ["poof", "moonclerk"]
    assert all(isinstance(p, Provider) for p in providers)
    assert set(KNOWN_CRYPTOS.values()) >= {"bitcoin", "ethereum", "solana", "litecoin", "dogecoin", "polygon"}
    assert "credit card" in FIAT_METHODS
    assert POOF_KEY not in repr(pc) and MC_KEY not in repr(mc)
    assert repr(HttpClient("x", "http://127.0.0.1:9", headers={"Authorization": "k3y"})).count("k3y") == 0
    assert retry_after_seconds("2") == 2.0 and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
