"""The `finance-desk` command as a newcomer meets it: help, config errors, preview, and the real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.blockkit import assert_valid_message
from tests.signing import dialnexa_headers

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "bot" / "samples"
COMMANDS = [[], ["serve"], ["socket"], ["worker"], ["demo"], ["preview"], ["db"], ["db", "upgrade"],
            ["config"], ["config", "check"]]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "DIALNEXA_", "DATABASE_URL", "FINANCE_", "MOONCLERK_", "POOF_"))}
    return subprocess.run([sys.executable, "-m", "bot", *args], env={**base, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: finance-desk" in result.stdout


def test_config_errors_are_one_line_each_and_never_echo_secrets() -> None:
    result = run("config", "check", env={"SLACK_BOT_TOKEN": "not-a-token-SECRETVALUE",
                                         "SLACK_API_URL": "ftp://nope"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("finance-desk: SLACK_BOT_TOKEN: ") for line in lines)
    assert any(line.startswith("finance-desk: SLACK_API_URL: ") for line in lines)
    assert "SECRETVALUE" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_missing_values_are_named() -> None:
    result = run("config", "check", env={"SLACK_BOT_TOKEN": "xoxb-valid-shape"})
    assert result.returncode == 2
    for name in ("DIALNEXA_WEBHOOK_SECRETS", "SLACK_SIGNING_SECRET", "FINANCE_CHANNEL"):
        assert f"finance-desk: {name}: missing" in result.stderr


def test_bad_policy_names_the_key_and_reason(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[approval_thresholds]\nUSD = 500.5\n[approvers]\nusers = ["bob"]\n')
    result = run("config", "check", env={"DIALNEXA_WEBHOOK_SECRETS": "whsec_1", "FINANCE_DESK_POLICY": str(policy)})
    assert result.returncode == 2
    assert "approval_thresholds.USD" in result.stderr and "strings" in result.stderr
    assert "approvers.users" in result.stderr and "'bob'" in result.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text("[aprovers]\nusers = []\n")
    result = run("config", "check", env={"DIALNEXA_WEBHOOK_SECRETS": "whsec_1", "FINANCE_DESK_POLICY": str(typo)})
    assert result.returncode == 2 and "aprovers" in result.stderr


def test_example_policy_is_valid() -> None:
    result = run("config", "check", env={"DIALNEXA_WEBHOOK_SECRETS": "whsec_1",
                                         "FINANCE_DESK_POLICY": str(ROOT / "policy.example.toml")})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.json")))
def test_preview_prints_a_valid_card(sample: str) -> None:
    result = run("preview", str(SAMPLES / sample))
    assert result.returncode == 0, result.stderr
    assert_valid_message(json.loads(result.stdout))
    assert "https://app.slack.com/block-kit-builder/#" in result.stderr


def test_preview_rejects_a_non_call_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    result = run("preview", str(path))
    assert result.returncode == 2 and "no call object" in result.stderr


def test_db_upgrade_creates_the_tables(tmp_path: Path) -> None:
    result = run("db", "upgrade", env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_the_real_server_on_embedded_defaults(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port", str(port)], cwd=tmp_path,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL"))},
             "DIALNEXA_WEBHOOK_SECRETS": "whsec_serve_test"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "server did not come up"
            time.sleep(0.1)
        body = (SAMPLES / "06_card_read_aloud.json").read_bytes()
        response = httpx.post(f"{url}/webhooks/dialnexa", content=body,
                              headers=dialnexa_headers(body, "whsec_serve_test"))
        assert response.status_code == 200 and response.json()["outcome"] == "stored"
        assert (tmp_path / "finance-desk.db").exists()  # the embedded default database
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    assert "4242 4242 4242 4242" not in output and "whsec_serve_test" not in output
    assert "cases are stored but no cards are posted" in output
