"""POST /webhooks/moonclerk/{token} over real HTTP, MoonClerk on its stand-in, on SQLite and PostgreSQL:
a body finance-desk cannot read is a 400 naming the problem; only MoonClerk or the database failing is a 503."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlmodel import Session, func, select

from bot.runtime import Runtime
from bot.standins import MoonClerkStandIn
from storage.models import AuditEvent, Case
from tests.conftest import LiveServer, make_settings

TOKEN = "tok_" + "m" * 28


@pytest.fixture
def moonclerk() -> Iterator[MoonClerkStandIn]:
    with MoonClerkStandIn() as standin:
        yield standin


@pytest.fixture
def server(runtime: Runtime, db_url: str, moonclerk: MoonClerkStandIn) -> Iterator[LiveServer]:
    runtime.settings = make_settings(db_url, moonclerk_api_key=SecretStr(moonclerk.api_key),
                                     moonclerk_api_url=moonclerk.url, moonclerk_webhook_token=SecretStr(TOKEN))
    live = LiveServer(runtime).start()
    yield live
    live.stop()


def post(server: LiveServer, body: Any = None, *, raw: bytes | None = None) -> httpx.Response:
    url = f"{server.url}/webhooks/moonclerk/{TOKEN}"
    if raw is not None:
        return httpx.post(url, content=raw, headers={"Content-Type": "application/json"}, timeout=30)
    return httpx.post(url, json=body, timeout=30)


def failed(data: Any, *, event: Any = "plan_payment_failed", kind: Any = "customer") -> dict[str, Any]:
    return {"event": event, "object": kind, "data": data}


def cases(server: LiveServer) -> int:
    with Session(server.runtime.engine) as session:
        return int(session.exec(select(func.count()).select_from(Case)).one())


@pytest.mark.parametrize(("body", "named"), [
    (failed({"id": "not-a-number"}), "data.id must be a positive whole number, not a string"),
    (failed({}), "data.id is missing"),
    (failed({"id": None}), "data.id is missing"),
    (failed({"id": 12.5}), "data.id must be a positive whole number, not a number with a fraction"),
    (failed({"id": True}), "data.id must be a positive whole number, not true/false"),
    (failed({"id": -3}), "data.id must be a positive whole number, not zero or negative"),
    (failed({"id": {"nested": 1}}), "data.id must be a positive whole number, not an object"),
    (failed([523425]), "data must be an object, not a list"),
    (failed("523425"), "data must be an object, not a string"),
    ({"event": "plan_payment_failed", "object": "customer"}, "data must be an object, not missing"),
    (failed({"id": 523425}, kind="plan"), 'object must be "customer" or "payment", not a string'),
    (failed({"id": 523425}, kind=None), 'object must be "customer" or "payment", not missing'),
    (failed({"id": 523425}, event=7), "event must be a non-empty string, not a whole number"),
    (failed({"id": 523425}, event=""), "event must be a non-empty string, not an empty string"),
    (failed({"id": "12abc", "status": "failed", "customer_id": 5}, event="payment_created", kind="payment"),
     "data.id must be a positive whole number, not a string"),
])
def test_a_malformed_event_is_a_400_that_names_the_problem(
    server: LiveServer, moonclerk: MoonClerkStandIn, body: dict[str, Any], named: str,
) -> None:
    response = post(server, body)
    assert response.status_code == 400, response.text
    assert response.json() == {"ok": False, "error": "malformed_event", "detail": named}
    assert not moonclerk.requests  # nothing was asked of MoonClerk, so nothing to retry there
    assert cases(server) == 0


def test_bodies_that_are_not_events_at_all(server: LiveServer, moonclerk: MoonClerkStandIn) -> None:
    not_json = post(server, raw=b"{not json")
    assert not_json.status_code == 400 and not_json.json()["error"] == "malformed_json"
    assert not_json.json()["detail"].startswith("body is not valid JSON")
    for body in ([1, 2], {"object": "customer", "data": {"id": 523425}}):
        response = post(server, body)
        assert response.status_code == 400 and response.json()["error"] == "not_a_moonclerk_event", body
    assert not moonclerk.requests


def test_a_malformed_body_never_echoes_what_it_was_sent(server: LiveServer) -> None:
    response = post(server, failed({"id": "SECRET-looking-payload"}))
    assert response.status_code == 400 and "SECRET" not in response.text


@pytest.mark.parametrize("body", [
    {"event": "payment_created", "object": "payment", "data": {"id": 1348394, "status": "successful"}},
    {"event": "plan_created", "object": "customer", "data": {"id": "whatever"}},
    {"event": "plan_ended", "object": "customer", "data": []},
    {"event": "some_future_topic"},
])
def test_other_event_types_stay_200_ignored(server: LiveServer, moonclerk: MoonClerkStandIn,
                                            body: dict[str, Any]) -> None:
    response = post(server, body)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True and response.json()["result"].startswith("ignored: ")
    assert not moonclerk.requests and cases(server) == 0


def test_a_numeric_string_id_is_read_and_confirmed_with_moonclerk(server: LiveServer,
                                                                  moonclerk: MoonClerkStandIn) -> None:
    response = post(server, failed({"id": "523425"}))
    assert response.status_code == 200, response.text
    assert response.json()["result"].startswith("created case moonclerk:523425:")
    assert moonclerk.calls("/customers/523425")


def test_a_failed_payment_event_is_confirmed_through_the_payment(server: LiveServer,
                                                                 moonclerk: MoonClerkStandIn) -> None:
    moonclerk.add_payment(id=777, customer_id=523425, status="failed")
    body = failed({"id": 777, "status": "failed", "customer_id": 523425}, event="payment_created", kind="payment")
    response = post(server, body)
    assert response.status_code == 200 and response.json()["result"].startswith("created case moonclerk:523425:")
    assert moonclerk.calls("/payments/777") and moonclerk.calls("/customers/523425")


def test_moonclerk_unreachable_is_a_503_so_moonclerk_retries(server: LiveServer,
                                                             moonclerk: MoonClerkStandIn) -> None:
    moonclerk.fail_next("/customers/523425", 503, times=4)  # every attempt the client makes
    response = post(server, failed({"id": 523425}))
    assert response.status_code == 503
    assert response.json() == {"ok": False, "error": "provider_unavailable",
                               "detail": "could not confirm with MoonClerk; retry later"}
    assert moonclerk.status_count(503, "/customers/523425") == 4 and cases(server) == 0
    # The retry MoonClerk sends later goes through.
    assert post(server, failed({"id": 523425})).status_code == 200 and cases(server) == 1


def test_a_record_moonclerk_does_not_have_is_200_ignored(server: LiveServer) -> None:
    response = post(server, failed({"id": 999999}))
    assert response.status_code == 200 and "no such record" in response.json()["result"]


def test_a_database_failure_is_a_503(server: LiveServer, moonclerk: MoonClerkStandIn) -> None:
    with server.runtime.engine.begin() as connection:  # the audit table disappears under the app
        connection.execute(text("ALTER TABLE audit_events RENAME TO audit_events_gone"))
    response = post(server, failed({"id": 523425}))
    assert response.status_code == 503
    assert response.json() == {"ok": False, "error": "storage_unavailable",
                               "detail": "the event could not be stored; retry later"}
    assert moonclerk.calls("/customers/523425")
    with server.runtime.engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_events_gone RENAME TO audit_events"))
    assert post(server, failed({"id": 523425})).status_code == 200
    with Session(server.runtime.engine) as session:
        assert session.exec(select(AuditEvent).where(AuditEvent.action == "case.created")).one()


def test_nesting_too_deep_to_parse_is_a_400(server: LiveServer, moonclerk: MoonClerkStandIn) -> None:
    deep = b'{"event": "plan_payment_failed", "data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    response = post(server, raw=deep)
    assert response.status_code == 400, response.text
    assert response.json() == {"ok": False, "error": "malformed_json",
                               "detail": "body is not valid JSON: RecursionError"}
    assert not moonclerk.requests and cases(server) == 0
