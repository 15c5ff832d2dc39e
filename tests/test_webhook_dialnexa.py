"""POST /webhooks/dialnexa over real HTTP, signed as DialNexa signs, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, func, select

from storage.models import AuditEvent, Case, WebhookDelivery
from tests.conftest import PREVIOUS_SECRET, WEBHOOK_SECRET, LiveServer
from tests.signing import dialnexa_headers, dumps

SAMPLES = Path(__file__).resolve().parents[1] / "bot" / "samples"


def post(server: LiveServer, payload: Any, *, secret: str = WEBHOOK_SECRET, raw: bytes | None = None,
         **sign: Any) -> httpx.Response:
    body = raw if raw is not None else dumps(payload)
    return httpx.post(f"{server.url}/webhooks/dialnexa", content=body,
                      headers=dialnexa_headers(body, secret, **sign), timeout=10)


def case_of(server: LiveServer, call_id: str) -> Case:
    with Session(server.runtime.engine) as session:
        case = session.exec(select(Case).where(Case.call_id == call_id)).one()
        return case


def count(server: LiveServer, model: Any) -> int:
    with Session(server.runtime.engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


# -- every documented envelope ------------------------------------------------------------------

def test_model_a_envelope_with_analysis(live_server: LiveServer) -> None:
    response = post(live_server, sample("01_refund.json"))
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "outcome": "stored", "call_id": "call_demo_refund_0001", "created": True}
    case = case_of(live_server, "call_demo_refund_0001")
    assert case.is_billing and case.kind == "refund"
    assert case.classification_source == "analysis"
    assert case.caller_phone == "+14155550142"
    assert case.amount == Decimal("149.00") and isinstance(case.amount, Decimal) and case.currency == "USD"
    assert case.invoice_number == "INV-1042"
    assert case.email == "dana@whitfield.example"
    assert case.recording_url == "https://recordings.dialnexa.com/call_demo_refund_0001.mp3"
    assert case.crm_url == "https://crm.example.com/contacts/8812"
    assert case.support_ticket_url == "https://support.example.com/tickets/55120"
    assert case.follow_up_deadline is not None and case.follow_up_deadline.tzinfo is not None
    assert case.owner == "U0OWNER"
    assert case.stage == "call_analyzed"


def test_a_call_log_record_is_keyed_by_its_call_id_not_its_log_id(live_server: LiveServer) -> None:
    # dialnexa.md §1.3: call-log shaped bodies carry the log's own `id` beside the call's `call_id`.
    log_shaped = {"event_type": "call_ended", "payload": {"call": {
        "id": "log_abc123", "call_id": "call_abc123", "status": "completed", "from_number": "14155550142",
        "summary": "Customer asks for a refund of invoice INV-9 for 20.00 USD."}}}
    assert post(live_server, log_shaped).json()["call_id"] == "call_abc123"
    later = {"event_type": "call_analyzed", "payload": {"call": {
        "id": "call_abc123", "status": "completed", "post_call_analysis": {"billing_intent": "refund_request"}}}}
    assert post(live_server, later).json()["created"] is False
    with Session(live_server.runtime.engine) as session:
        assert session.exec(select(func.count()).select_from(Case)).one() == 1


def test_the_card_links_dialnexas_copy_of_the_transcript(live_server: LiveServer) -> None:
    from blocks.card import case_card

    post(live_server, sample("01_refund.json"))
    card = json.dumps(case_card(case_of(live_server, "call_demo_refund_0001")))
    assert "https://api.dialnexa.com/v1/call-logs/call_demo_refund_0001/details|Transcript" in card


def test_model_a_call_initiated_minimal(live_server: LiveServer) -> None:
    payload = {"event_type": "call_initiated", "payload": {"call": {
        "id": "call_abc123xyz", "direction": "outbound", "type": "phone_call", "category": "batch",
        "category_id": "batch_001", "from_number": "12137771234", "to_number": "12137771235",
        "status": "initiated", "agent_id": "agent_987654321", "initiated_at": "2025-05-02T10:21:15.945Z"}}}
    assert post(live_server, payload).status_code == 200
    case = case_of(live_server, "call_abc123xyz")
    assert case.caller_phone == "+12137771235"  # outbound: the customer is the number dialled
    assert case.started_at is not None and case.started_at.isoformat() == "2025-05-02T10:21:15.945000+00:00"
    assert not case.is_billing


def test_model_a_hangup_with_deprecated_reason(live_server: LiveServer) -> None:
    payload = {"event_type": "call_ended", "payload": {"call": {
        "id": "call_hangup_1", "status": "hangup", "direction": "outbound", "to_number": "12137771235",
        "disconnection_reason": "user_did_not_pick_up"}}}
    assert post(live_server, payload).status_code == 200
    case = case_of(live_server, "call_hangup_1")
    assert case.call_status == "hangup" and case.hangup_reason == "user_did_not_pick_up"


@pytest.mark.parametrize("name", ["call.failed", "call.no_answer"])
def test_model_b_failed_and_unanswered_calls_are_hangups(live_server: LiveServer, name: str) -> None:
    payload = {"event": name, "call_id": f"call_{name}", "status": "failed", "to_number": "12137771235",
               "end_reason": "user_did_not_pick_up", "timestamp": "2026-11-20T10:00:05Z"}
    assert post(live_server, payload).json()["outcome"] == "stored"
    case = case_of(live_server, f"call_{name}")
    assert case.call_status == "hangup" and case.hangup_reason == "user_did_not_pick_up"
    assert case.ended_at is not None and case.ended_at.isoformat() == "2026-11-20T10:00:05+00:00"
    assert case.started_at is None  # the event's own timestamp is when it ended


def test_transfer_completed_merges_into_the_call(live_server: LiveServer) -> None:
    post(live_server, sample("01_refund.json"))
    transfer = {"event_type": "transfer_completed", "payload": {
        "call": {"id": "call_demo_refund_0001", "status": "in_progress"},
        "call_transfer": {"destination": "+14155550100", "status": "completed"}}}
    response = post(live_server, transfer)
    assert response.status_code == 200 and response.json()["created"] is False
    case = case_of(live_server, "call_demo_refund_0001")
    assert case.stage == "call_analyzed" and case.kind == "refund"  # an earlier stage never rolls back


def test_vapi_style_message_envelope(live_server: LiveServer) -> None:
    payload = {"message": {
        "type": "end-of-call-report", "timestamp": 1744364981358, "endedReason": "customer-ended-call",
        "call": {"id": "call_vapi_1", "type": "inboundPhoneCall", "customer": {"number": "+15551234567"}},
        "customer": {"number": "+15551234567"},
        "artifact": {"transcript": "AI: Hello.\nUser: I was charged twice for invoice INV-1042.",
                     "recordingUrl": "https://recordings.example/mono.wav", "messages": []},
        "analysis": {"summary": "Customer was charged twice for invoice INV-1042.",
                     "structuredData": {"invoice_number": "INV-1042", "billing_intent": "double_charge"},
                     "successEvaluation": "true"}}}
    assert post(live_server, payload).json()["outcome"] == "stored"
    case = case_of(live_server, "call_vapi_1")
    assert case.kind == "duplicate_charge" and case.invoice_number == "INV-1042"
    assert case.caller_phone == "+15551234567" and case.recording_url == "https://recordings.example/mono.wav"
    assert case.ended_at is not None and case.ended_at.year == 2025 and case.hangup_reason == "customer-ended-call"


def test_x_nexa_signature_header_is_accepted(live_server: LiveServer) -> None:
    body = dumps(sample("04_invoice_resend.json"))
    headers = dialnexa_headers(body, WEBHOOK_SECRET)
    headers["X-Nexa-Signature"] = headers.pop("X-DialNexa-Signature")
    response = httpx.post(f"{live_server.url}/webhooks/dialnexa", content=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    headers["X-Nexa-Signature"] = "sha256=" + "0" * 64
    assert httpx.post(f"{live_server.url}/webhooks/dialnexa", content=body, headers=headers,
                      timeout=10).status_code == 401


def test_model_b_flat_body_dotted_name(live_server: LiveServer) -> None:
    assert post(live_server, sample("02_dispute.json")).status_code == 200
    case = case_of(live_server, "call_demo_dispute_0002")
    assert case.kind == "dispute" and case.amount == Decimal("820.00") and case.currency == "EUR"
    assert case.payment_id == "ch_3ohpsF8ra5rqjj"
    assert case.caller_phone == "+442071838750"
    assert case.approval_required
    assert "dispute or chargeback" in case.escalation_reasons


def test_make_sample_without_event_name(live_server: LiveServer) -> None:
    payload = {"call_id": "call_abc123", "status": "completed", "sentiment": "positive",
               "summary": "The agent confirmed the appointment.",
               "transcript": "Agent: Hello. Customer: I would like to confirm.",
               "extracted_data": {"intent": "book_appointment"}, "duration": 120,
               "recording_url": "https://example.com/recording.mp3", "agent_id": "agent_abc123",
               "metadata": {"source": "make"}}
    assert post(live_server, payload).status_code == 200
    case = case_of(live_server, "call_abc123")
    assert not case.is_billing and case.duration_seconds == 120


def test_model_c_session_id_and_retell_style_epoch_ms(live_server: LiveServer) -> None:
    assert post(live_server, {"event": "call.ended", "workspace_id": "ws_1", "session_id": "sess_77",
                              "agent_id": "agent_x", "phone_number": "+15550001234",
                              "timestamp": "2024-03-15T14:32:00Z"}).status_code == 200
    assert case_of(live_server, "sess_77").caller_phone == "+15550001234"
    retell = {"event": "call_analyzed", "call": {
        "call_id": "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6", "from_number": "+12137771234", "direction": "inbound",
        "start_timestamp": 1714608475945, "end_timestamp": 1714608491736,
        "transcript": "Agent: hi\nUser: I was double charged on my last invoice",
        "call_analysis": {"call_summary": "Customer was double charged", "custom_analysis_data": {
            "billing_intent": "duplicate_charge", "amount": "30", "currency": "usd"}}}}
    assert post(live_server, retell).status_code == 200
    case = case_of(live_server, "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6")
    assert case.kind == "duplicate_charge" and case.currency == "USD" and case.amount == Decimal("30")
    assert case.started_at is not None and case.started_at.year == 2024
    assert case.ended_at is not None and case.ended_at > case.started_at


@pytest.mark.parametrize("transcript", [
    "Agent: Billing.\nUser: I need a refund for my last payment please",
    [{"speaker": "agent", "message": "Billing."},
     {"role": "user", "content": "I need a refund for my last payment please"}],
    {"Agent": "Billing.", "User": "I need a refund for my last payment please"},
])
def test_transcript_shapes_without_analysis(live_server: LiveServer, transcript: Any) -> None:
    payload = {"event_type": "call_ended", "payload": {"call": {"id": "call_shape", "status": "completed",
                                                               "transcript": transcript}}}
    assert post(live_server, payload).status_code == 200
    case = case_of(live_server, "call_shape")
    assert case.kind == "refund" and case.classification_source == "rules"
    assert case.rule and case.rule.startswith("rules.")


def test_unknown_fields_tolerated(live_server: LiveServer) -> None:
    payload = sample("04_invoice_resend.json")
    payload["payload"]["call"]["brand_new_field"] = {"nested": [1, 2, 3]}
    payload["future_top_level"] = True
    assert post(live_server, payload).status_code == 200
    assert case_of(live_server, "call_demo_resend_0004").kind == "document_resend"


# -- signatures ---------------------------------------------------------------------------------

def test_previous_secret_and_bare_hex_accepted(live_server: LiveServer) -> None:
    assert post(live_server, sample("05_not_billing.json"), secret=PREVIOUS_SECRET).status_code == 200
    assert post(live_server, sample("04_invoice_resend.json"), prefix=False).status_code == 200


def test_timestamped_signature(live_server: LiveServer) -> None:
    now = int(time.time())
    assert post(live_server, sample("05_not_billing.json"), timestamp=now).status_code == 200
    stale = post(live_server, sample("05_not_billing.json"), timestamp=now - 301)
    assert stale.status_code == 401 and "5-minute" in stale.json()["detail"]
    # The `sha256=` prefix stays optional in the timestamped form too.
    body = dumps(sample("05_not_billing.json"))
    headers = dialnexa_headers(body, WEBHOOK_SECRET, timestamp=now)
    headers["X-DialNexa-Signature"] = headers["X-DialNexa-Signature"].replace("v1=", "sha256=")
    assert httpx.post(f"{live_server.url}/webhooks/dialnexa", content=body, headers=headers,
                      timeout=10).status_code == 200


def test_timestamp_header_requires_the_timestamped_form(live_server: LiveServer) -> None:
    body = dumps(sample("05_not_billing.json"))
    headers = dialnexa_headers(body, WEBHOOK_SECRET)  # raw-body signature
    headers["X-DialNexa-Timestamp"] = str(int(time.time()))
    response = httpx.post(f"{live_server.url}/webhooks/dialnexa", content=body, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize("headers", [
    {},
    {"X-DialNexa-Signature": "sha256=" + "0" * 64},
    {"X-DialNexa-Signature": "not-hex"},
])
def test_bad_or_missing_signature_is_401_and_stores_nothing(live_server: LiveServer, headers: dict[str, str]) -> None:
    response = httpx.post(f"{live_server.url}/webhooks/dialnexa", content=dumps(sample("01_refund.json")),
                          headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert count(live_server, Case) == 0


def test_wrong_secret_is_401(live_server: LiveServer) -> None:
    assert post(live_server, sample("01_refund.json"), secret="whsec_someone_else").status_code == 401


# -- malformed and oversize ---------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "error"), [
    (b"{not json", "malformed_json"),
    (b"", "malformed_json"),
    (b"[1, 2, 3]", "not_a_call_event"),
    (b'{"hello": "world"}', "not_a_call_event"),
    (b'{"event_type": "call_ended", "payload": {"call": {"status": "completed"}}}', "not_a_call_event"),
])
def test_malformed_bodies_are_400_with_a_named_problem(live_server: LiveServer, raw: bytes, error: str) -> None:
    response = post(live_server, None, raw=raw)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == error and body["detail"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize("call_id", ["4242 4242 4242 4242", "call-4242.4242.4242.4242", "ssn-123-45-6789"])
def test_a_call_id_carrying_a_card_number_or_tax_id_is_refused_and_never_stored(
    live_server: LiveServer, call_id: str
) -> None:
    payload = sample("01_refund.json")
    payload["payload"]["call"]["id"] = call_id
    response = post(live_server, payload)
    assert response.status_code == 400 and response.json()["error"] == "not_a_call_event"
    assert "4242" not in response.text and "6789" not in response.text
    assert count(live_server, Case) == 0


def test_oversize_body_is_413(live_server: LiveServer) -> None:
    payload = sample("01_refund.json")
    payload["payload"]["call"]["summary"] = "x" * (1024 * 1024)
    assert post(live_server, payload).status_code == 413

    def chunks() -> Any:  # no Content-Length: the limit must hold while streaming too
        for _ in range(20):
            yield b"x" * 65536

    response = httpx.post(f"{live_server.url}/webhooks/dialnexa", content=chunks(),
                          headers={"X-DialNexa-Signature": "sha256=00"})
    assert response.status_code == 413
    assert count(live_server, Case) == 0


def test_verification_ping_and_ignored_events_are_200(live_server: LiveServer) -> None:
    ping = post(live_server, {"event_type": "verification", "message": "Webhook verification", "timestamp": 1})
    assert ping.status_code == 200 and ping.json()["outcome"] == "ignored"
    flat_ping = post(live_server, {"message": "Webhook verification", "timestamp": "2026-01-01T00:00:00Z"})
    assert flat_ping.status_code == 200
    ignored = post(live_server, {"event": "campaign.completed", "campaign_id": "c1"})
    assert ignored.status_code == 200 and ignored.json()["outcome"] == "ignored"
    assert count(live_server, Case) == 0


# -- exactly one case per call ------------------------------------------------------------------

def test_concurrent_duplicate_deliveries_make_one_case(live_server: LiveServer) -> None:
    first = sample("01_refund.json")
    ended = {"event_type": "call_ended", "payload": {"call": {"id": "call_demo_refund_0001", "status": "completed"}}}
    started = {"event_type": "call_initiated", "payload": {"call": {"id": "call_demo_refund_0001"}}}
    bodies = [first, ended, started] * 8
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda payload: post(live_server, payload).status_code, bodies))
    assert statuses == [200] * len(bodies)
    assert count(live_server, Case) == 1
    case = case_of(live_server, "call_demo_refund_0001")
    assert case.kind == "refund" and case.amount == Decimal("149.00") and case.stage == "call_analyzed"
    with Session(live_server.runtime.engine) as session:
        outcomes = session.exec(select(WebhookDelivery.outcome)).all()
    assert outcomes.count("stored") == 3 and outcomes.count("duplicate") == len(bodies) - 3


def test_out_of_order_merge_never_erases(live_server: LiveServer) -> None:
    analyzed = sample("01_refund.json")
    assert post(live_server, analyzed).status_code == 200
    # A late call_ended without analysis, and an even later call_initiated, arrive afterwards.
    late_end = {"event_type": "call_ended", "payload": {"call": {
        "id": "call_demo_refund_0001", "status": "completed", "duration": 215,
        "transcript": "Agent: hello\nUser: just checking in"}}}
    assert post(live_server, late_end).status_code == 200
    late_start = {"event_type": "call_initiated", "payload": {"call": {
        "id": "call_demo_refund_0001", "status": "initiated", "from_number": "14155550142"}}}
    assert post(live_server, late_start).status_code == 200
    case = case_of(live_server, "call_demo_refund_0001")
    assert case.kind == "refund" and case.classification_source == "analysis"
    assert case.amount == Decimal("149.00") and case.invoice_number == "INV-1042"
    assert case.summary and "refund" in case.summary
    assert case.stage == "call_analyzed" and case.call_status == "completed"
    assert case.duration_seconds == 215


def test_analysis_arriving_after_call_ended_fills_the_case(live_server: LiveServer) -> None:
    ended = {"event_type": "call_ended", "payload": {"call": {"id": "call_two_step", "status": "completed",
                                                             "from_number": "14155550142"}}}
    assert post(live_server, ended).status_code == 200
    assert not case_of(live_server, "call_two_step").is_billing
    analyzed = {"event_type": "call.analysis_ready", "call_id": "call_two_step", "analysis": {
        "billing_intent": "refund_request", "amount": "80.00", "currency": "USD"}}
    assert post(live_server, analyzed).status_code == 200
    case = case_of(live_server, "call_two_step")
    assert case.is_billing and case.kind == "refund" and case.amount == Decimal("80.00")
    assert case.caller_phone == "+14155550142"
    with Session(live_server.runtime.engine) as session:
        actions = session.exec(select(AuditEvent.action).where(AuditEvent.call_id == "call_two_step")).all()
    assert actions == ["case.created", "case.updated"]


# -- health -------------------------------------------------------------------------------------

def test_healthz_ok(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_healthz_503_when_database_unreachable(runtime: Any, tmp_path: Path) -> None:
    from storage.db import make_engine

    runtime.engine = make_engine("postgresql://nobody@127.0.0.1:1/none")
    server = LiveServer(runtime).start()
    try:
        response = httpx.get(f"{server.url}/healthz")
        assert response.status_code == 503
        stored = post(server, sample("01_refund.json"))
        assert stored.status_code == 503 and stored.json()["error"] == "storage_unavailable"
        assert "Traceback" not in stored.text and "psycopg" not in stored.text
    finally:
        server.stop()


# -- redaction end to end -----------------------------------------------------------------------

def test_card_read_aloud_is_suppressed_everywhere(live_server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    assert post(live_server, sample("06_card_read_aloud.json")).status_code == 200
    case = case_of(live_server, "call_demo_card_aloud_0006")
    assert case.suppressed
    assert {"card_number", "card_security_code"} <= set(case.suppressed_kinds)
    stored = " ".join(str(value) for value in case.model_dump().values())
    assert "4242 4242 4242 4242" not in stored and "4242424242424242" not in stored
    assert "four two four two, four two four two" not in stored
    assert "CVV 123" not in stored
    assert case.kind == "duplicate_charge" and case.amount == Decimal("59.00")
    with Session(live_server.runtime.engine) as session:
        audit = " ".join(json.dumps(a.model_dump(mode="json")) for a in session.exec(select(AuditEvent)).all())
    assert "4242424242424242" not in audit and "4242 4242" not in audit
    assert "4242 4242 4242 4242" not in caplog.text


# -- nesting too deep to parse ------------------------------------------------------------------

@pytest.mark.parametrize("large", [False, True], ids=["ordinary", "large"])
def test_nesting_too_deep_to_parse_is_a_400(live_server: LiveServer, large: bool) -> None:
    from bot.web.dialnexa import LARGE_BODY_BYTES

    # Large bodies are ingested by a worker process: both paths must answer alike.
    padding = LARGE_BODY_BYTES if large else 0
    deep = (b'{"event": "call_analyzed", "pad": "' + b"x" * padding + b'", "call": '
            + b"[" * 5_000 + b"]" * 5_000 + b"}")
    assert (len(deep) > LARGE_BODY_BYTES) is large
    response = post(live_server, None, raw=deep)
    assert response.status_code == 400, response.text
    assert response.json() == {"ok": False, "error": "malformed_json",
                               "detail": "body is not valid JSON: RecursionError"}
    assert count(live_server, WebhookDelivery) == 0


# -- hostile and careless input -----------------------------------------------------------------

def _nested_list(depth: int) -> list[Any]:
    root: list[Any] = []
    inner = root
    for _ in range(depth - 1):
        child: list[Any] = []
        inner.append(child)
        inner = child
    return root


def test_a_600_deep_unknown_field_is_dropped_and_the_refund_is_stored(live_server: LiveServer) -> None:
    payload = sample("01_refund.json")
    payload["payload"]["call"]["post_call_analysis"]["debug_tree"] = _nested_list(600)
    payload["payload"]["call"]["metadata"] = {"trace": _nested_list(600), "source": "crm"}
    response = post(live_server, payload)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "stored"
    case = case_of(live_server, "call_demo_refund_0001")
    assert case.is_billing and case.kind == "refund" and case.amount == Decimal("149.00")
    with Session(live_server.runtime.engine) as session:
        audit = session.exec(select(AuditEvent).where(AuditEvent.call_id == "call_demo_refund_0001")).one()
    assert audit.detail["dropped"] == {"analysis.debug_tree": "nested deeper than 32 levels",
                                       "metadata.trace": "nested deeper than 32 levels"}


def test_a_lone_surrogate_in_the_text_does_not_stall_the_delivery(live_server: LiveServer) -> None:
    payload = sample("01_refund.json")
    payload["payload"]["call"]["summary"] += " \ud800"
    payload["payload"]["call"]["post_call_analysis"]["refund_reason"] = "charged after cancellation \udfff"
    body = json.dumps(payload).encode()  # json.dumps escapes the surrogates, as a sender's encoder would
    response = post(live_server, None, raw=body)
    assert response.status_code == 200, response.text
    assert case_of(live_server, "call_demo_refund_0001").kind == "refund"


def test_links_and_amounts_carrying_a_card_number_are_never_stored(live_server: LiveServer) -> None:
    payload = sample("01_refund.json")
    call = payload["payload"]["call"]
    call["recording_url"] = "https://recordings.dialnexa.com/4111111111111111/call.mp3"
    call["post_call_analysis"]["crm_link"] = "https://crm.example.com/contacts?card=4242-4242-4242-4242"
    call["post_call_analysis"]["amount"] = "4242424242424242.00"
    assert post(live_server, payload).status_code == 200
    case = case_of(live_server, "call_demo_refund_0001")
    stored = json.dumps(case.model_dump(mode="json"))
    assert "4111111111111111" not in stored and "4242-4242-4242-4242" not in stored
    assert "4242424242424242" not in stored
    assert case.recording_url is None and case.crm_url is None and case.amount is None
    assert case.support_ticket_url == "https://support.example.com/tickets/55120"
    assert "card_number" in case.suppressed_kinds


def test_a_partner_payout_in_crypto_gets_a_card(live_server: LiveServer) -> None:
    payload = {"event_type": "call_analyzed", "payload": {"call": {
        "id": "call_payout_1", "status": "completed", "from_number": "14155550142",
        "summary": "Partner Lena Ortiz asked for her March affiliate commission of 1,200 USD to be paid out in "
                   "USDC on Polygon. The agent read the wallet address back and Lena gave explicit consent.",
        "transcript": "User: I'd like my March commission paid out in USDC on Polygon, please.",
        "post_call_analysis": {
            "billing_intent": "payout_request", "payout_recipient": "Lena Ortiz", "payout_consent": "yes",
            "crypto": "USDC", "crypto_address": "0x52908400098527886E0F7030069857D2E4169EE7",
            "amount": "1200.00", "currency": "USD", "promised_next_step": "Finance sends the payout"}}}}
    assert post(live_server, payload).status_code == 200
    case = case_of(live_server, "call_payout_1")
    assert case.is_billing and case.kind == "payout_request" and case.classification_source == "analysis"
    assert case.crypto == "usd coin" and case.payout_consent is True
    with Session(live_server.runtime.engine) as session:
        from storage.models import OutboxMessage

        assert session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case.id)).first() is not None
    from blocks.card import case_card

    card = json.dumps(case_card(case))
    assert "Payout request" in card and "payout_poof" in card and "invoice_poof" not in card


def test_a_duplicate_charge_filed_as_a_refund_request_is_escalated_as_one(live_server: LiveServer) -> None:
    payload = sample("01_refund.json")
    call = payload["payload"]["call"]
    call["summary"] = "Dana was charged twice for invoice INV-1042 and wants the duplicate refunded."
    call["post_call_analysis"]["refund_reason"] = "duplicate charge"
    assert post(live_server, payload).status_code == 200
    case = case_of(live_server, "call_demo_refund_0001")
    assert case.kind == "refund"
    assert "duplicate charge" in case.escalation_reasons


# -- large bodies: ingested by a worker process, so they cannot starve ordinary ones ------------

def test_a_large_call_is_stored_like_an_ordinary_one(live_server: LiveServer) -> None:
    from bot.web.dialnexa import LARGE_BODY_BYTES

    payload = sample("01_refund.json")
    call = payload["payload"]["call"]
    turns = "\n".join(f"User: still on hold, minute {n}, about invoice INV-1042" for n in range(2_000))
    call["transcript"] = f"{call['transcript']}\n{turns}\nUser: my card is 4242. 4242. 4242. 4242."
    body = dumps(payload)
    assert len(body) > LARGE_BODY_BYTES
    response = post(live_server, None, raw=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "outcome": "stored", "call_id": "call_demo_refund_0001", "created": True}
    case = case_of(live_server, "call_demo_refund_0001")
    assert case.kind == "refund" and case.amount == Decimal("149.00") and case.invoice_number == "INV-1042"
    assert "card_number" in case.suppressed_kinds
    # The same body again is recognised as a duplicate, and an ordinary call is served alongside.
    assert post(live_server, None, raw=body).json()["outcome"] == "duplicate"
    assert post(live_server, sample("02_dispute.json")).status_code == 200
    assert count(live_server, WebhookDelivery) == 3


def test_a_large_body_worker_that_dies_is_replaced(live_server: LiveServer) -> None:
    import os
    import signal

    def large(call_id: str) -> bytes:
        payload = sample("01_refund.json")
        payload["payload"]["call"]["id"] = call_id
        payload["payload"]["call"]["transcript"] += "\nUser: still here." * 2_000
        return dumps(payload)

    def workers() -> list[int]:  # this process's children running multiprocessing's spawn_main
        found = []
        for path in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
            for pid in path.read_text().split():
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
        return found

    assert post(live_server, None, raw=large("call_large_before")).status_code == 200
    [worker] = workers()
    os.kill(worker, signal.SIGKILL)
    # The delivery that finds the worker dead is refused with a 503, which DialNexa retries; then a
    # fresh worker takes over.
    statuses = [post(live_server, None, raw=large(f"call_large_after_{n}")).status_code for n in range(2)]
    assert statuses in ([200, 200], [503, 200]), statuses
    assert post(live_server, None, raw=large("call_large_after_2")).status_code == 200
    assert workers() and worker not in workers()


def test_a_value_longer_than_its_column_is_cut_not_retried_forever(live_server: LiveServer) -> None:
    # PostgreSQL refuses a string longer than its VARCHAR: the whole delivery would answer 503 forever.
    payload = sample("01_refund.json")
    call = payload["payload"]["call"]
    call["transcript"] = "User: I want a refund, write to " + "b" * 700 + "@example.com please"
    del call["post_call_analysis"]["customer_email"]  # so the e-mail is taken from the transcript
    response = post(live_server, payload)
    assert response.status_code == 200 and response.json()["outcome"] == "stored"
    assert count(live_server, Case) == 1
