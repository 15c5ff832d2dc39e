"""Email to the customer: a real SMTP server on 127.0.0.1 (aiosmtpd) with STARTTLS and AUTH on a test
certificate made here (trustme), 4xx and 5xx answers, dropped connections and a crash mid-send.

The worker is driven pass by pass (`run_once`) with a clock the tests move, so nothing sleeps.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword
from aiosmtpd.smtp import Session as SmtpSession
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from blocks.actions import ActionId
from blocks.card import case_card, offered_actions
from blocks.lookup import case_message
from bot.actions.authz import Directory
from bot.config import ConfigError, Settings, read_settings
from bot.ingest import ingest
from bot.lookup.queries import case_detail
from bot.mail import send
from bot.mail.draft import body_problem
from bot.mail.send import MailContext, MailRequest
from bot.mail.worker import MailWorker
from bot.policy import Policy
from bot.runtime import Runtime
from bot.standins import MoonClerkStandIn, SlackStandIn
from bot.standins.mail import MailSink
from providers.mail import Permanent, SmtpMode, SmtpSender, SmtpTarget, Temporary, parse_smtp_url
from providers.moonclerk import MoonClerkClient
from storage.mail import MailMessage
from storage.models import AuditEvent, Case, OutboxMessage
from tests.blockkit import assert_valid_message, assert_valid_view
from tests.signing import dumps
from tests.slackapp import SlackApp

USER, PASSWORD = "mailer", "s3cret-smtp-pass"
VERIFIED = "ryan@moonclerk.com"  # the seeded MoonClerk customer 523425's own address
MAIL_FROM = "Billing <billing@finance.example>"
ROOT = Path(__file__).resolve().parents[1]


# -- a real SMTP server ------------------------------------------------------------------------------

@dataclass
class Sink:
    """aiosmtpd handler: keeps what it accepted; scripted answers and drops for the next commands."""

    messages: list[bytes] = field(default_factory=list)
    rcpt: list[str] = field(default_factory=list)  # answers for the next RCPT TOs ("drop" closes the connection)
    data: list[str] = field(default_factory=list)  # answers for the next DATAs ("drop" closes after receiving)

    async def handle_RCPT(self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if self.rcpt:
            answer = self.rcpt.pop(0)
            if answer == "drop":
                assert server.transport is not None
                server.transport.close()
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        if self.data:
            answer = self.data.pop(0)
            if answer == "drop":  # the whole message arrived; the answer never leaves
                self.messages.append(bytes(envelope.content or b""))
                assert server.transport is not None
                server.transport.close()
            return answer
        self.messages.append(bytes(envelope.content or b""))
        return "250 2.0.0 OK queued"

    def reset(self) -> None:
        self.messages.clear()
        self.rcpt.clear()
        self.data.clear()


def _authenticate(server: SMTP, session: SmtpSession, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == USER.encode() and data.password == PASSWORD.encode()
    # handled=False: aiosmtpd then answers 535 itself (its default, handled=True, answers nothing).
    return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    sink: Sink
    port: int
    ca_file: str
    tls: ssl.SSLContext  # the server side of the test certificate, for more servers on it

    def sender(self, *, mode: SmtpMode = SmtpMode.LOOPBACK, password: str = PASSWORD,
               ca_file: str | None = "") -> SmtpSender:
        target = SmtpTarget(mode=mode, host="127.0.0.1", port=self.port, username=USER,
                            password=SecretStr(password))
        return SmtpSender(target, timeout=5, ca_file=self.ca_file if ca_file == "" else ca_file)


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(tls)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    sink = Sink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                            authenticator=_authenticate, auth_require_tls=True, auth_exclude_mechanism=["CRAM-MD5"])
    controller.start()
    yield Server(sink, port, str(ca_file), tls)
    controller.stop()


@pytest.fixture
def sink(smtp: Server) -> Sink:
    smtp.sink.reset()
    return smtp.sink


@pytest.fixture(scope="module")
def moonclerk() -> Iterator[MoonClerkStandIn]:
    standin = MoonClerkStandIn().start()
    yield standin
    standin.stop()


# -- the case and the domain -------------------------------------------------------------------------

def renewal(call_id: str = "call_mail", **analysis: Any) -> dict[str, Any]:
    return {"event_type": "call_ended", "payload": {"call": {
        "id": call_id, "status": "completed", "from_number": "12125550199",
        "summary": "Customer's renewal failed; they asked for a payment link.",
        "post_call_analysis": {"billing_intent": "payment_failed", "customer_email": VERIFIED,
                               "moonclerk_customer_id": 523425, "amount": "200.00", "currency": "USD",
                               "promised_next_step": "Finance emails a payment link today", **analysis}}}}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Desk:
    engine: Engine
    ctx: MailContext
    clock: Clock
    case: Case

    def worker(self, sender: SmtpSender, **kwargs: Any) -> MailWorker:
        return MailWorker(self.engine, sender, clock=self.clock, **kwargs)

    def queue(self, user: str = "U0APPROVER1", n: int = 1, **request: Any) -> str:
        values = {"recipient": VERIFIED, "subject": "Your payment link", "body": "Hello,\nHere is the link.",
                  **request}
        return send.submit(self.ctx, self.case.id or 0, n, user, MailRequest(**values)).message

    def rows(self) -> list[MailMessage]:
        with Session(self.engine) as session:
            return list(session.exec(select(MailMessage).order_by(col(MailMessage.id))).all())

    def audit(self, action: str) -> list[AuditEvent]:
        with Session(self.engine) as session:
            return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())

    def fresh(self) -> Case:
        with Session(self.engine) as session:
            case = session.get(Case, self.case.id)
            assert case is not None
            return case

    def thread(self) -> list[str]:
        with Session(self.engine) as session:
            return [row.text or "" for row in session.exec(
                select(OutboxMessage).where(OutboxMessage.kind == "thread").order_by(col(OutboxMessage.id))).all()]


@pytest.fixture
def desk(engine: Engine, policy: Policy, moonclerk: MoonClerkStandIn) -> Desk:
    clock = Clock()
    payload = renewal()
    result = ingest(engine, payload, dumps(payload), policy, clock())
    client = MoonClerkClient(moonclerk.api_key, moonclerk.url, timeout=5)
    ctx = MailContext(engine=engine, directory=Directory(policy, None), moonclerk=client, mail_from=MAIL_FROM,
                      clock=clock)
    with Session(engine) as session:
        case = session.exec(select(Case).where(Case.call_id == result.call_id)).one()
    assert send.verify_pending(ctx, set()) == 1
    return Desk(engine, ctx, clock, case)


# -- SMTP_URL --------------------------------------------------------------------------------------

def test_smtp_url_modes_and_refusals_never_echo_the_password() -> None:
    assert parse_smtp_url("smtp://u:p@smtp.gmail.com:587").mode is SmtpMode.STARTTLS
    assert parse_smtp_url("smtps://u:p@smtp.office365.com:465").mode is SmtpMode.TLS
    assert parse_smtp_url("smtp://127.0.0.1:25").mode is SmtpMode.LOOPBACK
    assert parse_smtp_url("smtp://relay.example.com").port == 587
    target = parse_smtp_url("smtp://me%40example.com:pa%2Fss@smtp.example.com:587")
    assert target.username == "me@example.com" and target.password is not None
    assert target.password.get_secret_value() == "pa/ss" and "pa" not in target.describe()
    for bad in ("http://u:hunter22@host", "smtp://u:hunter22@host:587/path", "smtp://:hunter22@"):
        with pytest.raises(ValueError) as refused:
            parse_smtp_url(bad)
        assert "hunter22" not in str(refused.value)


def test_config_needs_both_variables_and_hides_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_URL", "ftp://user:hunter22@host")
    with pytest.raises(ConfigError) as refused:
        read_settings()
    assert "SMTP_URL" in str(refused.value) and "hunter22" not in str(refused.value)
    settings = Settings(smtp_url=SecretStr("smtp://u:hunter22@smtp.example.com:587"), mail_from=MAIL_FROM)
    assert "hunter22" not in repr(settings) and settings.mail_from == MAIL_FROM
    with pytest.raises(ValueError):
        Settings(mail_from="not an address")


# -- the sender against the real server -------------------------------------------------------------

def test_starttls_required_and_certificates_verified(smtp: Server, sink: Sink, desk: Desk) -> None:
    desk.queue()
    [row] = desk.rows()
    # A client that does not trust the test CA refuses the server: nothing is sent, and it says why.
    untrusted = smtp.sender(ca_file=None)
    worker = desk.worker(untrusted)
    assert worker.run_once() == 1
    [row] = desk.rows()
    assert row.status == "failed" and "certificate is not trusted" in (row.last_error or "")
    assert sink.messages == []
    # A wrong password is the server's 535, shown as it is; the password itself is nowhere.
    desk.queue(n=2)
    desk.worker(smtp.sender(password="wrong")).run_once()
    assert "refused the login" in (desk.rows()[1].last_error or "")
    assert PASSWORD not in json.dumps([r.model_dump(mode="json") for r in desk.rows()])


def test_sent_once_with_message_id_audit_thread_and_card(smtp: Server, sink: Sink, desk: Desk,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert "Queued" in desk.queue()
    worker = desk.worker(smtp.sender())
    assert worker.run_once() == 1 and worker.run_once() == 0
    [raw] = sink.messages
    message = message_from_bytes(raw)
    assert message["To"] == VERIFIED and message["Subject"] == "Your payment link"
    assert message["Message-ID"] == "<call_mail=3Asend_to_customer=3A1@finance.example>"
    [row] = desk.rows()
    assert row.status == "sent" and row.server_answer and row.server_answer.startswith("250")
    [event] = desk.audit("email.sent")
    assert event.actor == "U0APPROVER1" and event.target == VERIFIED
    assert event.detail["subject"] == "Your payment link" and event.reason
    assert any("Sent to" in text and "<@U0APPROVER1>" in text for text in desk.thread())
    case = desk.fresh()
    assert case.mail_status == "sent" and case.verified_email == VERIFIED
    card = json.dumps(case_card(case))
    assert VERIFIED in card and "last email" in card
    assert PASSWORD not in caplog.text


def test_4xx_and_a_dropped_connection_are_retried_with_backoff(smtp: Server, sink: Sink, desk: Desk) -> None:
    sink.rcpt += ["451 4.3.0 try again later", "drop"]
    desk.queue()
    worker = desk.worker(smtp.sender())
    worker.run_once()
    [row] = desk.rows()
    assert row.status == "queued" and "451" in (row.last_error or "") and row.attempts == 1
    assert worker.run_once() == 0  # backing off
    desk.clock.advance(seconds=6)
    worker.run_once()
    [row] = desk.rows()
    assert row.status == "queued" and "reach the mail server" in (row.last_error or "")
    desk.clock.advance(seconds=11)
    worker.run_once()
    assert len(sink.messages) == 1 and desk.rows()[0].status == "sent" and desk.rows()[0].attempts == 3


def test_5xx_stops_with_the_answer_on_the_card_and_the_button_is_the_retry(smtp: Server, sink: Sink,
                                                                           desk: Desk) -> None:
    sink.data.append("554 5.7.1 message rejected as spam")
    desk.queue()
    desk.worker(smtp.sender()).run_once()
    [row] = desk.rows()
    assert row.status == "failed" and sink.messages == []
    case = desk.fresh()
    assert "554 5.7.1" in json.dumps(case_card(case))
    assert ActionId.SEND_TO_CUSTOMER in offered_actions(case)
    [event] = desk.audit("email.failed")
    assert event.outcome == "failed" and "554" in event.detail["server_answer"]
    assert any("was not sent" in text for text in desk.thread())
    # The retry is the next email of the call (n = 2): a new key, sent once.
    desk.queue(n=2)
    desk.worker(smtp.sender()).run_once()
    assert len(sink.messages) == 1 and desk.rows()[1].status == "sent"


def test_a_connection_lost_after_the_data_is_in_doubt_and_never_resent(smtp: Server, sink: Sink,
                                                                       desk: Desk) -> None:
    sink.data.append("drop")
    desk.queue()
    worker = desk.worker(smtp.sender())
    worker.run_once()
    desk.clock.advance(hours=1)
    worker.run_once()
    assert len(sink.messages) == 1
    [row] = desk.rows()
    assert row.status == "in_doubt"
    assert "may have been delivered" in json.dumps(case_card(desk.fresh()))


class Crash(BaseException):
    """The process dying: not an Exception, so nothing in the worker handles it."""


def test_a_restart_mid_send_sends_each_message_once(smtp: Server, sink: Sink, desk: Desk) -> None:
    # Dies before the end of the data: the server cannot have accepted it, so the next worker sends it.
    desk.queue()
    dying = desk.worker(smtp.sender())
    dying._commit_point = lambda row: (_ for _ in ()).throw(Crash())  # type: ignore[method-assign]
    with pytest.raises(Crash):
        dying.run_once()
    assert sink.messages == [] and desk.rows()[0].status == "sending"
    assert desk.worker(smtp.sender()).run_once() == 0  # still under the dead worker's lease
    desk.clock.advance(minutes=10)
    desk.worker(smtp.sender()).run_once()
    assert len(sink.messages) == 1 and desk.rows()[0].status == "sent"
    # Dies after the server accepted it: the next worker records it as in doubt and sends nothing.
    desk.queue(n=2)
    sender = smtp.sender()
    accepted = sender.send

    def send_then_die(*args: Any, **kwargs: Any) -> str:
        accepted(*args, **kwargs)
        raise Crash

    sender.send = send_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        desk.worker(sender).run_once()
    desk.clock.advance(minutes=10)
    desk.worker(smtp.sender()).run_once()
    assert len(sink.messages) == 2
    assert desk.rows()[1].status == "in_doubt"
    assert [e.outcome for e in desk.audit("email.failed")] == ["in_doubt"]


def test_starttls_is_required_for_a_remote_host() -> None:
    # The test server offers STARTTLS; a plain server on a remote host would be refused outright.
    plain = Controller(Sink(), hostname="127.0.0.1", port=_free_port())
    plain.start()
    try:
        sender = SmtpSender(SmtpTarget(SmtpMode.STARTTLS, "127.0.0.1", plain.port, USER, SecretStr(PASSWORD)),
                            timeout=5)
        with pytest.raises(Permanent, match="does not offer STARTTLS"):
            sender.send(*_message())
    finally:
        plain.stop()


def test_smtps_is_tls_from_the_first_byte_with_the_certificate_verified(smtp: Server, desk: Desk) -> None:
    sink = Sink()
    port = _free_port()
    # Implicit TLS: no STARTTLS step, so AUTH is over TLS from the start (aiosmtpd's require-TLS check
    # only knows STARTTLS, hence auth_require_tls=False here).
    controller = Controller(sink, hostname="127.0.0.1", port=port, ssl_context=smtp.tls,
                            authenticator=_authenticate, auth_require_tls=False, auth_exclude_mechanism=["CRAM-MD5"])
    controller.start()
    try:
        target = parse_smtp_url(f"smtps://{USER}:{PASSWORD}@127.0.0.1:{port}")
        assert target.mode is SmtpMode.TLS
        desk.queue()
        # A client that does not trust the certificate stops at the handshake: nothing is sent.
        desk.worker(SmtpSender(target, timeout=5)).run_once()
        assert desk.rows()[0].status == "failed" and "not trusted" in (desk.rows()[0].last_error or "")
        desk.queue(n=2)
        desk.worker(SmtpSender(target, timeout=5, ca_file=smtp.ca_file)).run_once()
        [raw] = sink.messages
        assert message_from_bytes(raw)["To"] == VERIFIED and desk.rows()[1].status == "sent"
        # The starttls server is not spoken to in TLS from the first byte: a wrong mode fails, never in clear.
        wrong = SmtpSender(SmtpTarget(SmtpMode.TLS, "127.0.0.1", smtp.port, USER, SecretStr(PASSWORD)), timeout=5,
                           ca_file=smtp.ca_file)
        with pytest.raises(Temporary):
            wrong.send(*_message())
    finally:
        controller.stop()


def test_worker_drain_also_drains_the_mail_outbox(db_url: str, desk: Desk) -> None:
    """`finance-desk worker --drain` sends the queued email, posts its thread line and says so in its JSON."""
    desk.queue()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLACK_", "DATABASE_URL", "SMTP_", "MAIL_", "MOONCLERK_", "POOF_", "FINANCE_"))}
    with SlackStandIn() as slack, MailSink() as mail:
        env.update(DATABASE_URL=db_url, SLACK_BOT_TOKEN="xoxb-fake", FINANCE_CHANNEL="C0FINANCE",
                   SLACK_API_URL=f"{slack.url}/api/", DIALNEXA_WEBHOOK_SECRETS="whsec_x",
                   SLACK_POST_INTERVAL_SECONDS="0", SMTP_URL=mail.url, MAIL_FROM=MAIL_FROM)
        result = subprocess.run([sys.executable, "-m", "bot", "worker", "--drain"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout.strip().splitlines()[-1])["mail"] == {"verified": 0, "sent": 1}
        [received] = mail.received()
        assert received["To"] == VERIFIED and desk.rows()[0].status == "sent"
        threads = [r.json or r.form or {} for r in slack.calls("chat.postMessage")]
        assert any("Sent to" in str(body.get("text")) for body in threads if body.get("thread_ts"))


def _message() -> tuple[EmailMessage, str, str]:
    message = EmailMessage()
    message["Subject"] = "x"
    message.set_content("x")
    return message, "a@example.com", "b@example.com"


# -- who may send what, and to whom ------------------------------------------------------------------

def test_refusals(desk: Desk) -> None:
    assert "approvers" in desk.queue(user="U0OWNER")
    assert "not the verified recipient" in desk.queue(recipient="someone@else.example")
    assert "senior approver" in desk.queue(recipient="someone@else.example", override_recipient=True)
    assert "Queued" in desk.queue(user="U0SENIOR", recipient="someone@else.example", override_recipient=True)
    [row] = desk.rows()
    assert row.override_by == "U0SENIOR" and row.verified_recipient == VERIFIED
    assert desk.audit("email.recipient_override")
    assert "already sent or queued" in desk.queue(user="U0SENIOR", recipient="someone@else.example",
                                                  override_recipient=True)
    assert len(desk.rows()) == 1


@pytest.mark.parametrize(("body", "problem"), [
    ("Your card 4242 4242 4242 4242 was charged", "card number"),
    ("Pay to IBAN GB82 WEST 1234 5698 7654 32", "bank details"),
    ("Our records show SSN 123-45-6789", "tax ID"),
    ("x" * 20_001, "20,000"),
    ("   ", "Write the message"),
    ("See https://app.moonclerk.com/customers/523425", "staff only"),
])
def test_body_refusals(body: str, problem: str) -> None:
    found = body_problem(body)
    assert found is not None and problem in found


# -- through Slack: the button, the modal, the submit -----------------------------------------------

@pytest.fixture
def app(runtime: Runtime, db_url: str) -> Iterator[SlackApp]:
    application = SlackApp(runtime, db_url)
    application.runtime.settings = application.runtime.settings.model_copy(
        update={"smtp_url": SecretStr(f"smtp://{USER}:{PASSWORD}@127.0.0.1:2525"), "mail_from": MAIL_FROM})
    yield application
    application.stop()


def test_the_card_button_modal_and_send(app: SlackApp, smtp: Server, sink: Sink) -> None:
    case = app.deliver(renewal("call_slack_mail", customer_email="asked@caller.example"))
    actions = app.service.worker
    ctx = MailContext(engine=app.runtime.engine, directory=Directory(app.runtime.policy, None),
                      moonclerk=MoonClerkClient(app.moonclerk.api_key, app.moonclerk.url), mail_from=MAIL_FROM,
                      clock=lambda: datetime.now(UTC), wake=actions.wake)
    send.verify_pending(ctx, set())
    card = app.slack.wait_until(
        lambda: ((c := app.card(app.case(case.call_id))) and VERIFIED in json.dumps(c) and c) or None, 10)
    text = json.dumps(card)
    assert "asked@caller.example" in text and "differs" in text and '"send_to_customer"' in text
    app.click(case, "send_to_customer", "U0OWNER", response_name="owner")
    assert "approvers" in app.ephemeral_for("owner")
    app.click(case, "send_to_customer", "U0APPROVER1")
    view = app.opened_view()
    assert view["callback_id"] == "send_to_customer_modal"
    assert_valid_view(view)
    blocks = json.dumps(view["blocks"])
    assert VERIFIED in blocks and "asked@caller.example" in blocks and "Finance emails a payment link" in blocks
    values = {"recipient": VERIFIED, "subject": "", "body": "card 4242 4242 4242 4242", "override": []}
    errors = app.submit(view, "U0APPROVER1", values).json()["errors"]
    assert set(errors) == {"subject", "body"} and "card number" in errors["body"]
    values |= {"subject": "Your payment link", "body": "Hello, here is what we agreed."}
    assert app.submit(view, "U0APPROVER1", values).status_code == 200
    app.wait(case.call_id, lambda c: c.mail_status == "queued")
    app.submit(view, "U0APPROVER1", values)  # the same modal twice: one email
    worker = MailWorker(app.runtime.engine, smtp.sender(), on_done=actions.wake)
    assert worker.run_once() == 1
    app.slack.wait_until(lambda: any("Sent to" in t for t in app.thread_texts(app.case(case.call_id))) or None, 10)
    assert len(sink.messages) == 1
    with Session(app.runtime.engine) as session:
        assert len(session.exec(select(MailMessage)).all()) == 1
    # `/finance case` lists what was sent, where, by whom.
    detail = case_detail(app.runtime.engine, case.call_id)
    assert detail is not None
    answer = case_message(detail.case, detail.actions, detail.audit, detail.audit_total, [], emails=detail.emails)
    assert_valid_message(answer)
    assert "Emails to the customer" in json.dumps(answer) and VERIFIED in json.dumps(answer)
    assert_valid_message(app.card(app.case(case.call_id)))


def test_the_live_check_connects_starttls_and_logs_in(smtp: Server, tmp_path: Path) -> None:
    """`finance-desk check --live`'s SMTP row against the test server: pass, a wrong password, an untrusted
    certificate; the password is never in what it prints."""
    from bot import check
    from tests.conftest import make_settings

    def row(password: str, ca_file: str | None) -> check.Row:
        url = f"smtp://{USER}:{password}@127.0.0.1:{smtp.port}"
        settings = make_settings(f"sqlite:///{tmp_path}/x.db", smtp_url=SecretStr(url), mail_from=MAIL_FROM)
        return check.smtp_check(settings, ca_file=ca_file)

    passed = row(PASSWORD, smtp.ca_file)
    assert passed.result == check.OK and "logged in" in passed.detail
    refused = row("wrong-password", smtp.ca_file)
    assert refused.result == check.FAIL and "refused the login" in refused.detail
    untrusted = row(PASSWORD, None)
    assert untrusted.result == check.FAIL
    assert all(PASSWORD not in f"{r}" and "wrong-password" not in f"{r}" for r in (passed, refused, untrusted))
