"""POST /webhooks/poof over real HTTP, Poof on its stand-in: the re-fetch that confirms a notice keeps
to PROVIDER_TIMEOUT_SECONDS, like every other provider call."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from bot.runtime import Runtime
from bot.standins import PoofStandIn
from tests.conftest import LiveServer, make_settings

SECRET = "poof-shared-secret-for-webhook-tests"


@pytest.fixture
def poof() -> Iterator[PoofStandIn]:
    with PoofStandIn() as standin:
        yield standin


def serve(runtime: Runtime, db_url: str, poof: PoofStandIn, timeout: float) -> LiveServer:
    runtime.settings = make_settings(db_url, poof_api_key=SecretStr(poof.api_key), poof_api_url=poof.url,
                                     poof_webhook_secret=SecretStr(SECRET), provider_timeout_seconds=timeout)
    return LiveServer(runtime).start()


def notice(server: LiveServer, payment_id: str) -> httpx.Response:
    return httpx.post(f"{server.url}/webhooks/poof", json={"payment_id": payment_id, "x-poof-signature": SECRET},
                      timeout=60)


def test_the_confirming_fetch_uses_provider_timeout_seconds(runtime: Runtime, db_url: str, poof: PoofStandIn) -> None:
    # Poof answers after 0.3 s; with PROVIDER_TIMEOUT_SECONDS=0.1 every attempt gives up first.
    # (The client's own 10 s default would wait, and then answer 400 for the unknown transaction.)
    poof.delay("/api/v1/transaction", 0.3)
    server = serve(runtime, db_url, poof, timeout=0.1)
    try:
        response = notice(server, "nosuch01")
    finally:
        server.stop()
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "provider_unavailable"
    assert len(poof.calls("/api/v1/transaction")) >= 2  # a read: retried, each attempt cut off at the timeout


def test_a_generous_timeout_waits_for_a_slow_poof(runtime: Runtime, db_url: str, poof: PoofStandIn) -> None:
    poof.delay("/api/v1/transaction", 0.3)
    server = serve(runtime, db_url, poof, timeout=5)
    try:
        response = notice(server, "nosuch02")
    finally:
        server.stop()
    assert response.status_code == 400 and response.json()["error"] == "unknown_transaction"
    assert len(poof.calls("/api/v1/transaction")) == 1


def test_nesting_too_deep_to_parse_is_a_400_before_the_secret_is_checked(
    runtime: Runtime, db_url: str, poof: PoofStandIn
) -> None:
    # Unsigned on purpose: anyone can send this, and it must not reach the 500 handler.
    deep = b'{"payment_id": "abc", "note": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    server = serve(runtime, db_url, poof, timeout=5)
    try:
        response = httpx.post(f"{server.url}/webhooks/poof", content=deep,
                              headers={"Content-Type": "application/json"}, timeout=30)
    finally:
        server.stop()
    assert response.status_code == 400, response.text
    assert response.json() == {"ok": False, "error": "malformed_json",
                               "detail": "body is not valid JSON: RecursionError"}
    assert not poof.calls("/api/v1/transaction")


def test_a_body_far_larger_than_any_payment_notice_is_refused_unread(
    runtime: Runtime, db_url: str, poof: PoofStandIn
) -> None:
    server = serve(runtime, db_url, poof, timeout=5)
    try:
        response = httpx.post(f"{server.url}/webhooks/poof", timeout=30,
                              json={"payment_id": "abc", "x-poof-signature": SECRET, "note": "x" * 70_000})
    finally:
        server.stop()
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    assert not poof.calls("/api/v1/transaction")
