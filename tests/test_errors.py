"""One error policy per edge: every webhook refusal in one JSON shape; in Slack, every failure told to the
person with an error ID that is also in the log, and never the payload in the log."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from slack_bolt import Ack, BoltResponse
from sqlmodel import Session, select
from starlette.requests import Request

from blocks.actions import CallbackId
from bot.runtime import Runtime
from bot.slack.errors import Refused
from bot.slack.listeners import money_actions
from bot.slack.listeners.context import Desk, interaction, on_error
from bot.standins import MoonClerkStandIn, PoofStandIn
from bot.web.errors import server_error
from bot.web.limits import MAX_BODY_BYTES
from providers.base import ProviderResult
from providers.poof import PoofClient
from storage.db import make_engine
from storage.models import ProviderAction
from storage.states import ActionStatus
from tests.conftest import WEBHOOK_SECRET, LiveServer, make_settings
from tests.signing import dialnexa_headers, slack_headers
from tests.slackapp import SIGNING_SECRET, SlackApp
from tests.test_listeners import APPROVER, Prepared, button, click, desk, make_case, submission

__all__ = ["desk"]  # the fixture, shared with test_listeners

SAMPLES = Path(__file__).resolve().parents[1] / "bot" / "samples"
POOF_SECRET = "poof-shared-secret-for-error-tests"
MOONCLERK_TOKEN = "tok_" + "e" * 28
ERROR_ID = re.compile(r"error ID `?([0-9a-f]{8})`?")
# Nests deeper than the interpreter's recursion limit, yet small enough for Poof's 64 KB bound.
DEEP = b'{"event": "plan_payment_failed", "note": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"

# -- webhooks ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Edge:
    server: LiveServer
    poof: PoofStandIn
    paid: str  # a Poof transaction that is paid, so a notice for it reaches the database


@pytest.fixture
def edge(runtime: Runtime, db_url: str) -> Iterator[Edge]:
    with PoofStandIn() as poof, MoonClerkStandIn() as moonclerk:
        runtime.settings = make_settings(
            db_url, poof_api_key=SecretStr(poof.api_key), poof_api_url=poof.url,
            poof_webhook_secret=SecretStr(POOF_SECRET), moonclerk_api_key=SecretStr(moonclerk.api_key),
            moonclerk_api_url=moonclerk.url, moonclerk_webhook_token=SecretStr(MOONCLERK_TOKEN))
        with PoofClient(poof.api_key, poof.url) as client:
            invoice = client.create_fiat_invoice(Decimal("10"), "USD", "paypal")
        assert invoice.reference is not None
        poof.mark_paid(invoice.reference)
        server = LiveServer(runtime).start()
        try:
            yield Edge(server, poof, invoice.reference)
        finally:
            server.stop()


def _dialnexa(edge: Edge, raw: bytes | None, *, genuine: bool = True) -> httpx.Response:
    body = raw if raw is not None else (SAMPLES / "01_refund.json").read_bytes()
    headers = dialnexa_headers(body, WEBHOOK_SECRET if genuine else "whsec_someone_else")
    return httpx.post(f"{edge.server.url}/webhooks/dialnexa", content=body, headers=headers, timeout=30)


def _poof(edge: Edge, raw: bytes | None, *, genuine: bool = True) -> httpx.Response:
    secret = POOF_SECRET if genuine else "not-the-secret"
    body = raw if raw is not None else json.dumps({"payment_id": edge.paid, "x-poof-signature": secret}).encode()
    return httpx.post(f"{edge.server.url}/webhooks/poof", content=body,
                      headers={"Content-Type": "application/json"}, timeout=30)


def _moonclerk(edge: Edge, raw: bytes | None, *, genuine: bool = True) -> httpx.Response:
    body = raw if raw is not None else json.dumps(
        {"event": "plan_payment_failed", "object": "customer", "data": {"id": 523425}}).encode()
    token = MOONCLERK_TOKEN if genuine else "tok_" + "x" * 28
    return httpx.post(f"{edge.server.url}/webhooks/moonclerk/{token}", content=body,
                      headers={"Content-Type": "application/json"}, timeout=30)


WEBHOOKS: dict[str, Callable[..., httpx.Response]] = {
    "dialnexa": _dialnexa, "poof": _poof, "moonclerk": _moonclerk}


def _bad_credential(edge: Edge, send: Callable[..., httpx.Response]) -> httpx.Response:
    return send(edge, None, genuine=False)


def _malformed(edge: Edge, send: Callable[..., httpx.Response]) -> httpx.Response:
    return send(edge, b"{not json")


def _deep(edge: Edge, send: Callable[..., httpx.Response]) -> httpx.Response:
    return send(edge, DEEP)


def _oversize(edge: Edge, send: Callable[..., httpx.Response]) -> httpx.Response:
    return send(edge, b"x" * (MAX_BODY_BYTES + 1))


def _storage_outage(edge: Edge, send: Callable[..., httpx.Response]) -> httpx.Response:
    runtime = edge.server.runtime
    working, runtime.engine = runtime.engine, make_engine("postgresql://nobody@127.0.0.1:1/none")
    try:
        return send(edge, None)
    finally:
        runtime.engine.dispose()
        runtime.engine = working


REFUSALS: dict[str, tuple[Callable[[Edge, Callable[..., httpx.Response]], httpx.Response], dict[str, Any]]] = {
    "bad credential": (_bad_credential, {"dialnexa": (401, "invalid_signature"), "poof": (401, "invalid_signature"),
                                         "moonclerk": (404, "not_found")}),
    "malformed json": (_malformed, dict.fromkeys(WEBHOOKS, (400, "malformed_json"))),
    "deep json": (_deep, dict.fromkeys(WEBHOOKS, (400, "malformed_json"))),
    "storage outage": (_storage_outage, dict.fromkeys(WEBHOOKS, (503, "storage_unavailable"))),
    "oversize": (_oversize, dict.fromkeys(WEBHOOKS, (413, "body_too_large"))),
}


@pytest.mark.parametrize("refusal", REFUSALS)
@pytest.mark.parametrize("webhook", WEBHOOKS)
def test_every_webhook_refusal_has_the_one_shape(edge: Edge, webhook: str, refusal: str) -> None:
    make, expected = REFUSALS[refusal]
    response = make(edge, WEBHOOKS[webhook])
    assert (response.status_code, response.json().get("error")) == expected[webhook], response.text
    body = response.json()
    assert set(body) == {"ok", "error", "detail"} and body["ok"] is False
    assert isinstance(body["detail"], str) and body["detail"]
    for internal in ("Traceback", "psycopg", "sqlalchemy", "File \""):
        assert internal not in response.text


def test_the_storage_outage_detail_names_what_was_not_stored(edge: Edge) -> None:
    details = {name: _storage_outage(edge, send).json()["detail"] for name, send in WEBHOOKS.items()}
    assert details == {"dialnexa": "the delivery could not be stored; retry later",
                       "poof": "the payment notice could not be stored; retry later",
                       "moonclerk": "the event could not be stored; retry later"}


def test_a_poof_notice_is_stored_once_the_database_is_back(edge: Edge) -> None:
    assert _storage_outage(edge, _poof).status_code == 503
    response = _poof(edge, None)
    assert response.status_code == 200 and response.json()["ok"] is True


def test_starlettes_own_refusals_have_the_one_shape(edge: Edge) -> None:
    missing = httpx.get(f"{edge.server.url}/webhooks/nowhere")
    assert missing.status_code == 404
    assert missing.json() == {"ok": False, "error": "Not Found", "detail": "Not Found"}
    wrong_method = httpx.get(f"{edge.server.url}/webhooks/poof")
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"ok", "error", "detail"}


def test_an_unhandled_error_answers_an_error_id_that_is_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []})
    response = asyncio.run(server_error(request, RuntimeError("customer 4242 said something private")))
    body = json.loads(bytes(response.body))
    assert response.status_code == 500 and set(body) == {"ok", "error", "detail"}
    assert body["error"] == "internal_error"
    found = ERROR_ID.search(body["detail"])
    assert found and found.group(1) in caplog.text
    assert "private" not in body["detail"] and "private" not in caplog.text


# -- Slack: one @app.error --------------------------------------------------------------------------

MARKER = "PAYLOAD-MARKER-4417"


@pytest.fixture
def slack(runtime: Runtime, db_url: str) -> Iterator[SlackApp]:
    application = SlackApp(runtime, db_url)
    yield application
    application.stop()


def _raise_refused(ack: Ack) -> None:
    raise Refused("That is not something finance-desk can do here.")


def _raise_untyped(ack: Ack) -> None:
    raise KeyError("no_such_field")


def _click_test_listener(slack: SlackApp, action_id: str, name: str) -> str:
    slack.service.bolt.action(action_id)(_raise_refused if action_id == "test_refused" else _raise_untyped)
    payload = {
        "type": "block_actions", "user": {"id": APPROVER, "username": MARKER, "team_id": "T0FIN"},
        "api_app_id": "A0", "token": "unused", "trigger_id": "1.2.3", "team": {"id": "T0FIN"},
        "channel": {"id": "C0FINANCE", "name": "finance"}, "response_url": slack.slack.response_url(name),
        "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": MARKER,
                     "action_ts": str(time.time())}],
    }
    body = "payload=" + urllib.parse.quote(json.dumps(payload))
    response = httpx.post(f"{slack.server.url}/slack/events", content=body,
                          headers=slack_headers(body, SIGNING_SECRET), timeout=10)
    assert response.status_code == 200 and response.text == ""
    return slack.ephemeral_for(name)


def test_a_typed_error_is_answered_in_its_own_words_with_an_error_id(
    slack: SlackApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    text = _click_test_listener(slack, "test_refused", "refused")
    assert text.startswith("That is not something finance-desk can do here.")
    found = ERROR_ID.search(text)
    assert found is not None
    [line] = [r.getMessage() for r in caplog.records if found.group(1) in r.getMessage()]
    assert "Refused" in line or "refused" in line
    assert MARKER not in caplog.text


def test_an_untyped_error_is_something_went_wrong_with_an_error_id(
    slack: SlackApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    text = _click_test_listener(slack, "test_untyped", "untyped")
    assert "Something went wrong" in text and "no_such_field" not in text
    found = ERROR_ID.search(text)
    assert found is not None
    [line] = [r.getMessage() for r in caplog.records if found.group(1) in r.getMessage()]
    assert "KeyError" in line and "test_untyped" in line
    assert MARKER not in caplog.text


def test_after_the_ack_the_error_handler_gives_bolt_no_response(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime)
    payload = click("assign_self", APPROVER, value=button(case))
    prepared = Prepared(desk, payload)
    assert on_error(RuntimeError("late"), payload, prepared.context, None) is None
    answered = on_error(RuntimeError("early"), payload, prepared.context, BoltResponse(status=500))
    assert answered is not None and answered.status == 200
    assert len(prepared.respond.texts) == 2 and all("error ID" in text for text in prepared.respond.texts)


# -- a money action that fails after the ack --------------------------------------------------------

class CrashingInvoices:
    """An invoice provider with a bug: it raises something no provider error covers."""

    name = "poof"

    def create_fiat_invoice(self, amount: Decimal, currency: str, payment: str, *,
                            metadata: Any = None) -> ProviderResult:
        raise ZeroDivisionError("a bug in the provider client")

    def list_transactions(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def test_a_money_action_that_crashes_after_the_ack_tells_the_approver(
    desk: Desk, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    actions = dataclasses.replace(desk.actions, invoices=CrashingInvoices())
    crashing = Desk(runtime, actions)
    case = make_case(runtime, amount=Decimal("120.00"), currency="USD", moonclerk_customer_id=42,
                     match_status="matched", invoice_number="INV-1")
    values = {"amount": {"value": {"type": "plain_text_input", "value": "120.00"}},
              "currency": {"value": {"type": "plain_text_input", "value": "USD"}},
              "method": {"value": {"type": "static_select", "selected_option": {"value": "paypal"}}}}
    payload = submission(CallbackId.INVOICE_POOF, APPROVER, button(case), values)
    prepared = Prepared(crashing, payload)
    ack = prepared.run(money_actions.submit_invoice, view=payload["view"])
    assert ack.calls == [{}]
    [(method, call)] = prepared.client.calls  # after a modal: ephemerally in the card's thread
    assert method == "chat_postEphemeral" and call["user"] == APPROVER
    found = ERROR_ID.search(call["text"])
    assert found is not None and "Something went wrong" in call["text"]
    assert found.group(1) in caplog.text and "ZeroDivisionError" in caplog.text
    with Session(runtime.engine) as session:
        [row] = session.exec(select(ProviderAction)).all()
    # Not left "running": the card offers Reconcile at once, never Retry.
    assert row.status == ActionStatus.UNKNOWN and "ZeroDivisionError" in (row.error or "")


def test_a_refusal_after_the_ack_is_told_in_its_own_words(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime)
    prepared = Prepared(desk, click("assign_self", APPROVER, value=button(case)))

    def vanished() -> str:
        raise Refused("That case no longer exists.")

    interaction(prepared.context).later(vanished)
    [text] = prepared.respond.texts
    assert text.startswith("That case no longer exists. (error ID `") and ERROR_ID.search(text)
