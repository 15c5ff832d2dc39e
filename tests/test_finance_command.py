"""`/finance` over real HTTP: form-encoded slash commands signed as Slack signs them, MoonClerk on its stand-in,
answers read back from the response_url stand-in."""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, inspect

from blocks.lookup import case_message
from bot import decisions
from bot.actions.authz import Directory
from bot.lookup.customers import BadTerm, parse_term
from bot.lookup.queries import CaseQuery, Help, Lookup, Queue, Usage, case_detail, parse_command
from bot.runtime import Runtime
from bot.slack.listeners import commands
from storage.audit import Event, write_audit
from storage.db import session_scope
from storage.decisions import Approval, Delegation
from storage.models import AuditEvent, Case, ProviderAction
from tests.blockkit import assert_valid_message
from tests.signing import slack_headers
from tests.slackapp import CHANNEL, SIGNING_SECRET, SlackApp

APPROVER = "U0APPROVER1"


# -- shared helpers (also used by test_review_and_home) ------------------------------------------

def start_app(runtime: Runtime, db_url: str) -> SlackApp:
    """SlackApp, whose Bolt app registers the /finance, review and Home listeners itself."""
    return SlackApp(runtime, db_url)


def slash(app: SlackApp, text: str, *, user: str = APPROVER, name: str = "finance",
          secret: str = SIGNING_SECRET) -> httpx.Response:
    form = {"token": "unused", "team_id": "T0FIN", "team_domain": "finance", "channel_id": CHANNEL,
            "channel_name": "finance", "user_id": user, "user_name": user.lower(), "command": "/finance",
            "text": text, "api_app_id": "A0", "response_url": app.slack.response_url(name),
            "trigger_id": f"trigger-{time.time()}"}
    body = urllib.parse.urlencode(form)
    return httpx.post(f"{app.server.url}/slack/events", content=body, headers=slack_headers(body, secret), timeout=10)


def response(app: SlackApp, name: str = "finance", timeout: float = 10) -> dict[str, Any]:
    found = app.slack.wait_until(lambda: app.slack.responses_for(name) or None, timeout,
                                 f"nothing was posted to response_url {name}")
    assert len(found) == 1, found
    return found[0]


def everything(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def make_case(engine: Engine, call_id: str, **fields: Any) -> Case:
    now = datetime.now(UTC)
    values: dict[str, Any] = {"is_billing": True, "kind": "refund", "created_at": now, "updated_at": now, **fields}
    with session_scope(engine) as session:
        case = Case(call_id=call_id, **values)
        session.add(case)
        session.flush()
        session.refresh(case)
        return case


@pytest.fixture
def app(runtime: Runtime, db_url: str) -> Iterator[SlackApp]:
    application = start_app(runtime, db_url)
    yield application
    application.stop()


GRACE = 900000  # above every other ID, so on the last page


def seed_grace(app: SlackApp) -> None:
    """202 customers, so three pages of MoonClerk's largest page (100); Grace is on the last one."""
    for i in range(1, 201):
        app.moonclerk.add_customer(id=i, name=f"Filler {i}", email=f"filler{i}@example.com", custom_id=f"F{i}")
    app.moonclerk.add_customer(
        id=GRACE, name="Grace Hopper", email="grace@example.com", custom_id="GH1",
        custom_fields={"phone": {"id": 1, "type": "phone", "response": "+1 415 555 0100"}},
        subscription={"status": "past_due", "next_payment_attempt": "2026-03-10T00:00:00Z"})
    app.moonclerk.add_payment(id=5001, customer_id=GRACE, amount=4999, currency="usd", status="failed",
                              date="2026-02-01T10:00:00Z",
                              payment_method={"type": "card", "brand": "Mastercard", "last4": "4444",
                                              "exp_month": 9, "exp_year": 2031})
    app.moonclerk.add_payment(id=5000, customer_id=GRACE, amount=4999, currency="USD", status="successful",
                              date="2026-01-01T10:00:00Z")


# -- parsing (pure) -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("", Help()), ("help", Help()), ("  HELP ", Help()), ("queue", Queue()),
    ("case call_demo_refund_0001", CaseQuery("call_demo_refund_0001")),
    ("lookup Grace@Example.com", Lookup(parse_term("grace@example.com"))),
])
def test_commands_parse(text: str, expected: object) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(("term", "kind", "value"), [
    ("ryan@moonclerk.com", "email", "ryan@moonclerk.com"),
    ("+1 (415) 555-0100", "phone", "+14155550100"),
    ("phone:14155550100", "phone", "+14155550100"),
    ("523425", "id", "523425"),
    ("#523425", "id", "523425"),
    ("customer:523425", "customer_id", "523425"),
    ("payment 1348394", "payment_id", "1348394"),
    ("Zoë O'Brien-Smith", "name", "Zoë O'Brien-Smith"),
])
def test_lookup_terms(term: str, kind: str, value: str) -> None:
    parsed = parse_term(term)
    assert (parsed.kind, parsed.value) == (kind, value)


@pytest.mark.parametrize("term", ["", "a@b", "x@-bad-.com", "+12", "0", "customer:0", "R2D2", "<!channel>", "a",
                                  "x" * 255, "12345678901234567"])
def test_bad_lookup_terms(term: str) -> None:
    with pytest.raises(BadTerm):
        parse_term(term)


# -- over HTTP ------------------------------------------------------------------------------------

def test_help_and_bad_input_answer_in_the_ack(app: SlackApp) -> None:
    for text in ("", "help"):
        reply = slash(app, text)
        assert reply.status_code == 200 and "/finance lookup" in reply.json()["text"]
        assert reply.json()["response_type"] == "ephemeral"
    bad = {
        "lookup": "Say what to look up", "lookup not-an-email@": "not a valid email", "lookup +12": "E.164",
        "lookup 0": "positive whole numbers", "lookup R2D2": "Names have no digits",
        "lookup <!channel>": "A name is", "case": "Give the DialNexa call ID",
        "case " + "c" * 201: "at most 200 characters", "case <@U0APPROVER1>": "one word of letters",
        "frobnicate": "not a /finance command", "queue now": "takes nothing", "x" * 501: "longer than 500",
    }
    for text, problem in bad.items():
        reply = slash(app, text)
        body = reply.json()
        assert reply.status_code == 200 and problem in body["text"] and "Usage:" in body["text"], (text, body)
        assert "<!channel>" not in body["text"] and "<@U0APPROVER1>" not in body["text"]
        assert_valid_message({"text": body["text"], "blocks": body["blocks"]})
    assert not app.moonclerk.requests and not app.slack.responses


def test_unsigned_requests_are_refused(app: SlackApp) -> None:
    assert slash(app, "queue", secret="wrong-secret").status_code == 401


def test_lookup_by_email_pages_through_moonclerk(app: SlackApp) -> None:
    seed_grace(app)
    make_case(app.runtime.engine, "call_grace_open", moonclerk_customer_id=GRACE)
    make_case(app.runtime.engine, "call_grace_by_email", email="GRACE@example.com")
    make_case(app.runtime.engine, "call_grace_done", moonclerk_customer_id=GRACE, state="done")
    reply = slash(app, "lookup grace@example.com", name="email")
    assert reply.status_code == 200 and reply.json()["text"].startswith("Looking up")
    answer = response(app, "email")
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is True
    assert_valid_message({"text": answer["text"], "blocks": answer["blocks"]})
    text = everything(answer)
    assert "1 MoonClerk customer for email" in answer["text"]
    for expected in ("Grace Hopper", f"`{GRACE}`", "past_due", "next payment", "Mastercard ••4444", "49.99 USD",
                     "failed", "successful", "call_grace_open", "call_grace_by_email", "12.00 USD every month"):
        assert expected in text, expected
    assert "call_grace_done" not in text
    # Card brand and last 4 only: never expiry dates or anything else from the payment method.
    for forbidden in ("exp_month", "exp_year", "2031", "\"card\""):
        assert forbidden not in text
    offsets = [r.query["offset"] for r in app.moonclerk.calls("/customers")]
    assert offsets == ["0", "100", "200"]
    assert {r.query["count"] for r in app.moonclerk.calls("/customers")} == {"100"}


def test_lookup_by_phone_name_and_ids(app: SlackApp) -> None:
    seed_grace(app)
    for name, term in (("phone", "+14155550100"), ("name", "grace hopper"), ("surname", "Hopper"),
                       ("customer", f"customer:{GRACE}"), ("payment", "payment 5001")):
        slash(app, f"lookup {term}", name=name)
        answer = response(app, name)
        assert "1 MoonClerk customer" in answer["text"] and "Grace Hopper" in everything(answer), name
    # The documented payment 1348394 belongs to no customer on file: it is shown on its own.
    slash(app, "lookup 1348394", name="orphan")
    orphan = everything(response(app, "orphan"))
    assert "Payments with no subscription customer" in orphan and "Visa ••4242" in orphan
    slash(app, "lookup nobody@example.com", name="none")
    assert "No MoonClerk customer matches" in response(app, "none")["text"]
    # Every search after the first reused the cached customer list.
    assert len(app.moonclerk.calls("/customers")) == 3


def test_lookup_survives_a_429(app: SlackApp) -> None:
    seed_grace(app)
    app.moonclerk.fail_next("/customers", 429)
    slash(app, "lookup grace@example.com")
    assert "Grace Hopper" in everything(response(app))
    assert app.moonclerk.status_count(429, "/customers") == 1


def test_a_slow_moonclerk_is_answered_through_response_url(app: SlackApp) -> None:
    seed_grace(app)
    app.moonclerk.delay(f"/customers/{GRACE}", 3.5)  # slower than Slack's 3-second window on its own
    started = time.monotonic()
    reply = slash(app, f"lookup customer:{GRACE}")
    assert time.monotonic() - started < 1.0  # acked at once
    assert reply.json() == {"response_type": "ephemeral", "text": commands.LOOKING_UP}
    assert not app.slack.responses_for("finance")
    answer = response(app)
    assert time.monotonic() - started >= 3.5
    assert answer["replace_original"] is True and "Grace Hopper" in everything(answer)


def test_case_shows_actions_audit_and_reminders(app: SlackApp) -> None:
    engine = app.runtime.engine
    case = make_case(engine, "call_detail", customer_name="Ryan Wood", email="ryan@moonclerk.com",
                     amount=Decimal("120.50"), currency="USD", owner=APPROVER, slack_channel=CHANNEL,
                     slack_ts="1700000000.000100", match_status="matched", match_score=0.96,
                     moonclerk_customer_id=523425, match_evidence=["email matches"])
    with session_scope(engine) as session:
        session.add(ProviderAction(idempotency_key="call_detail:invoice_poof", case_id=case.id, call_id=case.call_id,
                                   action="invoice_poof", provider="poof", status="succeeded", requested_by=APPROVER,
                                   amount=Decimal("120.50"), currency="USD", provider_reference="inv_42"))
        session.add(AuditEvent(actor=APPROVER, action="case.assigned", case_id=case.id, call_id=case.call_id,
                               reason="assigned from the card"))
    reminders = importlib.util.find_spec("storage.reminders") is not None
    if reminders:  # storage.reminders is another change; its table is created here until its migration lands
        from storage.reminders import Reminder

        if not inspect(engine).has_table("reminders"):
            Reminder.__table__.create(engine)  # type: ignore[attr-defined]
        with session_scope(engine) as session:
            session.add(Reminder(case_id=case.id, kind="overdue", dedup_key="r1",
                                 due_at=datetime.now(UTC) + timedelta(hours=1)))  # not due: the scheduler runs
            session.add(Reminder(case_id=case.id, kind="lead", dedup_key="r2", due_at=datetime.now(UTC),
                                 status="sent"))
    slash(app, "case call_detail", name="case")
    answer = response(app, "case")
    assert_valid_message({"text": answer["text"], "blocks": answer["blocks"]})
    text = everything(answer)
    for expected in ("invoice_poof", "succeeded", "inv_42", "case.assigned", "Pending reminders", "matched (96%)",
                     "120.50 USD", "https://slack.com/archives/C0FINANCE/p1700000000000100", f"<@{APPROVER}>"):
        assert expected in text, expected
    reminder_section = next(b["text"]["text"] for b in answer["blocks"]
                            if b["type"] == "section" and "Pending reminders" in b["text"]["text"])
    if reminders:
        assert "overdue" in reminder_section and "lead" not in reminder_section
    else:
        assert reminder_section.endswith("None.")
    slash(app, "case call_missing", name="missing")
    assert "No finance-desk case" in response(app, "missing")["text"]


def test_queue_lists_review_and_overdue_oldest_first(app: SlackApp) -> None:
    engine, now = app.runtime.engine, datetime.now(UTC)
    make_case(engine, "call_review_new", match_status="review", created_at=now - timedelta(hours=1))
    make_case(engine, "call_review_old", match_status="review", created_at=now - timedelta(hours=5),
              match_candidates=[{"customer_id": 1, "name": "Ryan Wood", "score": 0.6}])
    make_case(engine, "call_review_closed", match_status="review", state="dismissed")
    make_case(engine, "call_overdue_1d", follow_up_deadline=now - timedelta(days=1))
    make_case(engine, "call_overdue_3d", follow_up_deadline=now - timedelta(days=3))
    make_case(engine, "call_not_due", follow_up_deadline=now + timedelta(days=1))
    # What is done is not listed: a follow-up marked done from its reminder, a denied or resolved case.
    make_case(engine, "call_followed_up", follow_up_deadline=now - timedelta(days=2), follow_up_done_at=now)
    make_case(engine, "call_denied_late", follow_up_deadline=now - timedelta(days=2), state="denied",
              match_status="review")
    make_case(engine, "call_resolved_late", follow_up_deadline=now - timedelta(days=2), state="done")
    slash(app, "queue", name="queue")
    answer = response(app, "queue")
    assert_valid_message({"text": answer["text"], "blocks": answer["blocks"]})
    text = everything(answer)
    assert answer["text"] == "2 to review, 2 overdue"
    assert text.index("call_review_old") < text.index("call_review_new")
    assert text.index("call_overdue_3d") < text.index("call_overdue_1d")
    assert "Ryan Wood 60%" in text
    for absent in ("call_review_closed", "call_not_due", "call_followed_up", "call_denied_late",
                   "call_resolved_late"):
        assert absent not in text


def test_only_finance_people_get_answers(app: SlackApp) -> None:
    slash(app, "queue", user="U0STRANGER", name="stranger")
    assert response(app, "stranger")["text"] == commands.NOT_ALLOWED
    slash(app, "lookup ryan@moonclerk.com", user="U0STRANGER", name="stranger-lookup")
    assert response(app, "stranger-lookup")["text"] == commands.NOT_ALLOWED
    assert not app.moonclerk.requests
    slash(app, "queue", user="U0OWNER", name="owner")  # the policy's default finance owner
    assert response(app, "owner")["text"] == "0 to review, 0 overdue"
    slash(app, "queue", user="U0GROUPMEMBER", name="group")  # an approver through a user group
    assert response(app, "group")["text"] == "0 to review, 0 overdue"


def test_usage_is_a_plain_function_too() -> None:
    ctx = commands.FinanceContext(engine=None, lookup=None, is_finance=lambda _u: True)  # type: ignore[arg-type]
    assert "Usage:" in commands.answer(ctx, Usage("nope"), APPROVER)["text"]
    assert "MoonClerk is not configured" in commands.answer(ctx, Lookup(parse_term("a@b.co")), APPROVER)["text"]


def test_case_shows_its_decisions_and_their_audit_lines(app: SlackApp) -> None:
    engine, now = app.runtime.engine, datetime.now(UTC)
    policy = app.runtime.policy.model_copy(update={"dual_approval_thresholds": {"USD": Decimal("100.00")}})
    directory = Directory(policy, None)
    case = make_case(engine, "call_decided", amount=Decimal("149.00"), currency="USD", approval_required=True,
                     approval_reason="the caller asked for a credit", approvals_needed=2, callback_expected=True)
    assert case.id is not None
    with session_scope(engine) as session:  # the senior is away: the owner stands in
        session.add(Delegation(delegator="U0SENIOR", delegate="U0OWNER", starts_at=now - timedelta(hours=1),
                               ends_at=now + timedelta(days=1)))
    assert decisions.approve(engine, directory, case.id, APPROVER, now).ok
    slash(app, "case call_decided", name="half")
    half = everything(response(app, "half"))
    assert "1 of 2 approvals" in half and f"<@{APPROVER}>" in half and "*Approvals*" in half

    assert decisions.approve(engine, directory, case.id, "U0OWNER", now).ok
    assert decisions.callback_done(engine, directory, case.id, APPROVER, now).ok
    note = "Refunded to the card ending 4242; customer told by email"
    assert decisions.resolve(engine, directory, case.id, APPROVER, decisions.Resolution.REFUNDED, note,
                             "ch_3Pq9", now).ok
    slash(app, "case call_decided", name="done")
    answer = response(app, "done")
    assert_valid_message({"text": answer["text"], "blocks": answer["blocks"]})
    text = everything(answer)
    for expected in ("*Approval:* approved 149.00 USD", "(2 of 2 approvals)", "<@U0OWNER> on behalf of <@U0SENIOR>",
                     "*Resolution:* Refunded", "ch_3Pq9", "customer told by email", "*Call back:* done by",
                     "`case.approved`", "`case.resolved`", "`case.callback_done`", "on behalf of <@U0SENIOR>"):
        assert expected in text, expected

    denied = make_case(engine, "call_denied_detail", amount=Decimal("20.00"), currency="USD", approval_required=True)
    assert denied.id is not None
    assert decisions.deny(engine, directory, denied.id, APPROVER, "Not eligible: outside the refund window", now).ok
    with session_scope(engine) as session:  # a nudge written as the nudges' scheduler writes it
        stored = session.get(Case, denied.id)
        write_audit(session, stored, "system", now, Event("approval.nudged", detail={"level": "escalation"}))
    slash(app, "case call_denied_detail", name="denied")
    text = everything(response(app, "denied"))
    for expected in ("*Denied:* Not eligible: outside the refund window", "`case.denied`", "`approval.nudged`",
                     "Escalation"):
        assert expected in text, expected


def test_case_message_lists_every_rounds_approvals_when_given(engine: Engine) -> None:
    now = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    case = make_case(engine, "call_rounds", amount=Decimal("900.00"), currency="USD", approval_required=True)
    with session_scope(engine) as session:
        for round_, who, principal in ((1, "U0A", "U0A"), (2, "U0B", "U0SENIOR")):
            session.add(Approval(case_id=case.id, round=round_, approver=who, principal=principal, senior=round_ == 2,
                                 amount=Decimal("900.00"), currency="USD", at=now))
    detail = case_detail(engine, "call_rounds")
    assert detail is not None and [a.round for a in detail.approvals] == [1, 2]
    message = case_message(detail.case, detail.actions, detail.audit, detail.audit_total, [],
                           approvals=detail.approvals)
    assert_valid_message(message)
    text = everything(message)
    assert "<@U0B> on behalf of <@U0SENIOR> · 900.00 USD · senior" in text and "round 2" in text
