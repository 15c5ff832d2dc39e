"""`bench.ingest --sizes` and `--adversarial`: triage cost by body size, and the Slack-ack probe.

--sizes [LIST]
  One app server (ingest only; SQLite in a temp dir unless --database-url) and one floor server. For
  every size (default 3 KB to 900 KB) and every kind in bench.hostile (benign, then each adversarial
  shape), deliveries are sent one at a time; the CPU clocks of the server and of the worker process it
  ingests large bodies in are read around each run of them. A sample is as many deliveries as fit
  in ~0.25 s (at least one), and the cell shows the median of three samples' CPU per delivery. The floor
  (parse + insert the same benign body) is measured at each size too, and the ratio app / floor is
  printed. A delivery slower than --cell-timeout stops that kind (its larger sizes are skipped) and the
  server is restarted, so one runaway body cannot hold the rest of the run.

--adversarial
  The app as `finance-desk serve` runs it with Slack (Bolt route, outbox worker, reminders), posting to a
  Slack stand-in in its own process. Two phases of --seconds each, the same offered load in both:
  ordinary ~3 KB deliveries at --probe-rate a second and signed `/finance help` slash commands (Bolt
  verifies the signature, the listener acks with the help text) at --slack-rate a second, both open loop
  (latency counts from each scheduled send time). The second phase adds --attackers senders that keep
  ~1 MiB (--attack-size) adversarial deliveries arriving back to back, cycling through every
  adversarial kind. Printed: p50/p99/max of the Slack ack and of the ordinary deliveries in each
  phase, the ratio to the quiet phase (the floor of the same run), and the targets: ack p99 < 1 s,
  ordinary p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import secrets
import statistics
import sys
import time
import urllib.parse
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench import Deliveries, sign, summarize_ms
from bench.hostile import ADVERSARIAL_KINDS, KINDS, ONE_MIB_BODY, body_for
from bench.ingest import SLACK_SECRET_ENV, SLACK_URL_ENV, WEBHOOK_PATH, CpuMeter, ServerProcess

DEFAULT_SIZES = "3k,30k,100k,300k,900k"
SAMPLES_PER_CELL = 3
SAMPLE_SECONDS = 0.25
TARGET_ACK_P99_MS = 1000.0
TARGET_ORDINARY_P99_MS = 100.0
TARGET_REALISTIC_900K_MS = 300.0
TARGET_ANY_BODY_MS = 1000.0
_ID_TOKEN = "call_bench_hostile_id_token"


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = 1000 if part.endswith("k") else 1
        sizes.append(int(Decimal(part.rstrip("k")) * scale))
    return sorted(sizes)


def _label(size: int) -> str:
    return f"{size // 1000}K" if size >= 1000 else f"{size}B"


# ------------------------------------------------------------------------------------------ --sizes


class _Runaway(Exception):
    """One delivery took longer than the cell timeout."""


class _Cells:
    """Sends single deliveries of one kind and size to one server and reads its CPU clock around them."""

    def __init__(self, server: ServerProcess, secret: bytes, timeout: float) -> None:
        self.server = server
        self.secret = secret
        self.timeout = timeout
        self.count = 0
        self.client = httpx.Client(base_url=server.url, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def _send(self, template: bytes) -> tuple[str, float]:
        self.count += 1
        body = template.replace(_ID_TOKEN.encode(), f"call_bench_size_{self.count:07d}".encode())
        started = time.monotonic()
        try:
            response = self.client.post(WEBHOOK_PATH, content=body, headers=sign(body, self.secret))
        except httpx.TimeoutException:
            raise _Runaway from None
        return str(response.status_code), time.monotonic() - started

    def measure(self, kind: str, size: int) -> dict[str, Any]:
        template = body_for(kind, size, _ID_TOKEN)
        per_delivery: list[float] = []
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        for _ in range(SAMPLES_PER_CELL):
            cpu_before, started, sent = self.server.cpu_seconds(), time.monotonic(), 0
            while sent == 0 or time.monotonic() - started < SAMPLE_SECONDS:
                status, latency = self._send(template)
                statuses[status] += 1
                latencies.append(latency)
                sent += 1
            per_delivery.append((self.server.cpu_seconds() - cpu_before) / sent)
        return {
            "kind": kind,
            "size": size,
            "body_bytes": len(template),
            "deliveries": sum(statuses.values()),
            "statuses": dict(statuses),
            "cpu_ms": round(statistics.median(per_delivery) * 1000, 2),
            "latency_ms": round(statistics.median(latencies) * 1000, 2),
        }


def _measure_floor(workdir: Path, secret: str, sizes: list[int], args: argparse.Namespace) -> dict[int, float]:
    server = ServerProcess("floor", args.database_url or f"sqlite:///{workdir / 'sizes-floor.db'}", workdir, secret,
                           args.log_level)
    cells = None
    try:
        server.start()
        cells = _Cells(server, secret.encode(), args.cell_timeout)
        return {size: cells.measure("benign", size)["cpu_ms"] for size in sizes}
    finally:
        if cells is not None:
            cells.close()
        server.stop()


def run_sizes(workdir: Path, secret: str, args: argparse.Namespace) -> dict[str, Any]:
    sizes = parse_sizes(args.sizes)
    floor = _measure_floor(workdir, secret, sizes, args)
    database = args.database_url or f"sqlite:///{workdir / 'sizes-app.db'}"
    rows: list[dict[str, Any]] = []
    server: ServerProcess | None = None
    cells: _Cells | None = None
    try:
        for kind in KINDS:
            for size in sizes:
                if server is None:
                    server = ServerProcess("app", database, workdir, secret, args.log_level).start()
                    cells = _Cells(server, secret.encode(), args.cell_timeout)
                assert cells is not None
                print(f"  sizes: {kind} {_label(size)} ...", file=sys.stderr, flush=True)
                try:
                    row = cells.measure(kind, size)
                except _Runaway:
                    rows.append({"kind": kind, "size": size, "runaway": True})
                    # Its thread cannot be interrupted: a fresh server keeps the next cells honest.
                    cells.close()
                    server.stop()
                    server = cells = None
                    break
                row["floor_cpu_ms"] = floor[size]
                rows.append(row)
    finally:
        if cells is not None:
            cells.close()
        if server is not None:
            server.stop()
    return {"sizes": sizes, "cell_timeout_s": args.cell_timeout, "floor_cpu_ms": floor, "cells": rows}


def print_sizes(result: dict[str, Any]) -> None:
    sizes: list[int] = result["sizes"]
    cells = {(c["kind"], c["size"]): c for c in result["cells"]}
    print()
    print("server CPU per delivery by body size (ms, median of 3 samples; one delivery at a time)")
    width = 10
    print(f"  {'kind':<9}" + "".join(f"{_label(s):>{width}}" for s in sizes) + f"{'growth':>10}  statuses")
    floor = result["floor_cpu_ms"]
    print(f"  {'(floor)':<9}" + "".join(f"{floor[s]:>{width}.1f}" for s in sizes))
    for kind in KINDS:
        line = f"  {kind:<9}"
        statuses: Counter[str] = Counter()
        for size in sizes:
            cell = cells.get((kind, size))
            if cell is None:
                line += f"{'-':>{width}}"
            elif cell.get("runaway"):
                line += f"{'>' + format(result['cell_timeout_s'], 'g') + 's':>{width}}"
            else:
                line += f"{cell['cpu_ms']:>{width}.1f}"
                statuses.update(cell["statuses"])
        line += f"{_growth(cells, kind, sizes):>10}  " + ",".join(f"{k}x{v}" for k, v in sorted(statuses.items()))
        print(line)
    print("  growth = CPU ratio between the two largest sizes measured, over their size ratio (1.0 = linear;")
    print("  2.0 at 3x the size means the cost grows ~quadratically). '>Ns' = one delivery outlasted the cell")
    print("  timeout: larger sizes of that kind were skipped and the server restarted.")
    print()
    print("  app / floor at the same size (benign):  " + "  ".join(
        f"{_label(s)} {cells[('benign', s)]['cpu_ms'] / floor[s]:.1f}x" for s in sizes
        if ("benign", s) in cells and not cells[("benign", s)].get("runaway") and floor[s] > 0))
    failed = sorted({f"{c['kind']} {_label(c['size'])}" for c in result["cells"]
                     if any(not status.startswith("2") for status in c.get("statuses", {}))})
    if failed:
        print(f"  note: non-2xx answers in {', '.join(failed)}: those figures are not of a stored delivery")
    print()
    print("targets (informational, not asserted)")
    largest = sizes[-1]
    benign = cells.get(("benign", largest))
    if benign is not None and not benign.get("runaway") and largest >= 900_000:
        met = benign["cpu_ms"] <= TARGET_REALISTIC_900K_MS
        print(f"  [{'met' if met else 'NOT met':>7}] a realistic {_label(largest)} transcript <= "
              f"{TARGET_REALISTIC_900K_MS:g} ms CPU: {benign['cpu_ms']:.0f} ms")
    worst = max((c for c in result["cells"] if not c.get("runaway")), key=lambda c: c["cpu_ms"], default=None)
    runaway = [c for c in result["cells"] if c.get("runaway")]
    if largest < 900_000 and not runaway:
        print(f"  [    n/a] the budgets are for bodies up to 1 MiB; the largest measured here is {_label(largest)}")
    elif runaway:
        print(f"  [NOT met] any body under 1 MiB <= {TARGET_ANY_BODY_MS:g} ms CPU: "
              + ", ".join(f"{c['kind']} {_label(c['size'])} outlasted {result['cell_timeout_s']:g} s" for c in runaway))
    elif worst is not None:
        met = worst["cpu_ms"] <= TARGET_ANY_BODY_MS
        print(f"  [{'met' if met else 'NOT met':>7}] any body under 1 MiB <= {TARGET_ANY_BODY_MS:g} ms CPU: worst "
              f"{worst['kind']} {_label(worst['size'])} at {worst['cpu_ms']:.0f} ms")


def _growth(cells: dict[tuple[str, int], dict[str, Any]], kind: str, sizes: list[int]) -> str:
    measured = [s for s in sizes if (kind, s) in cells and not cells[(kind, s)].get("runaway")]
    if len(measured) < 2:
        return "-"
    small, large = cells[(kind, measured[-2])], cells[(kind, measured[-1])]
    if small["cpu_ms"] <= 0:
        return "-"
    return f"{(large['cpu_ms'] / small['cpu_ms']) / (large['body_bytes'] / small['body_bytes']):.2f}"


# ------------------------------------------------------------------------------------------ --adversarial


def slack_command(secret: bytes, response_url: str) -> tuple[str, dict[str, str]]:
    """A `/finance help` slash command signed as Slack signs it (v0, timestamp + body)."""
    body = urllib.parse.urlencode({
        "token": "unused", "team_id": "T0BENCH", "team_domain": "bench", "channel_id": "C0BENCH",
        "channel_name": "finance", "user_id": "U0BENCH", "user_name": "bench", "command": "/finance",
        "text": "help", "api_app_id": "A0BENCH", "response_url": response_url, "trigger_id": "bench.trigger",
    })
    timestamp = str(int(time.time()))
    digest = hmac.new(secret, f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}",
                  "Content-Type": "application/x-www-form-urlencoded"}


class _Probe:
    """Open-loop senders of ordinary deliveries and Slack commands, and closed-loop attackers."""

    def __init__(
        self, server: ServerProcess, slack_url: str, secret: bytes, slack_secret: bytes, attack_bytes: int
    ) -> None:
        self.server = server
        self.slack_url = slack_url
        self.secret = secret
        self.slack_secret = slack_secret
        self.deliveries = Deliveries()
        self.attacks = [body_for(kind, attack_bytes, _ID_TOKEN) for kind in ADVERSARIAL_KINDS]
        self.attack_count = 0

    async def _open_loop(self, client: httpx.AsyncClient, rate: float, seconds: float, kind: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        count = max(1, round(rate * seconds))
        latencies = [0.0] * count
        statuses: Counter[str] = Counter()

        async def one(index: int, due: float) -> None:
            if kind == "slack":
                form, headers = slack_command(self.slack_secret, f"{self.slack_url}/response_url/bench")
                content, path = form.encode(), "/slack/events"
            else:
                content = self.deliveries.next().body
                headers, path = sign(content, self.secret), WEBHOOK_PATH
            try:
                response = await client.post(path, content=content, headers=headers)
                statuses[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies[index] = loop.time() - due

        start = loop.time() + 0.05
        tasks = []
        for index in range(count):
            due = start + index / rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, due)))
        await asyncio.gather(*tasks)
        return {"requests": count, "statuses": dict(statuses), "latency": summarize_ms(latencies)}

    async def _attacker(self, client: httpx.AsyncClient, stop: asyncio.Event, flowing: asyncio.Event,
                        done: list[float], statuses: Counter[str]) -> None:
        while not stop.is_set():
            template = self.attacks[self.attack_count % len(self.attacks)]
            self.attack_count += 1
            body = template.replace(_ID_TOKEN.encode(), f"call_bench_attack_{self.attack_count:07d}".encode())
            started = time.monotonic()
            try:
                response = await client.post(WEBHOOK_PATH, content=body, headers=sign(body, self.secret))
                statuses[str(response.status_code)] += 1
                done.append(time.monotonic() - started)
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            flowing.set()

    async def phase(self, args: argparse.Namespace, attackers: int) -> dict[str, Any]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0)
        # Separate pools: a probe never waits behind an attacker's connection, only behind the server.
        async with (httpx.AsyncClient(base_url=self.server.url, limits=limits, timeout=60) as probes,
                    httpx.AsyncClient(base_url=self.server.url, timeout=300) as attack):
            stop, flowing = asyncio.Event(), asyncio.Event()
            done: list[float] = []
            attack_statuses: Counter[str] = Counter()
            senders = [asyncio.create_task(self._attacker(attack, stop, flowing, done, attack_statuses))
                       for _ in range(attackers)]
            if attackers:
                # Measure only once hostile bodies are flowing: the first one answered has started
                # the large-body worker and the rest are queued behind it.
                await flowing.wait()
            meter = CpuMeter(self.server)
            started = time.monotonic()
            slack, ordinary = await asyncio.gather(
                self._open_loop(probes, args.slack_rate, args.seconds, "slack"),
                self._open_loop(probes, args.probe_rate, args.seconds, "ordinary"),
            )
            elapsed = time.monotonic() - started
            server_cpu, _, other_cpu = meter.used()
            stop.set()
            for sender in senders:
                sender.cancel()  # an attack still in flight is abandoned (the server finishes it alone)
            await asyncio.gather(*senders, return_exceptions=True)
        return {
            "attackers": attackers,
            "slack_ack": slack,
            "ordinary": ordinary,
            "attacks_completed": len(done),
            "attack_statuses": dict(attack_statuses),
            "attack_latency": summarize_ms(done),
            "server_cpu_pct": round(server_cpu * 100 / elapsed, 1),
            "other_cpu_pct": round(other_cpu * 100 / elapsed, 1),
        }


def run_probe(workdir: Path, secret: str, args: argparse.Namespace) -> dict[str, Any]:
    slack_secret = secrets.token_hex(16)
    standin = ServerProcess("slack", "", workdir, secret, args.log_level)
    server: ServerProcess | None = None
    try:
        standin.start()
        env = {SLACK_SECRET_ENV: slack_secret, SLACK_URL_ENV: f"{standin.url}/api/"}
        database = args.database_url or f"sqlite:///{workdir / 'probe.db'}"
        server = ServerProcess("app-slack", database, workdir, secret, args.log_level, env=env).start()
        probe = _Probe(server, standin.url, secret.encode(), slack_secret.encode(),
                       parse_sizes(args.attack_size)[0] if args.attack_size else ONE_MIB_BODY)
        quiet = asyncio.run(probe.phase(args, 0))
        attacked = asyncio.run(probe.phase(args, args.attackers))
    finally:
        if server is not None:
            server.stop()
        standin.stop()
    return {"seconds": args.seconds, "probe_rate": args.probe_rate, "slack_rate": args.slack_rate,
            "attack_body_bytes": round(statistics.mean(len(a) for a in probe.attacks)),
            "attack_kinds": list(ADVERSARIAL_KINDS), "quiet": quiet, "attacked": attacked}


def print_probe(result: dict[str, Any]) -> None:
    quiet, attacked = result["quiet"], result["attacked"]
    print()
    print(f"Slack-ack probe: {result['seconds']:g} s per phase; signed `/finance help` at {result['slack_rate']:g}/s "
          f"and ordinary ~3 KB deliveries at {result['probe_rate']:g}/s (open loop)")
    print(f"  under attack: {attacked['attackers']} senders of ~{result['attack_body_bytes'] // 1024} KiB adversarial "
          f"deliveries back to back ({', '.join(result['attack_kinds'])})")
    print(f"  {'phase':<13}{'probe':<10}{'reqs':>6}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'p99 x quiet':>13}")
    for name, phase in (("quiet", quiet), ("under attack", attacked)):
        for probe in ("slack_ack", "ordinary"):
            figures = phase[probe]
            lat = figures["latency"]
            errors = sum(n for s, n in figures["statuses"].items() if not s.startswith("2"))
            base = quiet[probe]["latency"]["p99_ms"]
            ratio = f"{lat['p99_ms'] / base:.1f}x" if base > 0 else "-"
            print(f"  {name:<13}{probe:<10}{figures['requests']:>6}{errors:>8}{lat['p50_ms']:>9.1f}"
                  f"{lat['p99_ms']:>9.1f}{lat['max_ms']:>9.1f}{ratio:>13}")
    for name, phase in (("quiet", quiet), ("under attack", attacked)):
        print(f"  {name}: server CPU {phase['server_cpu_pct']:.0f}% of a core, other processes "
              f"{phase['other_cpu_pct']:.0f}%")
    lat = attacked["attack_latency"]
    print(f"  adversarial deliveries answered: {attacked['attacks_completed']} "
          f"(statuses {attacked['attack_statuses']}), latency p50 {lat['p50_ms']:.0f} ms, max {lat['max_ms']:.0f} ms")
    print()
    print("targets (informational, not asserted), under attack")
    ack = attacked["slack_ack"]["latency"]["p99_ms"]
    ordinary = attacked["ordinary"]["latency"]["p99_ms"]
    print(f"  [{'met' if ack < TARGET_ACK_P99_MS else 'NOT met':>7}] Slack ack p99 < {TARGET_ACK_P99_MS:g} ms: "
          f"{ack:.1f} ms")
    print(f"  [{'met' if ordinary < TARGET_ORDINARY_P99_MS else 'NOT met':>7}] ordinary delivery p99 < "
          f"{TARGET_ORDINARY_P99_MS:g} ms: {ordinary:.1f} ms")
