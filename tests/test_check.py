"""`finance-desk check`: each live check passes and fails against the stand-ins; the field map; owners per kind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from blocks.format import mention
from bot import check
from bot.config import Settings
from bot.policy import Policy, PolicyError, load_policy
from bot.standins import MoonClerkStandIn, PoofStandIn, SlackStandIn
from bot.triage.model import BillingKind, Extracted
from bot.triage.route import route
from storage.db import session_scope
from storage.directory import DirectorySync
from tests.conftest import make_settings

SAMPLES = Path(__file__).resolve().parent.parent / "bot" / "samples"
NOW = datetime(2026, 11, 3, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[tuple[SlackStandIn, MoonClerkStandIn, PoofStandIn]]:
    with SlackStandIn(known_channels=["C0FINANCE", "C0ESC"], usergroups={"S0APPROVE": ["U0A"]}) as slack, \
            MoonClerkStandIn(api_key="mc_fake") as moonclerk, PoofStandIn(api_key="poof_fake") as poof:
        yield slack, moonclerk, poof


def settings_for(stand_ins: tuple[SlackStandIn, MoonClerkStandIn, PoofStandIn], **overrides: object) -> Settings:
    slack, moonclerk, poof = stand_ins
    values: dict[str, object] = dict(
        slack_bot_token=SecretStr("xoxb-fake"), slack_api_url=f"{slack.url}/api/", finance_channel="C0FINANCE",
        escalation_channel="C0ESC", dialnexa_webhook_secrets=[SecretStr("whsec_fake")],
        moonclerk_api_key=SecretStr("mc_fake"), moonclerk_api_url=moonclerk.url,
        poof_api_key=SecretStr("poof_fake"), poof_api_url=poof.url, provider_timeout_seconds=2,
    )
    values.update(overrides)
    return Settings.model_validate(values)


POLICY = Policy.model_validate({"approvers": {"user_groups": ["S0APPROVE"]}})


def by_check(rows: list[check.Row]) -> dict[str, check.Row]:
    return {row.check: row for row in rows}


def test_every_live_check_passes_when_wired(stand_ins: tuple[SlackStandIn, MoonClerkStandIn, PoofStandIn]) -> None:
    rows = check.live_checks(settings_for(stand_ins), POLICY)
    found = by_check(rows)
    assert check.passed(rows), check.render(rows)
    assert found["slack auth.test"].result == check.OK and "B" not in found["slack auth.test"].detail[:3]
    assert found["slack scopes"].result == check.OK
    assert found["slack FINANCE_CHANNEL"].result == check.OK
    assert found["slack REVIEW_CHANNEL"].result == check.OFF
    assert found["slack group S0APPROVE"].detail == "1 member(s)"
    forms = found["moonclerk payment forms"]
    assert forms.result == check.OK and "form(s) listed" in forms.detail
    assert found["moonclerk customers"].result == check.OK
    assert found["poof"].result == check.OK
    # Not configured passes, and says so: the check grows with the Stripe and mail issues.
    assert found["stripe"].result == check.OFF and found["smtp"].result == check.OFF
    assert "xoxb-fake" not in check.render(rows) and "mc_fake" not in check.render(rows)


def test_each_live_check_fails_with_its_fix(stand_ins: tuple[SlackStandIn, MoonClerkStandIn, PoofStandIn]) -> None:
    slack = stand_ins[0]
    slack.revoked_tokens.add("xoxb-revoked")
    try:
        rows = check.live_checks(settings_for(stand_ins, slack_bot_token=SecretStr("xoxb-revoked")), POLICY)
        assert by_check(rows)["slack auth.test"].result == check.FAIL
        assert "reinstall" in by_check(rows)["slack auth.test"].fix
    finally:
        slack.revoked_tokens.discard("xoxb-revoked")

    slack.granted_scopes = "chat:write,commands"
    try:
        rows = check.live_checks(settings_for(stand_ins, finance_channel="C0NOPE"),
                                 Policy.model_validate({"approvers": {"user_groups": ["S0GHOST"]}}))
    finally:
        slack.granted_scopes = "chat:write,channels:history,groups:history,usergroups:read,commands"
    found = by_check(rows)
    assert found["slack scopes"].result == check.FAIL and "usergroups:read" in found["slack scopes"].detail
    channel = found["slack FINANCE_CHANNEL"]
    assert channel.result == check.FAIL and "channel_not_found" in channel.detail
    assert found["slack group S0GHOST"].result == check.FAIL

    with socket.socket() as spare:  # a port nothing listens on: SMTP cannot connect
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    rows = check.live_checks(settings_for(
        stand_ins, moonclerk_api_key=SecretStr("mc_wrong"), poof_api_key=SecretStr("poof_wrong"),
        dialnexa_webhook_secrets=[], smtp_url=SecretStr(f"smtp://u:pw-secret@127.0.0.1:{port}"),
        mail_from="finance@example.com"), POLICY)
    found = by_check(rows)
    assert found["moonclerk"].result == check.FAIL and "MOONCLERK_API_KEY" in found["moonclerk"].fix
    assert found["poof"].result == check.FAIL
    assert found["smtp"].result == check.FAIL
    assert found["dialnexa secret"].result == check.FAIL
    text = check.render(rows)
    assert "mc_wrong" not in text and "poof_wrong" not in text and "pw-secret" not in text
    assert not check.passed(rows)


def test_manifest_scopes_match_the_code() -> None:
    assert check.manifest_scopes(check.MANIFEST).result == check.OK


def test_field_map_per_kind_flags_unmapped_owner_and_destination() -> None:
    rows = check.field_map(None, Policy(), [])
    found = by_check(rows)
    kinds = [kind.value for kind in BillingKind if kind is not BillingKind.NOT_BILLING]
    assert all(f"{kind}: {field}" in found for kind in kinds for field in check.FIELDS)
    assert found["refund: owner"].result == check.FAIL and "UNMAPPED" in found["refund: owner"].detail
    assert found["refund: destination object"].result == check.FAIL
    assert found["refund: urgency"].result == check.OK


def test_field_map_passes_with_owners_and_a_channel(tmp_path: Path) -> None:
    settings = Settings.model_validate({"finance_channel": "C0FINANCE"})
    policy = Policy.model_validate({"owners": {"dispute": "S0DISPUTES"}, "default_finance_owner": "U0FIN"})
    rows = check.field_map(settings, policy, [])
    assert check.passed(rows), check.render(rows)
    assert "a user group" in by_check(rows)["dispute: owner"].detail
    sample = check.field_map(settings, policy, [SAMPLES / "01_refund.json", SAMPLES / "05_not_billing.json"])
    assert any(row.check.startswith("01_refund.json") for row in sample)
    assert any("not a billing call" in row.detail for row in sample)


def test_cli_check_fields_exits_non_zero_while_unmapped(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FINANCE_", "DIALNEXA_", "MOONCLERK_",
                                                                     "POOF_", "SMTP_", "MAIL_"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/x.db"
    env["DIALNEXA_WEBHOOK_SECRETS"] = "whsec_fake"
    run = [sys.executable, "-m", "bot", "check", "--fields"]
    result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "UNMAPPED" in result.stdout
    policy = tmp_path / "policy.toml"
    policy.write_text('default_finance_owner = "U0FIN"\n[owners]\ndispute = "S0DISPUTES"\n')
    env.update(FINANCE_DESK_POLICY=str(policy), FINANCE_CHANNEL="C0FINANCE")
    result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every field mapped" in result.stdout
    alias = subprocess.run([sys.executable, "-m", "bot", "config", "check"], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert alias.returncode == 0 and "configuration ok" in alias.stdout


def test_owners_refuse_unknown_kinds_and_bad_ids(tmp_path: Path) -> None:
    for body, expected in (('refunds = "U0A"', "'refunds' is not a case kind"),
                           ('dispute = "D0CHANNEL"', "'D0CHANNEL' is not a Slack user ID"),
                           ('not_billing = "U0A"', "'not_billing' is not a case kind")):
        path = tmp_path / "p.toml"
        path.write_text(f"[owners]\n{body}\n")
        with pytest.raises(PolicyError) as caught:
            load_policy(path)
        assert expected in "\n".join(caught.value.problems)


def test_owner_comes_from_policy_by_kind_and_a_group_shows_as_a_group_mention() -> None:
    policy = Policy.model_validate({"owners": {"dispute": "S0DISPUTES", "refund": "U0REFUNDS"},
                                    "default_finance_owner": "U0FIN"})
    fields = Extracted()
    assert route(BillingKind.DISPUTE, fields, policy, NOW).owner == "S0DISPUTES"
    assert route(BillingKind.REFUND, fields, policy, NOW).owner == "U0REFUNDS"
    assert route(BillingKind.BILLING_QUESTION, fields, policy, NOW).owner == "U0FIN"
    named = Extracted(finance_owner="U0NAMED")
    assert route(BillingKind.DISPUTE, named, policy, NOW).owner == "U0NAMED"  # the call's own owner first
    assert mention("S0DISPUTES") == "<!subteam^S0DISPUTES>"
    assert json.dumps(mention("U0FIN")) == '"<@U0FIN>"'


# -- the customer directory's freshness (offline: the database only) ----------------------------------

def _sync_state(engine: Engine, **values: Any) -> None:
    with session_scope(engine) as session:
        state = session.get(DirectorySync, "moonclerk") or DirectorySync(provider="moonclerk")
        for name, value in values.items():
            setattr(state, name, value)
        session.add(state)


def test_directory_row_says_how_fresh_the_directory_is(db_url: str, engine: Engine) -> None:
    settings = make_settings(db_url, moonclerk_api_key=SecretStr("mc_fake"))
    row = check.directory_check(settings, NOW)
    assert (row.result, row.passed) == (check.WARN, True) and "no complete sync yet" in row.detail
    assert "fix: start serve, socket or worker" in check.render([row])  # a warning shows its fix

    # The first pass fails part-way: the error stands and nothing is complete.
    _sync_state(engine, pass_no=1, next_offset=300, pass_started_at=NOW - timedelta(minutes=1),
                last_error="MoonClerk answered HTTP 503", last_error_at=NOW)
    row = check.directory_check(settings, NOW)
    assert row.result == check.FAIL and "read 300 customers" in row.detail and "HTTP 503" in row.detail
    assert "MOONCLERK_API_KEY" in row.fix

    # A complete pass 3 minutes ago that took 4: fresh until 15 + 2 × 4 + 5 = 28 minutes.
    _sync_state(engine, pass_no=1, next_offset=None, last_full_at=NOW - timedelta(minutes=3), last_full_seconds=240,
                customers=100_000, last_error=None, last_error_at=None)
    row = check.directory_check(settings, NOW)
    assert row.result == check.OK and row.detail.startswith("100000 customers, last full sync 2026-11-03 14:57 UTC")
    assert "(3 min ago)" in row.detail
    _sync_state(engine, next_offset=500)  # the next pass under way
    assert "the next pass has read 500" in check.directory_check(settings, NOW).detail
    _sync_state(engine, next_offset=None)
    assert check.directory_check(settings, NOW + timedelta(minutes=25)).result == check.OK
    stale = check.directory_check(settings, NOW + timedelta(minutes=26))
    assert stale.result == check.WARN and "nothing is syncing" in stale.detail and "(29 min ago)" in stale.detail

    # Stale because MoonClerk keeps failing: that fails the check; a passing error on a fresh copy does not.
    _sync_state(engine, last_error="MoonClerk answered HTTP 401", last_error_at=NOW)
    assert check.directory_check(settings, NOW + timedelta(hours=3)).result == check.FAIL
    fresh = check.directory_check(settings, NOW)
    assert fresh.result == check.OK and "HTTP 401" in fresh.detail

    assert check.directory_check(make_settings(db_url), NOW).result == check.OFF  # no MoonClerk: nothing to sync


def test_directory_row_without_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    row = check.directory_check(make_settings(f"sqlite:///{missing}", moonclerk_api_key=SecretStr("mc_fake")), NOW)
    assert row.result == check.WARN and "no database yet" in row.detail
    assert not missing.exists()  # the check never creates one

    empty = tmp_path / "empty.db"
    empty.touch()
    row = check.directory_check(make_settings(f"sqlite:///{empty}", moonclerk_api_key=SecretStr("mc_fake")), NOW)
    assert row.result == check.WARN and "db upgrade" in row.fix

    with socket.socket() as spare:  # a port nothing listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    url = f"postgresql://fd:pw-secret@127.0.0.1:{port}/nothing"
    row = check.directory_check(make_settings(url, moonclerk_api_key=SecretStr("mc_fake")), NOW)
    assert row.result == check.FAIL and "DATABASE_URL" in row.fix
    assert "pw-secret" not in check.render([row])


def test_the_stripe_row_reads_the_balance_and_names_the_missing_key() -> None:
    from bot.standins import StripeStandIn

    with StripeStandIn() as stripe:
        wired = check.stripe_check(make_settings("sqlite://", stripe_api_key=SecretStr(stripe.api_key),
                                                 stripe_api_url=stripe.url, provider_timeout_seconds=2))
        assert wired.result == check.OK and "no STRIPE_WEBHOOK_SECRET" in wired.detail
        assert stripe.calls("/v1/balance")
        wrong = check.stripe_check(make_settings("sqlite://", stripe_api_key=SecretStr("rk_test_wrong"),
                                                 stripe_api_url=stripe.url, provider_timeout_seconds=2))
        assert wrong.result == check.FAIL and "STRIPE_API_KEY" in wrong.fix and "rk_test_wrong" not in wrong.detail
    orphan = check.stripe_check(make_settings("sqlite://", stripe_webhook_secret=[SecretStr("whsec_fake")]))
    assert orphan.result == check.FAIL and "STRIPE_API_KEY" in orphan.fix
