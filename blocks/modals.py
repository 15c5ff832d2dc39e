"""Modals for money-moving actions: pre-filled from the case, validated on submit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from blocks.actions import ButtonValue, CallbackId
from blocks.format import code, inline, money, mrkdwn, prose
from blocks.limits import truncate, truncate_mrkdwn
from storage.models import Case

FIAT_METHODS = ("paypal", "cashapp", "venmo", "skrill", "credit card")
CRYPTOS = ("bitcoin", "ethereum", "solana", "litecoin", "dogecoin", "polygon")


def _text_input(block_id: str, label: str, initial: str | None, *, optional: bool = False,
                hint: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value"}
    if initial:
        element["initial_value"] = truncate(initial, 150)
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "optional": optional,
                             "label": {"type": "plain_text", "text": label}, "element": element}
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    return block


def _select(block_id: str, label: str, options: tuple[str, ...], initial: str | None) -> dict[str, Any]:
    choices = [{"text": {"type": "plain_text", "text": option}, "value": option} for option in options]
    element: dict[str, Any] = {"type": "static_select", "action_id": "value", "options": choices}
    if initial in options:
        element["initial_option"] = next(c for c in choices if c["value"] == initial)
    return {"type": "input", "block_id": block_id, "label": {"type": "plain_text", "text": label}, "element": element}


def _context(case: Case) -> dict[str, Any]:
    parts = [f"Case {code(case.call_id, 210)}", inline(case.kind.replace("_", " "), 60)]
    if case.amount is not None and case.currency:
        parts.append(f"call amount {money(case.amount, case.currency)}")
    return {"type": "context", "elements": [mrkdwn(truncate_mrkdwn(" · ".join(parts), 2000))]}


def _note(case: Case) -> dict[str, Any]:
    # The note is built from stored case fields, which were redacted before they were stored.
    reason = case.refund_reason or case.dispute_reason or case.caller_claim or "—"
    text = f"*Note that will be recorded*\n{prose(reason, 500)}"
    if case.next_step:
        text += f"\nNext step: {inline(case.next_step, 300)}"
    return {"type": "section", "text": mrkdwn(text)}


def _view(callback: str, title: str, submit: str, case: Case, blocks: list[dict[str, Any]], *,
          note: bool = True) -> dict[str, Any]:
    """A modal about `case`; a money modal ends with the note that will be recorded (`note`)."""
    assert case.id is not None
    metadata = ButtonValue(case_id=case.id, call_id=case.call_id, v=case.card_version).dump()
    return {
        "type": "modal", "callback_id": callback, "private_metadata": metadata,
        "title": {"type": "plain_text", "text": title}, "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [_context(case), *blocks, *([_note(case)] if note else [])],
    }


def invoice_modal(case: Case) -> dict[str, Any]:
    send_to = case.recipient_email or case.email
    return _view(CallbackId.INVOICE_POOF, "Poof invoice", "Create invoice", case, [
        _text_input("amount", "Amount", str(case.amount) if case.amount is not None else None,
                    hint="A decimal amount above zero, e.g. 149.00"),
        _text_input("currency", "Currency", case.currency, hint="ISO 4217 code, e.g. USD"),
        _select("method", "Payment method", FIAT_METHODS, "paypal"),
        _text_input("send_to", "Send the payment link to", send_to, optional=True,
                    hint="Must match the verified customer record"),
        _override("Send even if the recipient differs from the customer record"),
    ])


def _override(label: str, *, block_id: str = "override", title: str = "Recipient override") -> dict[str, Any]:
    return {"type": "input", "block_id": block_id, "optional": True,
            "label": {"type": "plain_text", "text": title},
            "element": {"type": "checkboxes", "action_id": "value", "options": [{
                "text": {"type": "plain_text", "text": label},
                "description": {"type": "plain_text", "text": "Senior approvers only; audited"},
                "value": "override"}]}}


def payout_modal(case: Case) -> dict[str, Any]:
    return _view(CallbackId.PAYOUT_POOF, "Poof payout", "Approve payout", case, [
        _text_input("amount", "Value of the payout", str(case.amount) if case.amount is not None else None,
                    hint="What the payout is worth; the approval thresholds apply to this"),
        _text_input("currency", "Currency of the value", case.currency, hint="ISO 4217 code, e.g. USD"),
        _select("crypto", "Send as", CRYPTOS, (case.crypto or "").lower() or None),
        _text_input("crypto_amount", "Amount of cryptocurrency to send", None,
                    hint="Exactly what Poof sends, in units of the cryptocurrency (e.g. 0.85); check today's rate"),
        _text_input("address", "Recipient wallet address", case.crypto_address,
                    hint="Must be the address confirmed on the call; checked against the cryptocurrency's format"),
        _override("Send to a different address than the one confirmed on the call"),
        *([] if case.caller_matched else [_override(
            "I verified this caller's identity another way", block_id="override_identity",
            title="Identity override")]),
    ])


# -- Stripe refund ---------------------------------------------------------------------------------

REFUND_REASONS = ("requested_by_customer", "duplicate", "fraudulent")


@dataclass(frozen=True)
class ChargeChoice:
    """A charge the refund could run on, as the modal shows it: never more of the card than brand and last 4."""

    id: str
    created: datetime
    amount: Decimal
    currency: str
    refunded: Decimal
    brand: str | None
    last4: str | None
    source: str


def refund_loading_modal(case: Case) -> dict[str, Any]:
    """Opened at once (the click's trigger expires in 3 s); Stripe's charges replace it when they arrive."""
    view = _view(CallbackId.REFUND_STRIPE, "Stripe refund", "Refund", case, [
        {"type": "section", "text": mrkdwn("⏳ Looking up the charge in Stripe…")}], note=False)
    del view["submit"]
    return view


def _charge_text(choice: ChargeChoice) -> str:
    card = " ".join(part for part in ((choice.brand or "").title(), f"····{choice.last4}" if choice.last4 else "")
                    if part)
    text = f"{choice.created:%Y-%m-%d} · {choice.amount} {choice.currency}"
    if choice.refunded:
        text += f" ({choice.refunded} refunded)"
    return f"{text} · {card}" if card else text


def refund_modal(case: Case, charges: list[ChargeChoice], problems: list[str],
                 amount: Decimal | None) -> dict[str, Any]:
    """The charge (listed, never guessed: one is preselected only when it is the only one), the amount and
    Stripe's reason. Without a charge the modal explains why and offers no submit."""
    notes = [f"⚠️ {inline(problem, 300)}" for problem in problems[:5]]
    if not charges:
        text = ("No charge of the matched customer fits this case, so there is nothing to refund from here. "
                "Check the call's charge or payment ID, or the customer match.")
        view = _view(CallbackId.REFUND_STRIPE, "Stripe refund", "Refund", case, [
            {"type": "section", "text": mrkdwn(truncate_mrkdwn("\n".join([text, *notes]), 3000))}], note=False)
        del view["submit"]
        return view
    options = [{"text": {"type": "plain_text", "text": truncate(_charge_text(c), 75)},
                "description": {"type": "plain_text", "text": truncate(f"{c.id} · {c.source}", 75)},
                "value": c.id} for c in charges[:100]]
    element: dict[str, Any] = {"type": "static_select", "action_id": "value", "options": options}
    if len(options) == 1:
        element["initial_option"] = options[0]
    reason = "duplicate" if case.kind == "duplicate_charge" else "requested_by_customer"
    blocks: list[dict[str, Any]] = [
        {"type": "input", "block_id": "charge", "label": {"type": "plain_text", "text": "Charge"}, "element": element,
         "hint": {"type": "plain_text", "text": "Several charges fit: choose the one the caller means"
                  if len(options) > 1 else "The charge the refund runs on"}},
        _text_input("amount", "Amount to refund", str(amount) if amount is not None else None,
                    hint="In the charge's currency; at most what is still refundable and what was approved"),
        _select("reason", "Reason (Stripe's)", REFUND_REASONS, reason),
    ]
    if notes:
        blocks.append({"type": "context", "elements": [mrkdwn(truncate_mrkdwn(" ".join(notes), 2000))]})
    return _view(CallbackId.REFUND_STRIPE, "Stripe refund", "Refund", case, blocks)


def submitted(view: dict[str, Any]) -> dict[str, str | list[str] | None]:
    """The values of a submitted modal, keyed by block_id."""
    values: dict[str, str | list[str] | None] = {}
    for block_id, actions in (view.get("state") or {}).get("values", {}).items():
        element = actions.get("value", {})
        if element.get("type") == "static_select":
            option = element.get("selected_option") or {}
            values[block_id] = option.get("value")
        elif element.get("type") == "checkboxes":
            values[block_id] = [o.get("value") for o in element.get("selected_options") or []]
        else:
            values[block_id] = element.get("value")
    return values


# -- decisions -------------------------------------------------------------------------------------

def _multiline(block_id: str, label: str, *, optional: bool, min_length: int | None, max_length: int,
               hint: str) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "multiline": True,
                               "max_length": max_length}
    if min_length:
        element["min_length"] = min_length
    return {"type": "input", "block_id": block_id, "optional": optional,
            "label": {"type": "plain_text", "text": label}, "element": element,
            "hint": {"type": "plain_text", "text": hint}}


def deny_modal(case: Case, *, min_length: int, max_length: int) -> dict[str, Any]:
    return _view(CallbackId.DENY, "Deny this case", "Deny", case, [
        _multiline("reason", "Why is it denied?", optional=False, min_length=min_length, max_length=max_length,
                   hint=f"{min_length} to {max_length} characters; shown on the card and kept in the audit trail. "
                        "Never paste card or bank details."),
    ], note=False)


def resolve_modal(case: Case, outcomes: list[tuple[str, str]], *, note_max: int, reference_max: int) -> dict[str, Any]:
    """`outcomes` are (value, label) pairs: the domain's list, passed in so this module stays pure."""
    choices = [{"text": {"type": "plain_text", "text": label}, "value": value} for value, label in outcomes]
    outcome = {"type": "input", "block_id": "outcome", "label": {"type": "plain_text", "text": "What was done?"},
               "element": {"type": "static_select", "action_id": "value", "options": choices}}
    reference = _text_input("reference", "External reference", None, optional=True,
                            hint="A MoonClerk, Stripe or Poof ID, or a ticket number")
    reference["element"]["max_length"] = reference_max
    return _view(CallbackId.RESOLVE, "Resolve this case", "Resolve", case, [
        outcome,
        _multiline("note", "Note", optional=True, min_length=None, max_length=note_max,
                   hint="Required when the outcome is Other. Never paste card or bank details."),
        reference,
    ], note=False)
