"""Cards reach Slack through the durable outbox: once per case, through 429s, 5xx, restarts and
several processes. Slack is a real HTTP stand-in on 127.0.0.1; webhooks are signed as DialNexa signs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot import workflow
from bot.ingest import ingest
from bot.policy import Policy
from bot.runtime import Runtime
from bot.slack.delivery import METADATA_EVENT, ChannelPacer, OutboxWorker
from bot.slack.outbox import enqueue_message, enqueue_thread
from bot.slack.service import start_slack
from bot.standins import SlackStandIn
from storage.db import session_scope
from storage.models import Case, OutboxMessage
from tests.clock import Clock
from tests.conftest import WEBHOOK_SECRET, LiveServer, make_settings
from tests.signing import dialnexa_headers, dumps
from tests.waiting import until

SAMPLES = Path(__file__).resolve().parents[1] / "bot" / "samples"
CHANNEL = "C0FINANCE"
ROOT = Path(__file__).resolve().parents[1]




def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def store(engine: Engine, policy: Policy, payload: dict[str, Any], now: datetime | None = None) -> None:
    ingest(engine, payload, dumps(payload), policy, now or datetime.now(UTC))


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


def worker(engine: Engine, slack: SlackStandIn, clock: Clock | None = None, **kwargs: Any) -> OutboxWorker:
    from slack_sdk import WebClient

    client = WebClient(token="xoxb-fake", base_url=f"{slack.url}/api/")
    return OutboxWorker(engine, client, CHANNEL, clock=clock or (lambda: datetime.now(UTC)),
                        pacer=ChannelPacer(interval=0), **kwargs)


def drain(outbox: OutboxWorker, clock: Clock | None = None, rounds: int = 20) -> None:
    for _ in range(rounds):
        if not outbox.run_once() and clock is None:
            return
        if clock is not None:
            clock.advance(5)


def cards_for(slack: SlackStandIn, call_id: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages(CHANNEL)
            if (m.get("metadata") or {}).get("event_payload", {}).get("call_id") == call_id]


def case_of(engine: Engine, call_id: str) -> Case:
    with Session(engine) as session:
        return session.exec(select(Case).where(Case.call_id == call_id)).one()


def test_one_card_per_case_under_duplicate_webhooks(runtime: Runtime, slack: SlackStandIn) -> None:
    runtime.settings = make_settings(
        str(runtime.engine.url.render_as_string(hide_password=False)),
        slack_bot_token=SecretStr("xoxb-fake"), slack_signing_secret=SecretStr("signing"),
        finance_channel=CHANNEL, slack_api_url=f"{slack.url}/api/", slack_post_interval_seconds=0,
    )
    service = start_slack(runtime, poll_seconds=0.05)
    server = LiveServer(runtime).start()
    try:
        body = dumps(sample("01_refund.json"))
        for _ in range(5):
            response = httpx.post(f"{server.url}/webhooks/dialnexa", content=body,
                                  headers=dialnexa_headers(body, WEBHOOK_SECRET))
            assert response.status_code == 200
        late = dumps({"event_type": "call_ended", "payload": {"call": {"id": "call_demo_refund_0001",
                                                                      "status": "completed", "duration": 300}}})
        httpx.post(f"{server.url}/webhooks/dialnexa", content=late, headers=dialnexa_headers(late, WEBHOOK_SECRET))
        non_billing = dumps(sample("05_not_billing.json"))
        httpx.post(f"{server.url}/webhooks/dialnexa", content=non_billing,
                   headers=dialnexa_headers(non_billing, WEBHOOK_SECRET))
        slack.wait_for_messages(CHANNEL, 1)
        until(lambda: case_of(runtime.engine, "call_demo_refund_0001").slack_ts, 5)
    finally:
        server.stop()
        service.stop()
    assert len(cards_for(slack, "call_demo_refund_0001")) == 1
    assert cards_for(slack, "call_demo_appointment_0005") == []  # non-billing calls are stored, not surfaced
    card = cards_for(slack, "call_demo_refund_0001")[0]
    assert card["text"] and card["blocks"]
    assert case_of(runtime.engine, "call_demo_refund_0001").slack_ts == card["ts"]


def test_429_and_5xx_delay_a_card_but_never_lose_or_duplicate_it(engine: Engine, policy: Policy,
                                                                  slack: SlackStandIn) -> None:
    clock = Clock()
    store(engine, policy, sample("02_dispute.json"), clock.now)
    slack.fail_next("chat.postMessage", 429, headers={"Retry-After": "30"})
    slack.fail_next("chat.postMessage", 503)
    slack.fail_next("chat.postMessage", 500)
    outbox = worker(engine, slack, clock)
    outbox.run_once()
    assert cards_for(slack, "call_demo_dispute_0002") == []
    clock.advance(10)
    assert outbox.run_once() == 0  # Retry-After is honoured: nothing is due before 30 s
    clock.advance(25)
    outbox.run_once()  # 503 → backoff
    clock.advance(60)
    outbox.run_once()  # 500 → backoff
    clock.advance(60)
    outbox.run_once()
    assert len(slack.calls("chat.postMessage")) == 4
    assert len(cards_for(slack, "call_demo_dispute_0002")) == 1
    with Session(engine) as session:
        row = session.exec(select(OutboxMessage)).one()
    assert row.sent_at is not None and row.failed_at is None


def test_restart_between_commit_and_post_still_posts_once(engine: Engine, policy: Policy,
                                                          slack: SlackStandIn) -> None:
    # The process that stored the case died before any worker ran; a new process picks it up.
    store(engine, policy, sample("03_vip_failed_renewal.json"))
    first = worker(engine, slack)
    drain(first)
    second = worker(engine, slack)  # "after the restart"
    drain(second)
    assert len(cards_for(slack, "call_demo_vip_renewal_0003")) == 1


def test_crash_after_post_before_saving_ts_does_not_post_twice(engine: Engine, policy: Policy,
                                                               slack: SlackStandIn, db_url: str) -> None:
    store(engine, policy, sample("01_refund.json"))
    slack.delay("chat.postMessage", 1.0)
    env = _worker_env(db_url, slack)
    process = subprocess.Popen([sys.executable, "-m", "bot", "worker", "--drain"], env=env, cwd=ROOT)
    try:
        slack.wait_for("chat.postMessage", timeout=30)
        process.kill()  # dies while Slack is still answering: the card is posted, the ts never saved
    finally:
        process.wait(10)
    slack.wait_until(lambda: cards_for(slack, "call_demo_refund_0001") or None, 5)
    slack.delay("chat.postMessage", None)
    assert case_of(engine, "call_demo_refund_0001").slack_ts is None
    clock = Clock()
    clock.now = datetime.now(UTC) + timedelta(minutes=5)  # past the dead worker's lease
    drain(worker(engine, slack, clock), clock, rounds=3)
    assert len(cards_for(slack, "call_demo_refund_0001")) == 1
    assert case_of(engine, "call_demo_refund_0001").slack_ts == cards_for(slack, "call_demo_refund_0001")[0]["ts"]


def test_updates_edit_the_same_message_and_history_goes_to_its_thread(engine: Engine, policy: Policy,
                                                                       slack: SlackStandIn) -> None:
    store(engine, policy, sample("01_refund.json"))
    outbox = worker(engine, slack)
    drain(outbox)
    case = case_of(engine, "call_demo_refund_0001")
    assert case.id is not None and case.slack_ts is not None
    assert workflow.assign_self(engine, case.id, "U0APPROVER1", datetime.now(UTC)).ok
    drain(outbox)
    updates = slack.calls("chat.update")
    assert len(updates) == 1
    assert (updates[0].json or updates[0].form or {}).get("ts") == case.slack_ts
    assert len(cards_for(slack, "call_demo_refund_0001")) == 1
    replies = [m for m in slack.thread(CHANNEL, case.slack_ts) if m["ts"] != case.slack_ts]
    assert len(replies) == 1 and "<@U0APPROVER1>" in replies[0]["text"]
    assert "U0APPROVER1" in json.dumps(slack.message(CHANNEL, case.slack_ts)["blocks"])


def test_unfixable_slack_error_is_reported_once_and_not_retried_forever(
    engine: Engine, policy: Policy, slack: SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    problems: dict[str, str] = {}
    slack.set_channel_error(CHANNEL, "not_in_channel")
    store(engine, policy, sample("01_refund.json"))
    store(engine, policy, sample("02_dispute.json"))
    outbox = worker(engine, slack, on_problem=problems.__setitem__)
    for _ in range(5):
        outbox.run_once()
    assert len(slack.calls("chat.postMessage")) == 2  # each row tried once, then stopped
    assert list(problems) == ["slack:not_in_channel"] and "/invite" in problems["slack:not_in_channel"]
    assert caplog.text.count("not_in_channel") == 1
    # After the admin fixes it and restarts, the stopped rows are sent.
    slack.set_channel_error(CHANNEL, None)
    restarted = worker(engine, slack)
    restarted._requeue_failed()
    drain(restarted)
    assert len(slack.messages(CHANNEL)) == 2


def test_healthz_reports_degraded_from_any_process(runtime: Runtime, engine: Engine, policy: Policy,
                                                  slack: SlackStandIn) -> None:
    # A worker process (its own Runtime, same database) hits an error no retry fixes ...
    worker_runtime = Runtime(settings=runtime.settings, policy=policy, engine=engine)
    slack.set_channel_error(CHANNEL, "not_in_channel")
    store(engine, policy, sample("01_refund.json"))
    outbox = worker(engine, slack, on_problem=worker_runtime.report_problem,
                    on_recovered=worker_runtime.clear_problem)
    outbox.run_once()
    # ... and the web process's /healthz says so.
    server = LiveServer(runtime).start()
    try:
        body = httpx.get(f"{server.url}/healthz").json()
        assert body["status"] == "degraded" and "not_in_channel" in body["problems"][0]
        assert "/invite" in body["problems"][0]
        # The admin invites the app and restarts: the new worker's first card clears what the old one
        # recorded, though it never saw that error itself.
        slack.set_channel_error(CHANNEL, None)
        restarted = worker(engine, slack, on_problem=worker_runtime.report_problem,
                           on_recovered=worker_runtime.clear_problem)
        restarted._requeue_failed()
        drain(restarted)
        assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    finally:
        server.stop()


def _worker_env(db_url: str, slack: SlackStandIn) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "DATABASE_URL"))}
    env.update(DATABASE_URL=db_url, SLACK_BOT_TOKEN="xoxb-fake", SLACK_SIGNING_SECRET="signing",
               FINANCE_CHANNEL=CHANNEL, SLACK_API_URL=f"{slack.url}/api/", DIALNEXA_WEBHOOK_SECRETS="whsec_x",
               SLACK_POST_INTERVAL_SECONDS="0")
    return env


def test_two_processes_on_one_postgresql_post_each_card_once(engine: Engine, policy: Policy,
                                                             slack: SlackStandIn, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the multi-process guarantee is for PostgreSQL; SQLite is single-host")
    base = sample("02_dispute.json")
    call_ids = [f"call_multi_{n:03d}" for n in range(40)]
    for call_id in call_ids:
        store(engine, policy, {**base, "call_id": call_id})
    slack.delay("chat.postMessage", 0.02)  # widen the race window between the two processes
    env = _worker_env(db_url, slack)
    processes = [subprocess.Popen([sys.executable, "-m", "bot", "worker", "--drain"], env=env, cwd=ROOT)
                 for _ in range(2)]
    for process in processes:
        assert process.wait(120) == 0
    posted = [m["metadata"]["event_payload"]["call_id"] for m in slack.messages(CHANNEL)]
    assert sorted(posted) == sorted(call_ids)
    workers = {r.headers.get("user-agent") for r in slack.calls("chat.postMessage")}
    assert workers  # both processes talked to Slack through the real client


OTHER_CHANNELS = {"card": CHANNEL, "thread reply": CHANNEL, "page": "C0ESCALATE", "review post": "C0REVIEW"}


def ours(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if (m.get("metadata") or {}).get("event_type") == METADATA_EVENT]


@pytest.mark.parametrize("kind", list(OTHER_CHANNELS))
def test_a_message_slack_took_but_whose_answer_was_lost_is_posted_once(
    kind: str, engine: Engine, policy: Policy, slack: SlackStandIn,
) -> None:
    # The worker's clock is the real one here: Slack stamps messages with real time, and the retry looks
    # at the messages posted since its first attempt.
    clock = Clock(datetime.now(UTC))
    store(engine, policy, sample("01_refund.json"), clock.now)
    outbox = worker(engine, slack, clock)
    channel = OTHER_CHANNELS[kind]
    if kind != "card":
        drain(outbox)
        with session_scope(engine) as session:
            case = session.get(Case, case_of(engine, "call_demo_refund_0001").id)
            assert case is not None
            if kind == "thread reply":
                enqueue_thread(session, case, "note:1", "📝 MoonClerk note", clock.now)
            else:
                enqueue_message(session, case, kind, channel, f"🚨 {kind}", clock.now)
    card_ts = case_of(engine, "call_demo_refund_0001").slack_ts

    def posted() -> list[dict[str, Any]]:
        if kind == "thread reply":
            assert card_ts is not None
            return ours(slack.thread(CHANNEL, card_ts)[1:])
        return ours(slack.messages(channel))

    slack.lose_answers("chat.postMessage")
    outbox.run_once()  # Slack posts it, then the connection drops before the answer
    [lost] = posted()
    # A busy channel (or thread): 500 messages from people after the lost one, far past one page.
    for n in range(500):
        slack.add_message(channel, f"chatter {n}", thread_ts=card_ts if kind == "thread reply" else None)
    clock.advance(5)
    drain(outbox, clock, rounds=3)
    assert [m["ts"] for m in posted()] == [lost["ts"]]  # found, not posted again (a card is updated in place)
    with Session(engine) as session:
        row = session.exec(select(OutboxMessage).where(OutboxMessage.kind == ("card" if kind == "card" else
                                                                               "thread" if kind == "thread reply"
                                                                               else "message"))).one()
    assert row.sent_at is not None and row.attempts == 2 and row.first_attempt_at is not None
    assert lost["metadata"]["event_payload"] == {"outbox_key": row.dedup_key, "call_id": "call_demo_refund_0001"}
    if kind == "card":
        assert case_of(engine, "call_demo_refund_0001").slack_ts == lost["ts"]
    method = "conversations.replies" if kind == "thread reply" else "conversations.history"
    looks = [{**call.query, **(call.form or {})} for call in slack.calls(method)]
    # The look-up read only what was posted since the first attempt: a thread oldest first, so the
    # lost reply is on its first page; a channel newest first, page by page back to the lost message.
    assert looks and all(Decimal(look["oldest"]) < Decimal(lost["ts"]) for look in looks)
    assert all(look["include_all_metadata"] == "1" for look in looks)
    if kind != "thread reply":
        assert len(looks) == 3 and looks[-1]["cursor"]


def test_a_retry_never_re_sends_on_a_dropped_connection_by_itself(engine: Engine, policy: Policy,
                                                                   slack: SlackStandIn) -> None:
    # slack_sdk retries a dropped connection once by default; for a post that would mean a second card.
    store(engine, policy, sample("02_dispute.json"))
    slack.lose_answers("chat.postMessage")
    outbox = worker(engine, slack)
    outbox.run_once()
    assert len(slack.calls("chat.postMessage")) == 1
