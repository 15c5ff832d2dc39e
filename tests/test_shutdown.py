"""SIGTERM: `serve` (with Slack delivery and the scheduler) and `worker` stop cleanly within 30 s."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
from sqlalchemy import Engine, text

from blocks.actions import ButtonValue
from bot.standins import MoonClerkStandIn, PoofStandIn, SlackStandIn
from storage.db import make_engine
from storage.migrate import upgrade
from tests.signing import dialnexa_headers, dumps, slack_headers

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_and_worker_exit_within_30_seconds_of_sigterm(tmp_path: Path) -> None:
    with SlackStandIn() as slack:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FINANCE_", "MOONCLERK_", "POOF_"))}
        env.update(DATABASE_URL=f"sqlite:///{tmp_path}/fd.db", DIALNEXA_WEBHOOK_SECRETS="whsec_fake",
                   SLACK_BOT_TOKEN="xoxb-fake", SLACK_SIGNING_SECRET="fake-signing", FINANCE_CHANNEL="C0FINANCE",
                   SLACK_API_URL=f"{slack.url}/api/", LOG_FORMAT="json")
        port = _free_port()
        serve = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            worker_log = tmp_path / "worker.log"
            with worker_log.open("wb") as sink:
                worker = subprocess.Popen([sys.executable, "-m", "bot", "worker"], env=env, stdout=sink,
                                          stderr=sink)
            # Its "worker started" line comes after its SIGTERM handler is installed (a fixed sleep was
            # too short on a busy machine).
            deadline = time.monotonic() + 30
            while b"worker started" not in worker_log.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.1)
            started = time.monotonic()
            serve.send_signal(signal.SIGTERM)
            worker.send_signal(signal.SIGTERM)
            assert serve.wait(timeout=30) == 0
            assert worker.wait(timeout=30) == 0
            assert time.monotonic() - started < 30
        finally:
            for process in (serve,):
                if process.poll() is None:
                    process.kill()
        _, errors = serve.communicate()
        assert b"Traceback" not in errors, errors[-2000:]


SIGNING = "fake-signing"
SECRET = "whsec_fake"


def _env(db: str, slack: SlackStandIn, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "FINANCE_", "MOONCLERK_", "POOF_", "SMTP_", "MAIL_", "DIALNEXA_"))}
    env.update(DATABASE_URL=db, DIALNEXA_WEBHOOK_SECRETS=SECRET, SLACK_BOT_TOKEN="xoxb-fake",
               SLACK_SIGNING_SECRET=SIGNING, FINANCE_CHANNEL="C0FINANCE", SLACK_API_URL=f"{slack.url}/api/",
               SLACK_POST_INTERVAL_SECONDS="0", LOG_FORMAT="json", **extra)
    return env


def _slack_post(url: str, payload: dict[str, object]) -> httpx.Response:
    body = "payload=" + urllib.parse.quote(json.dumps(payload))
    return httpx.post(f"{url}/slack/events", content=body, headers=slack_headers(body, SIGNING), timeout=10)


def _wait(check: Callable[[], T | None], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_lets_an_in_flight_provider_call_finish_and_be_recorded(tmp_path: Path) -> None:
    """An approver's Poof invoice is on the wire (the stand-in answers after 3 s) when SIGTERM comes: the
    call completes, its result is in the ledger, and the process still exits 0 well within 30 s."""
    db = f"sqlite:///{tmp_path}/fd.db"
    engine = make_engine(db)
    upgrade(engine)
    with SlackStandIn() as slack, MoonClerkStandIn(api_key="mc_fake") as moonclerk, \
            PoofStandIn(api_key="poof_fake") as poof:
        env = _env(db, slack, MOONCLERK_API_KEY="mc_fake", MOONCLERK_API_URL=moonclerk.url,
                   POOF_API_KEY="poof_fake", POOF_API_URL=poof.url, PROVIDER_TIMEOUT_SECONDS="8",
                   FINANCE_DESK_POLICY=str(Path(__file__).parent / "data" / "policy.toml"))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = (tmp_path / "serve.log").open("wb")
        serve = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)], env=env,
                                 stdout=log, stderr=log)
        try:
            _wait(lambda: _healthy(url), 30, "serve to start")
            call = dumps(RENEWAL)
            assert httpx.post(f"{url}/webhooks/dialnexa", content=call, headers=dialnexa_headers(call, SECRET),
                              timeout=10).status_code == 200
            case_id, ts, version = _wait(lambda: _card_of(engine, "call_sigterm_renewal"), 15, "the card")
            value = ButtonValue(case_id=case_id, call_id="call_sigterm_renewal", v=version).dump()
            clicked = _slack_post(url, {
                "type": "block_actions", "user": {"id": APPROVER, "username": "approver", "team_id": "T0FIN"},
                "api_app_id": "A0", "token": "unused", "trigger_id": "trigger-sigterm",
                "container": {"type": "message", "message_ts": ts, "channel_id": "C0FINANCE"},
                "team": {"id": "T0FIN", "domain": "finance"}, "channel": {"id": "C0FINANCE", "name": "finance"},
                "response_url": slack.response_url("invoice"),
                "actions": [{"action_id": "invoice_poof", "block_id": "b", "type": "button", "value": value,
                             "action_ts": str(time.time())}]})
            assert clicked.status_code == 200
            opened = slack.wait_for("views.open")[-1]
            view = (opened.json or opened.form or {})["view"]
            view = json.loads(view) if isinstance(view, str) else dict(view)
            poof.delay("/api/v1/create_fiat_invoice", 3.0)
            state = {"amount": {"value": {"type": "plain_text_input", "value": "200.00"}},
                     "currency": {"value": {"type": "plain_text_input", "value": "USD"}},
                     "method": {"value": {"type": "static_select", "selected_option": {"value": "paypal"}}},
                     "send_to": {"value": {"type": "plain_text_input", "value": VERIFIED_EMAIL}},
                     "override": {"value": {"type": "checkboxes", "selected_options": []}}}
            submitted = _slack_post(url, {
                "type": "view_submission", "user": {"id": APPROVER, "team_id": "T0FIN"}, "team": {"id": "T0FIN"},
                "api_app_id": "A0", "token": "unused", "trigger_id": "t",
                "view": {**view, "id": "V123", "state": {"values": state}}})
            assert submitted.status_code == 200, submitted.text
            poof.wait_for("/api/v1/create_fiat_invoice")  # on the wire, its answer 3 s away
            started = time.monotonic()
            serve.send_signal(signal.SIGTERM)
            assert serve.wait(timeout=30) == 0
            elapsed = time.monotonic() - started
        finally:
            if serve.poll() is None:
                serve.kill()
            log.close()
        assert elapsed < 30
        assert poof.invoice_count == 1
        with engine.connect() as connection:
            status = connection.execute(text("SELECT status FROM provider_actions WHERE idempotency_key = :k"),
                                        {"k": "call_sigterm_renewal:invoice_poof"}).scalar_one()
        engine.dispose()
        assert status == "succeeded"  # recorded, not left "running" for recovery to call unknown
        output = (tmp_path / "serve.log").read_text()
        assert "Traceback" not in output, output[-3000:]


APPROVER = "U0APPROVER1"
VERIFIED_EMAIL = "ryan@moonclerk.com"  # the MoonClerk stand-in's seeded customer 523425
RENEWAL = {"event_type": "call_ended", "payload": {"call": {
    "id": "call_sigterm_renewal", "status": "completed", "from_number": "12125550199",
    "summary": "Customer's renewal failed; they asked for an invoice to pay by another method.",
    "post_call_analysis": {"billing_intent": "payment_failed", "customer_email": VERIFIED_EMAIL,
                           "moonclerk_customer_id": 523425, "subscription_id": "sub_3oLgqlp4MgTZC3",
                           "amount": "200.00", "currency": "USD"}}}}


def _healthy(url: str) -> bool | None:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200 or None
    except httpx.HTTPError:
        return None


def _card_of(engine: Engine, call_id: str) -> tuple[int, str, int] | None:
    """The case's card once it is posted and settled: matched, and no card update still queued, so the
    version a person would click is the one the case has (a click on an older card is refused)."""
    with engine.connect() as connection:
        row = connection.execute(text("SELECT id, slack_ts, card_version, match_status FROM cases WHERE call_id = :c"),
                                 {"c": call_id}).first()
        if row is None or not row.slack_ts or row.match_status == "pending":
            return None
        queued = connection.execute(text("SELECT count(*) FROM outbox WHERE case_id = :i AND kind = 'card' "
                                         "AND sent_at IS NULL"), {"i": row.id}).scalar()
    return (int(row.id), str(row.slack_ts), int(row.card_version)) if not queued else None
