"""Card refunds on Stripe (`refund_stripe`): the charge found, never guessed; gated like every money
action; made at most once per DialNexa call.

Unlike Poof, Stripe honours an Idempotency-Key (`<DialNexa call ID>:refund_stripe`): the SDK retries a
timeout or 5xx with the same key, and Reconcile may send again with it while Stripe still keeps the
key (24 hours) when Stripe lists no refund for the call. A refund that definitely failed is retried
under a new key (`…:retry<n>`), because Stripe answers a reused key with the saved failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from blocks.actions import ActionId
from blocks.format import inline, money
from blocks.modals import ChargeChoice, refund_modal
from bot.actions import ledger
from bot.actions.authz import refusal
from bot.actions.gates import approval_gate, beyond_approval
from bot.actions.runner import (
    ActionContext,
    _already,
    _finish,
    _ledger_row,
    _open_case,
    _refuse_if_closed,
    ask_new_approval,
    refuse,
    to_review,
)
from bot.outcome import Outcome
from providers.base import NotFound, OutcomeUnknown, ProviderError, ProviderResult
from providers.currency import exponent
from providers.refunds import is_charge_reference
from providers.stripe import Charge, Refund
from storage.db import session_scope
from storage.models import Case, ProviderAction
from storage.states import ActionStatus

log = logging.getLogger(__name__)

ACTION = ActionId.REFUND_STRIPE
REFUND_KINDS = frozenset({"refund", "duplicate_charge"})
REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# Stripe may prune an idempotency key once it is 24 hours old; after that a resend could refund twice.
KEY_RETENTION = timedelta(hours=24)
# Stripe's refund states, as the ledger stores them.
STATUSES = {"pending": ActionStatus.PENDING, "succeeded": ActionStatus.SUCCEEDED, "failed": ActionStatus.FAILED,
            "requires_action": ActionStatus.REQUIRES_ACTION, "canceled": ActionStatus.CANCELED}
# What applies next after Stripe refuses, by its error code.
NEXT_STEP = {
    "charge_already_refunded": "nothing is left to refund; resolve the case once the customer confirms",
    "amount_too_large": "retry with at most what is still refundable",
    "amount_too_small": "Stripe refuses amounts this small; resolve the case another way",
    "charge_disputed": "the customer's bank is handling this as a dispute: answer the dispute in Stripe",
    "refund_disputed_payment": "the customer's bank is handling this as a dispute: answer the dispute in Stripe",
    "charge_not_refundable": "Stripe cannot refund this charge; resolve the case another way",
    "balance_insufficient": "top up the Stripe balance, then retry",
}


class RefundRequest(BaseModel):
    charge: str
    amount: Decimal
    reason: str


@dataclass(frozen=True)
class ChargeOption:
    """A charge the refund could run on, and where finance-desk found it."""

    charge: Charge
    source: str


# -- before the modal ------------------------------------------------------------------------------

def check_refund(ctx: ActionContext, case: Case, user: str) -> str | None:
    """Before the modal opens, without asking Stripe: may this user refund, is the case ready for it?"""
    assert case.id is not None
    closed = _refuse_if_closed(ctx, case, user, ACTION)
    if closed:
        return closed.message
    if ctx.refunds is None:
        return "Stripe is not configured (STRIPE_API_KEY); nothing was done."
    reason = refusal(ctx.directory, user, case.amount, case.currency) or approval_gate(case, None, None)
    if case.kind not in REFUND_KINDS:
        reason = reason or "a Stripe refund is for refund and duplicate-charge cases"
    return refuse(ctx, case.id, user, ACTION, reason).message if reason else None


def charge_options(ctx: ActionContext, case: Case) -> tuple[list[ChargeOption], list[str]]:
    """The charges this case's refund could run on, and what could not be read (in plain words).

    From the ID on the call, the MoonClerk payment's charge, or the matched customer's own Stripe charges
    that fit the amount. Several are all listed; the approver chooses.
    """
    stripe = ctx.refunds
    assert stripe is not None
    found: dict[str, ChargeOption] = {}
    problems: list[str] = []

    def add(charge_id: str, source: str) -> None:
        if charge_id in found:
            return
        try:
            charge = stripe.get_charge(charge_id)
        except NotFound:
            problems.append(f"Stripe has no charge {charge_id} ({source})")
            return
        found.setdefault(charge.id, ChargeOption(charge, source))

    try:
        for named in (case.stripe_charge_id, case.payment_id):
            if named and is_charge_reference(named):
                add(named.strip(), "named on the call")
        if ctx.moonclerk is not None and case.payment_id and case.payment_id.strip().isdigit():
            try:
                payment = ctx.moonclerk.get_payment(int(case.payment_id.strip()))
            except NotFound:
                problems.append(f"MoonClerk has no payment {case.payment_id}")
            else:
                if payment.charge_reference and is_charge_reference(payment.charge_reference):
                    add(payment.charge_reference, f"MoonClerk payment {payment.id}")
        customer = stripe_customer(ctx, case)
        if customer:
            for charge in stripe.list_charges(customer):
                if charge.id not in found and _fits(case, charge):
                    found[charge.id] = ChargeOption(charge, "the customer's Stripe charges")
    except ProviderError as exc:
        problems.append(f"{exc.provider.title()} could not be reached ({exc})")
    options = sorted(found.values(), key=lambda option: option.charge.created, reverse=True)
    return options, problems


def modal(ctx: ActionContext, case: Case) -> dict[str, Any]:
    """The refund modal with the charges found (this asks Stripe: call it after the ack)."""
    options, problems = charge_options(ctx, case)
    choices = [ChargeChoice(id=o.charge.id, created=o.charge.created, amount=o.charge.amount,
                            currency=o.charge.currency, refunded=o.charge.amount_refunded, brand=o.charge.brand,
                            last4=o.charge.last4, source=o.source) for o in options]
    amount = case.approved_amount or case.amount
    if len(options) == 1 and (amount is None or amount > options[0].charge.refundable):
        amount = options[0].charge.refundable
    return refund_modal(case, choices, problems, amount)


def _fits(case: Case, charge: Charge) -> bool:
    """A charge of the matched customer that could be the one the caller means: paid, not yet fully
    refunded, for the amount asked about when the call gave one."""
    if charge.status != "succeeded" or charge.refundable <= 0:
        return False
    amount, currency = case.approved_amount or case.amount, case.approved_currency or case.currency
    if amount is None or currency is None:
        return True
    return charge.currency == currency and charge.amount == amount


def stripe_customer(ctx: ActionContext, case: Case) -> str | None:
    """The matched caller's Stripe customer (`cus_…`): stored on the case, or the one MoonClerk's
    verified customer record names. None when the caller is not matched. Raises ProviderError when
    MoonClerk cannot be asked."""
    if case.stripe_customer_id:
        return case.stripe_customer_id
    if ctx.moonclerk is None or case.moonclerk_customer_id is None:
        return None
    try:
        reference = ctx.moonclerk.get_customer(case.moonclerk_customer_id).customer_reference
    except NotFound:
        return None
    return reference if reference and reference.startswith("cus_") else None


# -- the refund --------------------------------------------------------------------------------------

def _gate(ctx: ActionContext, case: Case, user: str, charge: Charge, amount: Decimal, now: datetime,
          owner: str | None) -> tuple[str, str] | None:
    """Why this refund may not run: ("review" | "refuse", reason), or None."""
    if owner is None:
        return "review", ("a refund needs a caller matched to a MoonClerk customer whose Stripe customer owns the "
                          "charge")
    if charge.customer != owner:
        return "review", "the charge belongs to a different Stripe customer than the matched caller"
    if charge.disputed:
        state = _dispute_state(ctx, charge.id)
        return "refuse", (f"the charge is disputed{f' ({state})' if state else ''}: the dispute path applies, "
                          "answer it in Stripe instead of refunding")
    if charge.status != "succeeded":
        return "refuse", f"the charge is {charge.status}; only a paid charge can be refunded"
    if -amount.as_tuple().exponent > exponent(charge.currency):  # type: ignore[operator]
        return "refuse", f"{charge.currency} has at most {exponent(charge.currency)} decimal places"
    if amount > charge.refundable:
        return "refuse", f"only {money(charge.refundable, charge.currency)} of the charge is still refundable"
    max_age = ctx.directory.policy.refunds.max_age_days
    if charge.created < now - timedelta(days=max_age) and not ctx.directory.is_senior(user):
        return "refuse", f"the charge is older than {max_age} days (refunds.max_age_days): a senior approver must do it"
    return None


def _dispute_state(ctx: ActionContext, charge_id: str) -> str | None:
    with Session(ctx.engine) as session:
        return session.exec(select(Case.stripe_dispute_status).where(
            Case.stripe_charge_id == charge_id, col(Case.stripe_dispute_status).is_not(None))).first()


def _checked(ctx: ActionContext, case_id: int, user: str, charge_id: str,
             amount: Decimal) -> tuple[Case, Charge] | Outcome:
    """Everything a refund must pass, with the charge as Stripe has it now."""
    stripe = ctx.refunds
    if stripe is None:
        return Outcome(False, "Stripe is not configured (STRIPE_API_KEY); nothing was done.")
    with Session(ctx.engine) as session:
        case = session.get(Case, case_id)
    if case is None:
        return Outcome(False, "That case no longer exists.")
    closed = _refuse_if_closed(ctx, case, user, ACTION)
    if closed:
        return closed
    try:
        charge = stripe.get_charge(charge_id)
    except NotFound:
        return refuse(ctx, case_id, user, ACTION, f"Stripe has no charge {charge_id}")
    except ProviderError as exc:
        return Outcome(False, f"Stripe could not be reached ({inline(exc, 300)}); nothing was done. Try again shortly.")
    reason = refusal(ctx.directory, user, amount, charge.currency)
    if reason:
        return refuse(ctx, case_id, user, ACTION, reason)
    if beyond_approval(case, amount, charge.currency):
        return ask_new_approval(ctx, case_id, user, ACTION, amount, charge.currency)
    reason = approval_gate(case, amount, charge.currency)
    if reason:
        return refuse(ctx, case_id, user, ACTION, reason)
    try:
        owner = stripe_customer(ctx, case)
    except ProviderError as exc:
        return Outcome(False, f"MoonClerk could not be reached to verify the charge's owner ({inline(exc, 300)}); "
                              "nothing was done. Try again shortly.")
    stop = _gate(ctx, case, user, charge, amount, ctx.clock(), owner)
    if stop is not None:
        how, why = stop
        return to_review(ctx, case_id, user, ACTION, why) if how == "review" else refuse(ctx, case_id, user,
                                                                                         ACTION, why)
    return case, charge


def submit_refund(ctx: ActionContext, case_id: int, user: str, request: RefundRequest) -> Outcome:
    if request.reason not in REASONS:
        return Outcome(False, "Choose a refund reason; nothing was done.")
    checked = _checked(ctx, case_id, user, request.charge, request.amount)
    if isinstance(checked, Outcome):
        return checked
    case, charge = checked
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        locked = _open_case(session, case_id, user, ACTION, now)
        if isinstance(locked, Outcome):
            return locked
        row, created = ledger.claim(
            session, case_id=case_id, call_id=case.call_id, action=ACTION, provider="stripe", user=user,
            status=ActionStatus.RUNNING, amount=request.amount, currency=charge.currency,
            params={"charge": charge.id, "reason": request.reason, "customer": charge.customer,
                    "idempotency_key": ledger.idempotency_key(case.call_id, ACTION), "key_used_at": now.isoformat()},
            now=now)
        if created:
            ledger.set_values(session, row.id, attempts=1, approved_by=user)
            locked.stripe_charge_id = locked.stripe_charge_id or charge.id
            locked.stripe_customer_id = locked.stripe_customer_id or charge.customer
            session.add(locked)
    if not created:
        return Outcome(False, _already(row))
    row.approved_by = user
    return _refreshed(ctx, case_id, _send(ctx, row, user))


def _send(ctx: ActionContext, row: ProviderAction, user: str) -> Outcome:
    """Ask Stripe for the refund under the row's key, and record how it ended."""
    stripe = ctx.refunds
    assert stripe is not None and row.amount is not None and row.currency is not None
    metadata = {"dialnexa_call_id": row.call_id, "finance_desk_case_id": str(row.case_id),
                "approved_by": row.approved_by or user}
    try:
        refund = stripe.create_refund(str(row.params["charge"]), row.amount, row.currency, str(row.params["reason"]),
                                      idempotency_key=str(row.params["idempotency_key"]), metadata=metadata)
    except OutcomeUnknown as exc:
        return _finish(ctx, row, None, exc, user)
    except ProviderError as exc:
        code = getattr(exc, "code", None)
        then = NEXT_STEP.get(code or "")
        plain = ProviderError(f"{exc}" + (f"; {then}" if then else ""), provider="stripe", status=exc.status)
        return _finish(ctx, row, None, plain, user)
    except Exception as exc:
        lost = OutcomeUnknown(f"finance-desk failed during the call ({exc.__class__.__name__})", provider="stripe")
        _finish(ctx, row, None, lost, user)
        raise
    return _finish(ctx, row, result(refund), None, user)


def _refreshed(ctx: ActionContext, case_id: int, outcome: Outcome) -> Outcome:
    """The card's Stripe line follows a refund (the charge's refunded amount) without anyone waiting."""
    if ctx.stripe_status is not None:
        ctx.stripe_status.refresh_later(case_id, fresh=True)
    return outcome


def result(refund: Refund) -> ProviderResult:
    """A Stripe refund as the runner records it: its ID, and Stripe's own status."""
    status = STATUSES.get(refund.status, ActionStatus.PENDING)
    error = None
    if status in (ActionStatus.FAILED, ActionStatus.CANCELED):
        error = f"Stripe reports the refund {status}" + (
            f" ({refund.failure_reason.replace('_', ' ')})" if refund.failure_reason else "")
    return ProviderResult(provider="stripe", reference=refund.id, url=None, status=status, error=error,
                          raw={"status": refund.status})


# -- retry and reconcile ---------------------------------------------------------------------------

RETRYABLE = frozenset({ActionStatus.FAILED, ActionStatus.CANCELED})


def retry_refund(ctx: ActionContext, case_id: int, user: str) -> Outcome:
    """A refund that definitely did not happen runs again, every gate re-checked, under a new key."""
    row = _ledger_row(ctx, case_id, ACTION)
    if row is None or row.id is None:
        return Outcome(False, "There is no refund to retry for this case.")
    if row.status not in RETRYABLE or row.amount is None:
        return Outcome(False, f"Only a failed or cancelled refund can be retried; this one is {row.status}.")
    checked = _checked(ctx, case_id, user, str(row.params["charge"]), row.amount)
    if isinstance(checked, Outcome):
        return checked
    now = ctx.clock()
    attempts = row.attempts + 1
    params = {**row.params, "idempotency_key": f"{ledger.idempotency_key(row.call_id, ACTION)}:retry{attempts}",
              "key_used_at": now.isoformat()}
    with session_scope(ctx.engine) as session:
        locked = _open_case(session, case_id, user, ACTION, now)
        if isinstance(locked, Outcome):
            return locked
        if not ledger.transition(session, row.id, RETRYABLE, ActionStatus.RUNNING, now, attempts=attempts,
                                 params=params, approved_by=user, error=None):
            return Outcome(False, "Someone else is already retrying this refund.")
    row.attempts, row.params, row.approved_by = attempts, params, user
    return _refreshed(ctx, case_id, _send(ctx, row, user))


def reconcile_refund(ctx: ActionContext, case_id: int, user: str) -> Outcome:
    """An unknown refund: find it among the charge's refunds by its metadata; if Stripe lists none and
    the key is still kept, send again with the same key (Stripe then refunds at most once)."""
    row = _ledger_row(ctx, case_id, ACTION)
    if row is None or row.id is None or row.status != ActionStatus.UNKNOWN:
        return Outcome(False, "There is no refund with an unknown outcome on this case.")
    if not ctx.directory.is_approver(user):
        return refuse(ctx, case_id, user, ACTION, "only finance approvers can reconcile actions")
    stripe = ctx.refunds
    if stripe is None:
        return Outcome(False, "Stripe is not configured (STRIPE_API_KEY); nothing was done.")
    try:
        found = stripe.find_refund(str(row.params["charge"]), row.call_id)
    except ProviderError as exc:
        return Outcome(False, f"Stripe could not be reached ({inline(exc, 300)}); the refund stays unknown.")
    now = ctx.clock()
    if len(found) > 1:
        return Outcome(False, f"Stripe lists {len(found)} refunds for this call; it stays unknown: check the "
                              "charge in Stripe.")
    with session_scope(ctx.engine) as session:
        moved = ledger.transition(session, row.id, {ActionStatus.UNKNOWN}, ActionStatus.RUNNING, now)
    if not moved:
        return Outcome(False, "Someone else is already reconciling this refund.")
    row.status = ActionStatus.RUNNING
    if found:
        return _refreshed(ctx, case_id, _finish(ctx, row, result(found[0]), None, user))
    if now - datetime.fromisoformat(str(row.params["key_used_at"])) < KEY_RETENTION:
        return _refreshed(ctx, case_id, _send(ctx, row, user))
    lost = ProviderError("Stripe lists no refund for this call: it was not made. An approver may retry it",
                         provider="stripe")
    return _finish(ctx, row, None, lost, user)
