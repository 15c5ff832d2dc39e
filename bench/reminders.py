"""Reminder scheduler benchmark: 10,000 pending reminders in the database.

What is measured
  A fresh, migrated database (SQLite in a temp dir, or --database-url) gets --cases cases with a card
  in Slack and --reminders pending reminders spread over them. --due of them fall due over the next
  --window seconds, the rest tomorrow. Then, with the real `ReminderScheduler` (APScheduler, default
  15 s poll plus its next-due timer) and the real `OutboxWorker` posting to `SlackStandIn`:

  - start-up: `start()` until the first (catch-up) pass has finished, with all reminders pending, and
    the RSS it added (APScheduler holds only its timers; the reminders stay in the database);
  - spread: for each reminder that fell due, due time → fired (its outbox row written) and due time →
    posted in Slack (the outbox row sent), p50 / p95 / p99 / max. Each fired reminder is a thread reply
    plus a card update (its "next reminder" changed), both through the outbox; the stand-in does not
    rate-limit here (real Slack allows ~1 post a second per channel, which would dominate);
  - catch-up after downtime: the process stops, every remaining reminder becomes overdue (as if the
    process had been down for a day), a new scheduler starts; time to fire them all and how many were
    marked late (posting them is the outbox's job and is not timed here);
  - memory: RSS at each step and the peak (ru_maxrss; stand-in, workers and bench share this process).

Run
  python -m bench.reminders                   # 10,000 reminders, 300 due over 20 s (~50 s)
  python -m bench.reminders --reminders 50000
  python -m bench.reminders --database-url postgresql://postgres@127.0.0.1:5432/bench   # rows stay there
  python -m bench.reminders --json
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import func, insert, update
from sqlmodel import Session, SQLModel, col, select

import storage.reminders  # noqa: F401  (registers the reminders table)
from bench import EXAMPLE_POLICY, percentile
from bot.policy import load_policy
from bot.reminders.rows import FireSettings
from bot.reminders.scheduler import ReminderScheduler
from bot.slack.delivery import ChannelPacer, OutboxWorker
from bot.standins.slack_api import SlackStandIn
from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import Case, OutboxMessage
from storage.reminders import Reminder

CHANNEL = "C0BENCH"


def rss_mb() -> float:
    """Current resident set size (Linux /proc), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def seed(engine: Any, client: WebClient, cases: int, reminders: int, due: int, window: float,
         start: datetime) -> None:
    """Cases with cards, and reminders: the first `due` fall due over `window` seconds from `start`."""
    now = datetime.now(UTC)
    # Cards the reminders reply to (and the card updates edit): really posted for the cases that get a
    # reminder during the run, placeholders for the rest (their reminders only fire in the catch-up,
    # when nothing is posted).
    posted = min(due, cases)
    stamps = [str(client.chat_postMessage(channel=CHANNEL, text=f"card {n}")["ts"]) for n in range(posted)]
    stamps += [f"1700000000.{n:06d}" for n in range(posted, cases)]
    case_rows = [Case(call_id=f"bench_{n:06d}", kind="refund", is_billing=True, owner="U0BENCH",
                      slack_channel=CHANNEL, slack_ts=stamps[n], created_at=now, updated_at=now)
                 .model_dump(exclude={"id"}) for n in range(cases)]
    with Session(engine) as session:
        session.execute(insert(Case), case_rows)
        session.commit()
        ids = [i for i in session.exec(select(Case.id).order_by(col(Case.id))).all() if i is not None]
    tomorrow = start + timedelta(days=1)
    rows = []
    for n in range(reminders):
        due_at = start + timedelta(seconds=window * n / max(due, 1)) if n < due else tomorrow + timedelta(seconds=n)
        rows.append(Reminder(case_id=ids[n % len(ids)], kind="due", dedup_key=f"bench:{n}", due_at=due_at,
                             created_at=now).model_dump(exclude={"id"}))
    with Session(engine) as session:
        for offset in range(0, len(rows), 5000):
            session.execute(insert(Reminder), rows[offset:offset + 5000])
        session.commit()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {"p50": percentile(ordered, 50), "p95": percentile(ordered, 95), "p99": percentile(ordered, 99),
            "max": ordered[-1]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-reminders-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    engine = make_engine(url)
    upgrade(engine)
    SQLModel.metadata.create_all(engine)
    policy = load_policy(EXAMPLE_POLICY)
    settings = FireSettings(policy=policy, finance_channel=CHANNEL)
    slack = SlackStandIn().start()
    result: dict[str, Any] = {"database": engine.dialect.name, "reminders": args.reminders, "cases": args.cases,
                              "due_in_window": args.due, "window_s": args.window}
    try:
        rss_before = rss_mb()
        # Leave time for start-up before the first reminder falls due.
        client = WebClient(token="xoxb-bench", base_url=f"{slack.url}/api/")
        seed(engine, client, args.cases, args.reminders, args.due, args.window,
             datetime.now(UTC) + timedelta(seconds=args.lead))
        result["rss_after_seed_mb"] = round(rss_mb(), 1)
        outbox = OutboxWorker(engine, client, CHANNEL, pacer=ChannelPacer(interval=0), poll_seconds=1.0)
        scheduler = ReminderScheduler(engine, settings, interval_seconds=args.interval, on_fired=outbox.wake,
                                      worker_id="bench-1")
        rss_start = rss_mb()
        began = time.perf_counter()
        scheduler.start()
        scheduler.wait_for_passes(1, timeout=120)
        result["startup_ms"] = round((time.perf_counter() - began) * 1000, 1)
        result["startup_rss_added_mb"] = round(rss_mb() - rss_start, 2)
        outbox.start()

        deadline = time.monotonic() + args.lead + args.window + args.interval + 60
        while time.monotonic() < deadline:
            with Session(engine) as session:
                posted = session.exec(select(func.count()).select_from(OutboxMessage)
                                      .where(OutboxMessage.kind == "thread",
                                             col(OutboxMessage.sent_at).is_not(None))).one()
            if posted >= args.due:
                break
            time.sleep(0.2)
        scheduler.stop()
        outbox.stop()
        with Session(engine) as session:
            fired = session.exec(select(Reminder).where(Reminder.status == "sent")).all()
            sent_at = {row.dedup_key: row.sent_at for row in
                       session.exec(select(OutboxMessage)).all()}
        fire_spread = [(r.sent_at - r.due_at).total_seconds() * 1000 for r in fired if r.sent_at]
        post_spread = []
        for r in fired:
            posted_at = sent_at.get(f"thread:{r.case_id}:reminder:{r.id}:{int(r.due_at.timestamp())}")
            if posted_at is not None:
                post_spread.append((posted_at - r.due_at).total_seconds() * 1000)
        result["fired"] = len(fired)
        result["posted"] = len(post_spread)
        replies = [m for m in slack.all_messages(CHANNEL) if m.get("thread_ts")]
        result["duplicates_in_slack"] = len(replies) - len({m["blocks"][-1]["block_id"] for m in replies})
        result["card_updates"] = len(slack.calls("chat.update"))
        result["due_to_fired_ms"] = {k: round(v, 1) for k, v in summary(fire_spread).items()}
        result["due_to_posted_ms"] = {k: round(v, 1) for k, v in summary(post_spread).items()}
        result["rss_after_run_mb"] = round(rss_mb(), 1)

        # Downtime: everything still pending is now overdue; a new process catches up at start.
        with Session(engine) as session:
            backlog = session.execute(update(Reminder).where(col(Reminder.status) == "pending")
                                      .values(due_at=datetime.now(UTC) - timedelta(days=1))).rowcount  # type: ignore[attr-defined]
            session.commit()
        restarted = ReminderScheduler(engine, settings, interval_seconds=args.interval, worker_id="bench-2")
        began = time.perf_counter()
        restarted.start()
        restarted.wait_for_passes(1, timeout=600)
        catch_up = time.perf_counter() - began
        restarted.stop()
        with Session(engine) as session:
            late = session.exec(select(func.count()).select_from(Reminder).where(col(Reminder.late))).one()
        result["catch_up"] = {"reminders": backlog, "seconds": round(catch_up, 2),
                              "per_second": round(backlog / catch_up, 1) if catch_up else None, "marked_late": late}
        result["rss_before_mb"] = round(rss_before, 1)
        result["rss_end_mb"] = round(rss_mb(), 1)
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    finally:
        slack.stop()
        engine.dispose()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reminders", type=int, default=10_000, help="pending reminders in the database")
    parser.add_argument("--cases", type=int, default=2_500, help="cases they belong to")
    parser.add_argument("--due", type=int, default=300, help="reminders falling due during the run")
    parser.add_argument("--window", type=float, default=20.0, help="seconds over which those fall due")
    parser.add_argument("--lead", type=float, default=3.0, help="seconds before the first falls due")
    parser.add_argument("--interval", type=float, default=15.0, help="scheduler poll interval (production: 15)")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"database: {result['database']}; {result['reminders']:,} pending reminders on {result['cases']:,} cases")
    print(f"start-up (start() to end of the catch-up pass): {result['startup_ms']} ms, "
          f"RSS added {result['startup_rss_added_mb']} MB")
    print(f"{result['due_in_window']:,} falling due over {result['window_s']} s: fired {result['fired']:,}, "
          f"posted {result['posted']:,} (+{result['card_updates']:,} card updates), "
          f"duplicates in Slack {result['duplicates_in_slack']}")
    for label, key in (("due → fired", "due_to_fired_ms"), ("due → posted", "due_to_posted_ms")):
        stats = result[key]
        print(f"  {label:13} p50 {stats.get('p50')} ms · p95 {stats.get('p95')} ms · p99 {stats.get('p99')} ms · "
              f"max {stats.get('max')} ms")
    catch = result["catch_up"]
    print(f"catch-up after downtime: {catch['reminders']:,} overdue fired in {catch['seconds']} s "
          f"({catch['per_second']}/s), marked late {catch['marked_late']:,}")
    print(f"memory: RSS {result['rss_before_mb']} MB before seeding, {result['rss_after_run_mb']} MB after the run, "
          f"{result['rss_end_mb']} MB at the end; peak {result['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
