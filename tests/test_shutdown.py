"""SIGTERM: `serve` (with Slack delivery and the scheduler) and `worker` stop cleanly within 30 s."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bot.standins import SlackStandIn


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_and_worker_exit_within_30_seconds_of_sigterm(tmp_path: Path) -> None:
    with SlackStandIn() as slack:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FINANCE_", "MOONCLERK_", "POOF_"))}
        env.update(DATABASE_URL=f"sqlite:///{tmp_path}/fd.db", DIALNEXA_WEBHOOK_SECRETS="whsec_fake",
                   SLACK_BOT_TOKEN="xoxb-fake", SLACK_SIGNING_SECRET="fake-signing", FINANCE_CHANNEL="C0FINANCE",
                   SLACK_API_URL=f"{slack.url}/api/", LOG_FORMAT="json")
        port = _free_port()
        serve = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            worker = subprocess.Popen([sys.executable, "-m", "bot", "worker"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(3)  # past its start-up (migrations), so its SIGTERM handler is installed
            started = time.monotonic()
            serve.send_signal(signal.SIGTERM)
            worker.send_signal(signal.SIGTERM)
            assert serve.wait(timeout=30) == 0
            assert worker.wait(timeout=30) == 0
            assert time.monotonic() - started < 30
        finally:
            for process in (serve,):
                if process.poll() is None:
                    process.kill()
        _, errors = serve.communicate()
        assert b"Traceback" not in errors, errors[-2000:]
