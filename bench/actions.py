"""Click-to-ack benchmark: signed Slack clicks against the real app while the providers take 5 s.

What is measured
  Slack gives an app 3 s to answer a button click or a modal submission (the "ack"); the provider
  call must happen after it. This bench measures the HTTP response time of signed
  `POST /slack/events` requests while the provider stand-ins answer only after --provider-delay
  seconds (default 5), beside a floor:

  - app:   `finance-desk serve` (the real CLI command: Bolt in HTTP mode, outbox worker, 16 Bolt
           listener threads) as its own subprocess on a free 127.0.0.1 port, SQLite in a temporary
           directory, logging at INFO to a file, pointed by environment variables at Slack, MoonClerk
           and Poof stand-ins that run in this process (SLACK_API_URL, MOONCLERK_API_URL, POOF_API_URL).
  - floor: a bare `slack_bolt.App` (same signing secret, token_verification_enabled=False, the same
           16-thread listener executor) whose listeners only ack, on the same stack (Starlette route
           -> run_in_threadpool(App.dispatch) -> uvicorn) in its own subprocess.

  Setup (app only, not timed): distinct DialNexa calls are posted to the real webhook, signed
  (`X-DialNexa-Signature: sha256=<hmac>`): failed renewals of the MoonClerk customer 523425 that
  the stand-in seeds, 200.00 USD. Once every card is in the Slack stand-in, each click carries the
  button value and block id from its own card. Invoice cases get their `invoice_poof` click first,
  so Slack's `views.open` holds their modal; the submission later sends the modal's pre-filled
  values (an approver pressing "Create invoice" without edits). Then the delays are switched on:
  MoonClerk `/customers/523425` and Poof `/api/v1/create_fiat_invoice` each answer after
  --provider-delay seconds. So each measured click holds a listener thread after its ack:

  - note:    `note_moonclerk` button (block_actions)      -> MoonClerk lookup:          1 x delay
  - invoice: `invoice_poof_modal` submission (view_submission) -> MoonClerk verify + Poof: 2 x delay
  - refund:  `refund_stripe_modal` submission (view_submission) on a refund call naming its Stripe
             charge (`ch_…`, 100.00 to 499.00 USD, one amount per call, owned by the seeded customer's
             Stripe customer) -> MoonClerk (the caller's Stripe customer) + Stripe `POST /v1/refunds`,
             which answers after the delay:
             2 x delay. Its modal was opened at seeding (the `refund_stripe` click opens a waiting
             modal at once; the charges found replace it).
  - approve: `approve` button (block_actions) on a case the call flagged for approval (200.00 USD,
             under the threshold, so an approver's one approval decides it) -> bot.decisions.approve:
             one locked transaction (approval row, audit, card update and thread reply queued), no
             provider call. Its result is the thread reply "Approved by ..." (or "... approved this
             case" where the policy asks for two approvals).

  Every click is on its own case, so the at-most-once ledger never short-circuits it. The same
  payloads (freshly signed) go to the floor. Phases, each open loop (latency counts from the
  scheduled send time, so a stalled server cannot slow the schedule down and hide it):

  1. light:  --light-clicks at half of what 16 threads can absorb (16 / mean hold / 2 a second)
  2. paced:  --clicks at --rate a second (default 60 at 5/s = 12 s: a busy desk's worth of clicks)
  3. burst:  --concurrency clicks sent at the same instant (default 32: twice the listener threads)

  Between phases the bench waits until the app has told every clicker the result, so each phase
  starts with idle threads. Printed per phase and server: p50/p90/p99/max ack latency, non-2xx
  answers and answers slower than Slack's 3 s; for the app also how long the clicker waited for
  the result message (click -> ephemeral) and how many provider calls the stand-ins saw. Little's
  law gives the threads a phase needs: rate x hold (5/s x 7.5 s mean = 37.5 > 16). The target from
  the issue (app p99 <= 1.5 x floor p99 and far under 3 s, read as < 300 ms, a tenth of Slack's
  deadline) is printed per phase, never asserted; so is the approve click's own ack p99 against the
  floor's p99 for the same approve payloads, with the ratio (target <= 1.5 x).

Run
  python -m bench.actions                            # ~1.5 minutes
  python -m bench.actions --clicks 100 --rate 10     # heavier paced phase
  python -m bench.actions --kind note                # note clicks only (one provider call each)
  python -m bench.actions --kind approve             # approve clicks only (no provider call)
  python -m bench.actions --kind refund              # Stripe refund submissions (Stripe takes the delay)
  python -m bench.actions --provider-delay 1 --concurrency 64
  python -m bench.actions --keep                     # keep the temp dir (database, server logs)
  python -m bench.actions --json                     # one JSON document on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn

from bench import EXAMPLE_POLICY, ROOT, sign, summarize_ms
from bot.config import Settings
from bot.standins import MoonClerkStandIn, PoofStandIn, SlackStandIn, StripeStandIn

CHANNEL = "C0FINANCE"
APPROVER = "U0FINANCE1"  # an approver in policy.example.toml; 200.00 USD is under its USD threshold
CUSTOMER_ID = 523425  # the customer the MoonClerk stand-in seeds
CUSTOMER_EMAIL = "ryan@moonclerk.com"  # ... and its own address, so the invoice recipient verifies
MOONCLERK_PATH = f"/customers/{CUSTOMER_ID}"
POOF_PATH = "/api/v1/create_fiat_invoice"
REFUNDS_PATH = "/v1/refunds"
STRIPE_CUSTOMER = "cus_4SOZuEc4cxP5L7"  # the seeded MoonClerk customer's Stripe customer (customer_reference)
EVENTS_PATH = "/slack/events"
BOLT_THREADS = 16  # bot/slack/bolt_app.py: listener_executor=ThreadPoolExecutor(max_workers=16)
SLACK_DEADLINE_S = 3.0
TARGET_RATIO = 1.5
TARGET_P99_MS = 300.0  # "far under 3 s": a tenth of Slack's deadline
WARMUP_CASES = 4
NOTE_DONE = "MoonClerk note written"
INVOICE_DONE = "Poof invoice* done"
REFUND_DONE = "Stripe refund* done"
SIGNING_ENV = "BENCH_SLACK_SIGNING_SECRET"
SLACK_URL_ENV = "BENCH_SLACK_API_URL"
KINDS = ("note", "invoice", "approve", "refund")
# What the card must offer for each kind of click, and what the clicker is finally told on success.
NEEDS = {"note": "note_moonclerk", "invoice": "invoice_poof", "approve": "approve", "refund": "refund_stripe"}
# Clicks whose modal is opened while seeding; the measured click submits it.
MODALS = {"invoice": "invoice_poof", "refund": "refund_stripe"}
APPROVED = "pproved"  # "✅ Approved by …" or "👍 … approved this case …" in the card's thread


# ------------------------------------------------------------------------------------------ signing


def slack_sign(body: str, secret: str) -> dict[str, str]:
    """Slack's documented v0 scheme, written here independently of Bolt's verifier."""
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded"}


def form_body(payload: dict[str, Any]) -> str:
    return "payload=" + urllib.parse.quote(json.dumps(payload, separators=(",", ":")))


# ------------------------------------------------------------------------------------------ server side


def _exit_with_parent() -> None:
    """Stop the server if the bench process dies without stopping it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve_app(port: int, log_level: str) -> None:
    """Child entry point (`--serve-app PORT`): exactly `finance-desk --log-level L serve`, configured by env."""
    from bot.cli import cli

    _exit_with_parent()
    cli.main(args=["--log-level", log_level, "serve", "--host", "127.0.0.1", "--port", str(port)],
             prog_name="finance-desk")


def _serve_floor(port: int) -> None:
    """Child entry point (`--serve-floor PORT`): a bare Bolt app that only acks, on the app's server stack."""
    import re
    from concurrent.futures import ThreadPoolExecutor

    from slack_bolt import Ack, App
    from slack_sdk import WebClient

    _exit_with_parent()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bolt = App(
        # Bolt's single-team authorisation calls auth.test once, on the first request: the Slack stand-in.
        client=WebClient(token="xoxb-bench-floor", base_url=os.environ[SLACK_URL_ENV], timeout=10),
        signing_secret=os.environ[SIGNING_ENV],
        token_verification_enabled=False,
        listener_executor=ThreadPoolExecutor(max_workers=BOLT_THREADS, thread_name_prefix="bolt"),
        logger=logging.getLogger("bench.floor.bolt"),
    )

    def only_ack(ack: Ack) -> None:
        ack()

    bolt.action(re.compile(".*"))(only_ack)
    bolt.view(re.compile(".*"))(only_ack)

    serve_bolt(bolt, port)


def serve_bolt(bolt: Any, port: int) -> None:
    """A bare Bolt app at EVENTS_PATH (and /healthz) under uvicorn, as `finance-desk serve` runs its app:
    the floor the benchmarks measure the real one against."""
    from slack_bolt.request import BoltRequest
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def events(request: Request) -> Response:
        raw = await request.body()
        bolt_request = BoltRequest(body=raw.decode("utf-8", errors="replace"), query=request.url.query,
                                   headers={key: [value] for key, value in request.headers.items()})
        answer = await run_in_threadpool(bolt.dispatch, bolt_request)
        return Response(content=answer.body, status_code=answer.status,
                        headers={k: v[0] for k, v in answer.headers.items() if k.lower() != "content-length"})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route(EVENTS_PATH, events, methods=["POST"]), Route("/healthz", healthz)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One server subprocess on a free port; always stop() it (terminate, then kill)."""

    def __init__(self, name: str, command: Callable[[int], list[str]], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[str] | None = None

    def start(self, timeout: float = 60.0, attempts: int = 3) -> ServerProcess:
        for attempt in range(attempts):
            port = _free_port()
            self._log = self.log_path.open("a", encoding="utf-8")
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self.command(port), cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=self._log)
            self.url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            self.stop()
            if attempt == attempts - 1:
                raise RuntimeError(f"{self.name} server did not start; see {self.log_path}:\n{self.log_tail()}")
        raise AssertionError("unreachable")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_count(self, text: str) -> int:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").count(text)
        except OSError:
            return 0

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


# ------------------------------------------------------------------------------------------ stand-ins


@dataclass
class StandIns:
    slack: SlackStandIn
    moonclerk: MoonClerkStandIn
    poof: PoofStandIn
    stripe: StripeStandIn

    @classmethod
    def start(cls) -> StandIns:
        started: list[Any] = []
        try:
            for standin in (SlackStandIn(), MoonClerkStandIn(), PoofStandIn(), StripeStandIn()):
                started.append(standin.start())
        except BaseException:
            for standin in started:
                standin.stop()
            raise
        return cls(*started)

    def stop(self) -> None:
        for standin in (self.slack, self.moonclerk, self.poof, self.stripe):
            standin.stop()

    def set_delay(self, seconds: float) -> None:
        self.moonclerk.delay(MOONCLERK_PATH, seconds)
        self.poof.delay(POOF_PATH, seconds)
        self.stripe.delay(REFUNDS_PATH, seconds)


def app_env(standins: StandIns, database_url: str, slack_secret: str, dialnexa_secret: str,
            provider_delay: float) -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # Nothing from this shell's finance-desk configuration (a real token, another channel) leaks in.
    own = {name.upper() for name in Settings.model_fields}
    return {
        **{key: value for key, value in os.environ.items() if key.upper() not in own},
        "PYTHONPATH": pythonpath,
        "DATABASE_URL": database_url,
        "DIALNEXA_WEBHOOK_SECRETS": dialnexa_secret,
        "FINANCE_DESK_POLICY": str(EXAMPLE_POLICY),
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": slack_secret,
        "FINANCE_CHANNEL": CHANNEL,
        "SLACK_API_URL": f"{standins.slack.url}/api/",
        # Cards for the seeded cases are posted as fast as the stand-in answers.
        "SLACK_POST_INTERVAL_SECONDS": "0",
        "MOONCLERK_API_KEY": standins.moonclerk.api_key,
        "MOONCLERK_API_URL": standins.moonclerk.url,
        "POOF_API_KEY": standins.poof.api_key,
        "POOF_API_URL": standins.poof.url,
        "POOF_WEBHOOK_SECRET": "bench-poof-webhook-secret",
        "STRIPE_API_KEY": standins.stripe.api_key,
        "STRIPE_API_URL": standins.stripe.url,
        # The product default is 10 s; a longer --provider-delay must not turn every call into "unknown".
        "PROVIDER_TIMEOUT_SECONDS": str(min(120.0, max(10.0, provider_delay + 5.0))),
        SIGNING_ENV: slack_secret,
        SLACK_URL_ENV: f"{standins.slack.url}/api/",
    }


# ------------------------------------------------------------------------------------------ cases and clicks


def renewal(call_id: str, kind: str = "note") -> dict[str, Any]:
    """A failed renewal of the seeded MoonClerk customer: the card offers the note and the invoice. For
    an approve click the call's analysis flags approval as required, so the card offers Approve."""
    analysis: dict[str, Any] = {"billing_intent": "payment_failed", "customer_email": CUSTOMER_EMAIL,
                                "moonclerk_customer_id": CUSTOMER_ID, "subscription_id": "sub_3oLgqlp4MgTZC3",
                                "amount": "200.00", "currency": "USD"}
    if kind == "approve":
        analysis["approval_required"] = True
    if kind == "refund":
        analysis.update(billing_intent="refund_request", refund_reason="charged after cancelling",
                        payment_id=charge_id(call_id), amount=str(refund_amount(call_id)))
        analysis.pop("subscription_id")
    return {"event_type": "call_ended", "payload": {"call": {
        "id": call_id, "status": "completed", "from_number": "12125550199",
        "summary": "Customer's renewal failed; they asked for an invoice to pay by another method.",
        "post_call_analysis": analysis}}}


def refund_amount(call_id: str) -> Decimal:
    """Each refund call's own amount (100.00 USD and up, under the example policy's 500.00 threshold): the
    customer's other charges then do not fit it, so its modal lists one charge, preselected."""
    return Decimal(100 + int(call_id.rsplit("_", 1)[-1]) % 400) + Decimal("0.00")


def charge_id(call_id: str) -> str:
    """The Stripe charge a refund call names: one per case, so no refund short-circuits another."""
    return "ch_" + "".join(c for c in call_id if c.isalnum())


@dataclass
class Case:
    """One seeded case as its card shows it in the channel."""

    call_id: str
    kind: str
    card_ts: str
    buttons: dict[str, tuple[str, str]]  # action_id -> (button value, block_id)
    view: dict[str, Any] | None = None  # the opened modal, for invoice and refund cases


@dataclass
class Click:
    case: Case
    name: str  # unique; the note's response_url ends in it

    def payload(self, slack: SlackStandIn) -> dict[str, Any]:
        if self.case.kind in {"note", "approve"}:
            return action_payload(self.case, NEEDS[self.case.kind], slack.response_url(self.name))
        assert self.case.view is not None
        return submission_payload(self.case.view)


def action_payload(case: Case, action_id: str, response_url: str) -> dict[str, Any]:
    value, block_id = case.buttons[action_id]
    now = time.time()
    return {
        "type": "block_actions", "user": {"id": APPROVER, "username": "finance1", "team_id": "T0FIN"},
        "api_app_id": "A0BENCH", "token": "unused", "trigger_id": f"{int(now)}.{case.call_id}.{action_id}",
        "container": {"type": "message", "message_ts": case.card_ts, "channel_id": CHANNEL},
        "team": {"id": "T0FIN", "domain": "finance"}, "channel": {"id": CHANNEL, "name": "finance"},
        "message": {"ts": case.card_ts}, "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": block_id, "type": "button", "value": value,
                     "action_ts": f"{now:.6f}"}],
    }


def _initial_state(view: dict[str, Any]) -> dict[str, Any]:
    """The modal's values when the approver submits it unedited."""
    state: dict[str, Any] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block["element"]
        kind = element["type"]
        if kind == "static_select":
            value: dict[str, Any] = {"type": kind, "selected_option": element.get("initial_option")}
        elif kind == "checkboxes":
            value = {"type": kind, "selected_options": element.get("initial_options", [])}
        else:
            value = {"type": kind, "value": element.get("initial_value")}
        state[block["block_id"]] = {element["action_id"]: value}
    return state


def submission_payload(view: dict[str, Any]) -> dict[str, Any]:
    submitted = {**view, "state": {"values": _initial_state(view)}}
    return {"type": "view_submission", "user": {"id": APPROVER, "username": "finance1", "team_id": "T0FIN"},
            "team": {"id": "T0FIN", "domain": "finance"}, "api_app_id": "A0BENCH", "token": "unused",
            "trigger_id": f"{time.time():.6f}.submit", "view": submitted}


def _card_cases(slack: SlackStandIn, kinds: dict[str, str]) -> dict[str, Case]:
    found: dict[str, Case] = {}
    for message in slack.messages(CHANNEL):
        call_id = ((message.get("metadata") or {}).get("event_payload") or {}).get("call_id")
        if call_id not in kinds:
            continue
        buttons = {element["action_id"]: (str(element.get("value", "")), str(block.get("block_id", "")))
                   for block in message.get("blocks", []) if block.get("type") == "actions"
                   for element in block.get("elements", []) if "action_id" in element}
        found[call_id] = Case(call_id=call_id, kind=kinds[call_id], card_ts=str(message["ts"]), buttons=buttons)
    return found


def _ephemeral_times(slack: SlackStandIn) -> dict[str, tuple[float, str]]:
    """card ts -> (when, text) of the last ephemeral posted in that card's thread."""
    seen: dict[str, tuple[float, str]] = {}
    for request in slack.calls("/api/chat.postEphemeral"):
        params: dict[str, Any] = dict(request.form or {})
        if isinstance(request.json, dict):
            params.update(request.json)
        if params.get("thread_ts"):
            seen[str(params["thread_ts"])] = (request.at, str(params.get("text", "")))
    return seen


def _response_times(slack: SlackStandIn) -> dict[str, tuple[float, str]]:
    """response_url name -> (when, text) of the last message posted to it."""
    seen: dict[str, tuple[float, str]] = {}
    for request in slack.requests:
        if request.path.startswith("/response_url/") and request.method == "POST":
            body = request.json if isinstance(request.json, dict) else {}
            seen[request.path.rsplit("/", 1)[-1]] = (request.at, str(body.get("text", "")))
    return seen


def _approval_times(slack: SlackStandIn) -> dict[str, tuple[float, str]]:
    """card ts -> (when, text) of the first thread reply that says the case was approved."""
    seen: dict[str, tuple[float, str]] = {}
    for request in slack.calls("/api/chat.postMessage"):
        params: dict[str, Any] = dict(request.form or {})
        if isinstance(request.json, dict):
            params.update(request.json)
        thread, text = str(params.get("thread_ts") or ""), str(params.get("text", ""))
        if thread and APPROVED in text and thread not in seen:
            seen[thread] = (request.at, text)
    return seen


def outcomes(slack: SlackStandIn, clicks: Sequence[Click]) -> list[tuple[float, str] | None]:
    """What each click's approver was finally told, and when (wall clock), or None so far. A refused
    approve is told by ephemeral; an accepted one shows in the card's thread."""
    ephemerals, responses, approvals = _ephemeral_times(slack), _response_times(slack), _approval_times(slack)

    def told(click: Click) -> tuple[float, str] | None:
        if click.case.kind == "note":
            return responses.get(click.name)
        if click.case.kind == "approve":
            return approvals.get(click.case.card_ts) or responses.get(click.name) or ephemerals.get(click.case.card_ts)
        return ephemerals.get(click.case.card_ts)

    return [told(c) for c in clicks]


# ------------------------------------------------------------------------------------------ load


@dataclass
class Sent:
    kind: str
    status: str
    latency: float
    lag: float
    wall_due: float


@dataclass
class PhaseRun:
    name: str
    description: str
    sent: list[Sent] = field(default_factory=list)
    elapsed: float = 0.0


async def _post(client: httpx.AsyncClient, body: str, secret: str) -> str:
    try:
        response = await client.post(EVENTS_PATH, content=body, headers=slack_sign(body, secret))
        return str(response.status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


async def fire(client: httpx.AsyncClient, bodies: Sequence[tuple[str, str]], offsets: Sequence[float],
               secret: str) -> tuple[list[Sent], float]:
    """Open loop: body i is due at start + offsets[i]; its latency counts from then."""
    loop = asyncio.get_running_loop()
    sent: list[Sent | None] = [None] * len(bodies)
    start = loop.time() + 0.05
    wall_offset = time.time() - loop.time()

    async def one(index: int, due: float, kind: str, body: str) -> None:
        lag = loop.time() - due
        status = await _post(client, body, secret)
        sent[index] = Sent(kind, status, loop.time() - due, lag, due + wall_offset)

    tasks = []
    for index, ((kind, body), offset) in enumerate(zip(bodies, offsets, strict=True)):
        due = start + offset
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due, kind, body)))
    await asyncio.gather(*tasks)
    return [s for s in sent if s is not None], loop.time() - start


def make_client(url: str, connections: int) -> httpx.AsyncClient:
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout can close them under a request.
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2.0)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0)


@dataclass
class Phase:
    name: str
    description: str
    clicks: list[Click]
    offsets: list[float]


def _hold(kind: str, delay: float) -> float:
    """Seconds a click keeps a listener thread busy after its ack: one or two provider calls, or none."""
    return delay * {"invoice": 2, "refund": 2, "note": 1}.get(kind, 0)


def _kinds(kind: str, count: int, start: int) -> list[str]:
    return [KINDS[(start + i) % len(KINDS)] if kind == "mix" else kind for i in range(count)]


def plan(args: argparse.Namespace) -> list[tuple[str, str, list[str], list[float]]]:
    """(name, description, kinds, offsets) for each phase."""
    mean_hold = sum(_hold(k, args.provider_delay) for k in _kinds(args.kind, len(KINDS), 0)) / len(KINDS)
    light_rate = BOLT_THREADS / mean_hold / 2 if mean_hold else 10.0
    phases: list[tuple[str, str, list[str], list[float]]] = []
    if args.light_clicks:
        phases.append(("light", f"{args.light_clicks} clicks at {light_rate:.2f}/s (half of what "
                                f"{BOLT_THREADS} threads absorb)",
                       _kinds(args.kind, args.light_clicks, 0), [i / light_rate for i in range(args.light_clicks)]))
    if args.clicks:
        phases.append(("paced", f"{args.clicks} clicks at {args.rate:g}/s",
                       _kinds(args.kind, args.clicks, 0), [i / args.rate for i in range(args.clicks)]))
    if args.concurrency:
        phases.append(("burst", f"{args.concurrency} clicks at once", _kinds(args.kind, args.concurrency, 0),
                       [0.0] * args.concurrency))
    return phases


# ------------------------------------------------------------------------------------------ the app


def seed(url: str, standins: StandIns, dialnexa_secret: str, slack_secret: str, kinds: list[str],
         prefix: str) -> list[Case]:
    """Store one case per entry of `kinds`, wait for every card, open the invoice modals."""
    wanted = {f"{prefix}_{i:05d}": kind for i, kind in enumerate(kinds)}
    if "refund" in kinds:
        # Each refund call names its own charge of the seeded customer's Stripe customer.
        standins.stripe.add_customer(STRIPE_CUSTOMER, email=CUSTOMER_EMAIL)
        for call_id, kind in wanted.items():
            if kind == "refund":
                standins.stripe.add_charge(STRIPE_CUSTOMER, int(refund_amount(call_id) * 100), "usd",
                                           id=charge_id(call_id))

    async def deliver() -> Counter[str]:
        statuses: Counter[str] = Counter()
        gate = asyncio.Semaphore(8)
        async with make_client(url, 16) as client:

            async def one(call_id: str) -> None:
                body = json.dumps(renewal(call_id, wanted[call_id]), separators=(",", ":")).encode()
                async with gate:
                    response = await client.post("/webhooks/dialnexa", content=body,
                                                 headers=sign(body, dialnexa_secret.encode()))
                statuses[str(response.status_code)] += 1

            await asyncio.gather(*(one(call_id) for call_id in wanted))
        return statuses

    statuses = asyncio.run(deliver())
    if statuses.get("200") != len(wanted):
        raise RuntimeError(f"seeding webhooks answered {dict(statuses)}")
    timeout = 30.0 + len(wanted) * 0.1

    def cards() -> dict[str, Case] | None:
        found = _card_cases(standins.slack, wanted)
        return found if len(found) == len(wanted) else None

    cases = standins.slack.wait_until(cards, timeout, f"not every one of {len(wanted)} cards was posted")
    missing = [c for c in cases.values() if NEEDS[c.kind] not in c.buttons]
    if missing:
        raise RuntimeError(f"{len(missing)} cards lack the button their click needs, e.g. {missing[0].kind}: "
                           f"{sorted(missing[0].buttons)}")

    invoices = [c for c in cases.values() if c.kind in MODALS]

    async def open_modals() -> Counter[str]:
        statuses: Counter[str] = Counter()
        gate = asyncio.Semaphore(4)  # well under the listener threads: opening a modal is quick
        async with make_client(url, 8) as client:

            async def one(case: Case) -> None:
                body = form_body(action_payload(case, MODALS[case.kind], standins.slack.response_url(case.call_id)))
                async with gate:
                    statuses[await _post(client, body, slack_secret)] += 1

            await asyncio.gather(*(one(case) for case in invoices))
        return statuses

    statuses = asyncio.run(open_modals())
    if invoices and statuses.get("200") != len(invoices):
        raise RuntimeError(f"modal-opening clicks answered {dict(statuses)}")

    def views() -> dict[str, dict[str, Any]] | None:
        by_call: dict[str, dict[str, Any]] = {}
        for view in standins.slack.views.values():
            if "submit" not in view:
                continue  # a refund modal still waiting for Stripe's charges
            try:
                by_call[json.loads(view.get("private_metadata") or "{}").get("call_id", "")] = view
            except ValueError:
                continue
        return by_call if all(c.call_id in by_call for c in invoices) else None

    opened = standins.slack.wait_until(views, timeout, "not every invoice or refund modal was opened")
    for case in invoices:
        case.view = opened[case.call_id]
    return [cases[call_id] for call_id in wanted]


def _refresh_buttons(slack: SlackStandIn, clicks: Sequence[Click]) -> None:
    """Take each card's buttons as the card shows them now: a card redrawn since seeding (a customer
    match landing) has a newer version, and a click on the older one would be refused as stale."""
    current = _card_cases(slack, {c.case.call_id: c.case.kind for c in clicks})
    for click in clicks:
        if click.case.call_id in current:
            click.case.buttons = current[click.case.call_id].buttons


def wait_outcomes(slack: SlackStandIn, clicks: Sequence[Click], timeout: float) -> list[tuple[float, str] | None]:
    deadline = time.monotonic() + timeout
    while True:
        seen = outcomes(slack, clicks)
        if all(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.25)


def drain_timeout(clicks: Sequence[Click], delay: float) -> float:
    work = sum(_hold(c.case.kind, delay) for c in clicks)
    return work / BOLT_THREADS + 2 * delay + 30.0


# ------------------------------------------------------------------------------------------ results


def phase_result(run: PhaseRun, done: list[tuple[float, str] | None] | None) -> dict[str, Any]:
    latencies = [s.latency for s in run.sent]
    statuses = Counter(s.status for s in run.sent)
    result: dict[str, Any] = {
        "phase": run.name,
        "description": run.description,
        "clicks": len(run.sent),
        "statuses": dict(sorted(statuses.items())),
        "non_2xx": sum(n for status, n in statuses.items() if not status.startswith("2")),
        "over_3s": sum(1 for s in run.sent if s.latency > SLACK_DEADLINE_S),
        "elapsed_s": round(run.elapsed, 2),
        "ack": summarize_ms(latencies),
        "ack_by_kind": {kind: summarize_ms([s.latency for s in run.sent if s.kind == kind])
                        for kind in KINDS if any(s.kind == kind for s in run.sent)},
        "generator_lag": summarize_ms([s.lag for s in run.sent]),
    }
    if done is not None:
        waits = [seen[0] - s.wall_due for s, seen in zip(run.sent, done, strict=True) if seen]
        ok_texts = {"note": NOTE_DONE, "invoice": INVOICE_DONE, "approve": APPROVED, "refund": REFUND_DONE}
        result["result_to_clicker"] = {
            **summarize_ms(waits),
            "told": sum(1 for seen in done if seen),
            "succeeded": sum(1 for s, seen in zip(run.sent, done, strict=True) if seen and ok_texts[s.kind] in seen[1]),
            # What a clicker was told instead, so a failure shows its cause in the report.
            "other_answers": sorted({seen[1][:160] for s, seen in zip(run.sent, done, strict=True)
                                     if seen and ok_texts[s.kind] not in seen[1]})[:3],
        }
    return result


def run_floor(args: argparse.Namespace, standins: StandIns, env: dict[str, str], workdir: Path,
              phases: list[Phase], warmup: list[Click], secret: str) -> dict[str, Any]:
    server = ServerProcess(
        "floor", lambda port: [sys.executable, "-m", "bench.actions", "--serve-floor", str(port)], env,
        workdir / "floor.log")
    try:
        server.start()

        async def drive() -> list[PhaseRun]:
            runs: list[PhaseRun] = []
            async with make_client(server.url, max(100, args.concurrency + 10)) as client:
                bodies = [(c.case.kind, form_body(c.payload(standins.slack))) for c in warmup]
                await fire(client, bodies, [i * 0.05 for i in range(len(bodies))], secret)
                for phase in phases:
                    bodies = [(c.case.kind, form_body(c.payload(standins.slack))) for c in phase.clicks]
                    sent, elapsed = await fire(client, bodies, phase.offsets, secret)
                    runs.append(PhaseRun(phase.name, phase.description, sent, elapsed))
                    await asyncio.sleep(0.5)
            return runs

        runs = asyncio.run(drive())
    finally:
        server.stop()
    return {"phases": [phase_result(run, None) for run in runs], "log": str(server.log_path)}


def run_app(args: argparse.Namespace, standins: StandIns, env: dict[str, str], workdir: Path,
            phases: list[Phase], warmup: list[Click], secret: str) -> dict[str, Any]:
    server = ServerProcess(
        "app", lambda port: [sys.executable, "-m", "bench.actions", "--serve-app", str(port),
                             "--log-level", args.log_level], env, workdir / "app.log")
    try:
        server.start()
        cases = seed(server.url, standins, env["DIALNEXA_WEBHOOK_SECRETS"], secret,
                     [c.case.kind for c in warmup] + [c.case.kind for p in phases for c in p.clicks], args.prefix)
        # Attach the seeded cases (card button values, opened modals) to the planned clicks, in order.
        for click, case in zip([*warmup, *(c for p in phases for c in p.clicks)], cases, strict=True):
            click.case = case
        if not args.json:
            print(f"  seeded {len(cases)} cases, cards posted, {sum(c.kind in MODALS for c in cases)} "
                  "invoice or refund modals open", file=sys.stderr, flush=True)

        def drive() -> list[tuple[PhaseRun, list[tuple[float, str] | None], float]]:
            runs: list[tuple[PhaseRun, list[tuple[float, str] | None], float]] = []

            async def fire_phase(clicks: list[Click], offsets: list[float]) -> tuple[list[Sent], float]:
                async with make_client(server.url, max(100, args.concurrency + 10)) as client:
                    bodies = [(c.case.kind, form_body(c.payload(standins.slack))) for c in clicks]
                    return await fire(client, bodies, offsets, secret)

            # Warm-up without provider delays: Bolt's first auth.test, imports, connection pools.
            asyncio.run(fire_phase(warmup, [i * 0.05 for i in range(len(warmup))]))
            wait_outcomes(standins.slack, warmup, 30.0)
            standins.set_delay(args.provider_delay)
            for phase in phases:
                _refresh_buttons(standins.slack, phase.clicks)
                sent, elapsed = asyncio.run(fire_phase(phase.clicks, phase.offsets))
                started = time.monotonic()
                if not args.json:
                    print(f"  app {phase.name}: acks in, waiting for the results of the provider calls ...",
                          file=sys.stderr, flush=True)
                done = wait_outcomes(standins.slack, phase.clicks, drain_timeout(phase.clicks, args.provider_delay))
                runs.append((PhaseRun(phase.name, phase.description, sent, elapsed), done,
                             time.monotonic() - started))
            return runs

        runs = drive()
        calls = {"moonclerk_customer_lookups": len(standins.moonclerk.calls(MOONCLERK_PATH)),
                 "poof_invoices_created": standins.poof.invoice_count,
                 "stripe_refunds_created": standins.stripe.refund_posts}
    finally:
        server.stop()
    results = []
    for run, done, drained in runs:
        result = phase_result(run, done)
        result["drain_after_last_ack_s"] = round(drained, 2)
        results.append(result)
    clicks = [c for p in phases for c in p.clicks]
    expected = {
        # Every note and every invoice verifies the customer; an approval calls no provider. A refund reads
        # the customer's Stripe customer from MoonClerk too (for its modal, on submit, and for the card's
        # Stripe line), so with refunds the lookups seen exceed this count.
        "moonclerk_customer_lookups": sum(c.case.kind in ("note", "invoice") for c in [*warmup, *clicks]),
        "poof_invoices_created": sum(c.case.kind == "invoice" for c in [*warmup, *clicks]),
        "stripe_refunds_created": sum(c.case.kind == "refund" for c in [*warmup, *clicks]),
    }
    return {"phases": results, "provider_calls": calls, "provider_calls_expected": expected,
            "bolt_no_ack_warnings": server.log_count("didn't call ack()"),
            "log": str(server.log_path)}


# ------------------------------------------------------------------------------------------ report


def _targets(app: dict[str, Any], floor: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    for a, f in zip(app["phases"], floor["phases"], strict=True):
        p99, floor_p99 = a["ack"]["p99_ms"], f["ack"]["p99_ms"]
        ratio = p99 / floor_p99 if floor_p99 else float("inf")
        targets.append({
            "phase": a["phase"],
            "target": f"app p99 <= {TARGET_RATIO:g} x floor p99 and < {TARGET_P99_MS:g} ms",
            "measured": f"{p99:.1f} ms vs floor {floor_p99:.1f} ms = {ratio:.2f} x",
            "ratio": round(ratio, 2),
            "met": ratio <= TARGET_RATIO and p99 < TARGET_P99_MS and a["non_2xx"] == 0,
        })
        # The approve click on its own, against the same approve payloads acked by the floor.
        app_approve, floor_approve = a["ack_by_kind"].get("approve"), f["ack_by_kind"].get("approve")
        if app_approve and floor_approve:
            p99, floor_p99 = app_approve["p99_ms"], floor_approve["p99_ms"]
            ratio = p99 / floor_p99 if floor_p99 else float("inf")
            targets.append({
                "phase": f"{a['phase']} (approve clicks)",
                "target": f"approve ack p99 <= {TARGET_RATIO:g} x floor p99",
                "measured": f"p50 {app_approve['p50_ms']:.1f} ms vs floor {floor_approve['p50_ms']:.1f} ms; "
                            f"p99 {p99:.1f} ms vs floor {floor_p99:.1f} ms = {ratio:.2f} x",
                "ratio": round(ratio, 2),
                "met": ratio <= TARGET_RATIO,
            })
    return targets


def _line(name: str, p: dict[str, Any]) -> str:
    ack = p["ack"]
    return (f"    {name:<6}{p['clicks']:>7}{p['non_2xx']:>8}{p['over_3s']:>7}{ack['p50_ms']:>9.1f}{ack['p90_ms']:>9.1f}"
            f"{ack['p99_ms']:>9.1f}{ack['max_ms']:>9.1f}   gen lag p99 {p['generator_lag']['p99_ms']:.1f} ms"
            + (f"   statuses {p['statuses']}" if p["non_2xx"] else ""))


def print_report(report: dict[str, Any]) -> None:
    cfg, app, floor = report["config"], report["app"], report["floor"]
    print(f"finance-desk click-ack benchmark: {cfg['cpus']} CPUs, Python {cfg['python']}, uvicorn {cfg['uvicorn']}, "
          f"SQLite (temp dir)")
    print(f"  providers answer after {cfg['provider_delay_s']:g} s (MoonClerk {MOONCLERK_PATH}, Poof {POOF_PATH}, "
          f"Stripe {REFUNDS_PATH}); clicks: {cfg['kind']} (note = 1 provider call, invoice and refund submissions "
          "= 2, approve = none); "
          f"{BOLT_THREADS} Bolt listener threads in app and floor")
    for a, f in zip(app["phases"], floor["phases"], strict=True):
        print()
        print(f"  {a['phase']}: {a['description']}; {a['offered_threads']:.1f} slow actions in flight by "
              f"Little's law (rate x hold) vs {BOLT_THREADS} Bolt listener threads")
        print(f"    {'server':<6}{'clicks':>7}{'non-2xx':>8}{'>3 s':>7}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
              f"{'max ms':>9}")
        print(_line("floor", f))
        print(_line("app", a))
        told = a["result_to_clicker"]
        print(f"    app, click -> result message to the clicker: p50 {told['p50_ms'] / 1000:.1f} s, "
              f"p99 {told['p99_ms'] / 1000:.1f} s, max {told['max_ms'] / 1000:.1f} s; {told['told']}/{a['clicks']} "
              f"told, {told['succeeded']} succeeded")
        for other in told["other_answers"]:
            print(f"      told instead: {other}")
        by_kind = ", ".join(f"{k} p99 {v['p99_ms']:.1f} ms" for k, v in a["ack_by_kind"].items())
        print(f"    app ack by kind: {by_kind}")
        app_approve, floor_approve = a["ack_by_kind"].get("approve"), f["ack_by_kind"].get("approve")
        if app_approve and floor_approve:
            ratio = app_approve["p99_ms"] / floor_approve["p99_ms"] if floor_approve["p99_ms"] else float("inf")
            print(f"    approve click ack: app p50 {app_approve['p50_ms']:.1f} ms / "
                  f"p99 {app_approve['p99_ms']:.1f} ms, "
                  f"floor p50 {floor_approve['p50_ms']:.1f} ms / p99 {floor_approve['p99_ms']:.1f} ms: "
                  f"p99 ratio {ratio:.2f} x (target <= {TARGET_RATIO:g} x)")
    print()
    calls, expected = app["provider_calls"], app["provider_calls_expected"]
    print(f"  provider calls seen by the stand-ins (warm-up included): MoonClerk lookups "
          f"{calls['moonclerk_customer_lookups']}/{expected['moonclerk_customer_lookups']}, Poof invoices "
          f"{calls['poof_invoices_created']}/{expected['poof_invoices_created']}, Stripe refunds "
          f"{calls['stripe_refunds_created']}/{expected.get('stripe_refunds_created', 0)}; app log: "
          f"{app['bolt_no_ack_warnings']} \"didn't call ack()\" warnings from Bolt")
    if app["bolt_no_ack_warnings"]:
        print("  (each is a click whose listener had not even started within Bolt's 3 s ack timeout because all "
              f"{BOLT_THREADS} listener threads were waiting on providers: Bolt gave up, answered 404 "
              "\"unhandled request\" after ~3 s, so Slack shows the approver an error, and the queued listener "
              "still ran the provider action later)")
    print()
    print("targets (informational, not asserted)")
    for target in report["targets"]:
        print(f"  [{'met' if target['met'] else 'NOT met':>7}] {target['phase']}: {target['target']}: "
              f"{target['measured']}")


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.actions", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clicks", type=int, default=60, help="clicks in the paced phase (default 60)")
    parser.add_argument("--rate", type=float, default=5.0, help="paced phase clicks a second (default 5)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help=f"clicks sent at once in the burst phase (default 32; {BOLT_THREADS} listener threads)")
    parser.add_argument("--light-clicks", type=int, default=10,
                        help="clicks in the light phase, at half the threads' capacity (default 10; 0 skips it)")
    parser.add_argument("--provider-delay", type=float, default=5.0,
                        help="seconds MoonClerk and Poof take to answer (default 5)")
    parser.add_argument("--kind", choices=["mix", *KINDS], default="mix",
                        help="note clicks, invoice submissions, approve clicks, or all three in turn (default mix)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="the app's log level (default INFO, as `finance-desk serve`)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, server logs)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--serve-app", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_app:
        _serve_app(args.serve_app, args.log_level)
        return
    if args.serve_floor:
        _serve_floor(args.serve_floor)
        return
    if min(args.clicks, args.concurrency, args.light_clicks) < 0 or args.rate <= 0 or args.provider_delay < 0:
        parser.error("counts must be >= 0, --rate > 0 and --provider-delay >= 0")
    args.prefix = f"call_click_{os.urandom(4).hex()}"

    # SIGTERM must unwind through the finally blocks that stop the servers and the stand-ins.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="fd-bench-actions-"))
    slack_secret = os.urandom(16).hex()
    dialnexa_secret = os.urandom(16).hex()
    standins: StandIns | None = None
    try:
        standins = StandIns.start()
        env = app_env(standins, f"sqlite:///{workdir / 'app.db'}", slack_secret, dialnexa_secret,
                      args.provider_delay)
        planned = plan(args)

        def clicks_for(kinds: list[str], label: str) -> list[Click]:
            # Each click gets its seeded case (card values, opened modal) once the app has made it.
            return [Click(Case(call_id="", kind=k, card_ts="", buttons={}), f"{label}-{i:05d}")
                    for i, k in enumerate(kinds)]

        warmup = clicks_for(_kinds(args.kind, WARMUP_CASES, 0), "warm")
        phases = [Phase(name, description, clicks_for(kinds, name), offsets)
                  for name, description, kinds, offsets in planned]
        if not args.json:
            print("running app (seeding cases, then the phases) ...", file=sys.stderr, flush=True)
        app = run_app(args, standins, env, workdir, phases, warmup, slack_secret)
        if not args.json:
            print("running floor ...", file=sys.stderr, flush=True)
        floor = run_floor(args, standins, env, workdir, phases, warmup, slack_secret)
    finally:
        if standins is not None:
            standins.stop()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for phase, result in zip(phases, app["phases"], strict=True):
        hold = sum(_hold(c.case.kind, args.provider_delay) for c in phase.clicks) / max(1, len(phase.clicks))
        span = phase.offsets[-1] - phase.offsets[0] if len(phase.offsets) > 1 else 0.0
        rate = (len(phase.offsets) - 1) / span if span else float(len(phase.offsets))
        # A burst offers all its clicks at once: every one of them wants a thread for `hold` seconds.
        result["offered_threads"] = round(len(phase.clicks) if not span else min(len(phase.clicks), rate * hold), 1)
    if not args.keep:
        app["log"] = floor["log"] = None
    report: dict[str, Any] = {
        "config": {
            "clicks": args.clicks, "rate": args.rate, "concurrency": args.concurrency,
            "light_clicks": args.light_clicks, "provider_delay_s": args.provider_delay, "kind": args.kind,
            "bolt_listener_threads": BOLT_THREADS, "cpus": os.cpu_count(), "python": platform.python_version(),
            "uvicorn": uvicorn.__version__, "app_log_level": args.log_level,
        },
        "app": app,
        "floor": floor,
        "targets": _targets(app, floor),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
