"""Provider actions from approvers' clicks: authorised, gated, at most once, audited.

Plain functions over the database and provider clients; the Slack listeners only ack and call them.
Every path ends in an audit event, a card update and a thread reply committed together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from blocks.actions import ActionId, ButtonValue, ControlId
from blocks.card import transcript_link
from blocks.format import code, inline, link, mention, money, mrkdwn
from blocks.limits import truncate
from bot import lifecycle
from bot.actions import ledger
from bot.actions.authz import Directory, refusal
from bot.actions.gates import (
    approval_gate,
    beyond_approval,
    identity_gate,
    invoice_gate,
    note_gate,
    payout_gate,
    recipient_mismatch,
)
from bot.lifecycle import Reply
from bot.outcome import Outcome
from bot.reminders.store import sync_case
from bot.slack.errors import Refused
from bot.slack.outbox import enqueue_card, enqueue_thread
from bot.stripe_status import StripeStatusService
from providers.base import (
    InvoiceProvider,
    NotFound,
    OutcomeUnknown,
    PayoutProvider,
    ProviderError,
    ProviderResult,
    ProviderTransaction,
)
from providers.moonclerk import MoonClerkClient
from providers.refunds import RefundProvider
from storage.audit import Event, write_audit
from storage.db import session_scope
from storage.models import Case, ProviderAction
from storage.states import ActionStatus, CaseState, is_closed

log = logging.getLogger(__name__)

# Ledger states of a money action that wait for a person: the card must keep showing them.
PENDING_HUMAN = frozenset({ActionStatus.FAILED, ActionStatus.UNKNOWN, ActionStatus.AWAITING_APPROVAL,
                           ActionStatus.RUNNING})


@dataclass
class ActionContext:
    engine: Engine
    directory: Directory
    moonclerk: MoonClerkClient | None
    # The platforms behind the money actions (Poof today): anything implementing these protocols.
    invoices: InvoiceProvider | None
    payouts: PayoutProvider | None
    clock: Callable[[], datetime]
    # Provider calls run here, not on Bolt's listener threads: a slow provider holding those threads
    # would stop later clicks from being acknowledged within Slack's 3 seconds.
    background: Executor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=64, thread_name_prefix="provider"))
    # Card refunds (Stripe today; bot.actions.refunds): anything implementing providers.refunds.RefundProvider.
    refunds: RefundProvider | None = None
    # The Stripe line on cards (bot.stripe_status): refreshed after a refund, a match or a webhook.
    stripe_status: StripeStatusService | None = None


class InvoiceRequest(BaseModel):
    amount: Decimal
    currency: str
    method: str
    send_to: str | None = None
    override_recipient: bool = False


class PayoutRequest(BaseModel):
    # What the payout is worth in a fiat currency: the approval thresholds are set in these.
    amount: Decimal
    currency: str
    crypto: str
    # What Poof sends, in units of `crypto`: Poof's payout takes no fiat currency.
    crypto_amount: Decimal
    address: str
    override_recipient: bool = False
    # A senior approver vouching for an unmatched caller's identity (audited with the first approval).
    override_identity: bool = False


_LABELS = {ActionId.NOTE_MOONCLERK: "MoonClerk note", ActionId.INVOICE_POOF: "Poof invoice",
           ActionId.PAYOUT_POOF: "Poof payout", ActionId.REFUND_STRIPE: "Stripe refund"}
# Where an action's outcome is looked up when it is unknown.
_PROVIDER_NAMES = {ActionId.REFUND_STRIPE: "Stripe"}


# -- shared bookkeeping --------------------------------------------------------------------------

def _provider_for(ctx: ActionContext, action: str) -> InvoiceProvider | PayoutProvider | None:
    if action == ActionId.INVOICE_POOF:
        return ctx.invoices
    if action == ActionId.PAYOUT_POOF:
        return ctx.payouts
    return None


def _not_configured(action: str) -> Outcome:
    return Outcome(False, f"The {_LABELS.get(ActionId(action), action)} provider is not configured (for Poof: "
                          "POOF_API_KEY); nothing was done.")


def _load(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id, with_for_update=True)
    if case is None:
        raise Refused("That case no longer exists.")
    return case


def _event(case: Case, action: str, *, outcome: str, reason: str | None = None, record: str | None = None,
           target: str | None = None, detail: dict[str, Any] | None = None) -> Event:
    """An action's audit event; without a reason of its own it records why the caller asked."""
    return Event(action, outcome=outcome, reason=reason or _why(case), record=record, target=target,
                 detail=detail or {})


def _audit(session: Session, case: Case, user: str, action: str, now: datetime, *, outcome: str,
           reason: str | None = None, record: str | None = None, target: str | None = None,
           detail: dict[str, Any] | None = None) -> None:
    write_audit(session, case, user, now, _event(case, action, outcome=outcome, reason=reason, record=record,
                                                 target=target, detail=detail))


def _why(case: Case) -> str | None:
    return case.refund_reason or case.dispute_reason or case.caller_claim or case.kind


def _record(case: Case) -> str | None:
    if case.invoice_number:
        return f"invoice {case.invoice_number}"
    if case.payment_id:
        return f"payment {case.payment_id}"
    if case.subscription_id:
        return f"subscription {case.subscription_id}"
    if case.moonclerk_customer_id is not None:
        return f"MoonClerk customer {case.moonclerk_customer_id}"
    return None


def _refusal(session: Session, case: Case, user: str, action: str, reason: str, now: datetime) -> Outcome:
    _audit(session, case, user, "action.refused", now, outcome="refused", reason=reason,
           detail={"action": action}, record=_record(case))
    return Outcome(False, f"Not done: {inline(reason, 500)}. Nothing was sent to any provider.")


def refuse(ctx: ActionContext, case_id: int, user: str, action: str, reason: str) -> Outcome:
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        return _refusal(session, _load(session, case_id), user, action, reason, now)


def _open_case(session: Session, case_id: int, user: str, action: str, now: datetime) -> Case | Outcome:
    """The case, locked for this transaction, while it is open; a closed one is refused (and audited).

    Every claim of an action calls this in the transaction that claims it: a case dismissed after the
    button was clicked or the modal opened never reaches a provider, and never leaves its closed state.
    """
    case = _load(session, case_id)
    closed = lifecycle.closed_reason(case.state)
    return _refusal(session, case, user, action, closed, now) if closed else case


def _refuse_if_closed(ctx: ActionContext, case: Case, user: str, action: str) -> Outcome | None:
    """An early answer, before any provider is asked; the claim re-checks it under the lock."""
    closed = lifecycle.closed_reason(case.state)
    return refuse(ctx, case.id or 0, user, action, closed) if closed else None


def to_review(ctx: ActionContext, case_id: int, user: str, action: str, reason: str) -> Outcome:
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        case = _open_case(session, case_id, user, action, now)
        if isinstance(case, Outcome):
            return case
        lifecycle.transition(
            session, case, CaseState.IN_REVIEW, by=user, now=now,
            event=_event(case, "case.routed_to_review", outcome="review", reason=reason, detail={"action": action},
                         record=_record(case)),
            reply=Reply(f"review:{action}:{now.timestamp()}",
                        f"Sent to finance review instead of running *{_LABELS.get(ActionId(action), action)}*: "
                        f"{inline(reason, 500)}."))
    return Outcome(False, f"Sent to review instead: {inline(reason, 500)}.")


def _target(row: ProviderAction) -> str:
    """Where the action went, for the audit trail."""
    if row.action == ActionId.PAYOUT_POOF:
        return f"{row.provider} payout to {row.params.get('address')}"
    if row.action == ActionId.INVOICE_POOF and row.params.get("send_to"):
        return f"case thread (payment link for {row.params['send_to']})"
    return "case thread" if row.action == ActionId.INVOICE_POOF else row.provider


def _finish(ctx: ActionContext, row: ProviderAction, result: ProviderResult | None, error: Exception | None,
            user: str) -> Outcome:
    """Record how a provider call ended, on the ledger, the case, the audit trail and in Slack."""
    assert row.id is not None
    now = ctx.clock()
    if result is not None:
        status, text = ActionStatus(result.status or ActionStatus.SUCCEEDED), result.error
    elif isinstance(error, OutcomeUnknown):
        status, text = ActionStatus.UNKNOWN, f"{error}: the action may or may not have happened"
    else:
        status, text = ActionStatus.FAILED, str(error) if error else "failed"
    # A success the provider confirmed stands even if the row was meanwhile marked unknown (the
    # process was thought dead); any other ending only replaces "running".
    allowed = {ActionStatus.RUNNING, ActionStatus.UNKNOWN} if result is not None else {ActionStatus.RUNNING}
    with session_scope(ctx.engine) as session:
        moved = ledger.transition(
            session, row.id, allowed, status, now,
            provider_reference=result.reference if result else None,
            provider_url=result.url if result else None, error=text,
        )
        if not moved:
            log.warning("%s for call %s ended %s, but its ledger row had moved on; left as it is",
                        row.action, row.call_id, status)
            return Outcome(False, f"The {_LABELS[ActionId(row.action)]} was already recorded; nothing more was done.")
        case = _load(session, row.case_id)
        case.action_label, case.action_status = row.action, status
        case.action_reference = result.reference if result else row.provider_reference
        case.action_url = result.url if result else row.provider_url
        case.action_error = text
        reply = _result_reply(row, case, status, user)
        if is_closed(case.state):
            # A case closed while the call was in flight stays closed: the ending is recorded, not acted on.
            reply += f"\nThe case was {case.state} while this ran; it stays {case.state}."
        event = _event(case, f"{row.action}.{status}", outcome=status, record=_record(case), target=_target(row),
                       detail={"ledger_id": row.id, "amount": str(row.amount) if row.amount is not None else None,
                               "currency": row.currency, "reference": case.action_reference, "error": text,
                               "approved_by": row.approved_by})
        lifecycle.settle(session, case, _state_after(row, status), by=user, now=now, event=event,
                         reply=Reply(f"action:{row.id}:{status}:{row.attempts}", reply))
    log.info("%s for call %s: %s", row.action, row.call_id, status)
    return Outcome(status == ActionStatus.SUCCEEDED, reply)


def _state_after(row: ProviderAction, status: ActionStatus) -> CaseState:
    """A payout sent or a refund made finishes the case; an invoice sent waits for its payment (Poof's
    webhook), a refund Stripe still processes waits for Stripe's word (its webhook)."""
    return state_after(row.action, status)


def state_after(action: str, status: str) -> CaseState:
    if status in (ActionStatus.PENDING, ActionStatus.RUNNING):
        return CaseState.APPROVED
    if status == ActionStatus.REQUIRES_ACTION:
        return CaseState.IN_REVIEW
    if status != ActionStatus.SUCCEEDED:
        return CaseState.FAILED
    return CaseState.DONE if action in (ActionId.PAYOUT_POOF, ActionId.REFUND_STRIPE) else CaseState.APPROVED


def _result_reply(row: ProviderAction, case: Case, status: ActionStatus, user: str) -> str:
    label = _LABELS[ActionId(row.action)]
    where = _PROVIDER_NAMES.get(ActionId(row.action), "Poof")
    if status == ActionStatus.UNKNOWN:
        return (f"⚠️ *{label}* outcome unknown ({inline(case.action_error, 500)}). It will not be retried "
                f"automatically; use *Reconcile* to check {where} before doing anything else.")
    amount = money(row.amount, row.currency) if row.amount is not None and row.currency else None
    if status in (ActionStatus.PENDING, ActionStatus.REQUIRES_ACTION):
        waiting = ("accepted by Stripe, which is still processing it; the card follows Stripe's word"
                   if status == ActionStatus.PENDING
                   else "the customer's bank needs something before it completes; see the refund in Stripe")
        reply = f"⏳ *{label}* of {amount or 'the amount'} by {mention(user)}: {waiting}"
        return reply + (f" · reference {code(case.action_reference, 300)}" if case.action_reference else "")
    if status != ActionStatus.SUCCEEDED:
        ended = "was cancelled" if status == ActionStatus.CANCELED else "failed"
        return (f"❌ *{label}* {ended}: {inline(case.action_error or '', 500)}. An approver may retry it from "
                "the card.")
    reply = f"✅ *{label}* done by {mention(user)}" + (f" for {amount}" if amount else "")
    if case.action_reference:
        reply += f" · reference {code(case.action_reference, 300)}"
    opened = link(case.action_url, f"open in {inline(row.provider.title(), 40)}")
    if opened:
        reply += f" · {opened}"
    if row.action == ActionId.INVOICE_POOF and row.params.get("send_to"):
        # Poof's fiat invoice takes no recipient: finance-desk makes the link, a person sends it.
        reply += f"\nSend this payment link to {code(row.params['send_to'], 300)} only."
    return reply


# -- MoonClerk note ------------------------------------------------------------------------------

def note_moonclerk(ctx: ActionContext, case_id: int, user: str) -> Outcome:
    now = ctx.clock()
    with Session(ctx.engine) as session:
        case = session.get(Case, case_id)
    if case is None:
        return Outcome(False, "That case no longer exists.")
    if not ctx.directory.is_approver(user):
        return refuse(ctx, case_id, user, ActionId.NOTE_MOONCLERK, "only finance approvers can write MoonClerk notes")
    closed = _refuse_if_closed(ctx, case, user, ActionId.NOTE_MOONCLERK)
    if closed:
        return closed
    gate = note_gate(case)
    if gate:
        return to_review(ctx, case_id, user, ActionId.NOTE_MOONCLERK, gate)
    if ctx.moonclerk is None:
        return Outcome(False, "MoonClerk is not configured (MOONCLERK_API_KEY); nothing was done.")
    try:
        if case.moonclerk_customer_id is not None:
            customer = ctx.moonclerk.get_customer(case.moonclerk_customer_id)
            record = f"MoonClerk customer {customer.id} ({customer.name or customer.email})"
            url = customer.management_url
        else:
            payment = ctx.moonclerk.get_payment(int(str(case.payment_id)))
            record, url = f"MoonClerk payment {payment.id}", None
    except (NotFound, ValueError):
        return to_review(ctx, case_id, user, ActionId.NOTE_MOONCLERK,
                         "the MoonClerk record named on the call does not exist")
    except ProviderError as exc:
        return Outcome(False, f"MoonClerk could not be reached ({inline(exc, 300)}); nothing was written. "
                              "Try again shortly.")
    with session_scope(ctx.engine) as session:
        locked = _open_case(session, case_id, user, ActionId.NOTE_MOONCLERK, now)
        if isinstance(locked, Outcome):
            return locked
        case = locked
        row, created = ledger.claim(
            session, case_id=case_id, call_id=case.call_id, action=ActionId.NOTE_MOONCLERK, provider="moonclerk",
            user=user, status=ActionStatus.SUCCEEDED, amount=case.amount, currency=case.currency,
            params={"record": record}, now=now)
        if not created:
            return Outcome(False, "A MoonClerk note was already written for this call.")
        ledger.set_values(session, row.id, provider_reference=record, provider_url=url)
        note = _note_text(case, record, url, user)
        # The card shows one last action; a note must not hide a money action that still needs a
        # person (its Retry, Reconcile or second approval), so it only takes a free slot.
        if case.action_status not in PENDING_HUMAN:
            case.action_label, case.action_status, case.action_reference, case.action_url = (
                ActionId.NOTE_MOONCLERK.value, ActionStatus.SUCCEEDED, record, url)
        case.updated_at = now
        session.add(case)
        _audit(session, case, user, "moonclerk.note", now, outcome=ActionStatus.SUCCEEDED, record=record,
               target="case thread" + (f" · {url}" if url else ""), detail={"note": note})
        enqueue_card(session, case, now)
        enqueue_thread(session, case, f"note:{row.id}", note, now)
    return Outcome(True, "MoonClerk note written to the case thread.")


def _note_text(case: Case, record: str, url: str | None, user: str) -> str:
    """The operational summary: facts and safe links only, never payment details (all already redacted).

    Every value is untrusted (the call's, or MoonClerk's) and goes through blocks.format.
    """
    lines = [f"📝 *MoonClerk note* for {inline(record, 300)} by {mention(user)}"]
    if url:
        lines.append(f"MoonClerk record: {link(url, 'manage') or 'not a web link'}")
    reason = case.refund_reason or case.dispute_reason or case.credit_request
    facts = [
        ("Request", inline(case.kind.replace("_", " "), 60)),
        ("Amount", money(case.amount, case.currency) if case.amount is not None and case.currency else None),
        ("Caller says", inline(case.caller_claim, 500) if case.caller_claim else None),
        ("Reason", inline(reason, 500) if reason else None),
        ("Next step", inline(case.next_step, 500) if case.next_step else None),
        ("Owner", mention(case.owner)),
        ("DialNexa call", code(case.call_id, 210)),
    ]
    lines += [f"• {label}: {value}" for label, value in facts if value]
    for label, target in (("Transcript", transcript_link(case)), ("Recording", case.recording_url)):
        if target:
            lines.append(f"• {label}: {link(target, 'open') or 'not a web link'}")
    return "\n".join(lines)


# -- Poof invoice --------------------------------------------------------------------------------

def _check_before_modal(ctx: ActionContext, case: Case, user: str, action: ActionId,
                        gate: Callable[[Case], str | None]) -> str | None:
    """Before a modal opens: is this user allowed at all, and does the case pass the action's gate?"""
    assert case.id is not None
    closed = _refuse_if_closed(ctx, case, user, action)
    if closed:
        return closed.message
    reason = refusal(ctx.directory, user, case.amount, case.currency) or approval_gate(case, case.amount, case.currency)
    if reason is None and action is ActionId.PAYOUT_POOF and identity_gate(case) and not ctx.directory.is_senior(user):
        reason = identity_gate(case)
    if reason:
        return refuse(ctx, case.id, user, action, reason).message
    problem = gate(case)
    if problem:
        return to_review(ctx, case.id, user, action, problem).message
    return None


def check_invoice(ctx: ActionContext, case: Case, user: str) -> str | None:
    return _check_before_modal(ctx, case, user, ActionId.INVOICE_POOF, invoice_gate)


def check_payout(ctx: ActionContext, case: Case, user: str) -> str | None:
    return _check_before_modal(ctx, case, user, ActionId.PAYOUT_POOF, payout_gate)


def _check_submission(ctx: ActionContext, case_id: int, user: str, action: ActionId, amount: Decimal,
                      currency: str, gate: Callable[[Case], str | None]) -> tuple[Case | None, Outcome | None]:
    """On submit the approver may have edited the amount: authorise and gate again before anything runs."""
    with Session(ctx.engine) as session:
        case = session.get(Case, case_id)
    if case is None:
        return None, Outcome(False, "That case no longer exists.")
    closed = _refuse_if_closed(ctx, case, user, action)
    if closed:
        return case, closed
    reason = refusal(ctx.directory, user, amount, currency)
    if reason:
        return case, refuse(ctx, case_id, user, action, reason)
    if beyond_approval(case, amount, currency):
        return case, ask_new_approval(ctx, case_id, user, action, amount, currency)
    reason = approval_gate(case, amount, currency)
    if reason:
        return case, refuse(ctx, case_id, user, action, reason)
    problem = gate(case)
    if problem:
        return case, to_review(ctx, case_id, user, action, problem)
    return case, None


def ask_new_approval(ctx: ActionContext, case_id: int, user: str, action: ActionId, amount: Decimal,
                     currency: str) -> Outcome:
    """More than was approved (or another currency): nothing runs; the case asks for a new approval round
    at the new amount, with the card's Approve button, its nudges and the usual rules back."""
    now = ctx.clock()
    policy = ctx.directory.policy
    label = _LABELS.get(action, action)
    with session_scope(ctx.engine) as session:
        case = _open_case(session, case_id, user, action, now)
        if isinstance(case, Outcome):
            return case
        if not beyond_approval(case, amount, currency):
            return Outcome(False, "The case's approval changed meanwhile; nothing was done. Try again.")
        assert case.approved_amount is not None
        earlier = money(case.approved_amount, case.approved_currency) if case.approved_currency else \
            inline(case.approved_amount, 40)
        wanted = money(amount, currency)
        case.approval_round += 1
        case.approval_amount, case.approval_currency = amount, currency
        case.approved_at = case.approved_amount = case.approved_currency = None
        case.approvals_given = []
        case.approvals_needed = policy.approvals_needed(amount, currency)
        case.senior_needed = policy.senior_reason(amount, currency) is not None
        case.approval_reason = truncate(f"a {label} of {amount} {currency}: more than the approval given", 500)
        text = (f"🔁 {mention(user)} asked for a *{label}* of {wanted}, but only {earlier} was approved: this case "
                f"needs a new approval (round {case.approval_round}) before it runs.")
        lifecycle.transition(
            session, case, CaseState.IN_REVIEW, by=user, now=now,
            event=_event(case, "approval.requested", outcome="requested", record=_record(case),
                         reason=case.approval_reason,
                         detail={"action": action, "amount": str(amount), "currency": currency,
                                 "round": case.approval_round}),
            reply=Reply(f"approval.requested:{case.approval_round}", text))
        sync_case(session, case, policy, now)
    return Outcome(False, f"Not done: only {earlier} was approved. A new approval for {wanted} was asked for on "
                          f"the card; run the {label} again once it is approved.")


def verified_email(ctx: ActionContext, case: Case) -> str | None:
    """The customer's own address on the MoonClerk record, when finance-desk can verify one.

    Raises ProviderError when MoonClerk cannot be asked: that is no evidence of a mismatch.
    """
    if ctx.moonclerk is None or case.moonclerk_customer_id is None:
        return None
    try:
        return ctx.moonclerk.get_customer(case.moonclerk_customer_id).email
    except NotFound:
        return None


def _recipient_check(ctx: ActionContext, case_id: int, user: str, action: ActionId, differs: bool,
                     override: bool, what: str) -> Outcome | None:
    """A recipient other than the verified one needs a senior approver's explicit, audited override."""
    if not differs:
        return None
    if not override:
        return to_review(ctx, case_id, user, action, f"the {what} does not match the verified record")
    if not ctx.directory.is_senior(user):
        return refuse(ctx, case_id, user, action,
                      f"sending to a {what} that does not match the verified record needs a senior approver")
    return None


def submit_invoice(ctx: ActionContext, case_id: int, user: str, request: InvoiceRequest) -> Outcome:
    case, stop = _check_submission(ctx, case_id, user, ActionId.INVOICE_POOF, request.amount, request.currency,
                                   invoice_gate)
    if stop is not None or case is None:
        return stop or Outcome(False, "That case no longer exists.")
    try:
        verified = verified_email(ctx, case)
    except ProviderError as exc:
        return Outcome(False, f"MoonClerk could not be reached to verify the recipient ({inline(exc, 300)}); "
                              "nothing was done. Try again shortly.")
    stop = _recipient_check(ctx, case_id, user, ActionId.INVOICE_POOF, recipient_mismatch(request.send_to, verified),
                            request.override_recipient, "recipient")
    if stop is not None:
        return stop
    if ctx.invoices is None:
        return _not_configured(ActionId.INVOICE_POOF)
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        locked = _open_case(session, case_id, user, ActionId.INVOICE_POOF, now)
        if isinstance(locked, Outcome):
            return locked
        row, created = ledger.claim(
            session, case_id=case_id, call_id=case.call_id, action=ActionId.INVOICE_POOF, provider=ctx.invoices.name,
            user=user, status=ActionStatus.RUNNING, amount=request.amount, currency=request.currency,
            params=request.model_dump(mode="json", exclude={"amount", "currency"}), now=now)
        if created:
            ledger.set_values(session, row.id, attempts=1)
    if not created:
        return Outcome(False, _already(row))
    return _run_invoice(ctx, row, user)


def _already(row: ProviderAction) -> str:
    label = _LABELS[ActionId(row.action)]
    if row.status == ActionStatus.FAILED:
        return f"The {label} failed earlier; use Retry on the card."
    if row.status == ActionStatus.AWAITING_APPROVAL:
        return f"This {label} is waiting for a second approver."
    return f"The {label} for this call is already {row.status}; it runs at most once."


def _call(ctx: ActionContext, row: ProviderAction, user: str, call: Callable[[], ProviderResult]) -> Outcome:
    """Make a money action's provider call, once, and record how it ended."""
    try:
        result = call()
    except ProviderError as exc:
        return _finish(ctx, row, None, exc, user)
    except Exception as exc:
        # A crash mid-call may or may not have reached the provider: "unknown" at once (Reconcile, never
        # Retry) rather than "running" until recover_stale, then raised for the caller to tell the approver.
        lost = OutcomeUnknown(f"finance-desk failed during the call ({exc.__class__.__name__})", provider=row.provider)
        _finish(ctx, row, None, lost, user)
        raise
    return _finish(ctx, row, result, None, user)


def _run_invoice(ctx: ActionContext, row: ProviderAction, user: str) -> Outcome:
    invoices = ctx.invoices
    assert invoices is not None and row.amount is not None and row.currency is not None
    amount, currency = row.amount, row.currency
    return _call(ctx, row, user, lambda: invoices.create_fiat_invoice(
        amount, currency, str(row.params.get("method", "paypal")), metadata={"dialnexa_call_id": row.call_id}))


# -- Poof payout (two approvers) -----------------------------------------------------------------

def submit_payout(ctx: ActionContext, case_id: int, user: str, request: PayoutRequest) -> Outcome:
    """First approver: record the payout as awaiting a second, different approver."""
    case, stop = _check_submission(ctx, case_id, user, ActionId.PAYOUT_POOF, request.amount, request.currency,
                                   payout_gate)
    if stop is not None or case is None:
        return stop or Outcome(False, "That case no longer exists.")
    stop = _recipient_check(ctx, case_id, user, ActionId.PAYOUT_POOF,
                            not same_address(request.address, case.crypto_address),
                            request.override_recipient, "wallet address confirmed on the call")
    if stop is not None:
        return stop
    identity = identity_gate(case)
    if identity and not request.override_identity:
        return refuse(ctx, case_id, user, ActionId.PAYOUT_POOF, identity)
    if identity and not ctx.directory.is_senior(user):
        return refuse(ctx, case_id, user, ActionId.PAYOUT_POOF, "vouching for an unmatched caller's identity needs a "
                                                               "senior approver")
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        locked = _open_case(session, case_id, user, ActionId.PAYOUT_POOF, now)
        if isinstance(locked, Outcome):
            return locked
        case = locked
        row, created = ledger.claim(
            session, case_id=case_id, call_id=case.call_id, action=ActionId.PAYOUT_POOF,
            provider=ctx.payouts.name if ctx.payouts is not None else "poof",
            user=user, status=ActionStatus.AWAITING_APPROVAL, amount=request.amount, currency=request.currency,
            params=request.model_dump(mode="json", exclude={"amount", "currency"}), now=now)
        if not created:
            return Outcome(False, _already(row))
        _ask_second_approver(session, case, row, user, now, "payout_poof.first_approval")
    return Outcome(True, "Payout recorded; it waits for a second approver's confirmation in the card's thread.")


def same_address(given: str, confirmed: str | None) -> bool:
    """Whether a wallet address is the one confirmed on the call (hex addresses ignore letter case)."""
    if not confirmed:
        return True  # nothing was confirmed to differ from; the payout gate demanded a recipient
    given, confirmed = given.strip(), confirmed.strip()
    if given.lower().startswith("0x") and confirmed.lower().startswith("0x"):
        return given.lower() == confirmed.lower()
    return given == confirmed


def payout_summary(row: ProviderAction) -> str:
    """"0.85 solana (worth 120.00 USD) to `addr`": exactly what Poof will be asked to send."""
    worth = money(row.amount, row.currency) if row.amount is not None and row.currency else "—"
    return (f"{inline(row.params.get('crypto_amount'), 60)} {inline(row.params.get('crypto'), 40)} "
            f"(worth {worth}) to {code(row.params.get('address'), 210)}")


def _ask_second_approver(session: Session, case: Case, row: ProviderAction, user: str, now: datetime,
                         action: str) -> None:
    """Record `user` as the payout's first approver and ask, in the thread, for a different second one."""
    summary = payout_summary(row)
    text = (f"💸 {mention(user)} approved a *Poof payout* of {summary}. A second, different approver must "
            "confirm it.")
    value = ButtonValue(case_id=case.id or 0, call_id=case.call_id, v=case.card_version).dump()
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": mrkdwn(text)},
        {"type": "actions", "block_id": f"payout-{row.id}-{row.attempts}", "elements": [{
            "type": "button", "action_id": ControlId.CONFIRM_PAYOUT, "style": "primary", "value": value,
            "text": {"type": "plain_text", "text": "Confirm payout"},
            "confirm": {"title": {"type": "plain_text", "text": "Send this payout?"},
                        "text": {"type": "plain_text", "text": truncate(
                            f"Send {row.params.get('crypto_amount')} {row.params.get('crypto')} to "
                            f"{row.params.get('address')}.", 300)},
                        "confirm": {"type": "plain_text", "text": "Send"},
                        "deny": {"type": "plain_text", "text": "Cancel"}}}]},
    ]
    case.action_label, case.action_status = ActionId.PAYOUT_POOF.value, ActionStatus.AWAITING_APPROVAL
    event = _event(case, action, outcome=ActionStatus.AWAITING_APPROVAL, record=_record(case),
                   target=str(row.params.get("address")),
                   detail={"amount": str(row.amount), "currency": row.currency, "crypto": row.params.get("crypto"),
                           "crypto_amount": row.params.get("crypto_amount"),
                           "override_recipient": row.params.get("override_recipient", False),
                           "override_identity": row.params.get("override_identity", False)})
    lifecycle.transition(session, case, CaseState.IN_REVIEW, by=user, now=now, event=event,
                         reply=Reply(f"payout:{row.id}:requested:{row.attempts}", text, blocks))


def _ledger_row(ctx: ActionContext, case_id: int, action: str) -> ProviderAction | None:
    with Session(ctx.engine) as session:
        case = session.get(Case, case_id)
        if case is None:
            return None
        return session.exec(select(ProviderAction).where(
            ProviderAction.idempotency_key == ledger.idempotency_key(case.call_id, action))).first()


def _send_payout(ctx: ActionContext, row: ProviderAction, user: str) -> Outcome:
    payouts = ctx.payouts
    assert payouts is not None and row.amount is not None
    # Never retried by finance-desk: Poof documents no idempotency key, so a repeat could pay twice.
    return _call(ctx, row, user, lambda: payouts.send_payout(
        Decimal(str(row.params["crypto_amount"])), str(row.params["crypto"]), str(row.params["address"])))


def confirm_payout(ctx: ActionContext, case_id: int, user: str) -> Outcome:
    now = ctx.clock()
    row = _ledger_row(ctx, case_id, ActionId.PAYOUT_POOF)
    if row is None or row.id is None:
        return Outcome(False, "There is no payout waiting for this case.")
    if row.status != ActionStatus.AWAITING_APPROVAL:
        return Outcome(False, _already(row))
    if row.requested_by == user:
        return refuse(ctx, case_id, user, ActionId.PAYOUT_POOF,
                      "a payout needs two different approvers; you approved it first")
    reason = refusal(ctx.directory, user, row.amount, row.currency)
    if reason:
        return refuse(ctx, case_id, user, ActionId.PAYOUT_POOF, reason)
    if ctx.payouts is None:
        return _not_configured(ActionId.PAYOUT_POOF)
    with session_scope(ctx.engine) as session:
        locked = _open_case(session, case_id, user, ActionId.PAYOUT_POOF, now)
        if isinstance(locked, Outcome):
            return locked
        # Compare-and-set: of two approvers confirming at once, exactly one moves it to running.
        won = ledger.transition(session, row.id, {ActionStatus.AWAITING_APPROVAL}, ActionStatus.RUNNING, now,
                                approved_by=user,
                                attempts=row.attempts + 1)
    if not won:
        return Outcome(False, "Another approver confirmed this payout first.")
    row.approved_by = user
    return _send_payout(ctx, row, user)


def reconcile_match(row: ProviderAction, transaction: ProviderTransaction) -> bool:
    """Whether a provider's transaction is this ledger row, on identifiers rather than on amount alone.

    An invoice carries its DialNexa call ID in the metadata finance-desk sent (or is the reference the
    provider returned); a payout must have the same destination address, cryptocurrency and amount.
    """
    if row.provider_reference and transaction.reference == row.provider_reference:
        return True
    if row.action == ActionId.INVOICE_POOF:
        return transaction.call_id == row.call_id
    if row.action == ActionId.PAYOUT_POOF:
        expected = row.params.get("crypto_amount")
        return (transaction.destination is not None
                and same_address(transaction.destination, str(row.params.get("address")))
                and transaction.method == str(row.params.get("crypto", "")).lower()
                and expected is not None and transaction.amount == Decimal(str(expected)))
    return False


def recover_stale(ctx: ActionContext, stale_after: timedelta) -> int:
    """Provider calls left "running" longer than any call can take (the process died mid-call) become
    "unknown": the card then offers Reconcile, never Retry. Returns how many were recovered."""
    now = ctx.clock()
    with Session(ctx.engine) as session:
        stale = list(session.exec(select(ProviderAction).where(
            col(ProviderAction.status) == ActionStatus.RUNNING,
            col(ProviderAction.updated_at) < now - stale_after)).all())
    for row in stale:
        lost = OutcomeUnknown("finance-desk stopped while the call was in flight", provider=row.provider)
        _finish(ctx, row, None, lost, "finance-desk")
    return len(stale)


# -- retry and reconcile -------------------------------------------------------------------------

def retry(ctx: ActionContext, case_id: int, user: str, action: str) -> Outcome:
    """Run a failed action again. Never for "unknown": that one may already have happened."""
    now = ctx.clock()
    row = _ledger_row(ctx, case_id, action)
    if row is None or row.id is None:
        return Outcome(False, "There is nothing to retry for this case.")
    if row.status != ActionStatus.FAILED:
        return Outcome(False, f"Only a failed action can be retried; this one is {row.status}.")
    reason = refusal(ctx.directory, user, row.amount, row.currency)
    if reason:
        return refuse(ctx, case_id, user, action, reason)
    if _provider_for(ctx, action) is None:
        return _not_configured(action)
    if row.action == ActionId.PAYOUT_POOF:
        return _retry_payout(ctx, row, user)
    with session_scope(ctx.engine) as session:
        locked = _open_case(session, case_id, user, action, now)
        if isinstance(locked, Outcome):
            return locked
        if not ledger.transition(session, row.id, {ActionStatus.FAILED}, ActionStatus.RUNNING, now,
                                 attempts=row.attempts + 1):
            return Outcome(False, "Someone else is already retrying this action.")
    row.attempts += 1
    return _run_invoice(ctx, row, user)


def _retry_payout(ctx: ActionContext, row: ProviderAction, user: str) -> Outcome:
    """A failed payout goes back to waiting for two approvers (the retrier is the first), gates re-checked."""
    assert row.id is not None
    now = ctx.clock()
    with Session(ctx.engine) as session:
        case = session.get(Case, row.case_id)
    problem = payout_gate(case) if case is not None else "the case no longer exists"
    if problem:
        return to_review(ctx, row.case_id, user, ActionId.PAYOUT_POOF, problem)
    with session_scope(ctx.engine) as session:
        locked = _open_case(session, row.case_id, user, ActionId.PAYOUT_POOF, now)
        if isinstance(locked, Outcome):
            return locked
        if not ledger.transition(session, row.id, {ActionStatus.FAILED}, ActionStatus.AWAITING_APPROVAL, now,
                                 requested_by=user, approved_by=None, error=None):
            return Outcome(False, "Someone else is already retrying this payout.")
        fresh = session.get(ProviderAction, row.id)
        assert fresh is not None
        _ask_second_approver(session, locked, fresh, user, now, "payout_poof.retry_approval")
    return Outcome(True, "Payout retry recorded; it waits for a second, different approver in the card's thread.")


def reconcile(ctx: ActionContext, case_id: int, user: str, action: str) -> Outcome:
    """For an "unknown" action, look for it in Poof's transactions instead of guessing."""
    now = ctx.clock()
    row = _ledger_row(ctx, case_id, action)
    if row is None or row.id is None or row.status != ActionStatus.UNKNOWN:
        return Outcome(False, "There is no action with an unknown outcome on this case.")
    if not ctx.directory.is_approver(user):
        return refuse(ctx, case_id, user, action, "only finance approvers can reconcile actions")
    provider = _provider_for(ctx, action)
    if provider is None:
        return _not_configured(action)
    try:
        transactions = provider.list_transactions()
    except ProviderError as exc:
        return Outcome(False, f"Poof could not be reached ({inline(exc, 300)}); the action stays unknown.")
    matches = [t for t in transactions if reconcile_match(row, t)]
    if len(matches) != 1:
        outcome = "not_found" if not matches else "ambiguous"
        with session_scope(ctx.engine) as session:
            case = _load(session, case_id)
            _audit(session, case, user, f"{action}.reconcile", now, outcome=outcome, record=_record(case),
                   detail={"candidates": [t.reference for t in matches]})
        found = ("Poof lists no matching transaction yet" if not matches else
                 f"Poof lists {len(matches)} transactions that could be this one")
        return Outcome(False, f"{found}. It stays unknown: check the Poof dashboard before any new attempt.")
    match = matches[0]
    with session_scope(ctx.engine) as session:
        ledger.transition(session, row.id, {ActionStatus.UNKNOWN}, ActionStatus.RUNNING, now)
    row.status = ActionStatus.RUNNING
    return _finish(ctx, row, ProviderResult(provider=provider.name, reference=match.reference, url=None,
                                            raw={"reconciled": True}), None, user)
