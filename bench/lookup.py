"""Customer directory benchmark: lookups and matching at 1,000 / 10,000 / 100,000 MoonClerk customers.

What is measured, per size, against the MoonClerk stand-in answering every request after --latency
seconds (default 0.1: "100 ms per page"), on a fresh migrated database (SQLite in a temp dir, or
--database-url):

  - full sync: the real `DirectorySyncer` from empty, at its production pace (--pace, 0.1 s between
    pages), until the pass completes;
  - lookup: `/finance lookup <term>` from the command text to the finished answer (parse, directory
    query, the direct MoonClerk reads that confirm each customer shown and fetch its latest payments,
    open cases, Block Kit), i.e. the listener's work after its ack, minus Slack's HTTP; emails, phones
    and full names of random customers, p50 / p99; the first (cold: nothing cached) reported apart;
  - case stored → matched: a billing case is written as ingest writes it (match pending) and the
    `MatchWorker` woken, as ingest wakes it; time until the match is stored, p50 / p99, one case at a
    time and then a burst of 20 at once;
  - CPU per match: `compute_match` on this thread (time.thread_time: candidates, scoring, the
    confirming read's client work; the stand-in's threads not counted), mean and p99;
  - database size per 10,000 customers (SQLite: file growth after VACUUM; PostgreSQL: the table and
    its indexes).

Run
  python -m bench.lookup                          # 1,000 / 10,000 / 100,000 (~6 minutes, mostly the syncs)
  python -m bench.lookup --sizes 1000,10000 --pace 0
  python -m bench.lookup --database-url postgresql://postgres@127.0.0.1:5432/bench   # tables emptied first
  python -m bench.lookup --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, text
from sqlmodel import Session, col

from bench import percentile, summarize_ms
from bot.lookup.customers import MoonClerkLookup
from bot.lookup.directory import DirectorySyncer
from bot.lookup.matching import CallerFacts
from bot.lookup.queries import parse_command
from bot.lookup.review import MatchWorker, compute_match
from bot.slack.listeners.commands import FinanceContext, answer
from bot.standins import MoonClerkStandIn
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


def run_size(size: int, args: argparse.Namespace, url: str, sqlite_path: Path | None) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    _reset(engine)
    before = _size_bytes(engine, sqlite_path)
    rng = random.Random(size)
    with MoonClerkStandIn(seed=False) as standin:
        standin.add_generated(size, start_id=START)
        standin.latency = args.latency
        client = MoonClerkClient(standin.api_key, standin.url)

        started = time.monotonic()
        report = DirectorySyncer(engine, client, pace=args.pace).run()
        sync_seconds = time.monotonic() - started
        assert report.finished, report
        size_bytes = _size_bytes(engine, sqlite_path) - before

        # Lookups: a fresh lookup (empty caches) so every answer does its direct reads.
        ctx = FinanceContext(engine=engine, lookup=MoonClerkLookup(client), is_finance=lambda _u: True)
        terms = []
        for _ in range(args.lookups):
            n = rng.randrange(size)
            terms.append(rng.choice([f"c{n}@example.com", f"+1415{n:07d}", name_of(n)]))
        times = []
        for term in terms:
            started = time.monotonic()
            message = answer(ctx, parse_command(f"lookup {term}"), "U0BENCH")
            times.append(time.monotonic() - started)
            assert "No MoonClerk customer" not in json.dumps(message), term
        cold, warm = times[0], times[1:]

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
    return {
        "customers": size,
        "full_sync_seconds": round(sync_seconds, 2),
        "pages": report.pages,
        "lookup_cold_ms": round(cold * 1000, 1),
        "lookup_ms": summarize_ms(warm),
        "stored_to_matched_ms": summarize_ms(one_by_one),
        "burst_of_20_to_matched_ms": summarize_ms(burst),
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="bench-lookup-"))
    results = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            sqlite_path = None if args.database_url else workdir / f"bench-{size}.db"
            url = args.database_url or f"sqlite:///{sqlite_path}"
            result = run_size(size, args, url, sqlite_path)
            results.append(result)
            if not args.json:
                print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
