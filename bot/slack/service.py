"""Starts Slack delivery in this process: the Web API client, the outbox worker and the Bolt app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from slack_bolt import App
from slack_sdk import WebClient
from sqlmodel import Session, select
from starlette.routing import Route

from bot.actions.authz import Directory
from bot.actions.refunds import stripe_customer
from bot.actions.runner import ActionContext, recover_stale
from bot.lookup.directory import DirectorySyncJob, sync_job
from bot.lookup.review import MatchWorker
from bot.lookup.stripe_directory import stripe_syncers
from bot.mail.worker import MailWorker, start_mail_worker
from bot.metrics import MeteredWebClient
from bot.reminders.scheduler import ReminderScheduler, scheduler_for
from bot.runtime import Runtime
from bot.shutdown import release_leases
from bot.slack.bolt_app import build_bolt_app, slack_events_endpoint
from bot.slack.delivery import ChannelPacer, OutboxWorker
from bot.stripe_status import StripeStatusService
from providers.moonclerk import MoonClerkClient
from providers.poof import PoofClient
from providers.stripe import StripeClient
from storage.models import Case, utcnow

log = logging.getLogger(__name__)


@dataclass
class SlackService:
    client: WebClient
    worker: OutboxWorker
    bolt: App
    reminders: ReminderScheduler | None = None
    matcher: MatchWorker | None = None
    mail: MailWorker | None = None
    directory: DirectorySyncJob | None = None
    actions: ActionContext | None = None

    def stop(self) -> None:
        if self.actions is not None:
            # Provider calls already under way finish and are recorded (each is bounded by
            # PROVIDER_TIMEOUT_SECONDS); left to die, a money call would only be found "unknown" later.
            self.actions.background.shutdown(wait=True, cancel_futures=False)
            if self.actions.stripe_status is not None:
                self.actions.stripe_status.close()
                # Its own short-timeout client (see action_context); the service does not own it.
                close = getattr(self.actions.stripe_status.client, "close", None)
                if callable(close):
                    close()
        if self.directory is not None:
            self.directory.stop()
        if self.reminders is not None:
            self.reminders.stop()
        self.worker.stop()
        if self.matcher is not None:
            self.matcher.stop()
        if self.mail is not None:
            self.mail.stop()
        workers = [self.worker.worker_id] + ([self.reminders.worker_id] if self.reminders is not None else [])
        release_leases(self.worker.engine, workers)


def web_client(runtime: Runtime) -> WebClient:
    token = runtime.settings.slack_bot_token
    assert token is not None
    return MeteredWebClient(token=token.get_secret_value(), base_url=runtime.settings.slack_api_url, timeout=10)


def outbox_worker(runtime: Runtime, client: WebClient, poll_seconds: float = 1.0) -> OutboxWorker:
    settings = runtime.settings
    assert settings.finance_channel is not None
    return OutboxWorker(
        runtime.engine,
        client,
        settings.finance_channel,
        on_problem=runtime.report_problem,
        on_recovered=runtime.clear_problem,
        pacer=ChannelPacer(interval=settings.slack_post_interval_seconds),
        poll_seconds=poll_seconds,
    )


def action_context(runtime: Runtime, client: WebClient | None) -> ActionContext:
    settings = runtime.settings
    moonclerk = poof = None
    if settings.moonclerk_api_key is not None:
        moonclerk = MoonClerkClient(settings.moonclerk_api_key.get_secret_value(), settings.moonclerk_api_url,
                                    timeout=settings.provider_timeout_seconds)
    if settings.poof_api_key is not None:
        poof = PoofClient(settings.poof_api_key.get_secret_value(), settings.poof_api_url,
                          timeout=settings.provider_timeout_seconds)
    stripe = None
    if settings.stripe_api_key is not None:
        stripe = StripeClient(settings.stripe_api_key.get_secret_value(), settings.stripe_api_url,
                              timeout=settings.provider_timeout_seconds)
    ctx = ActionContext(engine=runtime.engine, directory=Directory(runtime.policy, client), moonclerk=moonclerk,
                        invoices=poof, payouts=poof, clock=utcnow, refunds=stripe)
    if settings.stripe_api_key is not None:
        # The card's Stripe line is informational: a short timeout and no retries, so a slow Stripe shows
        # as "unavailable" quickly instead of holding provider threads.
        status_client = StripeClient(settings.stripe_api_key.get_secret_value(), settings.stripe_api_url,
                                     timeout=min(settings.provider_timeout_seconds, 5.0), max_network_retries=0)
        ctx.stripe_status = StripeStatusService(runtime.engine, status_client, ctx.background, clock=ctx.clock,
                                                resolve_customer=lambda case: stripe_customer(ctx, case))
    return ctx


def recover_provider_calls(runtime: Runtime, actions: ActionContext) -> Callable[[], None]:
    """Periodic: provider calls a dead process left "running" become "unknown" (see runner.recover_stale)."""
    # Longer than any one money call can take: its timeout, three times over (Stripe's SDK retries a
    # refund twice under the same key), plus a margin for its backoff.
    stale_after = timedelta(seconds=3 * runtime.settings.provider_timeout_seconds + 60)

    def recover() -> None:
        if count := recover_stale(actions, stale_after):
            log.warning("%s provider action(s) left running by a stopped process are now unknown: reconcile them",
                        count)
            if runtime.wake_workers is not None:
                runtime.wake_workers()

    return recover


def start_slack(
    runtime: Runtime, *, worker: bool = True, poll_seconds: float = 1.0, socket_mode: bool = False,
    matcher: bool = False,
) -> SlackService:
    """`matcher=True` also runs customer matching (MatchWorker) in this process when MoonClerk is configured."""
    client = web_client(runtime)
    outbox = outbox_worker(runtime, client, poll_seconds)
    actions = action_context(runtime, client)
    bolt = build_bolt_app(runtime, client, actions, socket_mode=socket_mode)
    if not socket_mode:
        runtime.extra_routes.append(Route("/slack/events", slack_events_endpoint(bolt), methods=["POST"]))
    reminders = None
    if worker:
        outbox.start()
        reminders = scheduler_for(runtime, on_fired=outbox.wake, housekeeping=recover_provider_calls(runtime, actions))
        reminders.start()
        runtime.wake_workers = _wake(outbox, reminders)
    # Emails to customers (when SMTP_URL is set) go with the outbox worker: `serve`, `socket`, `worker`.
    mail = start_mail_worker(runtime, actions, on_done=outbox.wake) if worker else None
    if mail is not None:
        runtime.wake_workers = _also(runtime.wake_workers, mail.wake)
    if actions.stripe_status is not None:
        runtime.on_stripe_object = actions.stripe_status.refresh_for_object_later
        runtime.on_case_stored = _refresh_call(runtime, actions.stripe_status)
    match_worker = directory = None
    if matcher and actions.moonclerk is not None:
        refresh = actions.stripe_status.refresh_later if actions.stripe_status is not None else None
        match_worker = MatchWorker(runtime.engine, actions.moonclerk, runtime.settings.review_channel,
                                   policy=runtime.policy, on_changed=refresh).start()
        # A stored case wakes matching at once (no poll to wait for); the directory keeps its candidates.
        runtime.wake_workers = _also(runtime.wake_workers, match_worker.wake)
        also = stripe_syncers(runtime.engine, runtime.settings)  # Stripe's customers too, with STRIPE_API_KEY
        directory = sync_job(runtime.engine, actions.moonclerk, also=also).start()
    return SlackService(client=client, worker=outbox, bolt=bolt, reminders=reminders, matcher=match_worker,
                        directory=directory, mail=mail, actions=actions)


def _refresh_call(runtime: Runtime, status: StripeStatusService) -> Callable[[str], None]:
    """After a call is stored: its card's Stripe line, looked up off the request's thread."""
    def lookup(call_id: str) -> None:
        with Session(runtime.engine) as session:
            case_id = session.exec(select(Case.id).where(Case.call_id == call_id)).first()
        if case_id is not None:
            status.refresh_later(case_id)

    def refresh(call_id: str) -> None:
        status.executor.submit(lookup, call_id)

    return refresh


def _also(first: Callable[[], None] | None, then: Callable[[], None]) -> Callable[[], None]:
    if first is None:
        return then

    def both() -> None:
        first()
        then()

    return both


def _wake(outbox: OutboxWorker, reminders: ReminderScheduler) -> Callable[[], None]:
    def wake() -> None:
        outbox.wake()
        reminders.wake()

    return wake
