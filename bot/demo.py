"""`finance-desk demo`: the real app on embedded defaults, with no credentials and no network.

SQLite in a work folder, local stand-ins for Slack's Web API, MoonClerk and Poof on 127.0.0.1, and
the sample DialNexa calls in bot/samples delivered as signed webhooks over HTTP. What the finance
channel would show is printed step by step; the full record is written to the work folder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import click
import httpx
from pydantic import SecretStr
from sqlmodel import Session, col, select

from blocks.text import render
from bot import decisions
from bot.actions.authz import Directory
from bot.config import Settings
from bot.lookup.review import match_case
from bot.mail.send import MailContext, verify_pending
from bot.reminders.rows import OPEN
from bot.reminders.schedule import Kind
from bot.runtime import Runtime, build_runtime
from bot.slack.service import start_slack
from bot.standins import MoonClerkStandIn, PoofStandIn, SlackStandIn, StripeStandIn
from bot.standins.mail import MailSink
from bot.web.background import BackgroundServer
from bot.web.signature import sign
from providers.moonclerk import MoonClerkClient
from storage.decisions import Approval
from storage.models import AuditEvent, Case, OutboxMessage, Reminder
from storage.states import ActionStatus

FINANCE_CHANNEL = "C0FINANCE"
ESCALATION_CHANNEL = "C0ESCALATE"
APPROVER = "U0FINANCE2"
OTHER_APPROVER = "U0FINANCE1"
SENIOR = "U0CONTROLLER"
MAIL_FROM = "Billing <billing@finance-desk.example>"
DANA_EMAIL = "dana@whitfield.example"
REFUND_CALL = "call_demo_refund_0001"
# However the demo's invoice ends, the walk-through goes on once it has.
_ENDED = frozenset({ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.UNKNOWN})


def sample_calls() -> list[tuple[str, bytes]]:
    folder = resources.files("bot") / "samples"
    return sorted((entry.name, entry.read_bytes()) for entry in folder.iterdir() if entry.name.endswith(".json"))


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out waiting for {what}")
        time.sleep(0.05)


def _outbox_idle(runtime: Runtime) -> bool:
    with Session(runtime.engine) as session:
        pending = session.exec(
            select(OutboxMessage.id).where(col(OutboxMessage.sent_at).is_(None), col(OutboxMessage.failed_at).is_(None))
        ).first()
    return pending is None


def _pages_settled(runtime: Runtime) -> bool:
    """No escalation page is still waiting to fire, and everything fired has been sent."""
    with Session(runtime.engine) as session:
        waiting = session.exec(
            select(Reminder.id).where(col(Reminder.kind) == Kind.ESCALATION.value,
                                      col(Reminder.status).in_(OPEN))
        ).first()
    return waiting is None and _outbox_idle(runtime)


def _show(echo: Callable[[str], None], message: dict[str, Any], prefix: str = "│ ") -> None:
    for line in render(message):
        echo(prefix + line)


def _show_channel(echo: Callable[[str], None], slack: SlackStandIn, channel: str, name: str) -> None:
    for message in slack.messages(channel):
        echo(f"┌─ {name} · message {message['ts']}")
        _show(echo, message)
        echo("└─")


def _signed_post(server_url: str, signing_secret: str, payload: dict[str, Any]) -> int:
    """POST an interactivity payload to /slack/events signed exactly as Slack signs it."""
    body = "payload=" + urllib.parse.quote(json.dumps(payload))
    timestamp = str(int(time.time()))
    signature = "v0=" + hmac.new(signing_secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    response = httpx.post(f"{server_url}/slack/events", content=body, timeout=10, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature})
    return response.status_code


def _click(server_url: str, signing_secret: str, case: Case, message: dict[str, Any], action_id: str,
           response_url: str, user: str = APPROVER) -> int:
    """Press a card button the way Slack does: a signed block_actions payload to /slack/events."""
    button = next(
        element
        for block in message["blocks"] if block.get("type") == "actions"
        for element in block["elements"] if element.get("action_id") == action_id
    )
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "finance.approver", "team_id": "T0FIN"},
        "api_app_id": "A0FINDESK",
        "token": "legacy-verification-token-unused",
        "container": {"type": "message", "message_ts": case.slack_ts, "channel_id": case.slack_channel},
        "trigger_id": "1000.2000.demo",
        "team": {"id": "T0FIN", "domain": "finance"},
        "channel": {"id": case.slack_channel, "name": "finance"},
        "message": message,
        "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": "demo", "value": button.get("value", ""),
                     "type": "button", "action_ts": f"{time.time():.6f}"}],
    }
    return _signed_post(server_url, signing_secret, payload)


def _submit(server_url: str, signing_secret: str, view: dict[str, Any], user: str,
            values: dict[str, dict[str, Any]]) -> int:
    """Submit a modal the way Slack does: a signed view_submission with the form's state."""
    payload = {"type": "view_submission", "user": {"id": user, "team_id": "T0FIN"}, "team": {"id": "T0FIN"},
               "api_app_id": "A0FINDESK", "token": "unused", "trigger_id": "t",
               "view": {**view, "id": "V0DEMO", "state": {"values": values}}}
    return _signed_post(server_url, signing_secret, payload)


def run_demo(workdir: Path, echo: Callable[[str], None] = click.echo) -> None:
    # The printed channel is the point of the demo; routine INFO lines would bury it.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "finance-desk-demo.db"
    for leftover in workdir.glob("finance-desk-demo.db*"):
        leftover.unlink()
    webhook_secret = "whsec_" + secrets.token_urlsafe(24)
    signing_secret = secrets.token_hex(16)
    policy_file = resources.files("bot") / "samples" / "demo_policy.toml"

    groups = {"S0FINANCE": ["U0FINANCE1", "U0FINANCE2"]}  # the demo policy's approver group
    stripe_secret = "whsec_" + secrets.token_urlsafe(24)
    with SlackStandIn(enforce_rate_limit=True, usergroups=groups) as slack, MoonClerkStandIn() as moonclerk, \
            PoofStandIn() as poof, StripeStandIn() as stripe, MailSink() as mail, \
            resources.as_file(policy_file) as policy_path:
        # The refund's caller: a MoonClerk customer whose record names her Stripe customer, who paid
        # the 149.00 USD the call is about.
        dana = stripe.add_customer(email=DANA_EMAIL, name="Dana Whitfield")["id"]
        stripe.add_charge(dana, 14900, "usd")
        stripe.refund_status = "pending"  # Stripe settles card refunds a little later and says so by webhook
        moonclerk.add_customer(name="Dana Whitfield", email=DANA_EMAIL, customer_reference=dana)
        settings = Settings(
            database_url=f"sqlite:///{database}",
            dialnexa_webhook_secrets=[SecretStr(webhook_secret)],
            slack_bot_token=SecretStr("xoxb-demo-" + secrets.token_hex(8)),
            slack_signing_secret=SecretStr(signing_secret),
            slack_api_url=f"{slack.url}/api/",
            finance_channel=FINANCE_CHANNEL,
            escalation_channel=ESCALATION_CHANNEL,
            review_channel="C0REVIEW",
            moonclerk_api_url=moonclerk.url,
            moonclerk_api_key=SecretStr(moonclerk.api_key),
            poof_api_url=poof.url,
            poof_api_key=SecretStr(poof.api_key),
            stripe_api_url=stripe.url,
            stripe_api_key=SecretStr(stripe.api_key),
            stripe_webhook_secret=[SecretStr(stripe_secret)],
            finance_desk_policy=policy_path,
            # A plain smtp:// URL is accepted for a loopback host only: the local mail sink.
            smtp_url=SecretStr(mail.url),
            mail_from=MAIL_FROM,
        )
        runtime = build_runtime(settings)
        service = start_slack(runtime, poll_seconds=0.1)
        server = BackgroundServer(runtime).start()
        try:
            _run(runtime, server, slack, poof, signing_secret, webhook_secret, echo)
            _refund_on_stripe(runtime, server, slack, moonclerk, stripe, signing_secret, stripe_secret, echo)
            _email_vip(runtime, server, slack, mail, signing_secret, echo)
        finally:
            server.stop()
            service.stop()
        _write_record(workdir, runtime, slack)
        (workdir / "mail.eml").write_bytes(b"".join(raw for _, _, raw in mail.messages))
        echo("")
        echo(f"Full record of this run in {workdir}/:")
        echo(f"  {database.name:<28} the SQLite database (cases, deliveries, audit, outbox)")
        echo(f"  {'slack-api-calls.jsonl':<28} every Web API call the app made, as Slack received it")
        echo(f"  {'audit.jsonl':<28} the audit trail")
        echo(f"  {'channel.txt':<28} the finance and escalation channels as shown above")
        echo(f"  {'mail.eml':<28} the email the local mail sink received")


def _run(runtime: Runtime, server: BackgroundServer, slack: SlackStandIn, poof: PoofStandIn, signing_secret: str,
         webhook_secret: str, echo: Callable[[str], None]) -> None:
    echo(f"finance-desk demo: app on {server.url}, Slack stand-in on {slack.url}")
    echo("")
    echo("Step 1 · DialNexa delivers six calls as signed webhooks")
    for name, raw in sample_calls():
        response = httpx.post(f"{server.url}/webhooks/dialnexa", content=raw, timeout=10,
                              headers={"Content-Type": "application/json", **sign(raw, webhook_secret.encode())})
        result = response.json()
        with Session(runtime.engine) as session:
            case = session.exec(select(Case).where(Case.call_id == result.get("call_id"))).first()
        verdict = "billing: card queued" if case and case.is_billing else "not billing: stored, not surfaced"
        extra = f" · suppressed {', '.join(case.suppressed_kinds)}" if case and case.suppressed else ""
        echo(f"  {name:<28} HTTP {response.status_code} {result.get('outcome')} · {verdict}"
             f"{' (' + case.kind + ')' if case and case.is_billing else ''}{extra}")
    # A DialNexa retry of the first call: same call ID, so the same case and still one card.
    name, raw = sample_calls()[0]
    retry = httpx.post(f"{server.url}/webhooks/dialnexa", content=raw, timeout=10,
                       headers={"Content-Type": "application/json", **sign(raw, webhook_secret.encode())})
    echo(f"  {name + ' (retry)':<28} HTTP {retry.status_code} {retry.json().get('outcome')} · same case, no new card")

    echo("")
    echo("Step 2 · The outbox posts one card per billing case (paced to Slack's 1 message/s per channel)")
    _wait(lambda: _outbox_idle(runtime), 60, "the cards to be posted")
    _show_channel(echo, slack, FINANCE_CHANNEL, "#finance")

    echo("")
    echo("Step 2b · Escalation pages: one per case naming every reason, with owner, on-call group and a link "
         "to the card")
    _wait(lambda: _pages_settled(runtime), 60, "the escalation pages")
    _show_channel(echo, slack, ESCALATION_CHANNEL, "#escalations")

    echo("")
    echo(f"Step 3 · Approver <@{APPROVER}> clicks “Assign to me” on the refund card")
    with Session(runtime.engine) as session:
        refund = session.exec(select(Case).where(Case.call_id == "call_demo_refund_0001")).one()
    assert refund.slack_ts is not None
    message = slack.message(FINANCE_CHANNEL, refund.slack_ts)
    status = _click(server.url, signing_secret, refund, message, "assign_self", slack.response_url("demo"))
    echo(f"  POST /slack/events (signed block_actions) → HTTP {status}, acknowledged at once")
    _wait(lambda: bool(slack.calls("chat.update")) and _outbox_idle(runtime), 30, "the card update")
    echo("  chat.update edits the same message in place:")
    _show(echo, slack.message(FINANCE_CHANNEL, refund.slack_ts), prefix="  │ ")
    echo("  and the card's thread records who did what:")
    for reply in slack.thread(FINANCE_CHANNEL, refund.slack_ts):
        if reply["ts"] != refund.slack_ts:
            _show(echo, reply, prefix="  ↳ ")

    # The demo's approvers are named user by user in its policy, so no user group needs reading.
    directory = Directory(runtime.policy, None)
    _decide_refund(runtime, slack, refund, directory, echo)

    echo("")
    echo(f"Step 5 · Senior approver <@{SENIOR}> sends the VIP a Poof invoice for the failed renewal")
    with Session(runtime.engine) as session:
        vip = session.exec(select(Case).where(Case.call_id == "call_demo_vip_renewal_0003")).one()
    assert vip.slack_ts is not None and vip.id is not None
    # Approval comes before money: 12,000.00 USD needs two approvers, one of them a senior.
    for who in (OTHER_APPROVER, SENIOR):
        echo(f"  <@{who}> approves: {decisions.approve(runtime.engine, directory, vip.id, who, _now()).message}")
    _wait(lambda: _outbox_idle(runtime), 30, "the approved card")
    status = _click(server.url, signing_secret, vip, slack.message(FINANCE_CHANNEL, vip.slack_ts), "invoice_poof",
                    slack.response_url("invoice"), user=SENIOR)
    _wait(lambda: bool(slack.calls("views.open")), 10, "the invoice modal")
    opened = slack.calls("views.open")[-1]
    view = (opened.json or opened.form or {})["view"]
    view = json.loads(view) if isinstance(view, str) else view
    echo(f"  click → HTTP {status}; views.open shows the modal “{view['title']['text']}”, pre-filled from the case")
    values: dict[str, dict[str, Any]] = {"amount": {"value": {"type": "plain_text_input", "value": "12000.00"}},
              "currency": {"value": {"type": "plain_text_input", "value": "USD"}},
              "method": {"value": {"type": "static_select", "selected_option": {"value": "paypal"}}},
              "send_to": {"value": {"type": "plain_text_input", "value": "ap@bigcustomer.example"}},
              "override": {"value": {"type": "checkboxes", "selected_options": [{"value": "override"}]}}}
    status = _submit(server.url, signing_secret, view, SENIOR, values)
    echo(f"  submit → HTTP {status}. The payment link goes to the address the caller gave, which differs "
         "from the MoonClerk record, so the senior approver ticked the audited override.")
    _wait(lambda: _case_status(runtime, vip.call_id) in _ENDED and _outbox_idle(runtime),
          30, "the invoice")
    echo(f"  Poof invoices created: {poof.invoice_count} (idempotency key {vip.call_id}:invoice_poof)")
    _show(echo, slack.message(FINANCE_CHANNEL, vip.slack_ts), prefix="  │ ")
    for reply in slack.thread(FINANCE_CHANNEL, vip.slack_ts):
        if reply["ts"] != vip.slack_ts:
            _show(echo, reply, prefix="  ↳ ")


def _email_vip(runtime: Runtime, server: BackgroundServer, slack: SlackStandIn, mail: MailSink,
               signing_secret: str, echo: Callable[[str], None]) -> None:
    """Step 6: the payment link goes to the customer by email, to the verified recipient only."""
    settings = runtime.settings
    echo("")
    echo(f"Step 6 · Approver <@{APPROVER}> emails the VIP their payment link (to the verified recipient only)")
    with Session(runtime.engine) as session:
        vip = session.exec(select(Case).where(Case.call_id == "call_demo_vip_renewal_0003")).one()
    assert vip.slack_ts is not None and vip.id is not None and settings.moonclerk_api_key is not None
    # The mail worker does this every 30 s for matched open cases; the demo does not wait for it.
    moonclerk = MoonClerkClient(settings.moonclerk_api_key.get_secret_value(), settings.moonclerk_api_url, timeout=5)
    ctx = MailContext(engine=runtime.engine, directory=Directory(runtime.policy, None), moonclerk=moonclerk,
                      mail_from=settings.mail_from, clock=_now, wake=runtime.wake_workers or (lambda: None))
    verify_pending(ctx, set())
    _wait(lambda: _verified(runtime, vip.call_id) and _outbox_idle(runtime), 30, "the verified recipient")
    message = slack.message(FINANCE_CHANNEL, vip.slack_ts)
    echo("  The mail worker reads the email on the matched MoonClerk customer record; the card shows it beside "
         "the address the caller asked for, and offers ✉️ Send to customer:")
    _show(echo, message, prefix="  │ ")
    opened = len(slack.calls("views.open"))
    status = _click(server.url, signing_secret, vip, message, "send_to_customer", slack.response_url("mail"))
    _wait(lambda: len(slack.calls("views.open")) > opened, 10, "the email modal")
    call = slack.calls("views.open")[-1]
    view = (call.json or call.form or {})["view"]
    view = json.loads(view) if isinstance(view, str) else view
    draft = {block["block_id"]: block["element"].get("initial_value", "")
             for block in view["blocks"] if block.get("type") == "input" and block["block_id"] != "override"}
    echo(f"  click → HTTP {status}; views.open shows “{view['title']['text']}”, a factual draft from the case "
         f"addressed to {draft['recipient']}; the approver sends it unchanged")
    values: dict[str, dict[str, Any]] = {
        name: {"value": {"type": "plain_text_input", "value": value}} for name, value in draft.items()}
    values["override"] = {"value": {"type": "checkboxes", "selected_options": []}}
    status = _submit(server.url, signing_secret, view, APPROVER, values)
    echo(f"  submit → HTTP {status}: the email is a mail-outbox row, committed with its audit event; the mail "
         "worker sends it over SMTP")
    try:
        [received] = mail.wait_for(1, 15)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None
    echo(f"  The local mail sink ({mail.url}) received:")
    for header in ("From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted"):
        echo(f"  ✉ {header}: {str(received[header]).strip()}")  # a long Message-ID arrives folded
    echo("  ✉")
    body = received.get_body()
    for line in (body.get_content() if body is not None else "").splitlines():
        echo(f"  ✉ {line}")
    _wait(lambda: _mail_status(runtime, vip.call_id) == "sent" and _outbox_idle(runtime), 30, "the sent email")
    echo("  The card and its thread record it:")
    _show(echo, slack.message(FINANCE_CHANNEL, vip.slack_ts), prefix="  │ ")
    for reply in slack.thread(FINANCE_CHANNEL, vip.slack_ts)[-2:]:
        if reply["ts"] != vip.slack_ts:
            _show(echo, reply, prefix="  ↳ ")


def _verified(runtime: Runtime, call_id: str) -> bool:
    with Session(runtime.engine) as session:
        return session.exec(select(Case.verified_email).where(Case.call_id == call_id)).one() is not None


def _mail_status(runtime: Runtime, call_id: str) -> str | None:
    with Session(runtime.engine) as session:
        return session.exec(select(Case.mail_status).where(Case.call_id == call_id)).one()


def _now() -> datetime:
    return datetime.now(UTC)


def _decide_refund(runtime: Runtime, slack: SlackStandIn, refund: Case, directory: Directory,
                   echo: Callable[[str], None]) -> None:
    """Step 4: the refund needs two approvers (one a senior) before any money moves."""
    assert refund.id is not None and refund.slack_ts is not None
    echo("")
    echo(f"Step 4 · The refund needs two approvers, one of them a senior: <@{APPROVER}> approves, then "
         f"<@{SENIOR}>")
    engine = runtime.engine
    first = decisions.approve(engine, directory, refund.id, APPROVER, _now())
    echo(f"  <@{APPROVER}> approves → {first.message}")
    again = decisions.approve(engine, directory, refund.id, APPROVER, _now())
    echo(f"  <@{APPROVER}> clicks Approve again → {again.message}")
    second = decisions.approve(engine, directory, refund.id, SENIOR, _now())
    echo(f"  <@{SENIOR}> approves → {second.message}")
    with Session(engine) as session:
        approvals = session.exec(select(Approval).where(Approval.case_id == refund.id)
                                 .order_by(col(Approval.id))).all()
    echo(f"  Recorded: {len(approvals)} approvals ("
         + ", ".join(f"{a.approver}{' (senior)' if a.senior else ''} for {a.amount} {a.currency}" for a in approvals)
         + "); the card now offers the Stripe refund")


def _refund_on_stripe(runtime: Runtime, server: BackgroundServer, slack: SlackStandIn, moonclerk: MoonClerkStandIn,
                      stripe: StripeStandIn, signing_secret: str, stripe_secret: str,
                      echo: Callable[[str], None]) -> None:
    """Step 5b: the approved refund runs on Stripe from the card, and Stripe's webhook closes the loop."""
    engine = runtime.engine
    echo("")
    echo(f"Step 5b · <@{SENIOR}> refunds the card on Stripe from the card; Stripe's webhook closes the loop")
    with Session(engine) as session:
        refund = session.exec(select(Case).where(Case.call_id == REFUND_CALL)).one()
    assert refund.id is not None and refund.slack_ts is not None
    client = MoonClerkClient(moonclerk.api_key, moonclerk.url)
    try:
        matched = match_case(engine, client, refund.id, None, _now(), policy=runtime.policy)
    finally:
        client.close()
    echo(f"  Matching: the caller is MoonClerk customer {_customer(runtime)} ({matched.status}), whose record "
         "names her Stripe customer")
    _wait(lambda: _outbox_idle(runtime), 30, "the matched card")
    views_before = len(slack.calls("views.update"))
    status = _click(server.url, signing_secret, refund, slack.message(FINANCE_CHANNEL, refund.slack_ts),
                    "refund_stripe", slack.response_url("refund"), user=SENIOR)
    _wait(lambda: len(slack.calls("views.update")) > views_before, 20, "the charges from Stripe")
    update = slack.calls("views.update")[-1]
    body = update.json or update.form or {}
    sent = body.get("view") if isinstance(body, dict) else None
    view: dict[str, Any] = sent if isinstance(sent, dict) else json.loads(str(sent))
    charge = next(b for b in view["blocks"] if b.get("block_id") == "charge")["element"]
    echo(f"  Click “↩️ Stripe refund” → HTTP {status}; a waiting modal opens at once, then Stripe's charges fill it:")
    for option in charge["options"]:
        echo(f"    charge {option['value']} · {option['text']['text']} · {option['description']['text']}")
    amount = next(b for b in view["blocks"] if b.get("block_id") == "amount")["element"]["initial_value"]
    values = {"charge": {"value": {"type": "static_select", "selected_option": charge["initial_option"]}},
              "amount": {"value": {"type": "plain_text_input", "value": amount}},
              "reason": {"value": {"type": "static_select", "selected_option": {"value": "requested_by_customer"}}}}
    status = _submit(server.url, signing_secret, view, SENIOR, values)
    echo(f"  Submit {amount} USD, reason requested_by_customer → HTTP {status}")
    _wait(lambda: _case_status(runtime, REFUND_CALL) == ActionStatus.PENDING, 30, "Stripe to accept the refund")
    [made] = stripe.refunds
    post = [r for r in stripe.calls("/v1/refunds") if r.method == "POST"][-1]
    echo(f"  Stripe: POST /v1/refunds with Idempotency-Key {post.headers.get('idempotency-key')} → {made['id']} "
         f"{made['status']} (metadata dialnexa_call_id={made['metadata'].get('dialnexa_call_id')})")
    # Stripe settles the refund and says so; finance-desk re-fetches it before believing the webhook.
    stripe.set_refund(made["id"], status="succeeded")
    event = stripe.event("refund.updated", stripe.refund(made["id"]))
    response = stripe.deliver(f"{server.url}/webhooks/stripe", event, stripe_secret)
    echo(f"  Stripe → POST /webhooks/stripe (Stripe-Signature) → HTTP {response.status_code} "
         f"{response.json().get('result')}")
    _wait(lambda: _case_status(runtime, REFUND_CALL) == ActionStatus.SUCCEEDED and _outbox_idle(runtime), 30,
          "the refund's card")
    echo("  The card, updated in place:")
    _show(echo, slack.message(FINANCE_CHANNEL, refund.slack_ts), prefix="  │ ")
    echo("  and its thread:")
    for reply in slack.thread(FINANCE_CHANNEL, refund.slack_ts):
        if reply["ts"] != refund.slack_ts:
            _show(echo, reply, prefix="  ↳ ")


def _customer(runtime: Runtime) -> int | None:
    with Session(runtime.engine) as session:
        return session.exec(select(Case.moonclerk_customer_id).where(Case.call_id == REFUND_CALL)).one()


def _case_status(runtime: Runtime, call_id: str) -> str | None:
    with Session(runtime.engine) as session:
        case = session.exec(select(Case).where(Case.call_id == call_id)).one()
    return case.action_status


def _write_record(workdir: Path, runtime: Runtime, slack: SlackStandIn) -> None:
    with (workdir / "slack-api-calls.jsonl").open("w") as out:
        for request in slack.requests:
            payload = request.json if request.json is not None else request.form
            out.write(json.dumps({"at": request.at, "method": request.path.rsplit("/", 1)[-1],
                                  "body": payload}, default=str) + "\n")
    with Session(runtime.engine) as session, (workdir / "audit.jsonl").open("w") as out:
        for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.id))):
            out.write(json.dumps(event.model_dump(mode="json")) + "\n")
    with (workdir / "channel.txt").open("w") as out:
        for channel, name in ((FINANCE_CHANNEL, "#finance"), (ESCALATION_CHANNEL, "#escalations")):
            for message in slack.all_messages(channel):
                out.write(f"--- {name} {message['ts']}{' (thread reply)' if message.get('thread_ts') else ''}\n")
                out.write("\n".join(render(message)) + "\n")
