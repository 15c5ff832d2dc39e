"""Stripe webhook events become ledger updates and finance cases, each event once.

Every event is signed (bot.web.stripe verifies it), but its body is only a hint: the refund, dispute or
invoice it names is fetched again from Stripe and only that answer is acted on. Events arrive late, twice
and out of order; acting on the object as it is now makes that harmless (a `charge.dispute.closed` before
its `created` opens and closes the case at once; the late `created` then finds nothing to change).

Each event ID is recorded in `stripe_events` in the same transaction as its effects, so a replay (or a
second delivery racing the first) is answered "duplicate" and changes nothing. Stripe is asked before that
transaction opens: no database lock is held across a network call.

- Refunds (`charge.refunded`, `refund.*`): bot.actions.refund_events follows the refund onto its ledger
  row, case and thread; a refund finance-desk did not make is ignored.
- Disputes (`charge.dispute.*`): a `dispute` case keyed `stripe:dispute:<dp_…>`, or the open case of the
  same charge joined; the evidence deadline is the follow-up deadline (reminders chase it, routing pages
  the escalation channel once); won or lost closes it.
- `invoice.payment_failed`: a `failed_renewal` case keyed `stripe:invoice:<in_…>`, or the customer's open
  failed-renewal case updated, as MoonClerk's failed payments are. `invoice.paid`: the open failed-renewal
  case of that invoice (its own, or the one carrying its number) is done.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from blocks.format import code, inline, money, slack_date
from bot import lifecycle
from bot.actions.refund_events import follow
from bot.ingest import on_case_changed
from bot.lifecycle import Reply
from bot.lookup.directory import candidate_entries
from bot.lookup.matching import CallerFacts
from bot.policy import Policy
from bot.slack.outbox import enqueue_card, enqueue_thread
from bot.triage.route import apply_routing
from providers.base import NotFound
from providers.stripe import (
    Charge,
    Customer,
    Dispute,
    Invoice,
    Refund,
    StripeClient,
    is_charge_id,
    is_customer_id,
    is_dispute_id,
    is_invoice_id,
    is_payment_intent_id,
    is_refund_id,
)
from providers.stripe import Event as WebhookEvent
from storage.audit import Event, write_audit
from storage.cases import lock_or_create
from storage.db import session_scope
from storage.models import Case, StripeEvent
from storage.states import OPEN_STATES, CaseState, is_closed

log = logging.getLogger(__name__)

ACTOR: Final = "stripe"
REFUND_EVENTS: Final = frozenset({"charge.refunded", "refund.created", "refund.updated", "refund.failed",
                                  "charge.refund.updated"})
# Funds withdrawn or reinstated are updates of the dispute like any other: its state is fetched anyway.
DISPUTE_EVENTS: Final = frozenset({"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
                                   "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated"})
INVOICE_EVENTS: Final = frozenset({"invoice.payment_failed", "invoice.paid"})
HANDLED: Final = REFUND_EVENTS | DISPUTE_EVENTS | INVOICE_EVENTS

# A dispute's Stripe status: waiting for evidence, evidence under review, or decided. `warning_*` are
# inquiries (no money withdrawn yet), `appeal_*` a second round.
NEEDS_RESPONSE: Final = frozenset({"needs_response", "warning_needs_response", "appeal_needs_response"})
UNDER_REVIEW: Final = frozenset({"under_review", "warning_under_review", "appeal_under_review"})
CLOSED_OUTCOMES: Final[Mapping[str, str]] = {
    "won": "Stripe dispute won: the payment stands",
    "lost": "Stripe dispute lost: the amount went back to the cardholder",
    "warning_closed": "Stripe inquiry closed without becoming a dispute",
    "prevented": "Stripe dispute prevented before it was filed",
}
STATUS_WORDS: Final[Mapping[str, str]] = {
    "needs_response": "needs a response", "under_review": "under review (evidence submitted)",
    "warning_needs_response": "an inquiry that needs a response", "warning_under_review": "an inquiry under review",
    "appeal_needs_response": "an appeal that needs a response", "appeal_under_review": "an appeal under review",
    "warning_closed": "an inquiry that closed", "won": "won", "lost": "lost", "prevented": "prevented",
}
REASON_WORDS: Final[Mapping[str, str]] = {
    "bank_cannot_process": "the bank could not process the payment",
    "check_returned": "the check was returned",
    "credit_not_processed": "the customer says a promised credit was not processed",
    "customer_initiated": "the customer asked their bank to reverse the payment",
    "debit_not_authorized": "the customer says they did not authorise the debit",
    "duplicate": "the customer says they were charged twice",
    "fraudulent": "the cardholder says they did not authorise the payment",
    "general": "no specific reason given",
    "incorrect_account_details": "the account details were incorrect",
    "insufficient_funds": "the account had insufficient funds",
    "noncompliant": "the payment broke the card network's rules",
    "product_not_received": "the customer says the product was not received",
    "product_unacceptable": "the customer says the product was defective or not as described",
    "subscription_canceled": "the customer says the subscription was cancelled",
    "unrecognized": "the customer does not recognise the payment",
}
# bot.decisions.Resolution.OTHER (decisions sits above this layer): a dispute's outcome is none of the
# modal's choices, so the note says which.
RESOLUTION_OTHER: Final = "other"
RESOLUTION_PAYMENT_UPDATED: Final = "payment_updated"  # bot.decisions.Resolution.PAYMENT_UPDATED
_WEBHOOK_REASON: Final = "Stripe webhook, confirmed by fetching the {what}"

Apply = Callable[[Session], str]


# -- the event ---------------------------------------------------------------------------------------

def handle_event(engine: Engine, stripe: StripeClient, policy: Policy, event: WebhookEvent, now: datetime) -> str:
    """Act on one verified event, at most once per event ID; returns what happened, for the answer.

    Raises ProviderError (not NotFound) when Stripe cannot be asked, SQLAlchemyError when the database
    fails: nothing is recorded then, and Stripe's retry of the event does the work.
    """
    if event.type not in HANDLED:
        return f"ignored: {event.type[:100]} is not an event finance-desk acts on"
    if _seen(engine, event.id):
        return "duplicate: this event was already processed"
    object_id = event.object_id
    # The ID the client would refuse to send (a 503 for ever, as Stripe retries) is no object of ours.
    if object_id is None or not _ID_CHECK.get(event.type, is_refund_id)(object_id):
        return "ignored: the event names no Stripe object"
    if event.type in REFUND_EVENTS:
        apply = _fetch_refunds(stripe, event.type, object_id, now)
    elif event.type in DISPUTE_EVENTS:
        apply = _fetch_dispute(stripe, policy, object_id, now)
    else:
        apply = _fetch_invoice(engine, stripe, policy, object_id, now, paid=event.type == "invoice.paid")
    with session_scope(engine) as session:
        if not _claim(session, event, now):
            return "duplicate: this event was already processed"
        outcome = apply(session)[:500]
        session.execute(update(StripeEvent).where(col(StripeEvent.id) == event.id).values(outcome=outcome))
    return outcome


def _charge_ref(value: object) -> bool:
    return is_charge_id(value) or is_payment_intent_id(value)


# What each event's data.object must be (a refund event's object is the refund; charge.refunded's the charge).
_ID_CHECK: Final[Mapping[str, Callable[[object], bool]]] = {
    "charge.refunded": _charge_ref,
    **dict.fromkeys(REFUND_EVENTS - {"charge.refunded"}, is_refund_id),
    **dict.fromkeys(DISPUTE_EVENTS, is_dispute_id),
    **dict.fromkeys(INVOICE_EVENTS, is_invoice_id),
}


def _seen(engine: Engine, event_id: str) -> bool:
    """A cheap early answer for a replay (no Stripe call); the claim below is what decides."""
    with Session(engine) as session:
        return session.get(StripeEvent, event_id) is not None


def _claim(session: Session, event: WebhookEvent, now: datetime) -> bool:
    """Insert the event's row, or find it there already: of two deliveries racing, one inserts."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    inserted = session.execute(
        insert(StripeEvent).values(id=event.id, type=event.type[:100], object_id=(event.object_id or "")[:255] or None,
                                   created=event.created, received_at=now, outcome="processing")
        .on_conflict_do_nothing(index_elements=["id"]).returning(col(StripeEvent.id))
    ).first()
    return inserted is not None


def _ignored(text: str) -> Apply:
    return lambda _session: text


# -- refunds -----------------------------------------------------------------------------------------

def _fetch_refunds(stripe: StripeClient, event_type: str, object_id: str, now: datetime) -> Apply:
    """The refunds the event is about, as Stripe has them now, each marked whether it is the newest
    Stripe lists for its DialNexa call (only that one may be adopted by its metadata)."""
    try:
        if event_type == "charge.refunded":  # data.object is the charge
            refunds = stripe.list_refunds(object_id)
            siblings = refunds
        else:
            refunds = [stripe.get_refund(object_id)]
            call_id = refunds[0].metadata.get("dialnexa_call_id")
            charge = refunds[0].charge
            if call_id and charge and _charge_ref(charge):
                siblings = _maybe(lambda: stripe.find_refund(charge, call_id)) or []
            else:
                siblings = []
    except NotFound:
        return _ignored(f"ignored: Stripe has no {'charge' if event_type == 'charge.refunded' else 'refund'} "
                        f"{object_id}")
    if not refunds:
        return _ignored(f"ignored: Stripe lists no refund on charge {object_id}")
    marked = [(refund, _newest_for_call(refund, [*siblings, *refunds])) for refund in refunds]

    def apply(session: Session) -> str:
        results = [follow(session, refund, now, latest=latest) for refund, latest in marked]
        followed = [result for result in results if not result.startswith("ignored")]
        if followed:
            return "; ".join(followed)
        if len(results) == 1:
            return results[0]
        return f"ignored: none of the {len(results)} refunds on charge {object_id} was made by finance-desk"

    return apply


def _newest_for_call(refund: Refund, known: list[Refund]) -> bool:
    """No other refund for the same call is as new (a tie is no answer: neither is adopted)."""
    call_id = refund.metadata.get("dialnexa_call_id")
    return not any(other.id != refund.id and other.metadata.get("dialnexa_call_id") == call_id
                   and other.created >= refund.created for other in known)


# -- disputes ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FetchedDispute:
    dispute: Dispute
    charge: Charge | None
    customer: Customer | None

    @property
    def customer_id(self) -> str | None:
        return self.charge.customer if self.charge is not None else None


def _fetch_dispute(stripe: StripeClient, policy: Policy, dispute_id: str, now: datetime) -> Apply:
    try:
        dispute = stripe.get_dispute(dispute_id)
    except NotFound:
        return _ignored(f"ignored: Stripe has no dispute {dispute_id}")
    charge = _maybe(lambda: stripe.get_charge(dispute.charge)) if _charge_ref(dispute.charge) else None
    customer = None
    if charge is not None and is_customer_id(charge.customer):
        customer = _maybe(lambda: stripe.get_customer(str(charge.customer)))
    found = FetchedDispute(dispute, charge, customer if customer is None or not customer.deleted else None)
    return lambda session: record_dispute(session, policy, found, now)


def _maybe(read: Callable[[], Any]) -> Any:
    """A supporting record: one Stripe no longer has is left out; Stripe failing still fails the event."""
    try:
        return read()
    except NotFound:
        return None


def dispute_key(dispute_id: str) -> str:
    return f"stripe:dispute:{dispute_id}"


def record_dispute(session: Session, policy: Policy, found: FetchedDispute, now: datetime) -> str:
    """Open, join, update or close the dispute's case so it shows the dispute as Stripe has it now."""
    dispute = found.dispute
    key = dispute_key(dispute.id)
    case, how = _dispute_case(session, dispute)
    if case is None:
        case, created = lock_or_create(session, key)
        how = "created" if created else "existing"
    own = case.call_id == key
    if how == "existing" and _behind(case.stripe_dispute_status, dispute.status):
        return (f"unchanged: dispute {dispute.id} was already {case.stripe_dispute_status}; an earlier read "
                f"({dispute.status}) is not recorded over it")
    before = _snapshot(case)
    if how == "created":
        _fill_new_dispute(case, found)
    _apply_dispute(case, found, now, own=own)
    outcome = CLOSED_OUTCOMES.get(dispute.status)
    if how == "created":
        apply_routing(case, policy, now)
        case.updated_at = now
        session.add(case)
        write_audit(session, case, ACTOR, now, Event(
            "case.created", outcome="dispute", record=f"Stripe dispute {dispute.id}", target="stripe",
            reason=_WEBHOOK_REASON.format(what="dispute"), detail=_dispute_detail(found)))
        if outcome is not None:
            _close_dispute_case(session, case, dispute, outcome, now, [])
            return f"created and closed case {key} (dispute {dispute.status})"
        on_case_changed(session, case, policy, now, created=True)  # the card, reminders, the escalation page
        return f"created case {key}"
    after = _snapshot(case)
    if how == "existing" and after == before:
        return f"unchanged: case {case.call_id} already shows dispute {dispute.id} as {dispute.status}"
    lines = [_joined_line(found) if how == "joined" else _change_line(dispute, before, after)]
    action = "stripe_dispute.joined" if how == "joined" else "stripe_dispute.updated"
    if is_closed(case.state):
        # A closed case stays closed; what Stripe says now is recorded on it all the same.
        lines.append(f"The case is {case.state} and stays {case.state}.")
        _record(session, case, now, action, dispute, found, lines, key=f"{dispute.id}:{after}")
        return f"recorded on {case.state} case {case.call_id}: dispute {dispute.status}"
    if outcome is not None and own:
        _close_dispute_case(session, case, dispute, outcome, now, lines if how == "joined" else [])
        return f"closed case {case.call_id} (dispute {dispute.status})"
    if outcome is not None:
        lines.append(f"{outcome}. This case stays open for the caller's own request"
                     + ("; do not refund the charge as well." if dispute.status == "lost" else "."))
    _record(session, case, now, action, dispute, found, lines, key=f"{dispute.id}:{how}:{after}")
    apply_routing(case, policy, now, set_owner=False)  # a joined case now carries a dispute signal
    on_case_changed(session, case, policy, now)
    return f"{'joined' if how == 'joined' else 'updated'} case {case.call_id}: dispute {dispute.status}"


def _dispute_case(session: Session, dispute: Dispute) -> tuple[Case | None, str]:
    """The case already carrying this dispute, else the open case of its charge to join; locked."""
    case = session.exec(select(Case).where(Case.stripe_dispute_id == dispute.id).order_by(col(Case.id))
                        .with_for_update().execution_options(populate_existing=True)).first()
    if case is not None:
        return case, "existing"
    charges = [ref for ref in (dispute.charge, dispute.payment_intent) if ref]
    if not charges:
        return None, "created"
    joinable = session.exec(
        select(Case).where(or_(col(Case.stripe_charge_id).in_(charges), col(Case.payment_id).in_(charges)),
                           col(Case.state).in_(sorted(OPEN_STATES)), col(Case.is_billing).is_(True),
                           or_(col(Case.stripe_dispute_id).is_(None), col(Case.stripe_dispute_id) == dispute.id))
        .order_by(col(Case.id).desc()).with_for_update().execution_options(populate_existing=True)
    ).first()
    if joinable is None:
        return None, "created"
    # A second delivery waited on this row's lock while the first joined it: it is this dispute's now.
    return joinable, "existing" if joinable.stripe_dispute_id == dispute.id else "joined"


def _behind(recorded: str | None, fetched: str) -> bool:
    """Whether `fetched` can only be an older read than `recorded` (two deliveries racing): after the
    bank decided, only an appeal moves a dispute again."""
    return (recorded in ("won", "lost", "prevented") and fetched not in CLOSED_OUTCOMES
            and not fetched.startswith("appeal_"))


def _snapshot(case: Case) -> tuple[Any, ...]:
    return (case.stripe_dispute_status, case.follow_up_deadline, case.amount, case.currency)


def _fill_new_dispute(case: Case, found: FetchedDispute) -> None:
    """A case no call started: what a call's analysis would have filled, from Stripe's records."""
    case.kind, case.is_billing, case.rule, case.confidence = "dispute", True, "stripe.webhook", 1.0
    case.classification_source, case.stage, case.call_status = "stripe", "call_analyzed", "stripe"
    case.caller_claim = "Stripe reported a dispute (chargeback) on a card payment"
    case.payment_status = "disputed"
    _fill_customer(case, found.customer, found.customer_id)


def _fill_customer(case: Case, customer: Customer | None, customer_id: str | None) -> None:
    """Who the Stripe customer is. Matching (bot.lookup) reads `account_id`: a `cus_…` there is looked up
    as the MoonClerk customer carrying that reference, confirmed with MoonClerk, never guessed."""
    if customer_id:
        case.stripe_customer_id = case.stripe_customer_id or customer_id[:100]
        case.account_id = case.account_id or customer_id[:500]
    if customer is not None:
        case.customer_name = case.customer_name or (customer.name or "")[:500] or None
        case.email = case.email or (customer.email or "")[:500] or None
        case.phone = case.phone or (customer.phone or "")[:20] or None


def _apply_dispute(case: Case, found: FetchedDispute, now: datetime, *, own: bool) -> None:
    dispute = found.dispute
    previous = case.stripe_dispute_status
    case.stripe_dispute_id, case.stripe_dispute_status = dispute.id[:100], dispute.status[:40]
    case.stripe_charge_id = case.stripe_charge_id or dispute.charge[:100]
    if case.stripe_customer_id is None and found.customer_id:
        case.stripe_customer_id = found.customer_id[:100]
    if own:
        case.amount, case.currency = dispute.amount, dispute.currency.upper()
    if own or not case.dispute_reason:
        case.dispute_reason = f"Stripe chargeback: {reason_words(dispute.reason)}"[:500]
    if dispute.status in NEEDS_RESPONSE:
        if dispute.due_by is not None:
            case.follow_up_deadline = dispute.due_by
            case.next_step = f"Submit evidence in Stripe by {dispute.due_by:%a %d %b %Y %H:%M} UTC"
            if previous not in NEEDS_RESPONSE:
                case.follow_up_done_at = None  # a new round (an appeal) is chased again
        else:
            case.next_step = "The bank accepts no evidence for this dispute: wait for its outcome"
            case.follow_up_done_at = case.follow_up_done_at or now
    elif dispute.status in UNDER_REVIEW:
        case.next_step = "Evidence submitted: wait for the bank's decision"
        case.follow_up_done_at = case.follow_up_done_at or now  # nothing left to chase
    elif dispute.status in CLOSED_OUTCOMES and (own or case.follow_up_deadline == dispute.due_by):
        case.follow_up_done_at = case.follow_up_done_at or now


def reason_words(reason: str | None) -> str:
    if not reason:
        return "no reason given"
    return REASON_WORDS.get(reason, reason.replace("_", " "))


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status.replace("_", " "))


def _due(dispute: Dispute) -> str:
    return f"evidence due {slack_date(dispute.due_by)}" if dispute.due_by is not None else "no evidence deadline"


def _joined_line(found: FetchedDispute) -> str:
    dispute = found.dispute
    return (f"⚠️ The customer disputed this charge in Stripe: dispute {code(dispute.id, 60)} on "
            f"{code(dispute.charge, 60)} for {money(dispute.amount, dispute.currency.upper())}, "
            f"{inline(reason_words(dispute.reason), 120)}; {status_words(dispute.status)}, {_due(dispute)}. "
            "Its evidence deadline is now this case's follow-up deadline.")


def _change_line(dispute: Dispute, before: tuple[Any, ...], after: tuple[Any, ...]) -> str:
    changes: list[str] = []
    if before[0] != after[0]:
        changes.append(f"now {status_words(dispute.status)}"
                       + (f" (was {inline(status_words(before[0]), 60)})" if before[0] else ""))
    if before[1] != after[1]:
        changes.append(_due(dispute))
    if before[2:] != after[2:]:
        changes.append(f"amount {money(dispute.amount, dispute.currency.upper())}")
    return f"Stripe dispute {code(dispute.id, 60)}: {', '.join(changes) or 'updated'}."


def _dispute_detail(found: FetchedDispute) -> dict[str, Any]:
    dispute = found.dispute
    return {"dispute": dispute.id, "status": dispute.status, "reason": dispute.reason, "charge": dispute.charge,
            "customer": found.customer_id, "amount": str(dispute.amount), "currency": dispute.currency.upper(),
            "due_by": dispute.due_by.isoformat() if dispute.due_by else None}


def _record(session: Session, case: Case, now: datetime, action: str, dispute: Dispute, found: FetchedDispute,
            lines: list[str], *, key: str) -> None:
    case.updated_at = now
    session.add(case)
    write_audit(session, case, ACTOR, now, Event(
        action, outcome=dispute.status, record=f"Stripe dispute {dispute.id}", target="stripe",
        reason=_WEBHOOK_REASON.format(what="dispute"), detail=_dispute_detail(found)))
    enqueue_card(session, case, now)
    enqueue_thread(session, case, f"stripe-dispute:{_digest(key)}", "\n".join(lines), now)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _close_dispute_case(session: Session, case: Case, dispute: Dispute, outcome: str, now: datetime,
                        lines: list[str]) -> None:
    """Won or lost, the dispute is over: the case is done, with the outcome as its resolution."""
    case.resolution, case.resolution_note, case.resolution_reference = RESOLUTION_OTHER, outcome, dispute.id[:200]
    icon = "🏆" if dispute.status == "won" else "🏁"
    text = "\n".join([*lines, f"{icon} {outcome} ({money(dispute.amount, dispute.currency.upper())}, dispute "
                              f"{code(dispute.id, 60)}). The case is closed."])
    lifecycle.transition(
        session, case, CaseState.DONE, by=ACTOR, now=now, close_reason="resolved",
        event=Event("stripe_dispute.closed", outcome=dispute.status, record=f"Stripe dispute {dispute.id}",
                    target="stripe", reason=_WEBHOOK_REASON.format(what="dispute"),
                    detail={"amount": str(dispute.amount), "currency": dispute.currency.upper(),
                            "charge": dispute.charge}),
        reply=Reply(f"stripe-dispute:{dispute.id}:closed:{dispute.status}", text))


# -- failed invoice payments -------------------------------------------------------------------------

@dataclass(frozen=True)
class FetchedInvoice:
    invoice: Invoice
    customer: Customer | None
    moonclerk_ids: tuple[int, ...]  # MoonClerk customers the directory lists with this `cus_…` reference


def invoice_key(invoice_id: str) -> str:
    return f"stripe:invoice:{invoice_id}"


def _fetch_invoice(engine: Engine, stripe: StripeClient, policy: Policy, invoice_id: str, now: datetime, *,
                   paid: bool = False) -> Apply:
    try:
        invoice = stripe.get_invoice(invoice_id)
    except NotFound:
        return _ignored(f"ignored: Stripe has no invoice {invoice_id}")
    customer = None
    moonclerk_ids: tuple[int, ...] = ()
    if is_customer_id(invoice.customer):
        customer = _maybe(lambda: stripe.get_customer(str(invoice.customer)))
        moonclerk_ids = moonclerk_customers(engine, str(invoice.customer))
    found = FetchedInvoice(invoice, customer if customer is None or not customer.deleted else None, moonclerk_ids)
    if paid:
        return lambda session: record_invoice_paid(session, found, now)
    return lambda session: record_invoice_failure(session, policy, found, now)


def record_invoice_paid(session: Session, found: FetchedInvoice, now: datetime) -> str:
    """The open failed-renewal case of this invoice is done once Stripe says the invoice is paid."""
    invoice = found.invoice
    if invoice.status != "paid" or invoice.amount_paid < invoice.amount_due:
        return f"ignored: invoice {invoice.id} is {invoice.status or 'without a status'} now, not paid"
    numbers = sorted({invoice.id, *([invoice.number] if invoice.number else [])})
    case = session.exec(
        select(Case).where(or_(col(Case.call_id) == invoice_key(invoice.id), col(Case.invoice_number).in_(numbers)),
                           Case.kind == "failed_renewal", col(Case.state).in_(sorted(OPEN_STATES)))
        .order_by(col(Case.id).desc()).with_for_update().execution_options(populate_existing=True)
    ).first()
    if case is None:
        return f"ignored: no open failed-renewal case for invoice {invoice.id}"
    paid = money(invoice.amount_paid, invoice.currency.upper())
    number = invoice.number or invoice.id
    case.payment_status = "paid"
    case.resolution, case.resolution_reference = RESOLUTION_PAYMENT_UPDATED, invoice.id[:200]
    case.resolution_note = f"Stripe invoice {number[:200]} paid ({paid})"
    lifecycle.transition(
        session, case, CaseState.DONE, by=ACTOR, now=now, close_reason="resolved",
        event=Event("stripe_invoice.paid", outcome="paid", record=f"Stripe invoice {number}", target="stripe",
                    reason=_WEBHOOK_REASON.format(what="invoice"), detail=_invoice_detail(found)),
        reply=Reply(f"stripe-invoice:{invoice.id}:paid",
                    f"✅ Stripe reports invoice {code(number, 80)} paid ({paid}). The case is closed."))
    return f"closed case {case.call_id}: invoice paid"


def moonclerk_customers(engine: Engine, stripe_customer: str) -> tuple[int, ...]:
    """MoonClerk customers whose `customer_reference` is this Stripe customer, from the directory."""
    entries = candidate_entries(engine, CallerFacts(customer_reference=stripe_customer))
    return tuple(entry.customer.id for entry in entries if entry.customer.customer_reference == stripe_customer)


def record_invoice_failure(session: Session, policy: Policy, found: FetchedInvoice, now: datetime) -> str:
    invoice = found.invoice
    if invoice.status not in ("open", "uncollectible") or invoice.amount_paid >= invoice.amount_due:
        return f"ignored: invoice {invoice.id} is {invoice.status or 'without a status'} now, not failed"
    key = invoice_key(invoice.id)
    case = _open_failed_renewal(session, found, key)
    if case is None:
        case, created = lock_or_create(session, key)
        if not created and is_closed(case.state):
            return f"already recorded as {key}, now {case.state}"
        if created:
            _fill_new_invoice_case(case, found)
            apply_routing(case, policy, now)
            case.updated_at = now
            session.add(case)
            write_audit(session, case, ACTOR, now, Event(
                "case.created", outcome="failed_renewal", record=f"Stripe invoice {invoice.number or invoice.id}",
                target="stripe", reason=_WEBHOOK_REASON.format(what="invoice"), detail=_invoice_detail(found)))
            on_case_changed(session, case, policy, now, created=True)  # the card and the failed-renewal page
            return f"created case {key}"
    own = case.call_id == key or case.invoice_number in (invoice.number, invoice.id)
    _fill_invoice(case, found, own=own)
    _fill_customer(case, found.customer, invoice.customer)
    case.updated_at = now
    session.add(case)
    write_audit(session, case, ACTOR, now, Event(
        "case.updated", outcome="updated", record=f"Stripe invoice {invoice.number or invoice.id}", target="stripe",
        reason=_WEBHOOK_REASON.format(what="invoice"), detail=_invoice_detail(found)))
    owed = money(invoice.amount_due - invoice.amount_paid, invoice.currency.upper())
    enqueue_thread(session, case, f"stripe-invoice:{invoice.id}:{invoice.attempt_count}",
                   f"Stripe reports a failed payment on invoice {code(invoice.number or invoice.id, 80)} "
                   f"(attempt {invoice.attempt_count}): {owed} still due.", now)
    apply_routing(case, policy, now, set_owner=False)
    on_case_changed(session, case, policy, now)
    return f"updated open case {case.call_id}"


def _open_failed_renewal(session: Session, found: FetchedInvoice, key: str) -> Case | None:
    """The customer's open failed-renewal case (by Stripe customer, or the MoonClerk customer carrying
    its reference), or this invoice's own; locked."""
    mine = [col(Case.call_id) == key]
    if found.invoice.customer:
        mine.append(col(Case.stripe_customer_id) == found.invoice.customer)
    if found.moonclerk_ids:
        mine.append(col(Case.moonclerk_customer_id).in_(found.moonclerk_ids))
    return session.exec(
        select(Case).where(or_(*mine), Case.kind == "failed_renewal", col(Case.state).in_(sorted(OPEN_STATES)))
        .order_by(col(Case.id).desc()).with_for_update().execution_options(populate_existing=True)
    ).first()


def _fill_new_invoice_case(case: Case, found: FetchedInvoice) -> None:
    case.kind, case.is_billing, case.rule, case.confidence = "failed_renewal", True, "stripe.webhook", 1.0
    case.classification_source, case.stage, case.call_status = "stripe", "call_analyzed", "stripe"
    case.caller_claim = "Stripe reported a failed invoice payment"
    _fill_invoice(case, found, own=True)
    _fill_customer(case, found.customer, found.invoice.customer)


def _fill_invoice(case: Case, found: FetchedInvoice, *, own: bool) -> None:
    """The invoice's own case follows it; another case (the customer's open one) only gains what it lacks."""
    invoice = found.invoice
    values: dict[str, Any] = {
        "invoice_number": (invoice.number or invoice.id)[:500],
        "payment_platform_url": (invoice.hosted_invoice_url or "")[:3000] or None,
        "subscription_id": (invoice.subscription or "")[:500] or None,
    }
    for name, value in values.items():
        if value is not None and (own or getattr(case, name) is None):
            setattr(case, name, value)
    # An amount and its currency only ever change together.
    if own or (case.amount is None and case.currency is None):
        case.amount, case.currency = invoice.amount_due, invoice.currency.upper()
    case.payment_status = "failed"


def _invoice_detail(found: FetchedInvoice) -> dict[str, Any]:
    invoice = found.invoice
    return {"invoice": invoice.id, "number": invoice.number, "status": invoice.status,
            "customer": invoice.customer, "amount_due": str(invoice.amount_due),
            "amount_paid": str(invoice.amount_paid), "currency": invoice.currency.upper(),
            "attempt_count": invoice.attempt_count, "subscription": invoice.subscription,
            "moonclerk_customers": list(found.moonclerk_ids)}


