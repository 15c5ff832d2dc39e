"""README's first command: `finance-desk demo` runs the whole product on embedded defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "DIALNEXA_", "DATABASE_URL", "FINANCE_", "MOONCLERK_", "POOF_"))}
    result = subprocess.run([sys.executable, "-m", "bot", "demo", "--dir", str(tmp_path / "run")], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.count("┌─ #finance") == 5  # five billing calls, five cards; the appointment call has none
    assert "not billing: stored, not surfaced" in out
    assert "duplicate · same case, no new card" in out
    assert "Sensitive details were suppressed" in out
    assert "4242 4242" not in out + result.stderr and "four two four two" not in out
    assert "took ownership of this case" in out
    assert "Poof invoices created: 1" in out
    record = tmp_path / "run"
    calls = [json.loads(line) for line in (record / "slack-api-calls.jsonl").read_text().splitlines()]
    posts = [c for c in calls if c["method"] == "chat.postMessage" and not (c["body"] or {}).get("thread_ts")
             and c["body"]["channel"] == "C0FINANCE"]
    assert len(posts) == 5
    # Dispute 1, duplicate charge 1, the VIP's failed renewal 1 naming its three reasons (VIP blocker,
    # failed renewal, agent's flag).
    pages = [c for c in calls if c["method"] == "chat.postMessage" and c["body"]["channel"] == "C0ESCALATE"]
    assert len(pages) == 3 and out.count("┌─ #escalations") == 3
    audit = [json.loads(line) for line in (record / "audit.jsonl").read_text().splitlines()]
    assert {"case.created", "case.assigned", "invoice_poof.succeeded", "slack.card_posted"} <= {
        a["action"] for a in audit}
    assert (record / "finance-desk-demo.db").exists() and (record / "channel.txt").exists()
