"""Instructions per delivery, counted by valgrind's callgrind: a figure the machine's load cannot move.

Wall-clock CPU per delivery (`bench.ingest`) swings by a quarter or more between runs on a shared or
small machine, which hides a change of a few percent. Callgrind counts the instructions the server
process executes instead: the same build, bodies and database give the same count, whatever else runs.

What is measured: each server (the app, as `bench.ingest` serves it, and the floor) runs under
`valgrind --tool=callgrind` on a free port with a fresh SQLite database. After --warm-up signed
deliveries, the counters are zeroed (`callgrind_control -z`), --deliveries more are posted one at a
time, and the counters are dumped (`callgrind_control -d`): instructions in the server process (every
thread) over those deliveries, divided by their number. User-space instructions only: the kernel's
work (sockets, the database's writes) is not in it. Under valgrind a delivery takes ~50x longer, so a
run takes a few minutes.

Run
  python -m bench.instructions                 # app and floor, 100 deliveries each
  python -m bench.instructions --only app --deliveries 300
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import ROOT, Deliveries, sign
from bench.ingest import SECRET_ENV, WEBHOOK_PATH

SECRET = "bench-instructions-secret"


def _total(dump: Path) -> int:
    for line in dump.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {dump}")


def count(kind: str, deliveries: int, warm_up: int, workdir: Path) -> float:
    """Instructions per delivery of one server kind ("app" or "floor")."""
    out = workdir / f"{kind}.callgrind"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", "bench.ingest",
               "--serve", kind, "--database-url", f"sqlite:///{workdir / kind}.db", "--log-level", "INFO"]
    env = {**os.environ, SECRET_ENV: SECRET, "PYTHONPATH": str(ROOT)}
    with (workdir / f"{kind}.log").open("w") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)  # noqa: S603
        try:
            assert server.stdout is not None
            url = ""
            while not url:
                line = server.stdout.readline()
                if not line:
                    raise RuntimeError(f"{kind} did not start under valgrind; see {workdir / kind}.log")
                if line.startswith("READY "):
                    url = line.split()[1]
            stream = Deliveries(prefix=f"call_bench_instr_{kind}")
            with httpx.Client(timeout=300) as client:

                def post(n: int) -> None:
                    for _ in range(n):
                        body = stream.next().body
                        answer = client.post(url + WEBHOOK_PATH, content=body, headers=sign(body, SECRET.encode()))
                        answer.raise_for_status()

                post(warm_up)
                subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True)  # noqa: S603, S607
                post(deliveries)
                subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True)  # noqa: S603, S607
            deadline = time.monotonic() + 60
            dumps: list[Path] = []
            while not dumps and time.monotonic() < deadline:
                dumps = [p for p in workdir.glob(f"{kind}.callgrind.*") if p.stat().st_size]
                time.sleep(0.2)
            if not dumps:
                raise RuntimeError(f"callgrind wrote no dump for {kind}")
            return _total(max(dumps, key=lambda p: p.stat().st_mtime)) / deliveries
        finally:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=100, help="deliveries counted (default 100)")
    parser.add_argument("--warm-up", type=int, default=40, help="deliveries before counting (default 40)")
    parser.add_argument("--only", choices=("app", "floor"), help="count one server only")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (with callgrind_control) is not installed")
    kinds = [args.only] if args.only else ["app", "floor"]
    print(f"instructions per ~{Deliveries().mean_size() / 1000:.1f} KB signed delivery (callgrind, "
          f"{args.deliveries} after {args.warm_up} warm-up, SQLite, logging at INFO)")
    with tempfile.TemporaryDirectory(prefix="fd-bench-instr-") as tmp:
        counted = {kind: count(kind, args.deliveries, args.warm_up, Path(tmp)) for kind in kinds}
    for kind, per in counted.items():
        print(f"  {kind:6s} {per / 1e6:6.2f} M")
    if len(counted) == 2:
        print(f"  app / floor: {counted['app'] / counted['floor']:.2f}x")


if __name__ == "__main__":
    main()
