"""`finance-desk check`: is everything wired before finance-desk is switched on?

One row per check: what was checked, the result, and the fix. Offline checks read the environment,
the policy file and manifest.yml; `--live` also asks Slack and each configured provider (reads only,
nothing is written anywhere). `--fields` prints the field map. Nothing secret is ever printed: rows
name settings, never their values, and provider errors are already scrubbed of keys.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bot.config import ConfigError, Settings, load_settings
from bot.ingest import preview_case
from bot.lookup.customers import DEFAULT_MAX_CUSTOMERS
from bot.lookup.directory import freshness
from bot.policy import Policy, PolicyError, load_policy
from bot.triage.model import BillingKind
from providers.base import ProviderError
from providers.dialnexa import NotACallEvent
from providers.mail import SmtpMode, parse_smtp_url
from providers.moonclerk import MoonClerkClient
from providers.poof import PoofClient
from providers.stripe import StripeClient
from storage.db import make_engine

OK, FAIL, OFF = "ok", "FAIL", "not configured"
WARN = "warn"  # passes (the exit status stays 0) but needs a look: the row says what to do

# The bot scopes the code needs (each Web API method it calls; tests/test_manifest.py derives the same set
# from the source): chat.postMessage/update/postEphemeral, conversations.history/replies in public and
# private channels, usergroups.users.list, and the /finance command.
NEEDED_SCOPES = frozenset({"chat:write", "channels:history", "groups:history", "usergroups:read", "commands"})
MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"

# What a Slack error on a channel means for an admin (mirrors bot.slack.delivery.FATAL_ERRORS).
_CHANNEL_FIX = {
    "channel_not_found": "use the channel ID (C…) and invite the app to it",
    "not_in_channel": "run /invite @finance-desk in that channel",
    "is_archived": "unarchive it or name another channel",
    "missing_scope": "update the app from manifest.yml and reinstall it",
}
_AUTH_FIX = "reinstall the app and copy its xoxb- token into SLACK_BOT_TOKEN"


@dataclass(frozen=True)
class Row:
    check: str
    result: str
    detail: str = ""
    fix: str = ""

    @property
    def passed(self) -> bool:
        return self.result != FAIL


def passed(rows: Iterable[Row]) -> bool:
    return all(row.passed for row in rows)


def render(rows: list[Row]) -> str:
    width = max([len(row.check) for row in rows] + [5])
    lines = [f"{'check':<{width}}  {'result':<14}  detail / fix"]
    for row in rows:
        text = row.detail + (f" -> fix: {row.fix}" if row.fix and (not row.passed or row.result == WARN) else "")
        lines.append(f"{row.check:<{width}}  {row.result:<14}  {text}".rstrip())
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- offline


def offline_checks() -> tuple[list[Row], Settings | None, Policy | None]:
    """Settings, policy and the manifest's scopes; returns the settings and policy when they load."""
    rows: list[Row] = []
    settings: Settings | None = None
    try:
        settings = load_settings()
        rows.append(Row("settings", OK, "environment variables valid"))
    except ConfigError as exc:
        rows += [Row("settings", FAIL, problem, "set or correct that variable") for problem in exc.problems]
    raw = os.environ.get("FINANCE_DESK_POLICY")
    policy_path = settings.finance_desk_policy if settings is not None else (Path(raw) if raw else None)
    policy: Policy | None = None
    try:
        policy = load_policy(policy_path)
        rows.append(Row("policy", OK, f"{policy_path}" if policy_path else "no FINANCE_DESK_POLICY: nobody approves"))
    except PolicyError as exc:
        rows += [Row("policy", FAIL, problem, "correct the policy file") for problem in exc.problems]
    rows.append(manifest_scopes(MANIFEST))
    if settings is not None:
        rows.append(directory_check(settings))
    return rows, settings, policy


def manifest_scopes(path: Path) -> Row:
    if not path.exists():
        return Row("manifest scopes", OFF, "manifest.yml not shipped with this install")
    declared = _bot_scopes(path.read_text(encoding="utf-8"))
    missing, extra = NEEDED_SCOPES - declared, declared - NEEDED_SCOPES
    if missing or extra:
        return Row("manifest scopes", FAIL, f"missing {sorted(missing)}, not used {sorted(extra)}",
                   "make manifest.yml's oauth_config.scopes.bot the scopes the code needs")
    return Row("manifest scopes", OK, ", ".join(sorted(declared)))


_SYNCERS = "serve, socket or worker"  # each runs the directory sync (one process at a time does the work)
_SYNC_FIX = f"start {_SYNCERS}: each keeps the directory in sync"
_FAILING_FIX = "check MOONCLERK_API_KEY and MOONCLERK_API_URL (finance-desk check --live tries them)"


def directory_check(settings: Settings, now: datetime | None = None) -> Row:
    """How fresh the customer directory is, read from the database (offline: MoonClerk is not asked).

    ok: a complete pass within the expected interval; warn: no complete pass yet, or none for too long
    with no error recorded (nothing is syncing: lookups then miss customers created since); FAIL: the
    sync is failing (its last error stands) and the copy is stale or was never complete."""
    label = "customer directory"
    if settings.moonclerk_api_key is None:
        return Row(label, OFF, "MOONCLERK_API_KEY unset: nothing to sync")
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        return Row(label, FAIL, "DATABASE_URL is not a database URL", "correct DATABASE_URL")
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).exists():
        # Reading would create an empty database file; serve, socket and worker create and migrate it.
        return Row(label, WARN, "no database yet, so no directory", _SYNC_FIX)
    engine = make_engine(settings.database_url)
    try:
        if not inspect(engine).has_table("directory_sync"):
            return Row(label, WARN, "the database has no directory tables yet",
                       f"run finance-desk db upgrade, or start {_SYNCERS} (they migrate at start)")
        state = freshness(engine, now or datetime.now(UTC))
    except SQLAlchemyError as exc:
        return Row(label, FAIL, f"could not read the database ({type(exc).__name__})",
                   "check DATABASE_URL and that the database is up")
    finally:
        engine.dispose()
    error, syncing = state.get("last_error"), state.get("syncing")
    failing = f"; the last sync attempt failed: {str(error)[:200]}" if error else ""
    if not state["ready"]:
        progress = f": the first pass has read {syncing['offset']} customers" if syncing else ""
        detail = (f"no complete sync yet{progress}; until one finishes, lookups and matching read at most "
                  f"the first {DEFAULT_MAX_CUSTOMERS:,} MoonClerk customers{failing}")
        return Row(label, FAIL if error else WARN, detail, _FAILING_FIX if error else _SYNC_FIX)
    synced = datetime.fromisoformat(state["last_full_sync"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    detail = f"{state['customers']} customers, last full sync {synced} ({_age(state['age_seconds'])} ago)"
    if syncing:
        detail += f", the next pass has read {syncing['offset']}"
    detail += failing
    if not state["stale"]:
        return Row(label, OK, detail)
    if error:
        return Row(label, FAIL, f"stale: {detail}", _FAILING_FIX)
    return Row(label, WARN, f"stale, nothing is syncing it: {detail}", _SYNC_FIX)


def _age(seconds: int) -> str:
    minutes, hours = seconds // 60, seconds // 3600
    if hours >= 48:
        return f"{hours // 24} days"
    if hours:
        return f"{hours} h {minutes % 60} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


def _bot_scopes(text: str) -> set[str]:
    # manifest.yml's `oauth_config: scopes: bot:` list, read without a YAML library (not a runtime dependency).
    scopes: set[str] = set()
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "bot:":
            inside = True
            continue
        if not inside or not stripped or stripped.startswith("#"):
            continue
        if not stripped.startswith("- "):
            break
        scopes.add(stripped[2:].strip())
    return scopes


# ----------------------------------------------------------------------------------------- live


def live_checks(settings: Settings, policy: Policy) -> list[Row]:
    return [
        *slack_checks(settings, policy),
        *moonclerk_checks(settings),
        poof_check(settings),
        stripe_check(settings),
        smtp_check(settings),
        Row("dialnexa secret", OK if settings.dialnexa_webhook_secrets else FAIL,
            f"{len(settings.dialnexa_webhook_secrets)} secret(s) set" if settings.dialnexa_webhook_secrets else "",
            "set DIALNEXA_WEBHOOK_SECRETS to the webhook secret from DialNexa"),
    ]


def _policy_groups(policy: Policy) -> list[str]:
    groups = [*policy.approvers.user_groups, *policy.senior_approvers.user_groups]
    if policy.oncall_user_group:
        groups.append(policy.oncall_user_group)
    groups += [owner for owner in policy.owners.values() if owner.startswith("S")]
    return list(dict.fromkeys(groups))


def slack_checks(settings: Settings, policy: Policy) -> list[Row]:
    token = settings.slack_bot_token
    if token is None:
        return [Row("slack", OFF, "SLACK_BOT_TOKEN unset: cases are stored, no cards posted")]
    rows: list[Row] = []
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
    try:
        with httpx.Client(base_url=settings.slack_api_url, headers=headers,
                          timeout=settings.provider_timeout_seconds) as http:
            answer = http.post("auth.test")
            body = _json(answer)
            if not body.get("ok"):
                return [Row("slack auth.test", FAIL, f"Slack answered {body.get('error', answer.status_code)}",
                            _AUTH_FIX)]
            rows.append(Row("slack auth.test", OK, f"bot user {body.get('user_id')} in team {body.get('team_id')}"))
            granted = {s.strip() for s in answer.headers.get("x-oauth-scopes", "").split(",") if s.strip()}
            missing = NEEDED_SCOPES - granted
            rows.append(Row("slack scopes", FAIL if missing else OK,
                            f"missing {sorted(missing)}" if missing else "all needed scopes granted",
                            "update the app from manifest.yml and reinstall it"))
            for name in ("finance_channel", "escalation_channel", "review_channel"):
                channel = getattr(settings, name)
                label = f"slack {name.upper()}"
                if not channel:
                    rows.append(Row(label, OFF, "unset"))
                    continue
                found = _json(http.post("conversations.history", data={"channel": channel, "limit": 1}))
                error = str(found.get("error", ""))
                rows.append(Row(label, OK if found.get("ok") else FAIL,
                                f"{channel}: exists, the bot is a member" if found.get("ok") else f"{channel}: {error}",
                                _CHANNEL_FIX.get(error, "check the channel ID and the app's membership")))
            for group in _policy_groups(policy):
                found = _json(http.post("usergroups.users.list", data={"usergroup": group}))
                rows.append(Row(f"slack group {group}", OK if found.get("ok") else FAIL,
                                f"{len(found.get('users', []))} member(s)" if found.get("ok")
                                else str(found.get("error", "")),
                                "use the group's ID (S…) from Slack's user group settings"))
    except httpx.HTTPError as exc:
        rows.append(Row("slack", FAIL, f"could not reach SLACK_API_URL ({type(exc).__name__})",
                        "check the network path to Slack"))
    return rows


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"ok": False, "error": f"HTTP {response.status_code}, not JSON"}
    return body if isinstance(body, dict) else {"ok": False, "error": "unexpected answer"}


def moonclerk_checks(settings: Settings) -> list[Row]:
    if settings.moonclerk_api_key is None:
        return [Row("moonclerk", OFF, "MOONCLERK_API_KEY unset: no customer look-ups or matching")]
    fix = "check MOONCLERK_API_KEY (MoonClerk > Settings > API) and MOONCLERK_API_URL"
    client = MoonClerkClient(settings.moonclerk_api_key.get_secret_value(), settings.moonclerk_api_url,
                             timeout=settings.provider_timeout_seconds)
    try:
        # The payment forms first: every answer about a customer starts from the form they paid on.
        forms = sum(1 for _ in client.list_forms())
        customers = sum(1 for _ in client.list_customers())
    except ProviderError as exc:
        return [Row("moonclerk", FAIL, str(exc), fix)]
    finally:
        client.close()
    return [Row("moonclerk key", OK, "the key works"),
            Row("moonclerk payment forms", OK if forms else FAIL, f"{forms} form(s) listed",
                "create a payment form in MoonClerk; matching needs at least one"),
            Row("moonclerk customers", OK, f"{customers} customer(s)")]


def poof_check(settings: Settings) -> Row:
    if settings.poof_api_key is None:
        return Row("poof", OFF, "POOF_API_KEY unset: no invoices or payouts")
    client = PoofClient(settings.poof_api_key.get_secret_value(), settings.poof_api_url,
                        timeout=settings.provider_timeout_seconds)
    try:
        count = len(client.list_transactions())
    except ProviderError as exc:
        return Row("poof", FAIL, str(exc), "check POOF_API_KEY and POOF_API_URL")
    finally:
        client.close()
    return Row("poof", OK, f"key works ({count} transaction(s) readable)")


def stripe_check(settings: Settings) -> Row:
    key = settings.stripe_api_key
    if key is None:
        if settings.stripe_webhook_secret:
            return Row("stripe", FAIL, "STRIPE_WEBHOOK_SECRET is set but STRIPE_API_KEY is not",
                       "set STRIPE_API_KEY: /webhooks/stripe re-fetches every event's object (it answers 404 without)")
        return Row("stripe", OFF, "STRIPE_API_KEY unset")
    client = StripeClient(key.get_secret_value(), settings.stripe_api_url, timeout=settings.provider_timeout_seconds,
                          max_network_retries=0)
    try:
        client.check()
    except ProviderError as exc:
        return Row("stripe", FAIL, str(exc), "check STRIPE_API_KEY (a restricted key needs Balance: Read) and "
                                             "STRIPE_API_URL")
    finally:
        client.close()
    hooks = (f"{len(settings.stripe_webhook_secret)} webhook secret(s)" if settings.stripe_webhook_secret
             else "no STRIPE_WEBHOOK_SECRET: refunds and disputes are not followed by webhook")
    return Row("stripe", OK, f"key works (balance readable); {hooks}")


def smtp_check(settings: Settings, ca_file: str | None = None) -> Row:
    url = getattr(settings, "smtp_url", None)
    if url is None:
        return Row("smtp", OFF, "SMTP_URL unset: no email to customers")
    try:
        target = parse_smtp_url(url.get_secret_value())
    except ValueError as exc:
        return Row("smtp", FAIL, f"SMTP_URL {exc}", "use smtp://user:password@host:587")
    tls = ssl.create_default_context(cafile=ca_file)
    try:
        if target.mode is SmtpMode.TLS:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port, timeout=settings.provider_timeout_seconds,
                                                  context=tls)
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=settings.provider_timeout_seconds)
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=tls)
                smtp.ehlo()
            elif target.mode is SmtpMode.STARTTLS:
                smtp.close()
                return Row("smtp", FAIL, f"{target.host} offers no STARTTLS", "use a server that offers STARTTLS")
        with smtp:
            if target.username and target.password:
                smtp.login(target.username, target.password.get_secret_value())
    except smtplib.SMTPAuthenticationError as exc:
        return Row("smtp", FAIL, f"{target.describe()} refused the login ({exc.smtp_code})",
                   "check the user name and password in SMTP_URL")
    except (OSError, smtplib.SMTPException) as exc:
        return Row("smtp", FAIL, f"{target.describe()}: {type(exc).__name__}", "check the host, port and certificate")
    return Row("smtp", OK, f"{target.describe()} connected" + (" and logged in" if target.username else ""))


# ----------------------------------------------------------------------------------------- field map

FIELDS = ("destination object", "owner", "status", "urgency", "next step", "record URL")
_UNMAPPED = "UNMAPPED"


def field_map(settings: Settings | None, policy: Policy, calls: list[Path]) -> list[Row]:
    """Per case kind (or per saved call): where each of the six launch fields comes from and lands."""
    channel = settings.finance_channel if settings is not None else None
    rows: list[Row] = []
    if not calls:
        for kind in BillingKind:
            if kind is not BillingKind.NOT_BILLING:
                rows += _kind_rows(kind.value, channel, policy.owner_for(kind.value), next_step=None,
                                   record=None)
        return rows
    now = datetime.now(UTC)
    for path in calls:
        try:
            case = preview_case(json.loads(path.read_bytes(), parse_float=Decimal), policy, now)
        except (ValueError, NotACallEvent) as exc:
            rows.append(Row(f"{path.name}", FAIL, f"not a DialNexa call event ({type(exc).__name__})",
                            "give a saved DialNexa webhook body"))
            continue
        if not case.is_billing:
            rows.append(Row(f"{path.name} ({case.kind})", OK, "not a billing call: stored, no card, nothing to map"))
            continue
        record = next((name for name in ("payment_platform_url", "crm_url", "support_ticket_url")
                       if getattr(case, name)), None)
        rows += _kind_rows(f"{path.name} ({case.kind})", channel, case.owner,
                           next_step=bool(case.next_step), record=record)
    return rows


def _kind_rows(label: str, channel: str | None, owner: str | None, *, next_step: bool | None,
               record: str | None) -> list[Row]:
    def row(field: str, source: str | None, lands: str, fix: str) -> Row:
        if source is None:
            return Row(f"{label}: {field}", FAIL, f"{_UNMAPPED} -> {lands}", fix)
        return Row(f"{label}: {field}", OK, f"{source} -> {lands}")

    owner_source = None
    if owner:
        kind_owner = "a user group" if owner.startswith("S") else "a user"
        owner_source = f"{owner} ({kind_owner}; the call's finance_owner, else policy [owners], else default)"
    return [
        row("destination object", f"case row (cases) + card in FINANCE_CHANNEL {channel}" if channel else None,
            "Slack card", "set FINANCE_CHANNEL to the finance channel's ID"),
        row("owner", owner_source, "cases.owner, card 'Owner'",
            "name an owner for this kind in the policy's [owners] or default_finance_owner"),
        row("status", "case lifecycle (received at ingest; decisions move it)", "cases.state, card status line",
            ""),
        row("urgency", "triage routing (kind, VIP, reasons, deadline)", "cases.urgency, card header", ""),
        row("next step", None if next_step is False else "DialNexa analysis next_step",
            "cases.next_step, card 'Next step'", "the call's analysis carries no next_step: add it in DialNexa"),
        row("record URL", f"analysis {record}" if record else "analysis payment_platform_url / crm_url, "
            "else the DialNexa call page", "card links", ""),
    ]

