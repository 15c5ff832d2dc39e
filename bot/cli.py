"""The `finance-desk` command line."""

from __future__ import annotations

import gc
import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import NoReturn, TextIO

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from blocks.builder import block_kit_builder_url
from blocks.card import case_card
from bot.audit_export import ExportError, export
from bot.config import ConfigError, Settings, load_settings, read_settings
from bot.ingest import preview_case
from bot.logs import setup_logging
from bot.policy import Policy, PolicyError, load_policy
from bot.runtime import Runtime, build_runtime
from providers.dialnexa import NotACallEvent
from storage.db import make_engine, normalise_url
from storage.migrate import current_revision, upgrade

# The serving commands import the server stack (uvicorn, Starlette, Bolt, APScheduler) inside
# themselves, so `preview`, `config check`, `db` and `audit` start without loading it. Nothing imports
# this module, so no import here can hide a cycle.


def _fail(problems: list[str]) -> NoReturn:
    for line in problems:
        click.echo(f"finance-desk: {line}", err=True)
    sys.exit(2)


def _read_settings() -> Settings:
    """The environment's settings for commands that serve nothing (no Slack or webhook secret needed)."""
    try:
        return read_settings()
    except ConfigError as exc:
        _fail(exc.problems)


def _settings(**kwargs: bool) -> Settings:
    try:
        return load_settings(**kwargs)
    except ConfigError as exc:
        _fail(exc.problems)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def cli(log_level: str) -> None:
    """finance-desk: DialNexa billing calls as action-ready finance cards in Slack."""
    setup_logging(getattr(logging, log_level.upper()))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="TCP port to listen on.")
def serve(host: str, port: int) -> None:
    """Serve the webhooks and Slack's HTTP endpoint (Events, interactivity, slash command)."""
    import uvicorn

    from bot.web.app import create_app

    settings = _settings()
    runtime = _runtime(settings)
    service = None
    if settings.slack_enabled:
        from bot.slack.service import start_slack

        service = start_slack(runtime, matcher=True)
    else:
        logging.getLogger(__name__).warning("SLACK_BOT_TOKEN is not set: cases are stored but no cards are posted")
    # uvicorn re-raises the SIGTERM it handled once it has drained: exit through `finally` instead of dying.
    signal.signal(signal.SIGTERM, _exit_after_drain)
    try:
        # SIGTERM: uvicorn stops accepting, lets in-flight requests (and their provider calls) finish for up
        # to PROVIDER_TIMEOUT_SECONDS, then the workers stop and hand back their leases: out within 30 s.
        app = create_app(runtime)
        _freeze_startup_objects()
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,
                    timeout_graceful_shutdown=_grace(settings))
    finally:
        if service is not None:
            service.stop()


def _freeze_startup_objects() -> None:
    """Take what start-up built (imports, the app, the policy) out of the garbage collector's view:
    otherwise each full collection walks ~150,000 long-lived objects (100-200 ms here) and lands on
    whatever request is in flight, e.g. a slash command's answer."""
    gc.collect()
    gc.freeze()


def _exit_after_drain(*_: object) -> None:
    raise SystemExit(0)


def _grace(settings: Settings) -> int:
    # In-flight requests get their provider calls' timeout, capped so the whole stop stays under 30 s.
    return max(1, min(int(settings.provider_timeout_seconds) + 1, 15))


def _runtime(settings: Settings) -> Runtime:
    try:
        return build_runtime(settings)
    except PolicyError as exc:
        _fail(exc.problems)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface for the webhook routes.")
@click.option("--port", default=8080, show_default=True, type=int, help="TCP port for the webhook routes.")
def socket(host: str, port: int) -> None:
    """Talk to Slack over Socket Mode (no public Slack URL); webhooks and /healthz are still served."""
    import uvicorn
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.errors import SlackApiError

    from bot.slack.service import start_slack
    from bot.web.app import create_app

    settings = _settings(socket_mode=True)
    runtime = _runtime(settings)
    service = start_slack(runtime, socket_mode=True, matcher=True)
    assert settings.slack_app_token is not None
    handler = SocketModeHandler(service.bolt, settings.slack_app_token.get_secret_value())
    try:
        handler.connect()  # type: ignore[no-untyped-call]
    except SlackApiError as exc:
        service.stop()
        _fail([f"SLACK_APP_TOKEN: Slack refused the Socket Mode connection ({exc.response.get('error')}); "
               "check the xapp- token has connections:write and Socket Mode is enabled for the app"])
    signal.signal(signal.SIGTERM, _exit_after_drain)
    try:
        app = create_app(runtime)
        _freeze_startup_objects()
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,
                    timeout_graceful_shutdown=_grace(settings))
    finally:
        handler.close()  # type: ignore[no-untyped-call]
        service.stop()


@cli.command()
@click.option("--drain", is_flag=True,
              help="Fire the reminders that are due, send everything the outbox and the mail outbox hold, then exit "
                   "(cron, one-off runs).")
def worker(drain: bool) -> None:
    """Run the Slack outbox worker and the reminder scheduler (no HTTP); several may share one PostgreSQL."""
    from bot.lookup.directory import sync_job
    from bot.lookup.stripe_directory import stripe_syncers
    from bot.mail.worker import drain as drain_mail
    from bot.mail.worker import mail_worker
    from bot.reminders.scheduler import drain as drain_once
    from bot.reminders.scheduler import scheduler_for
    from bot.shutdown import release_leases
    from bot.slack.service import action_context, outbox_worker, recover_provider_calls, web_client

    # Before start-up (migrations can take seconds): a SIGTERM that early still ends the run cleanly.
    stopped = threading.Event()
    if not drain:
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    settings = _settings(require_slack=True, http=False)
    runtime = _runtime(settings)
    client = web_client(runtime)
    outbox = outbox_worker(runtime, client)
    actions = action_context(runtime, client)
    reminders = scheduler_for(runtime, on_fired=outbox.wake, housekeeping=recover_provider_calls(runtime, actions))
    # Emails to customers (bot.mail), when SMTP_URL and MAIL_FROM are set.
    mail = mail_worker(runtime, actions, on_done=outbox.wake)
    if drain:
        done = drain_once(outbox, reminders)
        # "mail": null when email is not configured; then the outbox again for the emails' thread lines.
        done["mail"] = drain_mail(mail) if mail is not None else None
        if mail is not None:
            while outbox.run_once():
                pass
        click.echo(json.dumps(done))
        return
    outbox.start()
    reminders.start()
    if mail is not None:
        mail.start()
    # The customer directory sync (bot.lookup.directory); one process at a time does the work.
    directory = (sync_job(runtime.engine, actions.moonclerk, also=stripe_syncers(runtime.engine, runtime.settings))
                 .start() if actions.moonclerk is not None else None)
    # Operators (and the shutdown test) read this line as "started"; the SIGTERM handler is in place by now.
    logging.getLogger(__name__).info("worker started: outbox, reminders%s%s", ", mail" if mail is not None else "",
                                     ", directory sync" if directory is not None else "")
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if directory is not None:
            directory.stop()
        reminders.stop()
        if mail is not None:
            mail.stop()
        outbox.stop()
        release_leases(runtime.engine, [outbox.worker_id, reminders.worker_id])


@cli.command()
@click.option("--dir", "workdir", default="finance-desk-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where the run's record is written.")
def demo(workdir: Path) -> None:
    """Run the whole product locally on embedded defaults: no credentials, no network."""
    from bot.demo import run_demo

    run_demo(workdir)


@cli.command()
@click.argument("call_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def preview(call_file: Path) -> None:
    """Print the card a saved DialNexa event would produce, and a Block Kit Builder link."""
    try:
        body = json.loads(call_file.read_bytes(), parse_float=Decimal)
    except ValueError as exc:
        _fail([f"{call_file}: not valid JSON ({exc.__class__.__name__})"])
    try:
        policy = load_policy(_read_settings().finance_desk_policy)
        case = preview_case(body, policy, datetime.now(UTC))
    except PolicyError as exc:
        _fail(exc.problems)
    except NotACallEvent as exc:
        _fail([f"{call_file}: {exc}"])
    if not case.is_billing:
        click.echo(f"# {call_file.name}: not a billing call ({case.rule}); finance-desk would store it and "
                   "post no card. The card below is what it would look like.", err=True)
    message = case_card(case)
    click.echo(json.dumps(message, indent=2, ensure_ascii=False))
    click.echo(f"\nBlock Kit Builder: {block_kit_builder_url(message)}", err=True)


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
def db_upgrade(revision: str) -> None:
    """Create or migrate the tables in DATABASE_URL."""
    settings = _read_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine, revision)
    click.echo(f"database at revision {current_revision(engine)}")


@cli.group()
def audit() -> None:
    """The audit trail."""


@audit.command("export")
@click.option("--since", required=True, type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="First day (UTC) to include, e.g. 2026-11-01.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--output", type=click.File("w"), default="-", help="File to write; default standard output.")
def audit_export(since: datetime, fmt: str, output: TextIO) -> None:
    """Write every audit event since DATE: who, what, which record, where, why, when, outcome."""
    settings = _read_settings()  # DATABASE_URL is validated there
    url = make_url(normalise_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).exists():
        # Connecting would create an empty file; an export never writes to the database.
        _fail([f"DATABASE_URL: no SQLite database at {url.database}; run `finance-desk db upgrade` to create it"])
    engine = make_engine(settings.database_url)
    try:
        count = export(engine, since.replace(tzinfo=UTC), fmt, output)
    except ExportError as exc:
        _fail([str(exc)])
    except SQLAlchemyError as exc:
        _fail([f"could not read the audit trail from DATABASE_URL ({exc.__class__.__name__}); "
               "is the database reachable and migrated (`finance-desk db upgrade`)?"])
    finally:
        engine.dispose()
    click.echo(f"{count} audit events written", err=True)


@cli.group()
def config() -> None:
    """Configuration checks."""


@config.command("check")
def config_check() -> None:
    """The offline checks of `finance-desk check` (kept as an alias)."""
    _run_checks(live=False, fields=False, calls=())


@cli.command("check")
@click.option("--live", is_flag=True, help="Also ask Slack and every configured provider (reads only).")
@click.option("--fields", is_flag=True,
              help="Print the field map (per case kind, or per CALL.json given) instead of the checks.")
@click.argument("calls", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check_command(live: bool, fields: bool, calls: tuple[Path, ...]) -> None:
    """Is everything wired? One row per check (check, result, fix); exits 0 only when all pass."""
    _run_checks(live=live, fields=fields or bool(calls), calls=calls)


def _run_checks(*, live: bool, fields: bool, calls: tuple[Path, ...]) -> None:
    from bot import check

    rows, settings, policy = check.offline_checks()
    if fields:
        rows = [row for row in rows if not row.passed] + check.field_map(settings, policy or Policy(), list(calls))
    elif live and settings is not None and policy is not None:
        rows += check.live_checks(settings, policy)
    click.echo(check.render(rows))
    if not check.passed(rows):
        # Also one stderr line per failure, as `config check` always printed them.
        _fail([row.detail if row.check in ("settings", "policy") else f"{row.check}: {row.detail}"
               for row in rows if not row.passed])
    click.echo("configuration ok" if not fields else "every field mapped")


def main() -> None:
    cli(prog_name="finance-desk")
