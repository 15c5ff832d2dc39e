"""The Stripe client (providers.stripe, on the official SDK) and the Stripe stand-in, over real HTTP.

One stand-in serves the whole module; every test seeds its own customers and charges, so tests do not
see each other's objects. The SDK's retry pauses are scaled down (`backoff_scale`) instead of slept.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jsonschema
import pytest

import providers.base
from bot.standins.base import Recorded, Reply, StandIn, json_reply
from bot.standins.stripe import API_KEY, StripeStandIn, decode_form
from providers.base import NotFound, OutcomeUnknown
from providers.stripe import (
    REFUND_REASONS,
    STRIPE_API_VERSION,
    Charge,
    Customer,
    Dispute,
    Event,
    InvalidEvent,
    Invoice,
    Refund,
    StripeClient,
    StripeError,
    Subscription,
    is_charge_id,
    is_payment_intent_id,
    sign_payload,
    verify_event,
)

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "stripe-openapi-subset.json"


@pytest.fixture(scope="module")
def client(stripe_standin: StripeStandIn) -> Iterator[StripeClient]:
    with StripeClient(API_KEY, stripe_standin.url, timeout=2.0, max_network_retries=2, backoff_scale=0.01) as c:
        yield c


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA.read_text())
    return loaded


def _customer_with_charge(s: StripeStandIn, amount_minor: int = 5000, **charge: Any) -> tuple[str, str]:
    customer = s.add_customer(email="ann@example.com", name="Ann Example")["id"]
    return customer, s.add_charge(customer=customer, amount_minor=amount_minor, **charge)["id"]


def _refund(c: StripeClient, charge: str, amount: str = "10.00", *, key: str, call_id: str = "call-1",
            reason: str = "requested_by_customer") -> Refund:
    return c.create_refund(charge, Decimal(amount), "USD", reason, idempotency_key=key,
                           metadata={"dialnexa_call_id": call_id, "finance_desk_case_id": "7", "approved_by": "U1"})


def _posts(s: StripeStandIn) -> list[Recorded]:
    return s.calls("/v1/refunds", "POST")


# --------------------------------------------------------------------------------------------- reads


def test_get_charge_reads_amounts_card_and_sends_the_pinned_version(standin: StripeStandIn,
                                                                   client: StripeClient) -> None:
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    customer, charge_id = _customer_with_charge(standin, 12345, created=when, brand="mastercard", last4="4444")
    charge = client.get_charge(charge_id)
    assert charge == Charge(
        id=charge_id, amount=Decimal("123.45"), currency="USD", amount_refunded=Decimal("0.00"), created=when,
        status="succeeded", refunded=False, disputed=False, customer=customer, payment_intent=None,
        brand="mastercard", last4="4444", receipt_url=charge.receipt_url,
    )
    assert charge.refundable == Decimal("123.45")
    request = standin.calls(f"/v1/charges/{charge_id}")[0]
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["stripe-version"] == STRIPE_API_VERSION
    assert "idempotency-key" not in request.headers


def test_zero_decimal_currency_and_payment_intent_resolution(standin: StripeStandIn, client: StripeClient) -> None:
    charge_id = standin.add_charge(amount_minor=5000, currency="jpy", payment_intent="pi_standinYen1")["id"]
    charge = client.get_charge("pi_standinYen1")
    assert (charge.id, charge.amount, charge.currency, charge.payment_intent) == (
        charge_id, Decimal(5000), "JPY", "pi_standinYen1")
    assert standin.calls("/v1/payment_intents/pi_standinYen1")[0].query == {"expand[0]": "latest_charge"}
    unconfirmed = standin.add_payment_intent()["id"]
    with pytest.raises(NotFound, match="no charge yet"):
        client.get_charge(unconfirmed)


def test_lists_page_with_starting_after_newest_first_and_stop_at_the_limit(standin: StripeStandIn,
                                                                          client: StripeClient) -> None:
    customer = standin.add_customer()["id"]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    ids = [standin.add_charge(customer=customer, amount_minor=100 + n, created=start + timedelta(minutes=n))["id"]
           for n in range(205)]
    charges = client.list_charges(customer, limit=250)
    assert [c.id for c in charges] == ids[::-1]
    pages = standin.calls("/v1/charges")
    assert [r.query.get("starting_after") for r in pages] == [None, ids[105], ids[5]]
    assert {r.query["limit"] for r in pages} == {"100"}
    standin.clear_requests()
    assert [c.id for c in client.list_charges(customer, limit=3)] == ids[:-4:-1]
    assert len(standin.calls("/v1/charges")) == 1


def test_refunds_disputes_invoices_subscriptions_and_customers(standin: StripeStandIn,
                                                               client: StripeClient) -> None:
    customer, charge_id = _customer_with_charge(standin)
    refund = _refund(client, charge_id, "12.50", key="reads:refund")
    assert client.get_refund(refund.id) == refund
    assert client.list_refunds(charge_id) == [refund]
    assert refund.call_id == "call-1"

    due = datetime(2026, 4, 1, 23, 59, 59, tzinfo=UTC)
    dispute_charge = standin.add_charge(customer=customer, amount_minor=2500)["id"]
    dispute_id = standin.add_dispute(dispute_charge, reason="product_not_received", due_by=due)["id"]
    dispute = client.get_dispute(dispute_id)
    assert dispute == Dispute(id=dispute_id, charge=dispute_charge, amount=Decimal("25.00"), currency="USD",
                              reason="product_not_received", status="needs_response", due_by=due,
                              is_charge_refundable=False, created=dispute.created, payment_intent=None)
    assert client.get_charge(dispute_charge).disputed
    standin.set_dispute(dispute_id, due_by=None, status="lost")
    assert (client.get_dispute(dispute_id).due_by, client.get_dispute(dispute_id).status) == (None, "lost")

    subscription = standin.add_subscription(customer)["id"]
    old = standin.add_subscription(customer, status="canceled", created=datetime(2024, 1, 1, tzinfo=UTC))["id"]
    invoice_id = standin.add_invoice(customer, status="open", amount_minor=1999, subscription=subscription)["id"]
    invoice = client.get_invoice(invoice_id)
    assert (invoice.status, invoice.amount_due, invoice.amount_paid, invoice.currency, invoice.subscription,
            invoice.customer) == ("open", Decimal("19.99"), Decimal("0.00"), "USD", subscription, customer)
    assert invoice.hosted_invoice_url and invoice.number
    assert client.get_subscription(subscription) == Subscription(subscription, "active", customer, invoice_id)
    # Canceled subscriptions count for finance: asked for with status=all.
    assert [s.id for s in client.list_subscriptions(customer)] == [subscription, old]
    assert standin.calls("/v1/subscriptions")[-1].query["status"] == "all"
    assert [i.id for i in client.list_invoices(customer)] == [invoice_id]
    assert isinstance(client.list_invoices(customer)[0], Invoice)
    assert client.get_customer(customer) == Customer(customer, "ann@example.com", "Ann Example", None, False)
    standin.delete_customer(customer)
    assert client.get_customer(customer).deleted
    client.check()
    assert standin.calls("/v1/balance")


def test_ids_are_checked_before_any_request(standin: StripeStandIn, client: StripeClient) -> None:
    assert is_charge_id("ch_3Abc") and is_charge_id("py_1x") and not is_charge_id("ch_") and not is_charge_id("pi_1")
    assert is_payment_intent_id("pi_1Abc") and not is_payment_intent_id("pi_1/../x")
    for call in (lambda: client.get_charge("ch_1/../../v1/balance"), lambda: client.get_refund("ch_1"),
                 lambda: client.list_charges("cus 1"), lambda: client.get_invoice("")):
        with pytest.raises(StripeError) as err:
            call()
        assert err.value.code == "invalid_id"
    assert standin.requests == []


# --------------------------------------------------------------------------------------------- refunds


def test_create_refund_sends_the_documented_form_and_updates_the_charge(standin: StripeStandIn,
                                                                       client: StripeClient,
                                                                       spec: dict[str, Any]) -> None:
    _, charge_id = _customer_with_charge(standin, 5000)
    refund = _refund(client, charge_id, "12.34", key="call-9:refund_stripe", call_id="call-9")
    assert (refund.charge, refund.amount, refund.currency, refund.status, refund.reason) == (
        charge_id, Decimal("12.34"), "USD", "succeeded", "requested_by_customer")
    assert refund.metadata == {"dialnexa_call_id": "call-9", "finance_desk_case_id": "7", "approved_by": "U1"}
    [post] = _posts(standin)
    assert post.headers["idempotency-key"] == "call-9:refund_stripe"
    assert post.headers["content-type"].startswith("application/x-www-form-urlencoded")
    params = decode_form(parse_qsl(post.text, keep_blank_values=True))
    assert params == {"charge": charge_id, "amount": "1234", "reason": "requested_by_customer",
                      "metadata": {"dialnexa_call_id": "call-9", "finance_desk_case_id": "7", "approved_by": "U1"}}
    schema = spec["components"]["schemas"]["PostRefundsRequest"]
    jsonschema.Draft202012Validator(schema).validate(_typed_form(params, schema))
    charge = client.get_charge(charge_id)
    assert (charge.amount_refunded, charge.refundable, charge.refunded) == (Decimal("12.34"), Decimal("37.66"), False)
    _refund(client, charge_id, "37.66", key="call-9b:refund_stripe", call_id="call-9b")
    assert client.get_charge(charge_id).refunded


def test_a_payment_intent_is_refunded_by_payment_intent(standin: StripeStandIn, client: StripeClient) -> None:
    charge_id = standin.add_charge(amount_minor=900, payment_intent="pi_standinRefund1")["id"]
    refund = _refund(client, "pi_standinRefund1", "9.00", key="pi:refund")
    assert refund.charge == charge_id
    assert decode_form(parse_qsl(_posts(standin)[0].text))["payment_intent"] == "pi_standinRefund1"
    assert client.find_refund("pi_standinRefund1", "call-1") == [refund]


@pytest.mark.parametrize(
    ("setup", "amount", "code", "words"),
    [
        ("refunded", "1.00", "charge_already_refunded", "already been fully refunded"),
        ("none", "50.01", "amount_too_large", "more than what is still refundable"),
        ("disputed", "1.00", "charge_disputed", "disputed"),
        ("balance", "1.00", "balance_insufficient", "balance is too low"),
        ("not_refundable", "1.00", "charge_not_refundable", "cannot be refunded"),
    ],
)
def test_refusals_map_to_codes_in_plain_words(standin: StripeStandIn, client: StripeClient, setup: str,
                                              amount: str, code: str, words: str) -> None:
    _, charge_id = _customer_with_charge(standin, 5000, amount_refunded=5000 if setup == "refunded" else 0)
    if setup == "disputed":
        standin.add_dispute(charge_id)
    if setup in ("balance", "not_refundable"):
        standin.reject_next_refund(code)
    with pytest.raises(StripeError) as err:
        _refund(client, charge_id, amount, key=f"refusal:{setup}")
    assert (err.value.code, err.value.status, err.value.retryable) == (code, 400, False)
    assert words in err.value.message and API_KEY not in err.value.message
    assert len(_posts(standin)) == 1  # a refusal is final: the SDK does not retry a 400
    assert standin.charge(charge_id)["amount_refunded"] == (5000 if setup == "refunded" else 0)


def test_a_dispute_that_allows_refunds_does_not_block_one(standin: StripeStandIn, client: StripeClient) -> None:
    _, charge_id = _customer_with_charge(standin, 3000)
    standin.add_dispute(charge_id, status="warning_needs_response", is_charge_refundable=True)
    assert _refund(client, charge_id, "30.00", key="inquiry:refund").amount == Decimal("30.00")


def test_unknown_charge_is_not_found_and_bad_input_is_never_sent(standin: StripeStandIn,
                                                                 client: StripeClient) -> None:
    with pytest.raises(NotFound):
        _refund(client, "ch_doesNotExist1", key="missing:refund")
    with pytest.raises(NotFound):
        client.get_charge("ch_doesNotExist1")
    standin.clear_requests()
    _, charge_id = _customer_with_charge(standin)
    bad: list[dict[str, Any]] = [
        {"amount": 1.5}, {"amount": Decimal("1.001")}, {"amount": Decimal("-1")}, {"amount": Decimal("NaN")},
        {"currency": "dollars"}, {"currency": "XXY"}, {"reason": "changed_mind"}, {"idempotency_key": ""},
        {"idempotency_key": "k" * 256}, {"metadata": {"k" * 41: "v"}}, {"metadata": {"k": "v" * 501}},
        {"metadata": {f"k{n}": "v" for n in range(51)}},
    ]
    for override in bad:
        args: dict[str, Any] = {"amount": Decimal("1.00"), "currency": "USD", "reason": "duplicate",
                                "idempotency_key": "bad-input", "metadata": {}, **override}
        with pytest.raises(StripeError, match="Not sent to Stripe") as err:
            client.create_refund(charge_id, args["amount"], args["currency"], args["reason"],
                                 idempotency_key=args["idempotency_key"], metadata=args["metadata"])
        assert err.value.code == "invalid_request", override
    assert _posts(standin) == []
    assert set(REFUND_REASONS) == {"duplicate", "fraudulent", "requested_by_customer"}


def test_a_500_then_success_reuses_the_key_and_makes_one_refund(standin: StripeStandIn,
                                                               client: StripeClient) -> None:
    _, charge_id = _customer_with_charge(standin)
    before = standin.refund_posts
    standin.fail_next("/v1/refunds", 500)
    refund = _refund(client, charge_id, key="flaky:refund_stripe")
    posts = _posts(standin)
    assert [p.headers["idempotency-key"] for p in posts] == ["flaky:refund_stripe"] * 2
    assert standin.refund_posts == before + 1
    assert [r["id"] for r in standin.refunds if r["charge"] == charge_id] == [refund.id]


def test_a_lost_answer_is_retried_with_the_same_key_and_gets_the_saved_refund(standin: StripeStandIn,
                                                                             client: StripeClient) -> None:
    _, charge_id = _customer_with_charge(standin)
    before = standin.refund_posts
    standin.lose_next_refund_response()
    refund = _refund(client, charge_id, key="lost:refund_stripe")
    assert standin.refund_posts == before + 1
    assert [p.headers["idempotency-key"] for p in _posts(standin)] == ["lost:refund_stripe"] * 2
    assert [r["id"] for r in standin.refunds if r["charge"] == charge_id] == [refund.id]
    assert standin.charge(charge_id)["amount_refunded"] == 1000


def test_retries_exhausted_is_outcome_unknown_and_the_refund_is_found_by_metadata(standin: StripeStandIn,
                                                                                  client: StripeClient) -> None:
    _, charge_id = _customer_with_charge(standin)
    standin.lose_next_refund_response(3)
    with pytest.raises(OutcomeUnknown) as err:
        _refund(client, charge_id, key="gone:refund_stripe", call_id="call-gone")
    assert "may or may not" in err.value.message and not err.value.retryable
    assert len(_posts(standin)) == 3
    [found] = client.find_refund(charge_id, "call-gone")
    assert found.metadata["finance_desk_case_id"] == "7"
    assert client.find_refund(charge_id, "another-call") == []
    # Reconcile may retry with the same key: Stripe answers with the saved refund, never a second one.
    assert _refund(client, charge_id, key="gone:refund_stripe", call_id="call-gone") == found


def test_a_saved_500_is_replayed_to_every_retry_and_is_outcome_unknown(standin: StripeStandIn,
                                                                       client: StripeClient) -> None:
    _, charge_id = _customer_with_charge(standin)
    standin.reject_next_refund(None, status=500)
    with pytest.raises(OutcomeUnknown):
        _refund(client, charge_id, key="saved500:refund_stripe")
    assert len(_posts(standin)) == 3
    response = httpx.post(f"{standin.url}/v1/refunds", headers=_auth("saved500:refund_stripe"),
                          content=_posts(standin)[0].body)
    assert (response.status_code, response.headers["idempotent-replayed"]) == (500, "true")


def test_rate_limits_and_server_errors(standin: StripeStandIn, client: StripeClient) -> None:
    _, charge_id = _customer_with_charge(standin)
    path = f"/v1/charges/{charge_id}"
    standin.fail_next(path, 429)
    with pytest.raises(StripeError) as err:
        client.get_charge(charge_id)
    assert (err.value.code, err.value.retryable, len(standin.calls(path))) == ("rate_limit", True, 1)
    standin.fail_next(path, 429, headers={"Stripe-Should-Retry": "true"})
    assert client.get_charge(charge_id).id == charge_id  # Stripe asked for a retry: the SDK made it
    standin.fail_next(path, 503, times=3)
    with pytest.raises(StripeError) as err:
        client.get_charge(charge_id)
    assert (err.value.code, err.value.status, err.value.retryable) == ("api_error", 503, True)
    standin.fail_next("/v1/refunds", 429)
    with pytest.raises(StripeError) as err:
        _refund(client, charge_id, key="throttled:refund")
    assert (err.value.code, err.value.retryable) == ("rate_limit", True)
    assert not isinstance(err.value, OutcomeUnknown)
    standin.fail_next("/v1/refunds", 409)  # the key still in flight: the SDK retries 409
    assert _refund(client, charge_id, key="conflict:refund").amount == Decimal("10.00")


def test_the_same_key_with_other_parameters_is_an_idempotency_error(standin: StripeStandIn,
                                                                    client: StripeClient) -> None:
    _, charge_id = _customer_with_charge(standin)
    _refund(client, charge_id, "5.00", key="reused:refund_stripe")
    with pytest.raises(StripeError) as err:
        _refund(client, charge_id, "6.00", key="reused:refund_stripe")
    assert (err.value.code, err.value.retryable) == ("idempotency_error", False)
    assert standin.charge(charge_id)["amount_refunded"] == 500


def test_credentials_errors_never_show_the_key(standin: StripeStandIn) -> None:
    key = "rk_test_wrongKeyForThisTest"
    _, charge_id = _customer_with_charge(standin)
    with StripeClient(key, standin.url, timeout=2.0) as wrong, pytest.raises(StripeError) as err:
        wrong.get_charge(charge_id)
    assert (err.value.code, err.value.status) == ("authentication", 401)
    assert key not in str(err.value) and key not in repr(err.value)
    standin.fail_next(f"/v1/charges/{charge_id}", 403)
    with StripeClient(API_KEY, standin.url, timeout=2.0) as c, pytest.raises(StripeError) as err:
        c.get_charge(charge_id)
    assert (err.value.code, err.value.status) == ("permission", 403)
    assert API_KEY not in str(err.value)


def test_the_timeout_is_honoured_and_a_write_that_timed_out_is_outcome_unknown(standin: StripeStandIn) -> None:
    _, charge_id = _customer_with_charge(standin)
    standin.delay(f"/v1/charges/{charge_id}", 0.6)
    standin.delay("/v1/refunds", 0.6)
    with StripeClient(API_KEY, standin.url, timeout=0.15, max_network_retries=0) as slow:
        started = time.perf_counter()
        with pytest.raises(StripeError) as err:
            slow.get_charge(charge_id)
        assert time.perf_counter() - started < 0.5
        assert (err.value.code, err.value.retryable) == ("connection", True)
        with pytest.raises(OutcomeUnknown):
            _refund(slow, charge_id, key="slow:refund_stripe")


def test_nothing_sent_is_retryable_not_outcome_unknown() -> None:
    down = StripeClient(API_KEY, f"http://127.0.0.1:{_closed_port()}", timeout=0.5, max_network_retries=1,
                        backoff_scale=0.01)
    with down, pytest.raises(StripeError) as err:
        _refund(down, "ch_standinNowhere", key="down:refund")
    assert (err.value.code, err.value.retryable) == ("connection", True)
    assert "nothing was sent" in err.value.message
    assert not isinstance(err.value, OutcomeUnknown)


def test_every_attempt_is_observed_with_templated_paths(standin: StripeStandIn, client: StripeClient) -> None:
    seen: list[tuple[str, str, str, str]] = []
    # The metrics module's observer is put back afterwards: other tests in this process count through it.
    previous = providers.base._observer
    providers.base.set_call_observer(lambda p, m, path, outcome, s: seen.append((p, m, path, outcome)))
    try:
        _, charge_id = _customer_with_charge(standin)
        standin.fail_next("/v1/refunds", 502)
        _refund(client, charge_id, key="observed:refund")
        client.get_charge(charge_id)
    finally:
        providers.base.set_call_observer(previous)
    assert seen == [("stripe", "POST", "/v1/refunds", "server_error"), ("stripe", "POST", "/v1/refunds", "ok"),
                    ("stripe", "GET", "/v1/charges/{id}", "ok")]


# --------------------------------------------------------------------------------------------- webhooks


NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _signed(body: bytes, *, at: datetime = NOW, secret: str = SECRET) -> str:
    return sign_payload(body, secret, int(at.timestamp()))


def _event_body(standin: StripeStandIn, **fields: Any) -> bytes:
    event = standin.event("charge.refunded", {"id": "ch_evt1", "object": "charge", "amount": 100},
                          created=NOW, idempotency_key="call-1:refund_stripe")
    event.update(fields)
    return json.dumps(event).encode()


def test_verify_event_accepts_a_signed_event(stripe_standin: StripeStandIn) -> None:
    body = _event_body(stripe_standin)
    event = verify_event(body, _signed(body), [SECRET], now=NOW)
    assert isinstance(event, Event)
    assert (event.type, event.object_id, event.created, event.api_version, event.idempotency_key) == (
        "charge.refunded", "ch_evt1", NOW, STRIPE_API_VERSION, "call-1:refund_stripe")
    assert event.object["amount"] == 100


def test_verify_event_accepts_either_secret_while_rotating(stripe_standin: StripeStandIn) -> None:
    body = _event_body(stripe_standin)
    both = sign_payload(body, OLD_SECRET, int(NOW.timestamp()), extra_secrets=[SECRET])
    assert both.count("v1=") == 2
    assert verify_event(body, both, [SECRET], now=NOW).id
    assert verify_event(body, _signed(body, secret=OLD_SECRET), [SECRET, OLD_SECRET], now=NOW).id


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("forged", "does not match"),
        ("tampered", "does not match"),
        ("stale", "old"),
        ("future", "future"),
        ("no_header", "missing"),
        ("no_timestamp", "no timestamp"),
        ("bad_timestamp", "not a number"),
        ("no_secret", "no webhook signing secret"),
        ("malformed", "not valid JSON"),
        ("not_object", "not a JSON object"),
        ("no_id", "no id or type"),
        ("no_created", "no created"),
        ("no_data_object", "no data.object"),
        ("deep", "JSON"),
        ("deep_shallow_parser", "nested too deeply"),
        ("thin", "not a Stripe event"),
        ("not_utf8", "UTF-8"),
    ],
)
def test_verify_event_refuses(stripe_standin: StripeStandIn, case: str, message: str) -> None:
    body = _event_body(stripe_standin)
    header: str | None = _signed(body)
    secrets = [SECRET]
    if case == "forged":
        header = _signed(body, secret="whsec_test_attacker")
    elif case == "tampered":
        body = body.replace(b'"amount": 100', b'"amount": 999')
    elif case == "stale":
        header = _signed(body, at=NOW - timedelta(seconds=301))
    elif case == "future":
        header = _signed(body, at=NOW + timedelta(seconds=301))
    elif case == "no_header":
        header = None
    elif case == "no_timestamp":
        header = "v1=" + _signed(body).partition("v1=")[2]
    elif case == "bad_timestamp":
        header = "t=+1_0," + _signed(body).partition(",")[2]
    elif case == "no_secret":
        secrets = ["", " "]
    else:
        body = {
            "malformed": b'{"id": "evt_1", ',
            "not_object": b'["evt_1"]',
            "no_id": json.dumps({"type": "x", "created": 1, "data": {"object": {}}}).encode(),
            "no_created": json.dumps({"id": "evt_1", "type": "x", "created": "1", "data": {"object": {}}}).encode(),
            "no_data_object": json.dumps({"id": "evt_1", "type": "x", "created": 1, "data": {"object": []}}).encode(),
            "deep": b'{"id": "evt_1", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "deep_shallow_parser": json.dumps({"id": "evt_1", "type": "x", "created": 1, "data": {
                "object": _nested(80)}}).encode(),
            "thin": json.dumps({"id": "evt_1", "object": "v2.core.event", "type": "x", "created": 1,
                                "data": {"object": {}}}).encode(),
            "not_utf8": b'{"id": "\xff"}',
        }[case]
        header = _signed(body) if case != "not_utf8" else "t=1,v1=00"
    with pytest.raises(InvalidEvent, match=message) as err:
        verify_event(body, header, secrets, now=NOW)
    assert SECRET not in str(err.value)


def test_the_stand_in_delivers_events_signed_like_stripe(stripe_standin: StripeStandIn) -> None:
    with _Receiver() as receiver:
        charge = stripe_standin.add_charge(amount_minor=700)
        event = stripe_standin.event("charge.refunded", charge)
        response = stripe_standin.deliver(f"{receiver.url}/webhooks/stripe", event, SECRET)
        assert response.status_code == 200
        [request] = receiver.requests
    verified = verify_event(request.body, request.headers["stripe-signature"], [SECRET])
    assert (verified.id, verified.object_id, verified.api_version) == (event["id"], charge["id"], STRIPE_API_VERSION)


# --------------------------------------------------------------------------------------------- the stand-in


def test_stand_in_objects_validate_against_the_openapi_schemas(standin: StripeStandIn, client: StripeClient,
                                                               spec: dict[str, Any]) -> None:
    customer, charge_id = _customer_with_charge(standin)
    refund = _refund(client, charge_id, "1.00", key="schema:refund")
    dispute = standin.add_dispute(standin.add_charge(customer=customer)["id"], due_by=NOW)["id"]
    subscription = standin.add_subscription(customer)["id"]
    invoice = standin.add_invoice(customer, subscription=subscription)["id"]
    draft = standin.add_invoice(customer, status="draft")["id"]
    fetched = {
        "charge": [f"/v1/charges/{charge_id}", f"/v1/charges?customer={customer}"],
        "refund": [f"/v1/refunds/{refund.id}", f"/v1/refunds?charge={charge_id}"],
        "dispute": [f"/v1/disputes/{dispute}"],
        "invoice": [f"/v1/invoices/{invoice}", f"/v1/invoices/{draft}", f"/v1/invoices?customer={customer}"],
        "subscription": [f"/v1/subscriptions/{subscription}", f"/v1/subscriptions?customer={customer}"],
        "customer": [f"/v1/customers/{customer}", "/v1/customers?limit=3"],
        "payment_intent": [],
    }
    checked = 0
    for name, paths in fetched.items():
        for path in paths:
            body = httpx.get(standin.url + path, headers=_auth()).json()
            for obj in body["data"] if body.get("object") == "list" else [body]:
                assert _schema_errors(spec, name, obj) == [], (name, path)
                checked += 1
    event = standin.event("charge.dispute.created", standin.dispute(dispute), previous_attributes={"status": "x"})
    assert _schema_errors(spec, "event", event) == []
    assert checked >= 12


def test_stand_in_form_decoding_accepts_both_list_spellings() -> None:
    assert decode_form([("expand[]", "a"), ("expand[]", "b"), ("metadata[k]", "v"), ("metadata[0]", "z")]) == {
        "expand": ["a", "b"], "metadata": {"k": "v", "0": "z"}}
    assert decode_form([("expand[1]", "b"), ("expand[0]", "a"), ("created[gte]", "5"), ("a[b][c]", "d")]) == {
        "expand": ["a", "b"], "created": {"gte": "5"}, "a": {"b": {"c": "d"}}}


def test_stand_in_http_behaviour(standin: StripeStandIn) -> None:
    _, charge_id = _customer_with_charge(standin, 2000)
    unauthorised = httpx.get(f"{standin.url}/v1/charges/{charge_id}", headers={"Authorization": "Bearer rk_test_no"})
    assert unauthorised.status_code == 401
    assert unauthorised.json()["error"]["type"] == "invalid_request_error"
    assert "rk_test_no" not in unauthorised.text
    basic = base64.b64encode(f"{API_KEY}:".encode()).decode()
    ok = httpx.get(f"{standin.url}/v1/charges/{charge_id}", headers={"Authorization": f"Basic {basic}"})
    assert ok.status_code == 200 and ok.headers["request-id"].startswith("req_")
    missing = httpx.get(f"{standin.url}/v1/refunds/re_nothing", headers=_auth())
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "resource_missing")

    form = f"charge={charge_id}&amount=300&expand[]=charge&metadata[dialnexa_call_id]=c-1"
    first = httpx.post(f"{standin.url}/v1/refunds", headers=_auth("raw:1"), content=form)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    assert first.json()["charge"]["id"] == charge_id  # expanded
    again = httpx.post(f"{standin.url}/v1/refunds", headers=_auth("raw:1"), content=form)
    assert (again.headers["idempotent-replayed"], again.json()["id"]) == ("true", first.json()["id"])
    other = httpx.post(f"{standin.url}/v1/refunds", headers=_auth("raw:1"), content=f"charge={charge_id}&amount=1")
    assert (other.status_code, other.json()["error"]["type"]) == (400, "idempotency_error")
    unknown = httpx.post(f"{standin.url}/v1/refunds", headers=_auth("raw:2"), content=f"charge={charge_id}&foo=1")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "parameter_unknown")
    # A validation failure is not saved: the same key works once the request is fixed.
    fixed = httpx.post(f"{standin.url}/v1/refunds", headers=_auth("raw:2"), content=f"charge={charge_id}&amount=1")
    assert fixed.status_code == 200

    standin.refund_status = "pending"
    pending = httpx.post(f"{standin.url}/v1/refunds", headers=_auth("raw:3"), content=f"charge={charge_id}&amount=5")
    assert pending.json()["status"] == "pending"
    failed = standin.set_refund(pending.json()["id"], status="failed", failure_reason="expired_or_canceled_card")
    assert failed["failure_balance_transaction"]
    assert standin.charge(charge_id)["amount_refunded"] == 301  # the failed refund's 5 came back

    page = httpx.get(f"{standin.url}/v1/refunds", params={"charge": charge_id, "limit": "1"}, headers=_auth()).json()
    assert (page["object"], page["url"], page["has_more"], len(page["data"])) == ("list", "/v1/refunds", True, 1)
    rest = httpx.get(f"{standin.url}/v1/refunds", headers=_auth(),
                     params={"charge": charge_id, "limit": "10", "starting_after": page["data"][0]["id"]}).json()
    assert rest["has_more"] is False and len(rest["data"]) == 2
    balance = httpx.get(f"{standin.url}/v1/balance", headers=_auth()).json()
    assert balance["object"] == "balance" and balance["available"][0]["currency"] == "usd"
    customers = httpx.get(f"{standin.url}/v1/customers", params={"limit": "2"}, headers=_auth()).json()
    assert len(customers["data"]) == 2 and customers["has_more"] is True
    bad_limit = httpx.get(f"{standin.url}/v1/customers", params={"limit": "0"}, headers=_auth())
    assert bad_limit.status_code == 400
    assert standin.errors == []


# --------------------------------------------------------------------------------------------- helpers


class _Receiver(StandIn):
    """Where the stand-in delivers webhooks in these tests: records them and answers 200."""

    def handle(self, request: Recorded) -> Reply:
        return json_reply({"ok": True})


def _closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _auth(idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return headers


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(depth):
        node = {"n": node}
    return node


def _typed_form(params: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Form values are text on the wire; give them the JSON types the request schema describes."""
    typed = dict(params)
    for name, value in params.items():
        kind = schema["properties"].get(name, {}).get("type")
        if kind == "integer":
            typed[name] = int(value)
        elif kind == "boolean":
            typed[name] = value == "true"
    return typed


# The 2023-08-16 schemas still require fields Stripe has since removed (x-drift
# removed_fields_that_2023_marks_required) and two line-item fields that moved under `parent`
# (x-drift current_fixtures_validated_against_these_2023_schemas): their absence is today's shape.
_LINE_ITEM_DRIFT = frozenset({"proration", "type"})


def _schema_errors(spec: dict[str, Any], name: str, obj: dict[str, Any]) -> list[str]:
    drift = spec["x-drift"]["per_schema"].get(name, {})
    removed = set(drift.get("removed_fields_that_2023_marks_required", []))
    validator = jsonschema.Draft202012Validator(dict(spec, **{"$ref": f"#/components/schemas/{name}"}))
    errors = []
    for error in validator.iter_errors(obj):
        where = list(error.absolute_path)
        if error.validator == "required":
            missing = str(error.message).split("'")[1]
            if (not where and missing in removed) or (
                    name == "invoice" and where[:1] == ["lines"] and missing in _LINE_ITEM_DRIFT):
                continue
        errors.append(f"{'/'.join(map(str, where))}: {error.message[:200]}")
    return errors
