"""Webhook ingest benchmark: signed DialNexa deliveries against the real app and against a floor.

What is measured
  Two servers run one after the other, each as its own subprocess under uvicorn on a free
  127.0.0.1 port, each with its own SQLite database in a temporary directory (or the database given
  by --database-url):

  - app:   `bot.web.app.create_app(build_runtime(settings))`, exactly what `finance-desk serve`
           runs without a Slack token (no outbox worker: the ingest path only), logging at INFO
           through the redacting formatter to a file, as `serve` logs to stderr; what start-up built
           is frozen out of the garbage collector's view, as `serve` does.
  - floor: `bench.floor`, the same Starlette + uvicorn stack with one route that reads the body,
           json-parses it and inserts one row through `storage.db.make_engine` (same pragmas).

  Against each, from this process (asyncio + one httpx.AsyncClient connection pool):

  1. fixed rate (open loop): --rate deliveries a second for --seconds. Each request has a scheduled
     send time and its latency runs from that time to the response, so a stalled server or a
     queue in the client pool shows up in the figures instead of slowing the schedule down
     (no coordinated omission). "gen lag" is how late the generator itself started a request.
  2. max throughput (closed loop): --concurrency requests always in flight for --seconds.

  Every delivery is distinct: the six sample calls in bot/samples cycle with unique call ids, each
  transcript padded to ~3 KB, signed `X-DialNexa-Signature: sha256=<hmac>`. Reported per server and
  phase: requests, errors (non-2xx or transport failures), throughput, p50/p90/p99/max latency,
  server CPU (per request and % of one core, from /proc/<pid>/stat), client CPU, and the server's
  peak RSS (VmHWM from /proc/<pid>/status, over its whole life). Afterwards the stored rows are
  counted against the 2xx answers. Targets (from the issue) are printed as text, never asserted:
  p99 under 50 ms at 100 deliveries a second, and app throughput at least half the floor's.

Hostile input (bench/adversarial.py, bodies from bench/hostile.py)
  --sizes [LIST]   server CPU per delivery by body size, 3 KB to 900 KB, benign and adversarial
  --adversarial    Slack-ack probe: Slack ack and ordinary-delivery latency while ~1 MiB adversarial
                   deliveries keep arriving, against a quiet phase of the same run

Run
  python -m bench.ingest                       # 10 s per phase, 100/s, concurrency 16 (~1 minute)
  python -m bench.ingest --sizes               # ~1 minute once triage is linear
  python -m bench.ingest --adversarial         # 10 s quiet + 10 s under attack
  python -m bench.ingest --seconds 60          # longer, steadier run
  python -m bench.ingest --rate 200 --concurrency 32
  python -m bench.ingest --database-url postgresql://user:pw@localhost/bench   # rows are left there
  python -m bench.ingest --json                # one JSON document on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import resource
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn
from sqlalchemy import text
from starlette.types import ASGIApp

from bench import EXAMPLE_POLICY, ROOT, Deliveries, sign, summarize_ms
from storage.db import make_engine

WEBHOOK_PATH = "/webhooks/dialnexa"
SECRET_ENV = "BENCH_DIALNEXA_WEBHOOK_SECRET"
SLACK_SECRET_ENV = "BENCH_SLACK_SIGNING_SECRET"
SLACK_URL_ENV = "BENCH_SLACK_API_URL"
BENCH_CHANNEL = "C0BENCH"
# app: ingest only, as `serve` without a Slack token. app-slack: as `serve` with Slack (Bolt route, outbox
# worker, reminders) against a Slack stand-in. slack: that stand-in. floor: bench.floor.
SERVER_KINDS = ("app", "floor", "app-slack", "slack")
TARGET_RATE = 100.0
TARGET_P99_MS = 50.0
TARGET_RATIO = 0.5
WARMUP_REQUESTS = 60
CLIENT_SATURATED_PCT = 85.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------ server side


def serve_forever(app: ASGIApp) -> None:
    """Serve `app` under uvicorn on a free 127.0.0.1 port; print `READY <url>` once listening.

    The socket is made with proto=IPPROTO_TCP, as uvicorn's own host/port binding (`finance-desk
    serve`) makes it: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and
    without it every keep-alive response after the first waits ~40 ms (Nagle + delayed ACK).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", backlog=2048)
    server = uvicorn.Server(config)
    print(f"READY http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


def _exit_with_parent() -> None:
    """Shut the server down gracefully if the bench process dies without stopping it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve_slack_standin() -> None:
    from bot.standins import SlackStandIn

    standin = SlackStandIn().start()
    print(f"READY {standin.url}", flush=True)
    threading.Event().wait()  # until SIGTERM


def _serve(kind: str, database_url: str, log_level: str) -> None:
    """Child-process entry point (`--serve KIND`)."""
    _exit_with_parent()
    if kind == "floor":
        from bench.floor import create_floor_app

        serve_forever(create_floor_app(make_engine(database_url)))
        return
    if kind == "slack":
        _serve_slack_standin()
        return
    from pydantic import SecretStr

    from bot.config import Settings
    from bot.logs import setup_logging
    from bot.runtime import build_runtime
    from bot.web.app import create_app

    setup_logging(getattr(logging, log_level))
    slack: dict[str, Any] = {"slack_bot_token": None}
    if kind == "app-slack":
        slack = {"slack_bot_token": SecretStr("xoxb-fake"),
                 "slack_signing_secret": SecretStr(os.environ[SLACK_SECRET_ENV]),
                 "slack_api_url": os.environ[SLACK_URL_ENV], "finance_channel": BENCH_CHANNEL}
    settings = Settings(
        database_url=database_url,
        dialnexa_webhook_secrets=[SecretStr(os.environ[SECRET_ENV])],
        finance_desk_policy=EXAMPLE_POLICY,
        **slack,
    )
    runtime = build_runtime(settings)
    if kind == "app-slack":
        from bot.slack.service import start_slack

        start_slack(runtime)  # as `finance-desk serve` does (its matcher needs MoonClerk: not here)
    app = create_app(runtime)
    # As `finance-desk serve` does: what start-up built is taken out of the garbage collector's view, or
    # each full collection walks it (100-200 ms) and lands on whatever delivery is in flight.
    gc.collect()
    gc.freeze()
    serve_forever(app)


def _descendants(pid: int) -> list[int]:
    """`pid` and every live process below it, from /proc/<pid>/task/<tid>/children."""
    found = [pid]
    for parent in found:  # grows while it is walked
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                found.extend(int(child) for child in children.read_text().split())
            except OSError:
                continue
    return found


def _process_cpu(pid: int) -> float:
    """CPU seconds of one process: its CPU-time clock (nanoseconds; Linux spells another process's
    clock id ((~pid) << 3) | 2), else /proc/<pid>/stat, which counts 10 ms ticks."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ServerProcess:
    """One server subprocess; always stop() it (terminate, then kill)."""

    def __init__(
        self, kind: str, database_url: str, workdir: Path, secret: str, log_level: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.env = env or {}
        self.database_url = database_url
        self.log_path = workdir / f"{kind}.log"
        self.secret = secret
        self.log_level = log_level
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def start(self, timeout: float = 60.0) -> ServerProcess:
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, **self.env, SECRET_ENV: self.secret, "PYTHONPATH": pythonpath}
        self._log = self.log_path.open("w", encoding="utf-8")
        command = [sys.executable, "-m", "bench.ingest", "--serve", self.kind,
                   "--database-url", self.database_url, "--log-level", self.log_level]
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while not self.url:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server did not start; see {self.log_path}:\n{self.log_tail()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(remaining, 0.5))
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY "):
                    self.url = line.split()[1]
        if self.kind == "slack":
            return self  # the stand-in has no /healthz; READY means it is listening
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server is not healthy; see {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def memory_kb(self) -> dict[str, int]:
        """VmHWM (peak RSS) and VmRSS of the server, in kB, from /proc/<pid>/status."""
        assert self.proc is not None
        found: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    found[key] = int(value.split()[0])
        except OSError:
            pass
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU so far of the server process and every process it started (the app
        ingests large bodies in a worker process), all threads, live and exited."""
        assert self.proc is not None
        return sum(_process_cpu(pid) for pid in _descendants(self.proc.pid))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        finally:
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
            if self._log is not None:
                self._log.close()
                self._log = None


# ------------------------------------------------------------------------------------------ client side


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_busy() -> float:
    """CPU seconds all processes on the machine have used (all cores), from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    idle, iowait = fields[3], fields[4]
    return (sum(fields) - idle - iowait) / CLOCK_TICKS


class CpuMeter:
    """Server, client and everything else on the machine, over one phase."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.start = (server.cpu_seconds(), _client_cpu(), _machine_busy())

    def used(self) -> tuple[float, float, float]:
        server = self.server.cpu_seconds() - self.start[0]
        client = _client_cpu() - self.start[1]
        other = max(0.0, _machine_busy() - self.start[2] - server - client)
        return server, client, other


def _result(
    name: str, latencies: list[float], statuses: Counter[str], elapsed: float, cpu: tuple[float, float, float]
) -> dict[str, Any]:
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    requests = sum(statuses.values())
    server_cpu, client_cpu, other_cpu = cpu
    return {
        "phase": name,
        "requests": requests,
        "errors": requests - ok,
        "statuses": dict(sorted(statuses.items())),
        "elapsed_s": round(elapsed, 3),
        "throughput_rps": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "latency": summarize_ms(latencies),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / requests, 2) if requests else 0.0,
        "server_cpu_pct": round(server_cpu * 100 / elapsed, 1) if elapsed > 0 else 0.0,
        "client_cpu_pct": round(client_cpu * 100 / elapsed, 1) if elapsed > 0 else 0.0,
        # Other processes competing for the same cores; high values make the run noisy.
        "other_cpu_pct": round(other_cpu * 100 / elapsed, 1) if elapsed > 0 else 0.0,
    }


async def _post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str], statuses: Counter[str]) -> None:
    try:
        response = await client.post(WEBHOOK_PATH, content=body, headers=headers)
        statuses[str(response.status_code)] += 1
    except httpx.HTTPError as exc:
        statuses[type(exc).__name__] += 1


async def fixed_rate(
    client: httpx.AsyncClient, server: ServerProcess, deliveries: Deliveries, secret: bytes, rate: float, seconds: float
) -> dict[str, Any]:
    """Open loop: request i is due at start + i/rate; its latency counts from then."""
    count = max(1, round(rate * seconds))
    prepared = [(d.body, sign(d.body, secret)) for d in (deliveries.next() for _ in range(count))]
    loop = asyncio.get_running_loop()
    latencies = [0.0] * count
    lags = [0.0] * count
    statuses: Counter[str] = Counter()

    async def one(index: int, due: float, body: bytes, headers: dict[str, str]) -> None:
        lags[index] = loop.time() - due
        await _post(client, body, headers, statuses)
        latencies[index] = loop.time() - due

    meter = CpuMeter(server)
    start = loop.time() + 0.05
    tasks = []
    for index, (body, headers) in enumerate(prepared):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due, body, headers)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    cpu = meter.used()
    result = _result("fixed_rate", latencies, statuses, elapsed, cpu)
    result["offered_rate_rps"] = rate
    result["generator_lag"] = summarize_ms(lags)
    return result


async def closed_loop(
    client: httpx.AsyncClient,
    server: ServerProcess,
    deliveries: Deliveries,
    secret: bytes,
    concurrency: int,
    seconds: float,
) -> dict[str, Any]:
    """Closed loop: `concurrency` requests always in flight until the time is up."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    deadline = loop.time() + seconds

    async def worker() -> None:
        while loop.time() < deadline:
            body = deliveries.next().body
            headers = sign(body, secret)
            sent = loop.time()
            await _post(client, body, headers, statuses)
            latencies.append(loop.time() - sent)

    meter = CpuMeter(server)
    start = loop.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = loop.time() - start
    cpu = meter.used()
    result = _result("max_throughput", latencies, statuses, elapsed, cpu)
    result["concurrency"] = concurrency
    return result


async def _warm_up(client: httpx.AsyncClient, deliveries: Deliveries, secret: bytes) -> Counter[str]:
    statuses: Counter[str] = Counter()
    for _ in range(WARMUP_REQUESTS // 4):
        batch = [deliveries.next().body for _ in range(4)]
        await asyncio.gather(*(_post(client, body, sign(body, secret), statuses) for body in batch))
    return statuses


def _count_rows(database_url: str, kind: str, prefix: str) -> int | None:
    """Rows this run stored (a shared --database-url may hold earlier runs' rows too)."""
    if kind == "floor":
        query = text("SELECT COUNT(*) FROM bench_floor_deliveries WHERE body LIKE :pattern")
        pattern = f"%{prefix}%"
    else:
        query = text("SELECT COUNT(*) FROM webhook_deliveries WHERE call_id LIKE :pattern")
        pattern = f"{prefix}%"
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(query, {"pattern": pattern}).scalar_one())
    except Exception:
        return None
    finally:
        engine.dispose()


async def _drive(
    server: ServerProcess, args: argparse.Namespace, secret: bytes, deliveries: Deliveries
) -> dict[str, Any]:
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout can close them under a request.
    limits = httpx.Limits(
        max_connections=args.connections, max_keepalive_connections=args.connections, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30.0) as client:
        warm = await _warm_up(client, deliveries, secret)
        idle = server.memory_kb()
        fixed = await fixed_rate(client, server, deliveries, secret, args.rate, args.seconds)
        after_fixed = server.memory_kb()
        closed = await closed_loop(client, server, deliveries, secret, args.concurrency, args.seconds)
    memory = server.memory_kb()
    fixed["peak_rss_mb"] = round(after_fixed.get("VmHWM", 0) / 1024, 1)
    closed["peak_rss_mb"] = round(memory.get("VmHWM", 0) / 1024, 1)
    answered_ok = sum(n for s, n in warm.items() if s.startswith("2")) + sum(
        n for phase in (fixed, closed) for s, n in phase["statuses"].items() if s.startswith("2")
    )
    return {
        "warmup_errors": sum(warm.values()) - sum(n for s, n in warm.items() if s.startswith("2")),
        "rss_idle_mb": round(idle.get("VmRSS", 0) / 1024, 1),
        "peak_rss_mb": round(memory.get("VmHWM", 0) / 1024, 1),
        "answered_2xx": answered_ok,
        "fixed_rate": fixed,
        "max_throughput": closed,
    }


def run_server(kind: str, database_url: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    secret = secrets.token_hex(24)
    server = ServerProcess(kind, database_url, workdir, secret, args.log_level)
    deliveries = Deliveries()
    try:
        server.start()
        result = asyncio.run(_drive(server, args, secret.encode(), deliveries))
    finally:
        server.stop()
    result["rows_stored"] = _count_rows(database_url, kind, deliveries.prefix)
    result["url"] = server.url
    result["log"] = str(server.log_path)
    return result


# ------------------------------------------------------------------------------------------ report


def _targets(app: dict[str, Any], floor: dict[str, Any], rate: float) -> list[dict[str, Any]]:
    p99 = app["fixed_rate"]["latency"]["p99_ms"]
    app_rps = app["max_throughput"]["throughput_rps"]
    floor_rps = floor["max_throughput"]["throughput_rps"]
    ratio = app_rps / floor_rps if floor_rps else 0.0
    return [
        {
            "target": f"app p99 at {TARGET_RATE:g} deliveries/s < {TARGET_P99_MS:g} ms",
            "measured": f"p99 {p99:.1f} ms at {rate:g}/s"
            + ("" if rate == TARGET_RATE else f" (the target is defined at {TARGET_RATE:g}/s)"),
            "met": p99 < TARGET_P99_MS and rate >= TARGET_RATE and app["fixed_rate"]["errors"] == 0,
        },
        {
            "target": f"app throughput >= {TARGET_RATIO:g} x floor throughput",
            "measured": f"{app_rps:.1f} / {floor_rps:.1f} req/s = {ratio:.2f} x",
            "met": ratio >= TARGET_RATIO and app["max_throughput"]["errors"] == 0,
        },
    ]


def _row(name: str, phase: dict[str, Any], extra: str = "") -> str:
    lat = phase["latency"]
    return (
        f"  {name:<6}{phase['requests']:>8}{phase['errors']:>7}{phase['throughput_rps']:>9.1f}"
        f"{lat['p50_ms']:>8.1f}{lat['p90_ms']:>8.1f}{lat['p99_ms']:>8.1f}{lat['max_ms']:>8.1f}"
        f"{phase['server_cpu_ms_per_request']:>9.2f}{phase['server_cpu_pct']:>7.0f}%{phase['client_cpu_pct']:>7.0f}%"
        f"{phase['other_cpu_pct']:>7.0f}%{phase['peak_rss_mb']:>9.1f}{extra}"
    )


def print_report(report: dict[str, Any]) -> None:
    cfg = report["config"]
    servers = report["servers"]
    print(f"finance-desk ingest benchmark: {cfg['database']}, {cfg['cpus']} CPUs, Python {cfg['python']}, "
          f"uvicorn {cfg['uvicorn']}")
    print(f"  bodies: {cfg['samples']} sample calls cycled, unique call ids, mean {cfg['mean_body_bytes']} bytes "
          f"(~3 KB transcripts), HMAC-SHA256 signed; app logging at {cfg['app_log_level']}")
    header = (f"  {'server':<6}{'reqs':>8}{'errors':>7}{'req/s':>9}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"
              f"{'srvCPU':>9}{'srv':>8}{'client':>8}{'other':>8}{'peakRSS':>9}")
    units = (f"  {'':<6}{'':>8}{'':>7}{'':>9}{'ms':>8}{'ms':>8}{'ms':>8}{'ms':>8}"
             f"{'ms/req':>9}{'CPU':>8}{'CPU':>8}{'CPU':>8}{'MB':>9}")
    print()
    print(f"fixed rate {cfg['rate']:g}/s for {cfg['seconds']:g} s (open loop; latency from each scheduled send time)")
    print(header)
    print(units)
    for name in ("floor", "app"):
        phase = servers[name]["fixed_rate"]
        print(_row(name, phase, f"   gen lag p99 {phase['generator_lag']['p99_ms']:.1f} ms"))
    print()
    print(f"max throughput: closed loop, {cfg['concurrency']} in flight for {cfg['seconds']:g} s")
    print(header)
    print(units)
    for name in ("floor", "app"):
        print(_row(name, servers[name]["max_throughput"]))
    print("  srvCPU = server process CPU per request; srv/client/other CPU = % of one core used by the server,")
    print("  this load generator and every other process on the machine (high 'other' = a noisy run)")
    for name in ("floor", "app"):
        for phase in ("fixed_rate", "max_throughput"):
            if servers[name][phase]["client_cpu_pct"] >= CLIENT_SATURATED_PCT:
                print(f"  note: the load generator used {servers[name][phase]['client_cpu_pct']:.0f}% of a core during "
                      f"{name} {phase}: that figure may be limited by the client, not the server")
    app_ms = servers["app"]["max_throughput"]["server_cpu_ms_per_request"]
    floor_ms = servers["floor"]["max_throughput"]["server_cpu_ms_per_request"]
    if app_ms and floor_ms:
        print(f"  CPU per delivery: app {app_ms:.1f} ms vs floor {floor_ms:.1f} ms; a single Python process (GIL) tops "
              f"out near {1000 / app_ms:.0f} vs {1000 / floor_ms:.0f} deliveries/s")
    print()
    for name in ("floor", "app"):
        s = servers[name]
        errors = {k: v for p in ("fixed_rate", "max_throughput") for k, v in s[p]["statuses"].items()
                  if not k.startswith("2")}
        print(f"  {name}: idle RSS {s['rss_idle_mb']} MB, peak RSS (VmHWM, whole run) {s['peak_rss_mb']} MB; "
              f"2xx answers {s['answered_2xx']}, rows stored {s['rows_stored']}"
              + (f"; errors by status {errors}" if errors else "") + (f"; log {s['log']}" if s["log"] else ""))
    print()
    print("targets (informational, not asserted)")
    for target in report["targets"]:
        print(f"  [{'met' if target['met'] else 'NOT met':>7}] {target['target']}: {target['measured']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase (default 10)")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="fixed-rate deliveries a second (default 100)")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop requests in flight (default 16)")
    parser.add_argument("--connections", type=int, default=100, help="client connection pool size (default 100)")
    parser.add_argument("--database-url", help="use this database for both servers instead of temporary SQLite files")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="the app's log level (default INFO, as `finance-desk serve`)")
    parser.add_argument("--only", choices=["app", "floor"], help="run one server only (prints JSON)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (databases, server logs)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--sizes", nargs="?", const="3k,30k,100k,300k,900k", metavar="LIST",
                        help="CPU per delivery by body size, benign and adversarial (default sizes "
                             "3k,30k,100k,300k,900k); replaces the floor/app comparison")
    parser.add_argument("--adversarial", action="store_true",
                        help="Slack-ack probe: ack and ordinary latency while ~1 MiB adversarial deliveries "
                             "arrive; replaces the floor/app comparison")
    parser.add_argument("--probe-rate", type=float, default=20.0,
                        help="--adversarial: ordinary deliveries a second (default 20)")
    parser.add_argument("--slack-rate", type=float, default=5.0,
                        help="--adversarial: signed Slack commands a second (default 5)")
    parser.add_argument("--attackers", type=int, default=2,
                        help="--adversarial: concurrent senders of 1 MiB adversarial deliveries (default 2)")
    parser.add_argument("--attack-size", metavar="SIZE",
                        help="--adversarial: size of each adversarial delivery, e.g. 60k (default just under 1 MiB)")
    parser.add_argument("--cell-timeout", type=float, default=10.0,
                        help="--sizes: give up on a kind when one delivery takes longer (default 10 s)")
    parser.add_argument("--serve", choices=SERVER_KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        _serve(args.serve, args.database_url, args.log_level)
        return

    # SIGTERM must unwind through the finally blocks that stop the server subprocesses.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.sizes or args.adversarial:
        _run_hostile(args)
        return
    deliveries = Deliveries()
    servers: dict[str, dict[str, Any]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="fd-bench-ingest-"))
    try:
        for kind in ("floor", "app"):
            if args.only and args.only != kind:
                continue
            url = args.database_url or f"sqlite:///{workdir / f'{kind}.db'}"
            if not args.json:
                print(f"running {kind} ...", file=sys.stderr, flush=True)
            servers[kind] = run_server(kind, url, workdir, args)
            if not args.keep:
                servers[kind]["log"] = None
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report: dict[str, Any] = {
        "config": {
            "seconds": args.seconds,
            "rate": args.rate,
            "concurrency": args.concurrency,
            "connections": args.connections,
            "database": "PostgreSQL/other (--database-url)" if args.database_url else "SQLite (temp dir, WAL)",
            "app_log_level": args.log_level,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "uvicorn": uvicorn.__version__,
            "samples": len(deliveries.templates),
            "mean_body_bytes": round(deliveries.mean_size()),
        },
        "servers": servers,
    }
    if "app" in servers and "floor" in servers:
        report["targets"] = _targets(servers["app"], servers["floor"], args.rate)
    if args.json:
        print(json.dumps(report, indent=2))
    elif "targets" in report:
        print_report(report)
    else:
        print(json.dumps(report, indent=2))


def _run_hostile(args: argparse.Namespace) -> None:
    from bench import adversarial

    workdir = Path(tempfile.mkdtemp(prefix="fd-bench-hostile-"))
    database = "PostgreSQL/other (--database-url)" if args.database_url else "SQLite (temp dir, WAL)"
    report: dict[str, Any] = {"config": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                         "database": database, "app_log_level": args.log_level}}
    try:
        secret = secrets.token_hex(24)
        if args.sizes:
            report["sizes"] = adversarial.run_sizes(workdir, secret, args)
        if args.adversarial:
            report["probe"] = adversarial.run_probe(workdir, secret, args)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    cfg = report["config"]
    print(f"finance-desk hostile-input benchmark: {cfg['database']}, {cfg['cpus']} CPUs, Python {cfg['python']}, "
          f"app logging at {cfg['app_log_level']}")
    if "sizes" in report:
        adversarial.print_sizes(report["sizes"])
    if "probe" in report:
        adversarial.print_probe(report["probe"])


if __name__ == "__main__":
    main()
