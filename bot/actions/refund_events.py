"""A Stripe refund's own state, followed onto the ledger, the card and the thread.

Stripe decides how a refund ends (`pending` → `succeeded`, later perhaps `failed`; `requires_action`;
`canceled`), often after finance-desk's call returned. `follow_refund` takes a refund as Stripe reports it
now (the webhook re-fetches it first; the runner passes what `create_refund` returned) and records a
change, once: a second call with the same state changes nothing.

Which ledger row a refund belongs to: the row whose `provider_reference` is the refund, else the row of
the DialNexa call named in the refund's metadata (`dialnexa_call_id`, the key `<call>:refund_stripe`). A
retried refund leaves earlier attempts' refunds with the same metadata behind, so a refund is adopted by
its metadata only when it is the newest Stripe lists for the call, and never over a row already tied to
another refund. A refund finance-desk did not make has no row and is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final

from sqlalchemy import Engine
from sqlmodel import Session, select

from blocks.actions import ActionId
from blocks.format import code, inline, money
from bot import lifecycle
from bot.actions import ledger
from bot.actions.runner import state_after
from bot.lifecycle import Reply
from storage.audit import Event
from storage.db import session_scope
from storage.models import Case, ProviderAction
from storage.states import ActionStatus, is_closed

if TYPE_CHECKING:
    from providers.stripe import Refund

log = logging.getLogger(__name__)

ACTION: Final = ActionId.REFUND_STRIPE.value
ACTOR: Final = "stripe"
WEBHOOK: Final = "Stripe webhook, confirmed by fetching the refund"

STATUSES: Final[Mapping[str, ActionStatus]] = {
    "pending": ActionStatus.PENDING, "requires_action": ActionStatus.REQUIRES_ACTION,
    "succeeded": ActionStatus.SUCCEEDED, "failed": ActionStatus.FAILED, "canceled": ActionStatus.CANCELED,
}
_OPEN = frozenset({ActionStatus.PENDING, ActionStatus.REQUIRES_ACTION})
# Where a row may come from to take a state of its refund. `failed` and `canceled` are final; a card refund
# Stripe reported `succeeded` can still fail later (refund.failed). `unknown` (the call's answer was lost)
# takes whatever Stripe says. `running` is missing on purpose: see `_stale`.
_FROM: Final[Mapping[ActionStatus, frozenset[ActionStatus]]] = {
    ActionStatus.PENDING: frozenset({ActionStatus.REQUIRES_ACTION, ActionStatus.UNKNOWN}),
    ActionStatus.REQUIRES_ACTION: frozenset({ActionStatus.PENDING, ActionStatus.UNKNOWN}),
    ActionStatus.SUCCEEDED: _OPEN | {ActionStatus.UNKNOWN},
    ActionStatus.FAILED: _OPEN | {ActionStatus.SUCCEEDED, ActionStatus.UNKNOWN},
    ActionStatus.CANCELED: _OPEN | {ActionStatus.UNKNOWN},
}
# A row whose call is in flight or lost: the refund it is waiting for may be adopted by metadata.
_ADOPTING: Final = frozenset({ActionStatus.RUNNING, ActionStatus.UNKNOWN})

# Stripe's `failure_reason` codes in finance's words.
FAILURE_WORDS: Final[Mapping[str, str]] = {
    "lost_or_stolen_card": "the card was reported lost or stolen",
    "expired_or_canceled_card": "the card has expired or was cancelled",
    "charge_for_pending_refund_disputed": "the customer disputed the charge while the refund was pending",
    "insufficient_funds": "the Stripe balance did not cover it",
    "declined": "the card's bank declined it",
    "merchant_request": "it was cancelled at the merchant's request",
    "unknown": "Stripe gives no reason",
}


def failure_words(code_: str | None) -> str:
    """Stripe's failure reason in plain words (an unknown code as it is, underscores as spaces)."""
    if not code_:
        return "Stripe gives no reason"
    return FAILURE_WORDS.get(code_, code_.replace("_", " "))


def follow_refund(engine: Engine, refund: Refund, now: datetime, *, latest: bool = True,
                  source: str = WEBHOOK) -> str:
    """Record the refund's current state on its ledger row and case, in one transaction; returns what
    happened. `latest`: the refund is the newest Stripe lists for its call (always, right after it was
    created). Safe to call again with the same state: nothing changes."""
    with session_scope(engine) as session:
        return follow(session, refund, now, latest=latest, source=source)


def follow(session: Session, refund: Refund, now: datetime, *, latest: bool = True, source: str = WEBHOOK) -> str:
    """`follow_refund` in the caller's transaction (the webhook records its event in the same one)."""
    status = STATUSES.get(refund.status)
    if status is None:
        log.warning("Stripe refund %s has a status finance-desk does not know (%r); left as it is",
                    refund.id, refund.status[:40])
        return f"ignored: refund {refund.id} has an unknown status"
    row, by_reference = _row_of(session, refund)
    if row is None or row.id is None:
        return f"ignored: refund {refund.id} was not made by finance-desk"
    # Lock order of every writer: the case row, then what hangs off it; the row is read again under it.
    case = session.get(Case, row.case_id, with_for_update=True)
    row = session.get(ProviderAction, row.id, populate_existing=True)
    assert case is not None and row is not None and row.id is not None
    stale = _stale(row, refund, by_reference, latest)
    if stale:
        return f"ignored: refund {refund.id} {stale}"
    if row.status == status and row.provider_reference == refund.id:
        return f"unchanged: refund {refund.id} is {status}"
    previous = row.status
    allowed = _ADOPTING if row.provider_reference != refund.id else _FROM[status]
    error = _error_text(refund, status)
    # Compare-and-set (the ORM update also refreshes `row`): the runner may be finishing the same row.
    if previous not in allowed or not ledger.transition(
            session, row.id, {previous}, status, now, provider_reference=refund.id, error=error):
        log.info("refund %s is %s on Stripe; its ledger row is %s and stays so", refund.id, status, previous)
        return f"unchanged: refund {refund.id} is {status}, the ledger keeps {previous}"
    case.action_label, case.action_status = ACTION, status
    case.action_reference, case.action_error = refund.id, error
    reply = _reply(refund, status)
    if is_closed(case.state):
        reply += f"\nThe case was already {case.state}; it stays {case.state}."
    event = Event(f"{ACTION}.{status}", outcome=status, record=f"Stripe refund {refund.id}", target="stripe",
                  reason=source, detail={
                      "ledger_id": row.id, "from": previous, "amount": str(refund.amount),
                      "currency": refund.currency, "charge": refund.charge, "failure_reason": refund.failure_reason})
    lifecycle.settle(session, case, state_after(ACTION, status), by=ACTOR, now=now, event=event,
                     reply=Reply(f"refund:{row.id}:{refund.id}:{status}", reply))
    return f"refund {refund.id}: {previous} → {status}"


def _row_of(session: Session, refund: Refund) -> tuple[ProviderAction | None, bool]:
    """The ledger row of this refund, and whether it was found by the refund's own ID."""
    row = session.exec(select(ProviderAction).where(
        ProviderAction.action == ACTION, ProviderAction.provider_reference == refund.id)).first()
    if row is not None:
        return row, True
    call_id = refund.metadata.get("dialnexa_call_id")
    if not call_id:
        return None, False
    return session.exec(select(ProviderAction).where(
        ProviderAction.idempotency_key == ledger.idempotency_key(call_id, ACTION))).first(), False


def _stale(row: ProviderAction, refund: Refund, by_reference: bool, latest: bool) -> str | None:
    """Why this refund must not move this row (an earlier attempt's refund, a call in flight), or None."""
    if by_reference:
        # A retry is in flight: the row still names the previous attempt's refund, and the runner
        # records the new attempt's answer itself.
        return "belongs to an earlier attempt; a retry is running" if row.status == ActionStatus.RUNNING else None
    if not latest:
        return "belongs to an earlier attempt (Stripe lists a newer refund for the call)"
    if row.status not in _ADOPTING:
        # The row follows another refund (or waits for approval): never switched by metadata alone.
        return f"is not the refund the ledger follows ({row.provider_reference or row.status})"
    return None


def _error_text(refund: Refund, status: ActionStatus) -> str | None:
    if status == ActionStatus.FAILED:
        return f"Stripe reports the refund failed: {failure_words(refund.failure_reason)}"[:500]
    if status == ActionStatus.CANCELED:
        return f"Stripe reports the refund cancelled: {failure_words(refund.failure_reason)}"[:500]
    return None


def _reply(refund: Refund, status: ActionStatus) -> str:
    amount = money(refund.amount, refund.currency)
    ref = code(refund.id, 120)
    if status == ActionStatus.SUCCEEDED:
        return f"✅ Stripe refund {ref} succeeded: {amount} back to the customer's card."
    if status == ActionStatus.PENDING:
        return f"⏳ Stripe refund {ref} of {amount} is pending: Stripe is processing it, and the card follows."
    if status == ActionStatus.REQUIRES_ACTION:
        return (f"⚠️ Stripe refund {ref} of {amount} needs the customer's action before it completes: see the "
                "refund in Stripe.")
    ended = "failed" if status == ActionStatus.FAILED else "was cancelled"
    return (f"❌ Stripe refund {ref} of {amount} {ended}: {inline(failure_words(refund.failure_reason), 200)}. "
            "The money did not go back; an approver may retry the refund from the card or contact the customer.")
