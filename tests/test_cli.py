"""The `finance-desk` command as a newcomer meets it: help, config errors, preview, and the real server."""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import SQLModel

from bot.cli import cli
from storage.audit import Event, write_audit
from storage.db import session_scope
from storage.models import AuditEvent, Case
from tests.blockkit import assert_valid_message
from tests.signing import dialnexa_headers

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "bot" / "samples"
COMMANDS = [[], ["serve"], ["socket"], ["worker"], ["demo"], ["preview"], ["db"], ["db", "upgrade"],
            ["config"], ["config", "check"]]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "DIALNEXA_", "DATABASE_URL", "FINANCE_", "MOONCLERK_", "POOF_", "STRIPE_",
                                 "SMTP_", "MAIL_", "METRICS_"))}
    return subprocess.run([sys.executable, "-m", "bot", *args], env={**base, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_every_command_has_help() -> None:
    # The program itself once (as a shell runs it); every command's help in this process, since
    # starting Python for each one costs seconds and shows nothing more.
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: finance-desk" in result.stdout
    runner = CliRunner()
    for command in COMMANDS:
        helped = runner.invoke(cli, [*command, "--help"], prog_name="finance-desk")
        assert helped.exit_code == 0, (command, helped.output)
        assert "Usage: finance-desk" in helped.output, command


def test_config_errors_are_one_line_each_and_never_echo_secrets() -> None:
    result = run("config", "check", env={"SLACK_BOT_TOKEN": "not-a-token-SECRETVALUE",
                                         "SLACK_API_URL": "ftp://nope"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("finance-desk: SLACK_BOT_TOKEN: ") for line in lines)
    assert any(line.startswith("finance-desk: SLACK_API_URL: ") for line in lines)
    assert "SECRETVALUE" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["preview", "bot/samples/01_refund.json"], ["db", "upgrade"],
                                     ["audit", "export", "--since", "2026-01-01"]], ids=lambda c: c[0])
def test_commands_without_slack_still_name_bad_settings_and_never_echo_them(command: list[str]) -> None:
    result = run(*command, env={"SLACK_BOT_TOKEN": "bad-SECRETVALUE", "DATABASE_URL": "nonsense-PASSWORD"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("finance-desk: SLACK_BOT_TOKEN: ") for line in lines), result.stderr
    assert any(line.startswith("finance-desk: DATABASE_URL: not a database URL") for line in lines), result.stderr
    assert "SECRETVALUE" not in result.stderr + result.stdout and "PASSWORD" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_an_unsupported_database_is_refused_at_start_up() -> None:
    result = run("config", "check", env={"DIALNEXA_WEBHOOK_SECRETS": "whsec_x",
                                         "DATABASE_URL": "mysql://root@127.0.0.1/test"})
    assert result.returncode == 2 and "finance-desk: DATABASE_URL: " in result.stderr
    assert "mysql is not supported" in result.stderr


def test_config_check_lists_bad_and_missing_values_and_the_policy_in_one_run(tmp_path: Path) -> None:
    bad_policy = tmp_path / "policy.toml"
    bad_policy.write_text('default_finance_owner = "not-a-user"\n')
    result = run("config", "check", env={"DATABASE_URL": "nonsense", "SLACK_BOT_TOKEN": "xoxb-fake",
                                         "FINANCE_DESK_POLICY": str(bad_policy)})
    assert result.returncode == 2
    for name in ("DATABASE_URL", "DIALNEXA_WEBHOOK_SECRETS", "SLACK_SIGNING_SECRET", "FINANCE_CHANNEL",
                 "default_finance_owner"):
        assert name in result.stderr, (name, result.stderr)


def test_worker_needs_no_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.config import ConfigError, load_settings

    for key in list(os.environ):
        if key.startswith(("SLACK_", "DIALNEXA_", "FINANCE_", "DATABASE_URL")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DIALNEXA_WEBHOOK_SECRETS", "whsec_x")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-fake")
    monkeypatch.setenv("FINANCE_CHANNEL", "C0FINANCE")
    assert load_settings(require_slack=True, http=False).slack_signing_secret is None
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        load_settings(require_slack=True)  # serve receives Slack's requests: it must verify them


def test_missing_values_are_named() -> None:
    result = run("config", "check", env={"SLACK_BOT_TOKEN": "xoxb-fake"})
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


def test_the_migrations_match_the_models(engine: Engine) -> None:
    # The tables are declared in code (storage.models, storage.fields); a column changed there without a
    # migration would leave every existing database behind.
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


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


# -- MOONCLERK_WEBHOOK_TOKEN -----------------------------------------------------------------------

def test_a_short_moonclerk_webhook_token_is_one_clear_line_and_never_echoed() -> None:
    short = "SECRETTOKEN" + "x" * 12  # 23 characters: one short of the minimum
    result = run("config", "check", env={"DIALNEXA_WEBHOOK_SECRETS": "whsec_1", "MOONCLERK_WEBHOOK_TOKEN": short})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("finance-desk: MOONCLERK_WEBHOOK_TOKEN: ") and "at least 24 characters" in line
    assert "SECRETTOKEN" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    slashed = run("config", "check", env={"DIALNEXA_WEBHOOK_SECRETS": "whsec_1",
                                          "MOONCLERK_WEBHOOK_TOKEN": "SECRETTOKEN/" + "x" * 24})
    assert slashed.returncode == 2 and "finance-desk: MOONCLERK_WEBHOOK_TOKEN: " in slashed.stderr
    assert "SECRETTOKEN" not in slashed.stderr + slashed.stdout
    ok = run("config", "check", env={"DIALNEXA_WEBHOOK_SECRETS": "whsec_1",
                                     "MOONCLERK_WEBHOOK_TOKEN": "SECRETTOKEN" + "x" * 13})
    assert ok.returncode == 0, ok.stderr
    assert "configuration ok" in ok.stdout


def test_serve_refuses_to_start_with_a_short_moonclerk_webhook_token(tmp_path: Path) -> None:
    result = run("serve", "--port", str(_free_port()), cwd=tmp_path,
                 env={"DIALNEXA_WEBHOOK_SECRETS": "whsec_1", "MOONCLERK_WEBHOOK_TOKEN": "short"})
    assert result.returncode == 2
    assert result.stderr.strip() == ("finance-desk: MOONCLERK_WEBHOOK_TOKEN: must be at least 24 "
                                     "characters (it is the only thing guarding /webhooks/moonclerk/...); "
                                     "generate one with: openssl rand -hex 24")


# -- audit export ----------------------------------------------------------------------------------

SINCE = ("--since", "2026-01-01")


def test_audit_export_on_a_database_never_migrated_is_one_line(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        sqlite3.connect(db_url.removeprefix("sqlite:///")).close()  # an empty database file: no tables yet
    result = run("audit", "export", *SINCE, "--format", "csv", env={"DATABASE_URL": db_url})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "finance-desk: the database has no audit trail yet (never migrated): run `finance-desk db upgrade` "
        "against this DATABASE_URL first"]


def test_audit_export_of_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    result = run("audit", "export", *SINCE, env={"DATABASE_URL": f"sqlite:///{path}"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"finance-desk: DATABASE_URL: no SQLite database at {path}; run `finance-desk db upgrade` to create it"]
    assert not path.exists()


HOSTILE = ["=HYPERLINK(\"https://evil.example\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
           "\tindented", "\rreturn", "plain text", ""]


def test_audit_export_csv_neutralises_formulas_and_jsonl_is_untouched(db_url: str, engine: Engine,
                                                                      tmp_path: Path) -> None:
    at = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    with session_scope(engine) as session:
        for i, text in enumerate(HOSTILE):
            session.add(AuditEvent(at=at + timedelta(seconds=i), actor=text or "system", action="test.note",
                                   call_id=text or None, record=text or None, target=text or None,
                                   reason=text or None, outcome="ok", detail={"said": text}))
        session.add(AuditEvent(at=datetime(2025, 12, 31, tzinfo=UTC), actor="=old", action="test.old"))
    out = tmp_path / "audit.csv"
    result = run("audit", "export", *SINCE, "--format", "csv", "--output", str(out), env={"DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"{len(HOSTILE)} audit events written"
    with out.open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == ["at", "actor", "action", "call_id", "record", "target", "reason", "outcome", "detail"]
    assert len(rows) == len(HOSTILE)
    for text, row in zip(HOSTILE, rows, strict=True):
        cells = dict(zip(header, row, strict=True))
        expected = "'" + text if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text
        for column in ("call_id", "record", "target", "reason"):
            assert cells[column] == expected, (column, text)
        assert cells["actor"] == (expected or "system")
        assert json.loads(cells["detail"]) == {"said": text}  # JSON text starts with "{": left as it is
        assert cells["at"].startswith("2026-02-01T12:00:0")
    for row in rows:
        assert not any(cell[:1] in {"=", "+", "-", "@", "\t", "\r"} for cell in row), row

    jsonl = run("audit", "export", *SINCE, "--format", "jsonl", env={"DATABASE_URL": db_url})
    assert jsonl.returncode == 0, jsonl.stderr
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [line["reason"] for line in lines] == [text or None for text in HOSTILE]  # exactly as stored
    assert [line["detail"] for line in lines] == [{"said": text} for text in HOSTILE]


def test_audit_export_includes_decisions_and_delegations_that_have_no_case(db_url: str, engine: Engine) -> None:
    at = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    with session_scope(engine) as session:
        case = Case(call_id="call_export", is_billing=True, kind="refund", created_at=at, updated_at=at)
        session.add(case)
        session.flush()
        # Written the way bot.decisions and bot.delegations write them; a delegation concerns no case.
        write_audit(session, None, "U0SENIOR", at, Event("delegation.started",
                                                         detail={"delegator": "U0SENIOR", "delegate": "U0OWNER",
                                                                 "ends_at": "2026-12-11T05:00:00+00:00"}))
        for i, (action, detail) in enumerate((("case.approved", {"on_behalf_of": "U0SENIOR", "final": True}),
                                              ("approval.nudged", {"level": "escalation"}),
                                              ("case.resolved", {"outcome": "refunded"}),
                                              ("case.denied", {}))):
            write_audit(session, case, "U0OWNER", at + timedelta(seconds=i + 1), Event(action, detail=detail))
        write_audit(session, None, "system", at + timedelta(seconds=9), Event("delegation.ended",
                                                                              detail={"delegator": "U0SENIOR"}))
    expected = ["delegation.started", "case.approved", "approval.nudged", "case.resolved", "case.denied",
                "delegation.ended"]
    jsonl = run("audit", "export", *SINCE, "--format", "jsonl", env={"DATABASE_URL": db_url})
    assert jsonl.returncode == 0, jsonl.stderr
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [line["action"] for line in lines] == expected
    assert [line["call_id"] for line in lines] == [None, *["call_export"] * 4, None]
    assert lines[0]["detail"]["delegate"] == "U0OWNER" and lines[1]["detail"]["on_behalf_of"] == "U0SENIOR"
    table = run("audit", "export", *SINCE, "--format", "csv", env={"DATABASE_URL": db_url})
    assert table.returncode == 0, table.stderr
    header, *rows = list(csv.reader(table.stdout.splitlines()))
    assert [dict(zip(header, row, strict=True))["action"] for row in rows] == expected
    assert [dict(zip(header, row, strict=True))["call_id"] for row in rows] == ["", *["call_export"] * 4, ""]
