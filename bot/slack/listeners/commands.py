"""`/finance`: ack within Slack's 3 seconds, then answer ephemerally through response_url.

The listener parses (pure, instant) and acks: help and usage lines are the ack itself; a lookup acks
with a short "Looking up…" and its result replaces that message through response_url once MoonClerk
answers, however slow it is; `case` and `queue` ack empty and answer through response_url. The work
is `answer()`, a plain function with no Slack in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from slack_bolt import Ack, App, BoltContext, Respond
from sqlalchemy import Engine

from blocks.actions import SlashCommand
from blocks.delegations import (
    ended_answer,
    listing_answer,
    nothing_to_end_answer,
    refused_answer,
    started_answer,
)
from blocks.format import code, inline
from blocks.lookup import (
    CustomerResult,
    LookupAnswer,
    StripeCustomerResult,
    case_message,
    help_message,
    lookup_message,
    notice,
    queue_message,
    usage_message,
)
from bot import delegations
from bot.actions.authz import permits
from bot.actions.runner import ActionContext
from bot.delegations import (
    BadDelegation,
    Delegate,
    DelegateOff,
    DelegationCommand,
    Ended,
    ListDelegations,
    People,
    Started,
)
from bot.lookup.customers import MoonClerkLookup, lookup_for
from bot.lookup.directory import find_customers
from bot.lookup.queries import (
    USAGE,
    CaseQuery,
    Command,
    Help,
    Lookup,
    Queue,
    Usage,
    case_detail,
    open_cases_for_customer,
    parse_command,
    queue,
)
from bot.lookup.stripe_directory import StripeCustomerReader, StripeLookup
from bot.runtime import Runtime
from bot.slack.listeners.context import interaction
from bot.stripe_status import StripeStatusService, statuses_for_lookup
from providers.base import ProviderError
from storage.models import utcnow

log = logging.getLogger(__name__)

LOOKING_UP: Final = "Looking up in MoonClerk…"
NOT_ALLOWED: Final = "Only finance approvers named in the policy file can use /finance lookups and queues."


@dataclass(frozen=True)
class FinanceContext:
    engine: Engine
    lookup: MoonClerkLookup | None
    is_finance: Callable[[str], bool]
    clock: Callable[[], datetime] = utcnow
    # For `/finance delegate`: who is an approver (the Directory), the policy's zone (a delegation ends
    # at the end of its last day there), and a nudge so the direct messages go now, not at the next poll.
    people: People | None = None
    zone: tzinfo = UTC
    wake: Callable[[], None] | None = None
    # The Stripe line of each customer found (bot.stripe_status): asked while MoonClerk is read, waited
    # for within a short budget, else shown as unavailable.
    stripe_status: StripeStatusService | None = None


def answer(ctx: FinanceContext, command: Command, user: str) -> dict[str, Any]:
    """The ephemeral message (`text` and `blocks`) for a parsed /finance command."""
    if isinstance(command, Help):
        return help_message()
    if isinstance(command, Usage):
        return usage_message(command.problem, USAGE)
    if not ctx.is_finance(user):
        return notice(NOT_ALLOWED)
    if isinstance(command, Lookup):
        return _lookup(ctx, command)
    if isinstance(command, CaseQuery):
        detail = case_detail(ctx.engine, command.call_id)
        if detail is None:
            return notice(f"No finance-desk case has DialNexa call ID {code(command.call_id, 210)}.")
        reminders = [(row.kind, row.due_at) for row in detail.reminders]
        return case_message(detail.case, detail.actions, detail.audit, detail.audit_total, reminders,
                            approvals=detail.approvals, emails=detail.emails)
    if isinstance(command, Queue):
        view = queue(ctx.engine, ctx.clock())
        return queue_message(view.review.cases, view.review.total, view.overdue.cases, view.overdue.total)
    raise AssertionError(f"unhandled command {command!r}")


def answer_delegation(ctx: FinanceContext, command: DelegationCommand, user: str) -> dict[str, Any]:
    """The ephemeral answer to `/finance delegate …` or `/finance delegations`, after carrying it out."""
    if isinstance(command, BadDelegation):
        return usage_message(command.problem, delegations.USAGE)
    now = ctx.clock()
    if isinstance(command, ListDelegations):
        if not ctx.is_finance(user):
            return notice(NOT_ALLOWED)
        found = delegations.listing(ctx.engine, user, now)
        return listing_answer(found.given, found.received, found.others, ctx.zone)
    if isinstance(command, DelegateOff):
        ended = delegations.turn_off(ctx.engine, user, now)
        if not isinstance(ended, Ended):
            return nothing_to_end_answer(ended.received, ctx.zone)
        _wake(ctx)
        return ended_answer(ended.delegation)
    assert isinstance(command, Delegate)
    assert ctx.people is not None, "delegation needs the directory"
    outcome = delegations.start(ctx.engine, ctx.people, user, command, now, ctx.zone)
    if isinstance(outcome, Started):
        _wake(ctx)
        return started_answer(outcome.delegation, ctx.zone)
    return refused_answer(outcome.why, outcome.delegate, ctx.zone, other=outcome.other, latest=outcome.latest)


def _wake(ctx: FinanceContext) -> None:
    if ctx.wake is not None:
        ctx.wake()


def _lookup(ctx: FinanceContext, command: Lookup) -> dict[str, Any]:
    if ctx.lookup is None:
        return notice("MoonClerk is not configured (MOONCLERK_API_KEY), so there is nothing to look up.")
    term = command.term
    label = f"{term.noun} {code(term.value, 120)}"
    status = ctx.stripe_status
    # Stripe-only customers: the directory's Stripe candidates are read from Stripe (and their Stripe
    # lines fetched) while MoonClerk is being read.
    stripe = None
    if status is not None and isinstance(status.client, StripeCustomerReader):
        stripe = StripeLookup.start(ctx.engine, status.client, term)
        status.prefetch(stripe.candidates)
    try:
        hits = find_customers(ctx.engine, ctx.lookup, term)
    except ProviderError as exc:
        # The provider's own words are untrusted text like any other.
        return notice(f"MoonClerk did not answer the lookup: {inline(exc, 300)}. Try again in a minute.")
    references = [customer.customer_reference for customer in hits.customers]
    if status is not None:
        status.prefetch(references)
    results: list[CustomerResult] = []
    for customer in hits.customers:
        try:
            payments, error = ctx.lookup.recent_payments(customer.id), None
        except ProviderError as exc:
            payments, error = (), str(exc)
        cases = open_cases_for_customer(ctx.engine, customer.id, customer.email)
        results.append(CustomerResult(customer, payments, cases, error))
    stripe_results: list[StripeCustomerResult] = []
    notes: list[str] = []
    if status is not None:
        # One budget for all of Stripe after MoonClerk's answer: the confirming reads, then the lines.
        deadline = time.monotonic() + status.lookup_budget
        only = None
        if stripe is not None:
            linked = {ref.strip() for ref in references if ref and ref.strip()}
            only = stripe.finish(linked, status.lookup_budget)
        shown = list(only.customers) if only is not None else []
        lines = [line.to_json() if line is not None else None for line in statuses_for_lookup(
            status.client, status.cache, [*references, *(customer.id for customer in shown)],
            max(0.0, deadline - time.monotonic()))]
        results = [replace(result, stripe_status=line) for result, line in zip(results, lines, strict=False)]
        stripe_results = [StripeCustomerResult(customer, line)
                          for customer, line in zip(shown, lines[len(results):], strict=True)]
        if only is not None and only.more:
            notes.append(f"{only.more} more Stripe customers match; make the search more specific to see them.")
        if only is not None and only.unconfirmed:
            notes.append(f"{only.unconfirmed} Stripe {'customer' if only.unconfirmed == 1 else 'customers'} "
                         f"matching in the directory could not be confirmed with Stripe ({inline(only.error, 200)}), "
                         "so not shown. Try again in a minute.")
        if only is not None and not only.complete:
            notes.append("Stripe's customers are still being copied into the directory (its first sync), so "
                         "customers only Stripe has may be missing.")
    if hits.more:
        notes.append(f"{hits.more} more customers match; make the search more specific to see them.")
    if not hits.complete:
        notes.append(f"Only the first {ctx.lookup.max_customers} MoonClerk customers were searched.")
    return lookup_message(LookupAnswer(label, results, hits.payments, notes, stripe_results))


def finance_context(runtime: Runtime, actions: ActionContext) -> FinanceContext:
    lookup = lookup_for(actions.moonclerk) if actions.moonclerk is not None else None
    return FinanceContext(engine=runtime.engine, lookup=lookup, clock=actions.clock,
                          is_finance=lambda user: permits(actions.directory, user, SlashCommand.FINANCE),
                          people=actions.directory, zone=runtime.policy.business_hours.zone,
                          wake=runtime.wake_workers, stripe_status=actions.stripe_status)


def _finish(ctx: FinanceContext, parsed: Command | DelegationCommand, user: str, respond: Respond,
            deferred: bool) -> None:
    try:
        if isinstance(parsed, Delegate | DelegateOff | ListDelegations | BadDelegation):
            message = answer_delegation(ctx, parsed, user)
        else:
            message = answer(ctx, parsed, user)
    except Exception as exc:  # never leave the person waiting on a silent failure
        log.error("/finance failed: %s: %s", exc.__class__.__name__, exc)
        message = notice("Something went wrong answering that; nothing was changed. Try again in a minute.")
    respond(response_type="ephemeral", replace_original=deferred, **message)


def finance(ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    text = str(command.get("text") or "")
    it = interaction(context)
    ctx = finance_context(it.desk.runtime, it.desk.actions)
    delegation = delegations.parse(text)
    if isinstance(delegation, BadDelegation):
        ack(response_type="ephemeral", **answer_delegation(ctx, delegation, it.user))
        return
    if delegation is not None:
        # Database work only (and a user-group read for the policy check): answered at once, after the ack.
        ack()
        _finish(ctx, delegation, it.user, respond, False)
        return
    parsed = parse_command(text)
    if isinstance(parsed, Help | Usage):
        ack(response_type="ephemeral", **answer(ctx, parsed, it.user))
        return
    if isinstance(parsed, Lookup):
        ack(response_type="ephemeral", text=LOOKING_UP)
        # Off Bolt's threads: a slow MoonClerk must never hold the threads that ack other requests.
        it.desk.actions.background.submit(_finish, ctx, parsed, it.user, respond, True)
        return
    ack()
    _finish(ctx, parsed, it.user, respond, False)


COMMANDS: dict[str, Callable[..., None]] = {SlashCommand.FINANCE: finance}


def register(app: App) -> None:
    for name, listener in COMMANDS.items():
        app.command(name)(listener)
