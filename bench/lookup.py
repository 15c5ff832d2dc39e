"""Customer directory benchmark: lookups and matching at 1,000 / 10,000 / 100,000 MoonClerk customers.

What is measured, per size, against the MoonClerk stand-in answering every request after --latency
seconds (default 0.1: "100 ms per page"), on a fresh migrated database (SQLite in a temp dir, or
--database-url):

  - full sync: the real `DirectorySyncer` from empty, at its production pace (--pace, 0.1 s between
    pages), until the pass completes;
  - lookup, from slash command to answer: `finance-desk serve` (the real CLI command, its own
    subprocess, pointed at the Slack and MoonClerk stand-ins and the synced database) gets a signed
    `/finance lookup <term>` on `POST /slack/events`, as Slack sends it (an email escaped as
    `<mailto:…|…>`); the clock runs from the moment the request is sent until the answer arrives at
    the command's `response_url` on the Slack stand-in (ack, directory query, the direct MoonClerk
    reads that confirm each customer shown and fetch its latest payments, open cases, Block Kit, the
    POST to Slack). Emails, phones and full names of random customers; p50 / p90 / p99; the first
    (cold: a fresh process, nothing cached) reported apart, and the ack (the HTTP answer) too;
  - the floor for that lookup: a bare Bolt app on the same server stack (its own subprocess) whose
    /finance listener acks, reads the customer by ID and its payments side by side (the one
    provider round trip any confirmed answer costs), and answers through `response_url`; the same
    customers, looked up by ID;
  - case stored → matched: a billing case is written as ingest writes it (match pending) and the
    `MatchWorker` woken, as ingest wakes it; time until the match is stored, p50 / p99, one case at a
    time and then a burst of 20 at once;
  - CPU per match: `compute_match` on this thread (time.thread_time: candidates, scoring, the
    confirming read's client work; the stand-in's threads not counted), mean and p99;
  - database size per 10,000 customers (SQLite: file growth after VACUUM; PostgreSQL: the table and
    its indexes).

`listen_overflows` counts the connections the kernel dropped because a listening socket's accept
queue was full during the lookups or the matching (Linux /proc/net/netstat, the whole network namespace): each drop
costs its client a SYN retransmit, 1 s later. A lookup showing five customers opens ten connections to
MoonClerk at once; if this is not 0, a stand-in's backlog (not the app) made those lookups take > 1 s.

Run
  python -m bench.lookup                          # 1,000 / 10,000 / 100,000 (~8 minutes, mostly the syncs)
  python -m bench.lookup --sizes 1000,10000 --pace 0
  python -m bench.lookup --database-url postgresql://postgres@127.0.0.1:5432/bench   # tables emptied first
  python -m bench.lookup --json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, delete, text
from sqlmodel import Session, col

from bench import EXAMPLE_POLICY, ROOT, percentile, summarize_ms
from bench.actions import EVENTS_PATH, ServerProcess, serve_bolt, slack_sign
from bot.config import Settings
from bot.lookup.customers import MoonClerkLookup
from bot.lookup.directory import DirectorySyncer
from bot.lookup.matching import CallerFacts
from bot.lookup.review import MatchWorker, compute_match
from bot.standins import MoonClerkStandIn, SlackStandIn
from bot.standins.moonclerk import generated_suffix
from providers.moonclerk import MoonClerkClient
from storage.db import make_engine, session_scope
from storage.directory import DirectoryCustomer, DirectorySync
from storage.migrate import upgrade
from storage.models import Case

START = 1_000_000
FIRSTS = ("Ada", "Ben", "Cleo", "Dev", "Eva", "Finn", "Gus", "Hana", "Ivan", "Jade", "Kai", "Lena", "Milo", "Nia",
          "Omar", "Pia", "Quin", "Rosa", "Sam", "Tara")
LASTS = ("Abbott", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jensen", "Khan", "Lopez",
         "Moreau", "Nakamura", "Okafor", "Patel", "Quinn", "Rossi", "Silva", "Tanaka")
LOOKER = "U0FINANCE1"  # an approver in policy.example.toml, so /finance answers
CHANNEL = "C0FINANCE"
SIGNING_SECRET = "bench-lookup-signing-secret"
LOOKING_UP = "Looking up in MoonClerk"
TARGET_P99_MS = 300.0  # issue 15: lookup p99 under 300 ms at 100,000 customers, cold or warm


def name_of(n: int) -> str:  # as MoonClerkStandIn.add_generated names customer n
    return f"{FIRSTS[n % 20]} {LASTS[(n // 20) % 20]} {generated_suffix(n)}"


def _size_bytes(engine: Engine, path: Path | None) -> int:
    if path is not None:
        engine.dispose()  # the engine's connections begin IMMEDIATE transactions; VACUUM needs none
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.execute("VACUUM")
        return path.stat().st_size
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_total_relation_size('directory_customers')")).scalar() or 0)


def _reset(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.execute(delete(DirectoryCustomer))
        session.execute(delete(DirectorySync))
        session.execute(delete(Case).where(col(Case.call_id).startswith("bench_")))


def listen_overflows() -> int | None:
    """Connections dropped so far because an accept queue was full (Linux only; None elsewhere)."""
    try:
        lines = Path("/proc/net/netstat").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for names, values in itertools.pairwise(lines):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            found = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(found.get("ListenOverflows", 0))
    return None


# ------------------------------------------------------------------------------------------ servers


def server_env(database_url: str, slack: SlackStandIn, moonclerk: MoonClerkStandIn) -> dict[str, str]:
    """`finance-desk serve` configured by environment, as in production, against the stand-ins."""
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    own = {name.upper() for name in Settings.model_fields}  # nothing from this shell's configuration leaks in
    return {
        **{key: value for key, value in os.environ.items() if key.upper() not in own},
        "PYTHONPATH": pythonpath,
        "DATABASE_URL": database_url,
        "DIALNEXA_WEBHOOK_SECRETS": "bench-dialnexa-secret",
        "FINANCE_DESK_POLICY": str(EXAMPLE_POLICY),
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "FINANCE_CHANNEL": CHANNEL,
        "SLACK_API_URL": f"{slack.url}/api/",
        "MOONCLERK_API_KEY": moonclerk.api_key,
        "MOONCLERK_API_URL": moonclerk.url,
    }


def _serve_floor(port: int) -> None:
    """Child entry point (`--serve-floor PORT`): the least a confirmed lookup answer can cost.

    A bare Bolt app on the app's server stack (Starlette route -> run_in_threadpool(App.dispatch) ->
    uvicorn) whose /finance listener acks as the app does, then, off Bolt's threads, reads the customer
    by ID and its payments side by side with the app's MoonClerk client, and answers through
    response_url: no directory, no database, no Block Kit."""
    from slack_bolt import Ack, App, Respond
    from slack_sdk import WebClient

    from bench.actions import _exit_with_parent

    _exit_with_parent()
    logging.basicConfig(level=logging.WARNING)
    client = MoonClerkClient(os.environ["MOONCLERK_API_KEY"], os.environ["MOONCLERK_API_URL"])
    background = ThreadPoolExecutor(max_workers=8, thread_name_prefix="floor-answer")
    reads = ThreadPoolExecutor(max_workers=16, thread_name_prefix="floor-read")
    bolt = App(client=WebClient(token="xoxb-bench", base_url=os.environ["SLACK_API_URL"], timeout=10),
               signing_secret=os.environ["SLACK_SIGNING_SECRET"], token_verification_enabled=False,
               listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="bolt"),
               logger=logging.getLogger("bench.lookup.floor"))

    def answer(customer_id: int, respond: Respond) -> None:
        payments = reads.submit(lambda: list(itertools.islice(client.list_payments(customer_id=customer_id), 1000)))
        customer = client.get_customer(customer_id)
        respond(response_type="ephemeral", replace_original=True,
                text=f"{customer.name}: {len(payments.result())} payment(s)")

    def finance(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        ack(response_type="ephemeral", text=f"{LOOKING_UP}…")
        background.submit(answer, int(str(command["text"]).split()[-1]), respond)

    bolt.command("/finance")(finance)

    serve_bolt(bolt, port)


def slash_command(text_typed: str, response_url: str) -> str:
    """The form body Slack posts for `/finance <text>` (should_escape: an email arrives as <mailto:…|…>)."""
    form = {"token": "unused", "team_id": "T0FIN", "team_domain": "finance", "channel_id": CHANNEL,
            "channel_name": "finance", "user_id": LOOKER, "user_name": "finance1", "command": "/finance",
            "text": text_typed, "api_app_id": "A0BENCH", "response_url": response_url,
            "trigger_id": f"{time.time():.6f}.bench"}
    return urllib.parse.urlencode(form)


def _answered(slack: SlackStandIn, name: str) -> list[dict[str, Any]] | None:
    return slack.responses_for(name) or None


def lookups(server: ServerProcess, slack: SlackStandIn, texts: list[str],
            check: Callable[[int, str], None]) -> tuple[list[float], list[float]]:
    """Send each slash command (one at a time) and wait for its answer at response_url.

    Returns (command sent -> answer posted, command sent -> ack) in seconds, in order."""
    answers: list[float] = []
    acks: list[float] = []
    run = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for index, typed in enumerate(texts):
            name = f"lookup-{run}-{index}"
            body = slash_command(typed, slack.response_url(name))
            headers = slack_sign(body, SIGNING_SECRET)
            started = time.monotonic()
            reply = http.post(EVENTS_PATH, content=body, headers=headers)
            acked = time.monotonic()
            posted = slack.wait_until(partial(_answered, slack, name), 30, f"no answer to /finance {typed}")
            answers.append(time.monotonic() - started)
            acks.append(acked - started)
            assert reply.status_code == 200 and LOOKING_UP in reply.text, (reply.status_code, reply.text[:200])
            check(index, json.dumps(posted[-1], ensure_ascii=False))
    return answers, acks


def _latencies(answers: list[float], acks: list[float]) -> dict[str, Any]:
    return {"cold_ms": round(answers[0] * 1000, 1), "warm": summarize_ms(answers[1:]),
            "ack": summarize_ms(acks[1:])}


# ------------------------------------------------------------------------------------------ one size


def run_size(size: int, args: argparse.Namespace, url: str, sqlite_path: Path | None,
             workdir: Path) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    _reset(engine)
    before = _size_bytes(engine, sqlite_path)
    rng = random.Random(size)
    with MoonClerkStandIn(seed=False) as standin, SlackStandIn() as slack:
        standin.add_generated(size, start_id=START)
        standin.latency = args.latency
        client = MoonClerkClient(standin.api_key, standin.url)

        started = time.monotonic()
        report = DirectorySyncer(engine, client, pace=args.pace).run()
        sync_seconds = time.monotonic() - started
        assert report.finished, report
        size_bytes = _size_bytes(engine, sqlite_path) - before

        # Lookups over HTTP, against `finance-desk serve` and then the floor, the same customers each.
        picked = [(rng.randrange(size), rng.randrange(3)) for _ in range(args.lookups)]
        terms = [(f"<mailto:c{n}@example.com|c{n}@example.com>", f"+1415{n:07d}", name_of(n))[kind]
                 for n, kind in picked]

        def found(index: int, answer: str) -> None:
            n = picked[index][0]
            assert "No MoonClerk customer" not in answer and name_of(n) in answer, (terms[index], answer[:300])

        env = server_env(url, slack, standin)
        overflows = listen_overflows()
        app = ServerProcess("app", lambda port: [sys.executable, "-m", "bench.actions", "--serve-app", str(port),
                                                 "--log-level", "WARNING"], env, workdir / f"app-{size}.log")
        try:
            app.start()
            app_answers, app_acks = lookups(app, slack, [f"lookup {term}" for term in terms], found)
        finally:
            app.stop()
        app_overflows = None if overflows is None else (listen_overflows() or 0) - overflows
        overflows = listen_overflows()
        floor = ServerProcess("floor", lambda port: [sys.executable, "-m", "bench.lookup", "--serve-floor",
                                                     str(port)], env, workdir / f"floor-{size}.log")
        try:
            floor.start()
            floor_answers, floor_acks = lookups(floor, slack, [f"lookup {START + n}" for n, _ in picked], found)
        finally:
            floor.stop()
        floor_overflows = None if overflows is None else (listen_overflows() or 0) - overflows

        # Case stored → matched, through the real worker woken as ingest wakes it.
        lookup = MoonClerkLookup(client)
        worker = MatchWorker(engine, lookup, None, poll_seconds=30).start()
        time.sleep(0.2)

        def store(call_id: str, n: int) -> int:
            now = datetime.now(UTC)
            with session_scope(engine) as session:
                case = Case(call_id=call_id, is_billing=True, kind="refund", created_at=now, updated_at=now,
                            email=f"c{n}@example.com", customer_name=name_of(n), match_status="pending")
                session.add(case)
                session.flush()
                assert case.id is not None
                return case.id

        def wait_matched(ids: list[int], started: float) -> list[float]:
            done: dict[int, float] = {}
            while len(done) < len(ids):
                with Session(engine) as session:
                    for case_id in ids:
                        if case_id not in done:
                            case = session.get(Case, case_id)
                            if case is not None and case.match_status != "pending":
                                assert case.match_status == "matched", case.match_evidence
                                done[case_id] = time.monotonic() - started
                if time.monotonic() - started > 30:
                    raise TimeoutError("cases were not matched within 30 s")
                time.sleep(0.002)
            return list(done.values())

        overflows = listen_overflows()
        one_by_one = []
        for i in range(args.matches):
            case_id = store(f"bench_{size}_{i}", rng.randrange(size))
            started = time.monotonic()
            worker.wake()
            one_by_one += wait_matched([case_id], started)
        ids = [store(f"bench_{size}_burst_{i}", rng.randrange(size)) for i in range(20)]
        started = time.monotonic()
        worker.wake()
        burst = wait_matched(ids, started)
        worker.stop()
        match_overflows = None if overflows is None else (listen_overflows() or 0) - overflows

        # CPU per match on this thread.
        cpu = []
        for _ in range(args.matches):
            n = rng.randrange(size)
            facts = CallerFacts.of(email=f"c{n}@example.com", phone=f"+1415{n:07d}", name=name_of(n),
                                   account_id=None, customer_id=None, payment_id=None)
            started = time.thread_time()
            result = compute_match(lookup, facts, engine)
            cpu.append(time.thread_time() - started)
            assert result.customer_id == START + n, result
    engine.dispose()
    cpu.sort()
    app_lookup = _latencies(app_answers, app_acks)
    return {
        "customers": size,
        "full_sync_seconds": round(sync_seconds, 2),
        "pages": report.pages,
        "lookup_slash_to_answer": {**app_lookup, "listen_overflows": app_overflows},
        "lookup_floor": {**_latencies(floor_answers, floor_acks), "listen_overflows": floor_overflows},
        "lookup_p99_target": f"< {TARGET_P99_MS:.0f} ms cold or warm: "
                             + ("met" if max(app_lookup["cold_ms"], app_lookup["warm"]["p99_ms"]) < TARGET_P99_MS
                                else "NOT met"),
        "stored_to_matched_ms": summarize_ms(one_by_one),
        "burst_of_20_to_matched_ms": summarize_ms(burst),
        "matching_listen_overflows": match_overflows,
        "cpu_per_match_ms": {"mean": round(sum(cpu) / len(cpu) * 1000, 2), "p99": round(percentile(cpu, 99) * 1000, 2)},
        "db_bytes_per_10k_customers": int(size_bytes * 10_000 / size),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per MoonClerk request")
    parser.add_argument("--pace", type=float, default=0.1, help="the sync's pause between pages")
    parser.add_argument("--lookups", type=int, default=100)
    parser.add_argument("--matches", type=int, default=50)
    parser.add_argument("--database-url")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (databases, server logs)")
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_floor:
        _serve_floor(args.serve_floor)
        return 0
    if args.lookups < 2 or args.matches < 1:
        parser.error("--lookups must be at least 2 (the first is cold) and --matches at least 1")
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="bench-lookup-"))
    results = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            sqlite_path = None if args.database_url else workdir / f"bench-{size}.db"
            url = args.database_url or f"sqlite:///{sqlite_path}"
            result = run_size(size, args, url, sqlite_path, workdir)
            results.append(result)
            if not args.json:
                print(json.dumps(result), flush=True)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
