"""Replicas on one PostgreSQL: two `finance-desk serve` processes and one `worker`, one serve killed with
SIGKILL mid-burst and started again. Every billing call still gets exactly one card, every due reminder
fires once, and no delivery is lost.

Real processes (`python -m bot …`), real HTTP: signed DialNexa deliveries from httpx, the Slack and
MoonClerk stand-ins. SQLite is skipped: one file is not a database that replicas share.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import pytest
from sqlalchemy import Engine, text

from bot.standins import MoonClerkStandIn, SlackStandIn
from storage.db import make_engine
from storage.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "bot" / "samples").glob("0*.json"))
SECRET = "whsec_fake_replicas"
CHANNEL = "C0FINANCE"
CALLS = 300
DEADLINE = re.compile(r'"follow_up_deadline":"[^"]*"')
KILL_AFTER = 100  # calls answered before serve A is killed
RESTART_AFTER = 160  # calls answered before it is started again

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bodies() -> list[tuple[str, bytes]]:
    """CALLS distinct deliveries cycling through the samples, unpadded (small bodies keep the test fast).
    A promised follow-up an hour ago (within triage's one day of plausible past) makes its "due" reminder
    due at once; the later ones (overdue, approval nudges) stay pending and must not fire."""
    promised = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    templates = []
    for path in SAMPLES:
        sample = json.loads(path.read_text(encoding="utf-8"))
        original = sample["payload"]["call"]["id"] if "payload" in sample else sample["call_id"]
        compact = json.dumps(sample, separators=(",", ":"))
        templates.append((original, DEADLINE.sub(f'"follow_up_deadline":"{promised}"', compact)))
    bodies = []
    for n in range(CALLS):
        original, template = templates[n % len(templates)]
        call_id = f"call_replica_{n:04d}"
        bodies.append((call_id, template.replace(original, call_id).encode()))
    return bodies


def _signed(body: bytes) -> dict[str, str]:
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-DialNexa-Signature": f"sha256={mac}", "Content-Type": "application/json"}


class Replica:
    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.args, self.env, self.log, self.port = args, env, log, port
        self.process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        # A file, not a pipe: nobody reads during the burst, and a full pipe would block the process.
        self._out = self.log.open("ab")
        command = [sys.executable, "-m", "bot", *self.args] + (["--port", str(self.port)] if self.port else [])
        self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=self._out, stderr=self._out)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self._out is not None:
            self._out.close()
        return code


async def _until_healthy(client: httpx.AsyncClient, replica: Replica, deadline: float) -> None:
    while time.monotonic() < deadline:
        assert replica.process is not None and replica.process.poll() is None, replica.log.read_text()[-3000:]
        try:
            if (await client.get(f"{replica.url}/healthz", timeout=1)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{replica.args[0]} did not become healthy: {replica.log.read_text()[-3000:]}")


@pytest.fixture
def pg_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        pytest.skip("replicas share a PostgreSQL database; one SQLite file is not that")
    return db_url


@pytest.fixture
def standins() -> Iterator[tuple[SlackStandIn, MoonClerkStandIn]]:
    with SlackStandIn() as slack, MoonClerkStandIn(api_key="mc_fake") as moonclerk:
        yield slack, moonclerk


def _env(db_url: str, slack: SlackStandIn, moonclerk: MoonClerkStandIn) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "FINANCE_", "MOONCLERK_", "POOF_", "SMTP_", "MAIL_", "DIALNEXA_"))}
    env.update(DATABASE_URL=db_url, DIALNEXA_WEBHOOK_SECRETS=SECRET, SLACK_BOT_TOKEN="xoxb-fake",
               SLACK_SIGNING_SECRET="fake-signing", FINANCE_CHANNEL=CHANNEL, SLACK_API_URL=f"{slack.url}/api/",
               # No per-channel spacing: the stand-in has no rate limit, and 250 cards at 1/s would take minutes.
               SLACK_POST_INTERVAL_SECONDS="0", MOONCLERK_API_KEY="mc_fake", MOONCLERK_API_URL=moonclerk.url,
               FINANCE_DESK_POLICY=str(ROOT / "tests" / "data" / "policy.toml"), LOG_FORMAT="json")
    return env


async def _burst(servers: list[Replica], bodies: list[tuple[str, bytes]], killed: Replica) -> dict[str, int]:
    """Each call to one serve, then its duplicate to the other; a refused or dropped delivery is sent again
    to the other serve, as DialNexa retries. Serve A is killed and restarted while the burst runs."""
    answered = 0
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(8)
    restarted = asyncio.Event()

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16), timeout=10) as client:

        async def deliver(first: int, body: bytes) -> None:
            target = first
            for _ in range(200):
                try:
                    reply = await client.post(f"{servers[target].url}/webhooks/dialnexa", content=body,
                                              headers=_signed(body))
                    statuses[reply.status_code] += 1
                    if reply.status_code < 500:
                        assert reply.status_code == 200, reply.text
                        return
                except httpx.TransportError:
                    statuses[0] += 1
                target = 1 - target
                await asyncio.sleep(0.02)
            raise AssertionError("a delivery was never accepted")

        async def one(n: int, body: bytes) -> None:
            nonlocal answered
            async with gate:
                await deliver(n % 2, body)
                await deliver(1 - n % 2, body)  # the duplicate, to the other serve
            answered += 1

        async def kill_and_restart() -> None:
            while answered < KILL_AFTER:
                await asyncio.sleep(0.01)
            assert killed.process is not None
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait()
            while answered < RESTART_AFTER:
                await asyncio.sleep(0.01)
            killed.start()
            await _until_healthy(client, killed, time.monotonic() + 30)
            restarted.set()

        chaos = asyncio.create_task(kill_and_restart())
        await asyncio.gather(*(one(n, body) for n, (_, body) in enumerate(bodies)))
        await chaos
        assert restarted.is_set()
    return {str(k): v for k, v in statuses.items()}


def _expire_leases_of(engine: Engine, pid: int) -> None:
    """The clock moves past the SIGKILLed process's leases (60 s) instead of the test waiting them out: its
    claimed rows become claimable by the live replicas, exactly as they would a minute later."""
    past = datetime(2000, 1, 1, tzinfo=UTC)
    pattern = f"%:{pid}:%"
    with engine.begin() as connection:
        connection.execute(text("UPDATE outbox SET claim_expires_at = :past WHERE claimed_by LIKE :p "
                                "AND sent_at IS NULL"), {"past": past, "p": pattern})
        connection.execute(text("UPDATE reminders SET claim_expires_at = :past WHERE claimed_by LIKE :p "
                                "AND status = 'claimed'"), {"past": past, "p": pattern})


def _settled(engine: Engine) -> bool:
    with engine.connect() as connection:
        unsent = connection.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL"))
        due = connection.execute(text("SELECT count(*) FROM reminders WHERE status IN ('pending', 'claimed') "
                                      "AND due_at <= :now"), {"now": datetime.now(UTC)})
        return unsent.scalar_one() == 0 and due.scalar_one() == 0


def test_two_serves_and_a_worker_survive_a_sigkill_mid_burst(
    pg_url: str, standins: tuple[SlackStandIn, MoonClerkStandIn], tmp_path: Path,
) -> None:
    slack, moonclerk = standins
    engine = make_engine(pg_url)
    upgrade(engine)  # once, before the replicas start: they then find the schema at head
    env = _env(pg_url, slack, moonclerk)
    serve_a = Replica(["serve"], env, tmp_path / "serve-a.log", _free_port())
    serve_b = Replica(["serve"], env, tmp_path / "serve-b.log", _free_port())
    worker = Replica(["worker"], env, tmp_path / "worker.log")
    replicas = [serve_a, serve_b, worker]
    bodies = _bodies()
    try:
        for replica in replicas:
            replica.start()
        first_a = serve_a.pid

        async def ready_then_burst() -> dict[str, int]:
            async with httpx.AsyncClient() as client:
                deadline = time.monotonic() + 30
                await asyncio.gather(*(_until_healthy(client, serve, deadline) for serve in (serve_a, serve_b)))
            return await _burst([serve_a, serve_b], bodies, serve_a)

        statuses = asyncio.run(ready_then_burst())
        assert sum(statuses.values()) >= 2 * CALLS
        _expire_leases_of(engine, first_a)
        deadline = time.monotonic() + 30
        while not _settled(engine):
            assert time.monotonic() < deadline, "the outbox and the due reminders did not drain"
            time.sleep(0.2)

        with engine.connect() as connection:
            cases = {row.call_id: (row.id, row.is_billing) for row in connection.execute(
                text("SELECT id, call_id, is_billing FROM cases"))}
            deliveries = Counter((row.call_id, row.outcome) for row in connection.execute(
                text("SELECT call_id, outcome FROM webhook_deliveries")))
            sent_reminders = {row.id: (row.case_id, row.kind) for row in connection.execute(
                text("SELECT id, case_id, kind FROM reminders WHERE status = 'sent'"))}
            statuses_of_reminders = connection.execute(text(
                "SELECT kind, status, cancel_reason, count(*) FROM reminders GROUP BY 1, 2, 3")).all()
            stuck = connection.execute(text("SELECT count(*) FROM reminders WHERE status IN ('pending', 'claimed') "
                                            "AND due_at <= :now"), {"now": datetime.now(UTC)}).scalar_one()

        # No delivery lost: every call stored once (the rest of its deliveries answered as duplicates).
        assert set(cases) == {call_id for call_id, _ in bodies}
        assert all(deliveries[(call_id, "stored")] == 1 for call_id in cases), "a call stored twice or never"

        messages = slack.all_messages(CHANNEL)
        keys = Counter(m.get("metadata", {}).get("event_payload", {}).get("outbox_key") for m in messages)
        # Nothing posted twice: each outbox row's key is on at most one message.
        assert max(keys.values()) == 1, [k for k, c in keys.items() if c > 1][:5]
        # Exactly one card per billing call, none for the others.
        cards = Counter(m["metadata"]["event_payload"]["call_id"] for m in messages
                        if m.get("thread_ts", m["ts"]) == m["ts"] and str(m.get("metadata", {}).get("event_payload", {})
                                                        .get("outbox_key", "")).startswith("card:"))
        billing = {call_id for call_id, (_, is_billing) in cases.items() if is_billing}
        assert billing and len(billing) < len(cases)
        assert set(cards) == billing
        assert set(cards.values()) == {1}
        # Every due reminder fired once: sent in the database, one thread reply each in Slack.
        assert stuck == 0
        assert sent_reminders, f"the samples' deadlines are past: their reminders are due {statuses_of_reminders}"
        fired = Counter(str(k).split(":")[3] for k in keys if str(k).startswith("thread:") and ":reminder:" in str(k))
        assert set(fired) == {str(reminder_id) for reminder_id in sent_reminders}
        assert set(fired.values()) == {1}
    finally:
        codes = [replica.stop() for replica in replicas]
        engine.dispose()
    assert codes == [0, 0, 0], [replica.log.read_text()[-2000:] for replica in replicas]
    for replica in replicas:
        assert "Traceback" not in replica.log.read_text(), replica.log.read_text()[-3000:]
