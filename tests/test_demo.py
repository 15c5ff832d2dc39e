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
    # Dispute 1, duplicate charge 1, the refund above the demo's 100 USD threshold 1, the VIP's failed
    # renewal 1 naming its three reasons (VIP blocker, failed renewal, agent's flag).
    pages = [c for c in calls if c["method"] == "chat.postMessage" and c["body"]["channel"] == "C0ESCALATE"]
    assert len(pages) == 4 and out.count("┌─ #escalations") == 4
    audit = [json.loads(line) for line in (record / "audit.jsonl").read_text().splitlines()]
    assert {"case.created", "case.assigned", "invoice_poof.succeeded", "slack.card_posted"} <= {
        a["action"] for a in audit}
    # The refund: approved by two different approvers (the second a senior), the double click counted
    # once, then refunded on Stripe from the card, pending until Stripe's signed webhook says succeeded.
    refund = [a for a in audit if a["call_id"] == "call_demo_refund_0001"]
    approvals = [(a["actor"], a["outcome"]) for a in refund if a["action"] == "case.approved"]
    assert approvals == [("U0FINANCE2", "partial"), ("U0CONTROLLER", "ok")]
    assert "refund_stripe.pending" in {a["action"] for a in refund}
    for said in ("approved this case for 149.00 USD (1 of 2 approvals)", "Your approval is already counted",
                 "✅ Approved by <@U0CONTROLLER> for 149.00 USD (2 of 2 approvals).",
                 "Idempotency-Key call_demo_refund_0001:refund_stripe",
                 "POST /webhooks/stripe (Stripe-Signature) → HTTP 200",
                 ": pending → succeeded", "Stripe refund: ✅ done `re_", "State: *🏁 Done* · by stripe"):
        assert said in out, said
    assert (record / "finance-desk-demo.db").exists() and (record / "channel.txt").exists()
    # Step 6: the VIP's payment link, emailed to the verified recipient (the MoonClerk record's address,
    # not the one asked for on the call) through the local mail sink, printed as received.
    assert "✉️ Verified recipient `ryan@moonclerk.com` (customer record) · asked for `ap@bigcustomer.example`" in out
    for said in ("✉ To: ryan@moonclerk.com", "✉ From: Billing <billing@finance-desk.example>",
                 "✉ Message-ID: <call_demo_vip_renewal_0003=3Asend_to_customer=3A1@finance-desk.example>",
                 "✉ Your payment link: http://127.0.0.1:", "↳ 📧 Sent to `ryan@moonclerk.com` by @U0FINANCE2",
                 "last email: ✅ sent"):
        assert said in out, said
    [sent] = [a for a in audit if a["action"] == "email.sent"]
    assert sent["target"] == "ryan@moonclerk.com" and sent["actor"] == "U0FINANCE2" and sent["record"].startswith(
        "http://127.0.0.1:")
    eml = (record / "mail.eml").read_text()
    assert eml.count("Message-ID:") == 1 and "To: ryan@moonclerk.com" in eml
