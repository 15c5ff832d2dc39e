"""Stripe status where finance looks (bot.stripe_status, blocks.stripe_status): the card and `/finance lookup`.

Real HTTP to one Stripe stand-in for the module (each test seeds its own customer). Time for the cache is
an injected clock; the only waits are stand-in delays of well under a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from blocks.card import case_card
from blocks.lookup import CustomerResult, LookupAnswer, lookup_message
from blocks.stripe_status import stripe_status_block, stripe_status_text
from bot.standins.stripe import API_KEY, StripeStandIn
from bot.stripe_status import (
    TIMED_OUT,
    StatusCache,
    StripeStatus,
    StripeStatusService,
    case_key,
    fetch_status,
    refresh_case,
    refresh_later,
    status_for_lookup,
    statuses_for_lookup,
)
from providers.moonclerk import Customer as MoonClerkCustomer
from providers.stripe import StripeClient
from storage.models import Case
from tests.blockkit import assert_valid_message
from tests.cases import load
from tests.cases import make_case as _make_case
from tests.clock import Clock
from tests.test_hostile_surfaces import EVIL_URL, HOSTILE, NOT_WEB, assert_inert, assert_message_inert, hostile_case

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(stripe_standin: StripeStandIn) -> Iterator[StripeClient]:
    with StripeClient(API_KEY, stripe_standin.url, timeout=2.0, max_network_retries=1, backoff_scale=0.01) as c:
        yield c


@pytest.fixture(scope="module")
def slow_client(stripe_standin: StripeStandIn) -> Iterator[StripeClient]:
    """A status client as deployed should be: a short timeout, no retries."""
    with StripeClient(API_KEY, stripe_standin.url, timeout=0.15, max_network_retries=0) as c:
        yield c


def seeded(s: StripeStandIn, *, refunded: int = 0, sub_status: str = "past_due",
           invoice_status: str = "open") -> tuple[str, str, str, str]:
    """A customer with a 25.00 USD charge, a subscription and its latest invoice: (customer, charge, sub, inv)."""
    customer = s.add_customer(email="ann@example.com", name="Ann Example")["id"]
    charge = s.add_charge(customer=customer, amount_minor=2500, amount_refunded=refunded)["id"]
    sub = s.add_subscription(customer, status=sub_status)["id"]
    invoice = s.add_invoice(customer, status=invoice_status, amount_minor=2000, subscription=sub)["id"]
    return customer, charge, sub, invoice


def stripe_requests(s: StripeStandIn) -> int:
    return len([r for r in s.requests if r.path.startswith("/v1/")])


# ---------------------------------------------------------------------------------------------------
# One look at Stripe


def test_a_customer_status_has_the_charge_the_subscription_and_the_latest_invoice(
        standin: StripeStandIn, client: StripeClient) -> None:
    customer, charge, sub, invoice = seeded(standin, refunded=1000)
    standin.add_invoice(customer, status="draft")  # newer, but nobody can see a draft: not "the latest"
    status = fetch_status(client, customer, None, now=NOW)
    assert status is not None and status.available
    assert status.charge is not None and status.charge.id == charge and status.charge.status == "succeeded"
    assert status.charge.amount == Decimal("25.00") and status.charge.amount_refunded == Decimal("10.00")
    assert status.charge.currency == "USD" and status.charge.disputed is False
    assert status.subscription is not None and (status.subscription.id, status.subscription.status) == (sub, "past_due")
    latest = status.latest_invoice
    assert latest is not None and latest.id == invoice and latest.status == "open"
    assert latest.amount_due == Decimal("20.00") and latest.hosted_invoice_url == f"{standin.url}/invoice/{invoice}"
    stored = status.to_json()
    assert stored["charge"]["amount"] == "25.00" and stored["charge"]["amount_refunded"] == "10.00"
    assert stored["fetched_at"] == "2026-11-22T12:00:00+00:00" and "unavailable" not in stored
    assert StripeStatus.from_json(stored) == status
    text = stripe_status_text(stored)
    assert text is not None
    assert text.startswith(f"Stripe: charge `{charge}` succeeded (25.00 USD) · 10.00 USD refunded · ")
    assert "subscription past due" in text
    assert f"latest invoice `{latest.number}` open, 20.00 USD due <{standin.url}/invoice/{invoice}|open>" in text
    # One request each: the newest charge, the subscriptions, the invoices.
    assert sorted(r.path for r in standin.requests) == ["/v1/charges", "/v1/invoices", "/v1/subscriptions"]


def test_a_named_charge_shows_its_refund_and_its_dispute_state(standin: StripeStandIn, client: StripeClient) -> None:
    customer = standin.add_customer()["id"]
    charge = standin.add_charge(customer=customer, amount_minor=4900, amount_refunded=4900,
                                payment_intent="pi_statusTest1")["id"]
    dispute = standin.add_dispute(charge, status="needs_response")["id"]
    status = fetch_status(client, None, charge, dispute_id=dispute, now=NOW)
    assert status is not None and status.charge is not None
    assert status.charge.disputed and status.charge.dispute_status == "needs_response"
    assert status.subscription is None and status.latest_invoice is None  # no customer asked about
    text = stripe_status_text(status.to_json())
    assert text == f"Stripe: charge `{charge}` succeeded (49.00 USD) · 49.00 USD refunded (in full) · " \
                   "disputed (needs response)"
    # A PaymentIntent ID resolves to its charge; without the dispute's ID the charge is "disputed", no more.
    by_intent = fetch_status(client, None, "pi_statusTest1", now=NOW)
    assert by_intent is not None and by_intent.charge is not None and by_intent.charge.id == charge
    assert stripe_status_text(by_intent.to_json()).endswith("· disputed")  # type: ignore[union-attr]


def test_nothing_to_ask_about_asks_nothing(standin: StripeStandIn, client: StripeClient) -> None:
    assert fetch_status(client, None, None) is None
    assert fetch_status(client, "not-a-customer", "12345") is None  # a MoonClerk payment ID is no charge
    assert stripe_status_text(None) is None and stripe_status_text({}) is None
    assert stripe_requests(standin) == 0


def test_what_stripe_does_not_have_is_missing_not_unavailable(standin: StripeStandIn, client: StripeClient) -> None:
    status = fetch_status(client, None, "ch_doesNotExist", now=NOW)
    assert status is not None and status.available and status.missing == ("charge ch_doesNotExist",)
    assert stripe_status_text(status.to_json()) == "Stripe: charge ch_doesNotExist not found"
    empty = fetch_status(client, standin.add_customer()["id"], None, now=NOW)
    assert empty is not None and empty.available and empty.charge is None
    assert stripe_status_text(empty.to_json()) == "Stripe: no charge, subscription or invoice on record"


def test_a_failing_or_slow_stripe_is_unavailable_and_never_raises(
        standin: StripeStandIn, client: StripeClient, slow_client: StripeClient) -> None:
    customer, charge, _, _ = seeded(standin)
    standin.fail_next(f"/v1/charges/{charge}", 500, times=2)  # the first try and the SDK's one retry
    failed = fetch_status(client, customer, charge, now=NOW)
    assert failed is not None and not failed.available
    assert failed.to_json() == {"unavailable": failed.unavailable, "fetched_at": "2026-11-22T12:00:00+00:00"}
    assert "server error" in (failed.unavailable or "") and API_KEY not in str(failed.to_json())
    assert stripe_status_text(failed.to_json()).startswith("Stripe unavailable (Stripe had a server error")  # type: ignore[union-attr]
    standin.fail_next("/v1/subscriptions", 429)
    limited = fetch_status(slow_client, customer, None, now=NOW)
    assert limited is not None and "rate-limiting" in (limited.unavailable or "")
    standin.delay(f"/v1/charges/{charge}", 0.5)
    started = time.monotonic()
    slow = fetch_status(slow_client, customer, charge, now=NOW)
    assert time.monotonic() - started < 0.45
    assert slow is not None and not slow.available and "did not answer" in (slow.unavailable or "")


# ---------------------------------------------------------------------------------------------------
# The cache


def test_the_cache_answers_within_its_ttl_without_asking_again(standin: StripeStandIn, client: StripeClient) -> None:
    customer, charge, _, _ = seeded(standin)
    clock = Clock(NOW)
    cache = StatusCache(ttl=60, failure_ttl=10, clock=clock)
    first = cache.get_or_fetch(client, customer, charge)
    asked = stripe_requests(standin)
    assert asked == 3 and first is not None and first.fetched_at == NOW
    clock.advance(59)
    assert cache.get_or_fetch(client, customer, charge) is first
    assert stripe_requests(standin) == asked
    assert cache.get_or_fetch(client, customer, charge, fresh=True) is not first  # after a refund or webhook
    assert stripe_requests(standin) == 2 * asked
    clock.advance(61)
    later = cache.get_or_fetch(client, customer, charge)
    assert later is not None and later.fetched_at == clock.now and stripe_requests(standin) == 3 * asked
    # A failure is kept only briefly.
    other = standin.add_customer()["id"]
    standin.fail_next("/v1/charges", 500, times=2)
    down = cache.get_or_fetch(client, other, None)
    assert down is not None and not down.available
    clock.advance(5)
    assert cache.get_or_fetch(client, other, None) is down
    clock.advance(6)
    up = cache.get_or_fetch(client, other, None)
    assert up is not None and up.available
    cache.close()


def test_callers_share_one_fetch_in_flight(standin: StripeStandIn, client: StripeClient) -> None:
    customer, _, _, _ = seeded(standin)
    cache = StatusCache()
    standin.delay("/v1/charges", 0.3)
    results: list[StripeStatus | None] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_fetch(client, customer, None)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert len(standin.calls("/v1/charges")) == 1
    cache.close()


def test_a_lookup_waits_only_its_budget_and_the_fetch_lands_in_the_cache(
        standin: StripeStandIn, client: StripeClient) -> None:
    customer, charge, _, _ = seeded(standin)
    cache = StatusCache()
    assert status_for_lookup(client, cache, "12345") is None  # not a Stripe customer: nothing shown
    assert status_for_lookup(None, cache, customer) is None  # Stripe not configured
    standin.delay("/v1/charges", 0.4)
    started = time.monotonic()
    late = status_for_lookup(client, cache, customer, timeout_s=0.1)
    waited = time.monotonic() - started
    assert waited < 0.35 and late is not None and late.unavailable == TIMED_OUT
    assert stripe_status_text(late.to_json()) == "Stripe unavailable (Stripe did not answer in time)"
    landed = cache.fetch_async(client, customer, None).result(5)  # the same fetch, still under way
    assert landed is not None and landed.available and len(standin.calls("/v1/charges")) == 1
    standin.delay("/v1/charges", None)
    again = status_for_lookup(client, cache, customer, timeout_s=0.1)
    assert again is landed
    # Several customers share one budget.
    second, _, _, _ = seeded(standin)
    both = statuses_for_lookup(client, cache, [customer, None, second], timeout_s=2.0)
    assert both[0] is landed and both[1] is None and both[2] is not None and both[2].charge is not None
    assert both[2].charge.id != charge
    cache.close()


# ---------------------------------------------------------------------------------------------------
# Cases


def make_case(engine: Engine, call_id: str, **fields: Any) -> int:
    return _make_case(engine, call_id, now=NOW, **fields)



def test_refresh_stores_the_status_and_queues_the_card_only_when_it_changed(
        engine: Engine, standin: StripeStandIn, client: StripeClient) -> None:
    customer, charge, _, _ = seeded(standin)
    case_id = make_case(engine, "call_status_1", stripe_customer_id=customer, payment_id=charge)
    cache = StatusCache(clock=Clock(NOW))
    assert refresh_case(engine, client, cache, case_id, NOW) is True
    case = load(engine, case_id)
    # A status line is no change to the buttons: the card is redrawn at the same version, so a click on
    # the previous render still counts (refresh_case's True is the redraw being queued).
    assert case.card_version == 0 and case.stripe_status is not None
    assert case.stripe_status["charge"]["id"] == charge and case.stripe_status["subscription"]["status"] == "past_due"
    # Asked again (fresh, as after a webhook): the same answer stores nothing and queues nothing.
    assert refresh_case(engine, client, cache, case_id, NOW, fresh=True) is False
    assert load(engine, case_id).card_version == 0
    # Stripe changed: the card follows once.
    standin.set_charge(charge, amount_refunded=500)
    assert refresh_case(engine, client, cache, case_id, NOW) is False  # cached: the change is not seen yet
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = refresh_later(pool, engine, client, cache, case_id, lambda: NOW, fresh=True)
        assert future is not None and future.result(5) is True
    case = load(engine, case_id)
    assert case.card_version == 0 and case.stripe_status["charge"]["amount_refunded"] == "5.00"  # type: ignore[index]
    message = case_card(case)
    assert_valid_message(message)
    assert "5.00 USD refunded" in str(message)
    # Stripe down: the card says so (a change), and comes back when Stripe does.
    standin.fail_next("/v1/charges/" + charge, 500, times=2)
    assert refresh_case(engine, client, cache, case_id, NOW, fresh=True) is True
    down = load(engine, case_id)
    assert down.card_version == 0 and "unavailable" in (down.stripe_status or {})
    assert "Stripe unavailable (" in str(case_card(down))
    assert refresh_case(engine, client, cache, case_id, NOW, fresh=True) is True
    assert load(engine, case_id).stripe_status.get("unavailable") is None  # type: ignore[union-attr]


def test_a_case_with_no_stripe_customer_or_charge_fetches_nothing_and_shows_nothing(
        engine: Engine, standin: StripeStandIn, client: StripeClient) -> None:
    case_id = make_case(engine, "call_status_2", payment_id="48213")  # a MoonClerk payment, no Stripe IDs
    cache = StatusCache()
    assert case_key(load(engine, case_id)) is None
    assert refresh_case(engine, client, cache, case_id, NOW) is False
    case = load(engine, case_id)
    assert case.stripe_status is None and case.card_version == 0 and stripe_requests(standin) == 0
    assert not any(b.get("block_id", "").endswith("-stripe") for b in case_card(case)["blocks"])
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert refresh_later(pool, engine, None, cache, case_id) is None  # Stripe not configured
    assert refresh_case(engine, client, cache, 999_999, NOW) is False  # no such case


def test_a_matched_caller_is_resolved_to_a_stripe_customer_and_the_dispute_state_comes_from_the_case(
        engine: Engine, standin: StripeStandIn, client: StripeClient) -> None:
    customer, charge, _, _ = seeded(standin)
    standin.set_charge(charge, disputed=True)
    case_id = make_case(engine, "call_status_3", moonclerk_customer_id=4242, match_status="matched",
                        stripe_charge_id=charge, stripe_dispute_status="under_review")
    cache = StatusCache()
    assert refresh_case(engine, client, cache, case_id, NOW, resolve_customer=lambda case: customer) is True
    case = load(engine, case_id)
    assert case.stripe_status is not None and case.stripe_status["subscription"]["status"] == "past_due"
    assert case.stripe_status["charge"]["dispute_status"] == "under_review"
    assert "disputed (under review)" in (stripe_status_text(case.stripe_status) or "")
    assert case.stripe_customer_id is None  # only shown, never recorded as the customer

    def down(case: Case) -> str | None:
        raise RuntimeError("MoonClerk is down")

    # The resolver failing leaves what the case itself names: the charge.
    assert refresh_case(engine, client, cache, case_id, NOW, resolve_customer=down) is True
    assert "subscription" not in (load(engine, case_id).stripe_status or {})


def test_the_service_refreshes_every_case_a_webhook_object_names_and_answers_lookups(
        engine: Engine, standin: StripeStandIn, client: StripeClient) -> None:
    customer, charge, _, _ = seeded(standin)
    by_charge = make_case(engine, "call_status_4", stripe_charge_id=charge)
    by_customer = make_case(engine, "call_status_5", stripe_customer_id=customer)
    unrelated = make_case(engine, "call_status_6", stripe_charge_id="ch_someoneElse")
    with ThreadPoolExecutor(max_workers=2) as pool:
        service = StripeStatusService(engine, client, pool, clock=lambda: NOW)
        first = service.refresh_later(by_charge)
        assert first is not None and first.result(5) is True
        standin.set_charge(charge, amount_refunded=2500, refunded=True)
        refund = {"id": "re_statusTest", "object": "refund", "charge": charge, "payment_intent": None}
        assert service.refresh_for_object_later({"id": "evt"}) is not None  # names no case: nothing queued
        future = service.refresh_for_object_later({**refund, "customer": {"id": customer}})
        assert future is not None and future.result(5) == 2
        assert service.refresh_for_object_later({"object": "refund"}) is None
        service.prefetch([customer, None])
        [shown, none] = service.for_lookup([customer, "cus_"])
        service.close()
    assert load(engine, by_charge).stripe_status["charge"]["amount_refunded"] == "25.00"  # type: ignore[index]
    assert load(engine, by_customer).stripe_status["subscription"]["status"] == "past_due"  # type: ignore[index]
    assert load(engine, unrelated).stripe_status is None
    assert shown is not None and shown["charge"]["id"] == charge and none is None


# ---------------------------------------------------------------------------------------------------
# Surfaces


def hostile_status(url: str = EVIL_URL) -> dict[str, Any]:
    return {
        "fetched_at": "2026-11-22T12:00:00+00:00",
        "charge": {"id": HOSTILE, "status": HOSTILE, "amount": "25.00", "amount_refunded": "1E+3",
                   "currency": "<!h", "disputed": True, "dispute_status": HOSTILE},
        "subscription": {"id": HOSTILE, "status": HOSTILE},
        "latest_invoice": {"id": HOSTILE, "number": "<!here>", "status": HOSTILE, "hosted_invoice_url": url,
                           "amount_due": "NaN", "currency": HOSTILE},
        "missing": [HOSTILE, 7, None],
    }


@pytest.mark.parametrize("url", [EVIL_URL, NOT_WEB, HOSTILE, "https://pay.example/" + "x" * 3000])
def test_hostile_stripe_values_render_inert(url: str) -> None:
    text = stripe_status_text(hostile_status(url))
    assert text is not None
    assert_inert(text, "stripe status")
    assert "javascript" not in text and "<!here>" not in text
    unavailable = stripe_status_text({"unavailable": HOSTILE, "fetched_at": "x"})
    assert unavailable is not None and unavailable.startswith("Stripe unavailable (")
    assert_inert(unavailable, "stripe unavailable")
    nonsense = {"charge": "ch_1", "subscription": [1], "latest_invoice": {"amount_due": True}, "missing": "x"}
    assert_inert(stripe_status_text(nonsense) or "", "wrong shapes")


def test_hostile_values_from_stripe_itself_stay_inert_on_the_card(standin: StripeStandIn,
                                                                   client: StripeClient) -> None:
    customer = standin.add_customer()["id"]
    charge = standin.add_charge(customer=customer, status="failed")["id"]
    standin.set_charge(charge, status=HOSTILE)
    standin.add_invoice(customer, number="<!here>")
    status = fetch_status(client, customer, charge, now=NOW)
    assert status is not None and status.latest_invoice is not None and status.latest_invoice.number == "<!here>"
    card = case_card(hostile_case(stripe_status=status.to_json()))
    assert_valid_message(card)
    assert_message_inert(card, "card")
    assert "`&lt;!here&gt;`" in str(card)


@pytest.mark.parametrize("status", [hostile_status(), {"unavailable": HOSTILE * 20, "fetched_at": "x"},
                                    hostile_status(NOT_WEB)], ids=["hostile", "unavailable", "not web"])
def test_the_card_and_the_lookup_answer_with_a_status_are_valid_block_kit(status: dict[str, Any]) -> None:
    card = case_card(hostile_case(stripe_status=status))
    assert_valid_message(card)
    assert_message_inert(card, "card")
    [block] = [b for b in card["blocks"] if b.get("block_id", "").endswith("-stripe")]
    assert block == stripe_status_block(status, block["block_id"])
    customer = MoonClerkCustomer(id=777001, name=HOSTILE, email="ann@example.com", customer_reference="cus_x")
    answer = lookup_message(LookupAnswer("email `ann@example.com`", [CustomerResult(customer, stripe_status=status)]))
    assert_valid_message(answer)
    assert_message_inert(answer, "lookup")
    assert "Stripe" in str(answer)
