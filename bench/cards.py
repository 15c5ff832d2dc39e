"""Cases-to-cards benchmark: drain a burst of cases to the Slack stand-in at a per-channel rate.

What is measured
  A burst of --cases billing cases (default 500) is stored through `bot.ingest.ingest` into a
  fresh, migrated SQLite database (sample calls from bot/samples with unique call ids, policy from
  policy.example.toml), which leaves one pending card row per case in the outbox. Then the real
  `OutboxWorker` (slack_sdk `WebClient`, `ChannelPacer(interval=1/rate)`) posts them to
  `SlackStandIn(enforce_rate_limit=True, rate_limit_burst=3, rate_limit_per_second=rate)`, which
  answers 429 + Retry-After like Slack's per-channel chat.postMessage limit. The bench waits until
  every card is in the channel and prints:

  - drain time (worker start to last post) against the ideal (cases - 1) / rate,
  - achieved posts/s and how close that stays to the allowed rate (percent),
  - 429s received (the pacer should keep this at 0), duplicate cards (must be 0) and missing cards,
  - inter-post gaps p50/p99 (from the stand-in's message timestamps),
  - bench-process CPU per card and peak RSS (ru_maxrss; stand-in and worker share this process).

  Slack allows about 1 message a second per channel, so the real-rate run of 500 cases takes
  ~500 s. The default therefore runs a *scaled* channel at 20 posts/s (same burst 3, same pacer
  logic) and prints the projected drain at Slack's real 1/s beside it.

Run
  python -m bench.cards                      # 500 cases, scaled channel at 20/s (~30 s)
  python -m bench.cards --cases 50           # quick check
  python -m bench.cards --rate 1             # Slack's real rate: 500 cases take ~8.5 minutes
  python -m bench.cards --workers 2          # two workers sharing the database (each paces alone)
  python -m bench.cards --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import func
from sqlmodel import Session, select

from bench import EXAMPLE_POLICY, Deliveries, percentile, summarize_ms
from bot.ingest import ingest
from bot.policy import load_policy
from bot.slack.delivery import METADATA_EVENT, ChannelPacer, OutboxWorker
from bot.standins.slack_api import SlackStandIn
from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import OutboxMessage

CHANNEL = "C0FINANCE"
SLACK_RATE = 1.0
BURST = 3


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _store_burst(database_url: str, cases: int) -> dict[str, Any]:
    engine = make_engine(database_url)
    upgrade(engine)
    policy = load_policy(EXAMPLE_POLICY)
    deliveries = Deliveries(billing_only=True)
    billing = 0
    started = time.perf_counter()
    for _ in range(cases):
        delivery = deliveries.next()
        body = json.loads(delivery.body, parse_float=Decimal)
        result = ingest(engine, body, delivery.body, policy, datetime.now(UTC))
        billing += result.is_billing
    elapsed = time.perf_counter() - started
    with Session(engine) as session:
        pending = session.exec(select(func.count()).select_from(OutboxMessage)).one()
    engine.dispose()
    return {"cases": cases, "billing": billing, "outbox_rows": int(pending), "ingest_s": round(elapsed, 2),
            "ingest_per_s": round(cases / elapsed, 1) if elapsed else 0.0}


def _progress(done: int, total: int, started: float) -> None:
    print(f"  ... {done}/{total} cards after {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    database_url = f"sqlite:///{workdir / 'cards.db'}"
    burst = _store_burst(database_url, args.cases)
    expected = burst["outbox_rows"]

    standin = SlackStandIn(enforce_rate_limit=True, rate_limit_burst=BURST, rate_limit_per_second=args.rate).start()
    engine = make_engine(database_url)
    workers = [
        OutboxWorker(
            engine,
            WebClient(token="xoxb-bench", base_url=standin.url + "/api/", timeout=10),
            CHANNEL,
            pacer=ChannelPacer(interval=1.0 / args.rate),
            poll_seconds=1.0,
        )
        for _ in range(args.workers)
    ]
    ideal = (expected - 1) / args.rate
    timeout = args.timeout or ideal * 2 + 60
    drained = True
    try:
        cpu0 = _cpu()
        wall0 = time.time()
        started = time.monotonic()
        for worker in workers:
            worker.start()
        while True:
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                drained = False
                break
            try:
                standin.wait_for_messages(CHANNEL, expected, timeout=min(remaining, 15.0))
                break
            except TimeoutError:
                if not args.json:
                    _progress(len(standin.messages(CHANNEL)), expected, started)
        # Let anything a second worker already had in flight land, so duplicates would show up.
        time.sleep(min(1.0, 2.0 / args.rate))
    finally:
        for worker in workers:
            worker.stop()
        cpu = _cpu() - cpu0
        messages = standin.messages(CHANNEL)
        rate_limited = standin.rate_limited_count
        posts_ok = standin.status_count(200, "/api/chat.postMessage")
        updates = len(standin.calls("/api/chat.update"))
        standin.stop()
        engine.dispose()

    stamps = sorted(float(m["ts"]) for m in messages)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    per_call = Counter(
        (m.get("metadata") or {}).get("event_payload", {}).get("call_id")
        for m in messages
        if (m.get("metadata") or {}).get("event_type") == METADATA_EVENT
    )
    duplicates = sum(n - 1 for n in per_call.values() if n > 1)
    drain = (stamps[-1] - wall0) if stamps else 0.0
    span = (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    steady = (len(stamps) - 1) / span if span else 0.0
    ordered_gaps = sorted(gaps)
    return {
        "config": {"cases": args.cases, "rate_per_s": args.rate, "burst": BURST, "workers": args.workers,
                   "scaled": args.rate != SLACK_RATE, "channel": CHANNEL},
        "burst": burst,
        "drained": drained,
        "cards_posted": len(messages),
        "chat_postMessage_ok": posts_ok,
        "chat_update_calls": updates,
        "rate_limited_429": rate_limited,
        "duplicates": duplicates,
        "missing": max(0, expected - len(per_call)),
        "drain_s": round(drain, 2),
        "ideal_drain_s": round(ideal, 2),
        "first_post_after_s": round(stamps[0] - wall0, 3) if stamps else None,
        "steady_posts_per_s": round(steady, 3),
        "steady_pct_of_rate": round(steady * 100 / args.rate, 1),
        "drain_pct_of_ideal": round(drain * 100 / ideal, 1) if ideal else None,
        "gaps": {**summarize_ms(gaps), "min_ms": round((ordered_gaps[0] if gaps else 0.0) * 1000, 2),
                 "expected_ms": round(1000 / args.rate, 2),
                 "p1_ms": round(percentile(ordered_gaps, 1) * 1000, 2)},
        "cpu_ms_per_card": round(cpu * 1000 / len(messages), 2) if messages else None,
        "projected_drain_at_slack_rate_s": round(expected / SLACK_RATE, 1),
        "projected_drain_at_slack_rate_measured_efficiency_s": (
            round(expected / (SLACK_RATE * steady / args.rate), 1) if steady else None
        ),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def print_report(r: dict[str, Any]) -> None:
    cfg, burst, gaps = r["config"], r["burst"], r["gaps"]
    label = f"SCALED stand-in channel at {cfg['rate_per_s']:g}/s" if cfg["scaled"] else "Slack's real rate, 1/s"
    print(f"finance-desk cards benchmark: {cfg['cases']} cases -> {label} "
          f"(burst {cfg['burst']}, {cfg['workers']} worker{'s' if cfg['workers'] > 1 else ''}, SQLite)")
    print(f"  burst stored via ingest(): {burst['cases']} cases, {burst['billing']} billing, "
          f"{burst['outbox_rows']} outbox rows in {burst['ingest_s']} s ({burst['ingest_per_s']}/s)")
    print(f"  drained:            {'yes' if r['drained'] else 'NO (timed out)'}: {r['cards_posted']} cards posted")
    print(f"  drain time:         {r['drain_s']:.1f} s (ideal at {cfg['rate_per_s']:g}/s: {r['ideal_drain_s']:.1f} s; "
          f"first post after {r['first_post_after_s']} s)")
    print(f"  achieved rate:      {r['steady_posts_per_s']:.2f} posts/s between first and last post = "
          f"{r['steady_pct_of_rate']:.1f}% of the allowed {cfg['rate_per_s']:g}/s; "
          f"drain took {r['drain_pct_of_ideal']:.1f}% of the ideal")
    print(f"  429s received:      {r['rate_limited_429']}")
    print(f"  duplicate cards:    {r['duplicates']}   missing cards: {r['missing']}   "
          f"chat.update calls: {r['chat_update_calls']}")
    print(f"  inter-post gap:     p50 {gaps['p50_ms']:.1f} ms, p99 {gaps['p99_ms']:.1f} ms, "
          f"min {gaps['min_ms']:.1f} ms, max {gaps['max_ms']:.1f} ms (pacer interval {gaps['expected_ms']:.1f} ms)")
    print(f"  bench process:      {r['cpu_ms_per_card']} ms CPU per card (worker + stand-in), "
          f"peak RSS {r['peak_rss_mb']} MB")
    if cfg["scaled"]:
        print(f"  projected at Slack's real 1/s: {r['projected_drain_at_slack_rate_s']:.0f} s "
              f"({r['projected_drain_at_slack_rate_s'] / 60:.1f} min) for {burst['outbox_rows']} cards; "
              f"at the efficiency measured here {r['projected_drain_at_slack_rate_measured_efficiency_s']} s. "
              f"Run `python -m bench.cards --rate 1` to measure it.")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=500, help="burst size (default 500)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="per-channel posts/s the stand-in allows and the pacer keeps to "
                             "(default 20: a scaled channel; Slack's real rate is 1)")
    parser.add_argument("--workers", type=int, default=1, help="outbox workers sharing the database (default 1)")
    parser.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds "
                        "(default: twice the ideal drain + 60 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    args = parser.parse_args()
    if args.cases < 1 or args.rate <= 0 or args.workers < 1:
        parser.error("--cases and --workers must be >= 1 and --rate > 0")
    # The worker logs 429s at INFO and anything fatal at ERROR; keep the report readable.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM must unwind through the finally blocks that stop the workers and remove the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="fd-bench-cards-"))
    try:
        report = run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
