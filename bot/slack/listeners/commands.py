"""`/finance`: ack within Slack's 3 seconds, then answer ephemerally through response_url.

The listener parses (pure, instant) and acks: help and usage lines are the ack itself; a lookup acks
with a short "Looking up…" and its result replaces that message through response_url once MoonClerk
answers, however slow it is; `case` and `queue` ack empty and answer through response_url. The work
is `answer()`, a plain function with no Slack in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from slack_bolt import Ack, App, Respond
from sqlalchemy import Engine

from blocks.format import code
from blocks.lookup import (
    CustomerResult,
    LookupAnswer,
    case_message,
    help_message,
    lookup_message,
    queue_message,
    usage_message,
)
from bot.actions.runner import ActionContext
from bot.lookup.customers import MoonClerkLookup, find, lookup_for
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
from bot.runtime import Runtime
from providers.base import ProviderError

log = logging.getLogger(__name__)

COMMAND: Final = "/finance"
LOOKING_UP: Final = "Looking up in MoonClerk…"
NOT_ALLOWED: Final = "Only finance approvers named in the policy file can use /finance lookups and queues."


@dataclass(frozen=True)
class FinanceContext:
    engine: Engine
    lookup: MoonClerkLookup | None
    is_finance: Callable[[str], bool]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


def _text(text: str) -> dict[str, Any]:
    return {"text": text}


def answer(ctx: FinanceContext, command: Command, user: str) -> dict[str, Any]:
    """The ephemeral message (`text` and `blocks`) for a parsed /finance command."""
    if isinstance(command, Help):
        return help_message()
    if isinstance(command, Usage):
        return usage_message(command.problem, USAGE)
    if not ctx.is_finance(user):
        return _text(NOT_ALLOWED)
    if isinstance(command, Lookup):
        return _lookup(ctx, command)
    if isinstance(command, CaseQuery):
        detail = case_detail(ctx.engine, command.call_id)
        if detail is None:
            return _text(f"No finance-desk case has DialNexa call ID {code(command.call_id, 210)}.")
        reminders = [(row.kind, row.due_at) for row in detail.reminders]
        return case_message(detail.case, detail.actions, detail.audit, detail.audit_total, reminders)
    if isinstance(command, Queue):
        view = queue(ctx.engine, ctx.clock())
        return queue_message(view.review.cases, view.review.total, view.overdue.cases, view.overdue.total)
    raise AssertionError(f"unhandled command {command!r}")


def _lookup(ctx: FinanceContext, command: Lookup) -> dict[str, Any]:
    if ctx.lookup is None:
        return _text("MoonClerk is not configured (MOONCLERK_API_KEY), so there is nothing to look up.")
    term = command.term
    label = f"{term.noun} {code(term.value, 120)}"
    try:
        hits = find(ctx.lookup, term)
    except ProviderError as exc:
        return _text(f"MoonClerk did not answer the lookup: {exc}. Try again in a minute.")
    results: list[CustomerResult] = []
    for customer in hits.customers:
        try:
            payments, error = ctx.lookup.recent_payments(customer.id), None
        except ProviderError as exc:
            payments, error = (), str(exc)
        cases = open_cases_for_customer(ctx.engine, customer.id, customer.email)
        results.append(CustomerResult(customer, payments, cases, error))
    notes: list[str] = []
    if hits.more:
        notes.append(f"{hits.more} more customers match; make the search more specific to see them.")
    if not hits.complete:
        notes.append(f"Only the first {ctx.lookup.max_customers} MoonClerk customers were searched.")
    return lookup_message(LookupAnswer(label, results, hits.payments, notes))


def finance_context(runtime: Runtime, actions: ActionContext) -> FinanceContext:
    lookup = lookup_for(actions.moonclerk) if actions.moonclerk is not None else None
    return FinanceContext(engine=runtime.engine, lookup=lookup, is_finance=actions.directory.is_finance)


def listener(ctx: FinanceContext, background: Executor | None = None) -> Callable[..., None]:
    """The Bolt listener. `background`, when given, runs lookups off Bolt's threads, so slow MoonClerk
    answers never hold the threads that acknowledge other requests."""

    def finish(parsed: Command, user: str, respond: Respond, deferred: bool) -> None:
        try:
            message = answer(ctx, parsed, user)
        except Exception as exc:  # never leave the person waiting on a silent failure
            log.error("/finance failed: %s: %s", exc.__class__.__name__, exc)
            message = _text("Something went wrong answering that; nothing was changed. Try again in a minute.")
        respond(response_type="ephemeral", replace_original=deferred, **message)

    def finance(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        parsed = parse_command(str(command.get("text") or ""))
        if isinstance(parsed, Help | Usage):
            ack(response_type="ephemeral", **answer(ctx, parsed, ""))
            return
        user = str(command.get("user_id") or "")
        if isinstance(parsed, Lookup):
            ack(response_type="ephemeral", text=LOOKING_UP)
            if background is not None:
                background.submit(finish, parsed, user, respond, True)
                return
            finish(parsed, user, respond, True)
            return
        ack()
        finish(parsed, user, respond, False)

    return finance


def register(app: App, runtime: Runtime, actions: ActionContext) -> None:
    # ActionContext.background (a provider executor) is used when this version has one.
    background: Executor | None = getattr(actions, "background", None)
    app.command(COMMAND)(listener(finance_context(runtime, actions), background))
