"""The finance case card: one Block Kit message per case, posted once and then kept current with
chat.update. Pure: it reads a Case and returns a payload, nothing else.

Every value from the call is treated as hostile (see blocks.format) and given a budget, so the worst
case - every field at its longest - still fits Slack's per-block limits and stays well under the
undocumented ~12k total that makes Slack answer msg_blocks_too_long.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from blocks.actions import ActionId, ButtonValue, ControlId
from blocks.format import (
    calendar_date,
    code,
    inline,
    is_user_id,
    link,
    mention,
    mrkdwn,
    plain,
    prose,
    slack_date,
)
from blocks.limits import (
    MAX_CONFIRM_TEXT,
    MAX_CONFIRM_TITLE,
    MAX_FIELD_TEXT,
    MAX_HEADER,
    MAX_SECTION_TEXT,
    slack_len,
    truncate,
    truncate_mrkdwn,
)
from blocks.mail import recipient_context
from blocks.stripe_status import stripe_status_block
from bot.triage.model import KIND_LABELS, BillingKind, Urgency
from providers.currency import format_amount
from providers.dialnexa import call_details_url
from providers.refunds import is_charge_reference
from storage.models import Case
from storage.states import ActionStatus, CaseState, MatchStatus, is_closed

URGENCY_EMOJI = {
    Urgency.CRITICAL: "🔴",
    Urgency.HIGH: "🟠",
    Urgency.NORMAL: "🟡",
    Urgency.LOW: "⚪",
}
STATE_LABELS: dict[str, str] = {
    CaseState.NEW: "🆕 New",
    CaseState.IN_REVIEW: "👀 In review",
    CaseState.APPROVED: "✅ Approved",
    CaseState.DONE: "🏁 Done",
    CaseState.DENIED: "⛔ Denied",
    CaseState.REJECTED: "⛔ Rejected",
    CaseState.FAILED: "❗ Failed",
    CaseState.DISMISSED: "🗑️ Dismissed",
    CaseState.SNOOZED: "💤 Snoozed",
}
# Kinds whose main money movement is paying someone (the customer back, or a partner), so the payout is
# the primary button and an invoice is never offered.
_MONEY_BACK = frozenset({BillingKind.REFUND, BillingKind.DUPLICATE_CHARGE, BillingKind.PAYOUT_REQUEST})

# Budgets, in characters. Fields are shown side by side, so they are kept short; the totals leave
# room under MAX_CUMULATIVE_TEXT even when every value is at its longest.
FIELD_BUDGET = 300
NAME_BUDGET = 100
ID_BUDGET = 80
DETAIL_ITEM_BUDGET = 280
DETAIL_BUDGET = 1500
SUMMARY_BUDGET = 1000
ESCALATIONS_SHOWN = 5
LINK_URL_BUDGET = 1000
LINKS_BUDGET = 3000
FALLBACK_BUDGET = 300
EMPTY = "—"


def _kind(case: Case) -> tuple[BillingKind | None, str]:
    try:
        kind = BillingKind(case.kind)
    except ValueError:
        return None, _readable(case.kind)
    return kind, KIND_LABELS[kind]


def _readable(value: str) -> str:
    """A readable label for a code we do not know ("on_fire" → "On fire"); it is never markup."""
    words = "".join(char if char.isalnum() else " " for char in value).split()
    return " ".join(words)[:60].capitalize() or "Unknown"


def _urgency(case: Case) -> tuple[str, str]:
    try:
        urgency = Urgency(case.urgency)
    except ValueError:
        return "⚪", _readable(case.urgency)
    return URGENCY_EMOJI[urgency], urgency.value.capitalize()


def _money(amount: Decimal | None, currency: str | None) -> str | None:
    """`1,249.00 USD`; exotic Decimals (NaN, 1E+40) are shown raw rather than crashing the card."""
    if amount is None:
        return None
    if currency:
        try:
            if amount.is_finite():
                return format_amount(amount, currency.strip().upper()[:3])
        except InvalidOperation:
            pass
        return f"{amount} {currency}"
    return f"{amount} (currency not stated)"


def _block_id(case: Case, name: str) -> str:
    # A new block_id per version: Slack's docs ask for fresh block IDs when a message is updated.
    return f"card-{case.id}-v{case.card_version}-{name}"


def _field(label: str, value: str | None) -> dict[str, Any]:
    text = f"*{label}*\n{value or EMPTY}"
    return mrkdwn(truncate_mrkdwn(text, min(FIELD_BUDGET + len(label) + 4, MAX_FIELD_TEXT)))


# ---------------------------------------------------------------------------------------------------
# Field contents


def _confidence(case: Case) -> str:
    confidence = case.confidence
    percent = "?" if math.isnan(confidence) else f"{round(max(0.0, min(1.0, confidence)) * 100)}%"
    rule = f" ({code(case.rule, ID_BUDGET)})" if case.rule else ""
    text = f"classified {percent}{rule}"
    # How sure the MoonClerk customer match is (bot.lookup.matching), once matching has run.
    score = case.match_score
    if case.match_status in {MatchStatus.MATCHED, MatchStatus.REVIEW} and score is not None and not math.isnan(score):
        label = "customer match" if case.match_status == MatchStatus.MATCHED else "customer match to confirm"
        text += f" · {label} {round(max(0.0, min(1.0, score)) * 100)}%"
    elif case.match_status == MatchStatus.UNMATCHED:
        text += " · no MoonClerk customer matched"
    return text


def _caller(case: Case) -> str:
    parts: list[str] = []
    if case.customer_name:
        parts.append(inline(case.customer_name, NAME_BUDGET))
    if case.email:
        parts.append(code(case.email, ID_BUDGET))
    if case.moonclerk_customer_id is not None:
        parts.append(f"MoonClerk customer {code(case.moonclerk_customer_id, ID_BUDGET)}")
    if case.account_id:
        parts.append(f"account {code(case.account_id, ID_BUDGET)}")
    matched = bool(parts)
    phone = case.phone or case.caller_phone
    if phone:
        parts.append(code(phone, 40))
    if not parts:
        return "Unknown caller"
    # Only the caller's own number means nothing tied them to a customer record.
    sureness = _confidence(case) if matched else f"_no customer matched_ · {_confidence(case)}"
    # How sure the match is matters more than the tail of a long name, so it keeps its room.
    who = truncate_mrkdwn(" · ".join(parts), FIELD_BUDGET - slack_len(sureness) - 1)
    return f"{who}\n{sureness}"


def _record(case: Case) -> str | None:
    parts = [
        f"{label} {code(value, ID_BUDGET)}"
        for label, value in (("Invoice", case.invoice_number), ("Payment", case.payment_id),
                             ("Subscription", case.subscription_id))
        if value
    ]
    if case.tax_region:
        parts.append(f"Tax region {inline(case.tax_region, ID_BUDGET)}")
    return "\n".join(parts) or None


def _approver(entry: dict[str, Any]) -> str:
    by = mention(str(entry.get("by") or "")) or "someone"
    principal = mention(str(entry.get("for") or ""))
    return f"{by} on behalf of {principal}" if principal else by


def _approval(case: Case) -> str:
    given = [entry for entry in case.approvals_given or [] if isinstance(entry, dict)]
    if case.approval_required and case.approved_at is not None:
        amount = _money(case.approved_amount, case.approved_currency)
        who = ", ".join(_approver(entry) for entry in given[:3]) or "an approver"
        return f"✅ Approved by {who}" + (f" for {inline(amount, 80)}" if amount else "")
    if case.approval_required:
        reason = inline(case.approval_reason, 200) if case.approval_reason else "no reason recorded"
        needed = max(1, case.approvals_needed)
        text = f"⚠️ Needed: {reason}"
        if needed > 1:
            text += f"\n{len(given)} of {needed} approvals"
            if given:
                text += ": " + ", ".join(_approver(entry) for entry in given[:3])
        if case.senior_needed:
            text += "\nA senior approver must approve"
        if case.approval_round > 1:
            subject = _money(*case.approval_subject)
            text += f"\nRound {case.approval_round}" + (f": for {inline(subject, 80)}" if subject else "")
        return text
    if case.approval_requested:
        return "Asked for on the call; not needed by policy"
    return "Not needed"


def _owner(case: Case) -> str:
    owner = mention(case.owner)
    named = case.finance_owner
    if named and named != case.owner:
        extra = mention(named) if is_user_id(named) else inline(named, NAME_BUDGET)
        return f"{owner or 'Unassigned'} (named on the call: {extra})"
    return owner or "Unassigned"


def _next_step(case: Case) -> str | None:
    lines: list[str] = []
    if case.next_step:
        lines.append(inline(case.next_step, 160))
    if case.follow_up_deadline is not None:
        lines.append(f"Follow up by {slack_date(case.follow_up_deadline)}")
    if case.callback_expected:
        if case.callback_done_at is not None:
            lines.append(f"Called back by {mention(case.callback_done_by) or 'finance'}")
        else:
            lines.append(f"Callback owed by {mention(case.owner) or 'the owner (unassigned)'}")
    return "\n".join(lines) or None


def _facts(case: Case) -> dict[str, Any]:
    money = _money(case.amount, case.currency)
    fields = [
        _field("Caller", _caller(case)),
        _field("Record", _record(case)),
        _field("Amount", inline(money, 80) if money else None),
        _field("Due date", calendar_date(case.due_date) if case.due_date else None),
        _field("Payment status", inline(case.payment_status, 120) if case.payment_status else None),
        _field("Owner", _owner(case)),
        _field("Approval", _approval(case)),
        _field("Next step", _next_step(case)),
    ]
    return {"type": "section", "block_id": _block_id(case, "facts"), "fields": fields}


def _detail(case: Case) -> dict[str, Any] | None:
    lines = [
        f"*{label}:* {inline(value, DETAIL_ITEM_BUDGET)}"
        for label, value in (
            ("Caller says", case.caller_claim),
            ("Refund reason", case.refund_reason),
            ("Dispute reason", case.dispute_reason),
            ("Credit requested", case.credit_request),
            ("Heard on the call", case.evidence),
        )
        if value
    ]
    if case.decision_reason:
        lines.insert(0, f"*Denied because:* {inline(case.decision_reason, DETAIL_ITEM_BUDGET)}")
    if case.resolution:
        resolved = _readable(case.resolution)
        if case.resolution_reference:
            resolved += f" · reference {code(case.resolution_reference, ID_BUDGET)}"
        if case.resolution_note:
            resolved += f" · {inline(case.resolution_note, DETAIL_ITEM_BUDGET)}"
        lines.insert(0, f"*Resolved:* {resolved}")
    reasons = [str(reason) for reason in case.escalation_reasons or [] if reason]
    if reasons:
        shown = ", ".join(inline(reason, 120) for reason in reasons[:ESCALATIONS_SHOWN])
        more = f" and {len(reasons) - ESCALATIONS_SHOWN} more" if len(reasons) > ESCALATIONS_SHOWN else ""
        lines.append(f"*Escalated:* {shown}{more}")
    if not lines:
        return None
    text = truncate_mrkdwn("\n".join(lines), min(DETAIL_BUDGET, MAX_SECTION_TEXT))
    return {"type": "section", "block_id": _block_id(case, "detail"), "text": mrkdwn(text)}


def _summary(case: Case) -> dict[str, Any] | None:
    if not case.summary or not case.summary.strip():
        return None
    text = f"*Call summary*\n{prose(case.summary, SUMMARY_BUDGET)}"
    return {"type": "section", "block_id": _block_id(case, "summary"), "text": mrkdwn(text)}


def _suppression(case: Case) -> dict[str, Any] | None:
    kinds = sorted({_readable(str(kind)).lower() for kind in case.suppressed_kinds or [] if kind})
    if not case.suppressed and not kinds:
        return None
    which = inline(", ".join(kinds), 200) if kinds else "unspecified kinds"
    text = f"🔒 Sensitive details were suppressed from this call ({which}); their values are not kept."
    return {"type": "context", "block_id": _block_id(case, "suppressed"), "elements": [mrkdwn(text)]}


def transcript_link(case: Case) -> str | None:
    """The call's transcript: the event's own link, else DialNexa's record of the call (the raw
    transcript is never kept here). Cases that no call started (a MoonClerk webhook) have none."""
    if case.transcript_url:
        return case.transcript_url
    if case.classification_source == "moonclerk":
        return None
    return call_details_url(case.call_id)


def _evidence(case: Case) -> dict[str, Any]:
    links: list[str] = []
    budget = LINKS_BUDGET
    for label, url in (("Transcript", transcript_link(case)), ("Recording", case.recording_url),
                       ("CRM", case.crm_url), ("Support ticket", case.support_ticket_url),
                       ("Payment platform", case.payment_platform_url)):
        if not url:
            continue
        made = link(url, label)
        if made is None:
            links.append(f"{label} (not a web link)")
        elif len(made) > min(LINK_URL_BUDGET, budget):
            # A cut URL is a broken URL; better to say so than to link somewhere wrong.
            links.append(f"{label} (link too long to show)")
        else:
            budget -= len(made)
            links.append(made)
    elements = [mrkdwn(f"DialNexa call {code(case.call_id, 210)}")]
    if links:
        elements.insert(0, mrkdwn("Evidence: " + " · ".join(links)))
    return {"type": "context", "block_id": _block_id(case, "evidence"), "elements": elements}


def _state(case: Case, next_reminder: datetime | None) -> dict[str, Any]:
    state = case.state or "new"
    known = STATE_LABELS.get(state)
    # Only our own labels are bold: an unknown state is stored text, shown as plain words.
    parts = [f"*{known}*" if known else inline(_readable(state), 40)]
    who = mention(case.state_by)
    if who:
        parts.append(f"by {who}")
    if case.state_at is not None:
        parts.append(slack_date(case.state_at))
    elif case.state_by is None and case.created_at is not None:
        parts.append(f"since {slack_date(case.created_at)}")  # a new case: when the call came in
    if next_reminder is not None and not is_closed(state):
        parts.append(f"next reminder {slack_date(next_reminder)}")
    if case.action_label:
        parts.append(_last_action(case))
    text = truncate_mrkdwn("State: " + " · ".join(parts), MAX_SECTION_TEXT)
    return {"type": "context", "block_id": _block_id(case, "state"), "elements": [mrkdwn(text)]}


ACTION_LABELS = {
    ActionId.NOTE_MOONCLERK.value: "MoonClerk note",
    ActionId.INVOICE_POOF.value: "Poof invoice",
    ActionId.PAYOUT_POOF.value: "Poof payout",
    ActionId.REFUND_STRIPE.value: "Stripe refund",
}
ACTION_STATUS: dict[str, str] = {
    ActionStatus.SUCCEEDED: "✅ done", ActionStatus.FAILED: "❌ failed",
    ActionStatus.UNKNOWN: "⚠️ outcome unknown: reconcile it", ActionStatus.RUNNING: "⏳ running",
    ActionStatus.AWAITING_APPROVAL: "⏳ waiting for a second approver",
    ActionStatus.PENDING: "⏳ pending at Stripe", ActionStatus.REQUIRES_ACTION: "⚠️ needs action in Stripe",
    ActionStatus.CANCELED: "❌ cancelled",
}
# Where a money action is reconciled, and which of its endings may be retried.
_RECONCILE_TEXT = {ActionId.REFUND_STRIPE.value: "Reconcile with Stripe"}
_RETRYABLE = {ActionId.REFUND_STRIPE.value: frozenset({ActionStatus.FAILED, ActionStatus.CANCELED})}


def _last_action(case: Case) -> str:
    label = ACTION_LABELS.get(case.action_label or "", inline(case.action_label, 40))
    text = f"{label}: {ACTION_STATUS.get(case.action_status or '', inline(case.action_status, 40))}"
    if case.action_reference:
        text += f" {code(case.action_reference, ID_BUDGET)}"
    opened = link(case.action_url, "open")
    if opened and len(opened) <= LINK_URL_BUDGET:
        text += f" {opened}"
    if case.action_error and case.action_status in {ActionStatus.FAILED, ActionStatus.UNKNOWN, ActionStatus.CANCELED}:
        text += f" ({prose(case.action_error, 300)})"
    return text


def _ledger_buttons(case: Case) -> dict[str, Any] | None:
    """Retry a failed action; reconcile one whose outcome is unknown (never retry that: it may have run)."""
    if case.action_label not in {ActionId.INVOICE_POOF.value, ActionId.PAYOUT_POOF.value, ActionId.REFUND_STRIPE.value}:
        return None
    assert case.id is not None
    if case.action_status in _RETRYABLE.get(case.action_label, {ActionStatus.FAILED}):
        action_id, text = ControlId.RETRY_ACTION, "Retry"
    elif case.action_status == ActionStatus.UNKNOWN:
        action_id, text = ControlId.RECONCILE_ACTION, _RECONCILE_TEXT.get(case.action_label, "Reconcile with Poof")
    else:
        return None
    value = ButtonValue(case_id=case.id, call_id=case.call_id, v=case.card_version).dump()
    return {"type": "actions", "block_id": f"{_block_id(case, 'ledger')}:{case.action_label}", "elements": [
        {"type": "button", "action_id": action_id, "value": value, "text": plain(text)}]}


# ---------------------------------------------------------------------------------------------------
# Buttons


def has_payout_details(case: Case) -> bool:
    return bool(case.payout_recipient or case.crypto_address) and case.payout_consent is True


def has_invoice_details(case: Case) -> bool:
    # An invoice asks the customer to pay; for money owed back to them it would be the wrong action.
    kind, _ = _kind(case)
    if kind in _MONEY_BACK or kind is BillingKind.DISPUTE:
        return False
    return case.caller_matched and case.amount is not None and bool(case.currency)


def has_refund_details(case: Case) -> bool:
    """A refund or duplicate charge whose charge can be found (named on the call, or among the matched
    customer's), once approved if it needs approval."""
    kind, _ = _kind(case)
    if kind not in (BillingKind.REFUND, BillingKind.DUPLICATE_CHARGE) or awaiting_approval(case):
        return False
    named = any(is_charge_reference(value) for value in (case.stripe_charge_id, case.payment_id))
    return named or case.caller_matched


def has_moonclerk_reference(case: Case) -> bool:
    return case.has_moonclerk_reference


# Once an action has happened (or is under way) its button goes; the ledger refuses a second run anyway.
_SETTLED = frozenset(ActionStatus)


def _done(case: Case, action: ActionId) -> bool:
    return case.action_label == action.value and case.action_status in _SETTLED


def awaiting_approval(case: Case) -> bool:
    """Open, needs approval, not yet (fully) approved: the case shows Approve and Deny."""
    return case.approval_required and case.approved_at is None and not is_closed(case.state)


def callback_owed(case: Case) -> bool:
    return bool(case.callback_expected) and case.callback_done_at is None and not is_closed(case.state)


def offered_actions(case: Case) -> list[ActionId]:
    """The buttons this case allows, in display order. Handlers must re-check: cards go stale.

    Approve shows while approval is needed; Deny until the case is approved; once decided, both leave
    the card. Resolve and Dismiss close an open case.
    """
    if is_closed(case.state):
        return []
    actions: list[ActionId] = []
    if awaiting_approval(case):
        actions.append(ActionId.APPROVE)
    if case.approved_at is None:
        actions.append(ActionId.DENY)
    for action, offered in ((ActionId.NOTE_MOONCLERK, has_moonclerk_reference),
                            (ActionId.REFUND_STRIPE, has_refund_details),
                            (ActionId.INVOICE_POOF, has_invoice_details), (ActionId.PAYOUT_POOF, has_payout_details)):
        if offered(case) and not _done(case, action):
            actions.append(action)
    if case.is_billing and case.verified_email and case.mail_status not in _MAIL_IN_FLIGHT:
        actions.append(ActionId.SEND_TO_CUSTOMER)  # a failed email comes back here: this is its Retry
    actions += [ActionId.RESOLVE, ActionId.ROUTE_REVIEW, ActionId.ASSIGN_SELF, ActionId.SNOOZE, ActionId.DISMISS]
    return actions


_MAIL_IN_FLIGHT = frozenset({"queued", "sending"})


def _primary(case: Case, actions: list[ActionId]) -> ActionId | None:
    if ActionId.APPROVE in actions:
        return ActionId.APPROVE  # nothing else should happen before the decision
    kind, _ = _kind(case)
    money = [a for a in (ActionId.REFUND_STRIPE, ActionId.PAYOUT_POOF, ActionId.INVOICE_POOF) if a in actions]
    if kind not in _MONEY_BACK:
        money.reverse()
    return money[0] if money else None


_BUTTON_TEXT = {
    ActionId.APPROVE: "✅ Approve",
    ActionId.DENY: "⛔ Deny",
    ActionId.RESOLVE: "🏁 Resolve",
    ActionId.NOTE_MOONCLERK: "📝 MoonClerk note",
    ActionId.INVOICE_POOF: "🧾 Poof invoice",
    ActionId.PAYOUT_POOF: "💸 Poof payout",
    ActionId.REFUND_STRIPE: "↩️ Stripe refund",
    ActionId.ROUTE_REVIEW: "Route for review",
    ActionId.ASSIGN_SELF: "Assign to me",
    ActionId.SNOOZE: "Snooze",
    ActionId.DISMISS: "Dismiss",
    ActionId.SEND_TO_CUSTOMER: "✉️ Send to customer",
}


def _confirm(title: str, text: str, yes: str, no: str, style: str) -> dict[str, Any]:
    return {
        "title": plain(truncate(title, MAX_CONFIRM_TITLE)),
        "text": plain(truncate(text, MAX_CONFIRM_TEXT)),
        "confirm": plain(yes),
        "deny": plain(no),
        "style": style,
    }


def _button(case: Case, action: ActionId, value: str, primary: ActionId | None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action.value,
        "text": plain(_BUTTON_TEXT[action]),
        "value": value,
    }
    if action is primary:
        button["style"] = "primary"
    if action is ActionId.APPROVE:
        money = _money(*case.approval_subject)
        needed = max(1, case.approvals_needed)
        count = f" This is approval {len(case.approvals_given or []) + 1} of {needed}." if needed > 1 else ""
        button["confirm"] = _confirm(
            "Approve this case?",
            f"You approve {money or 'this case'} on behalf of finance.{count} Money actions may then run up "
            "to this amount.", "Approve", "Cancel", "primary")
    elif action is ActionId.DISMISS:
        button["style"] = "danger"
        button["confirm"] = _confirm(
            "Dismiss this case?",
            "The card stays in the channel marked dismissed and offers no further actions.",
            "Dismiss", "Keep it", "danger",
        )
    elif action is ActionId.PAYOUT_POOF:
        money = _money(case.amount, case.currency)
        amount = f" of {money}" if money else ""
        # Plain text: the dialog does not render mrkdwn, so nothing in it needs escaping.
        button["confirm"] = _confirm(
            "Start a Poof payout?",
            f"This starts a payout{amount} to the recipient the caller gave, with consent, on the call. "
            "Money sent out cannot be pulled back.",
            "Continue", "Cancel", "primary",
        )
    return button


def _actions(case: Case) -> list[dict[str, Any]]:
    actions = offered_actions(case)
    if not actions:
        return []
    assert case.id is not None
    value = ButtonValue(case_id=case.id, call_id=case.call_id, v=case.card_version).dump()
    primary = _primary(case, actions)
    buttons = [_button(case, action, value, primary) for action in actions]
    if callback_owed(case):
        buttons.append({"type": "button", "action_id": ControlId.CALLBACK_DONE.value, "value": value,
                        "text": plain("📞 Callback done")})
    # An actions block holds at most 25 elements, but a row of more than ~6 buttons wraps badly:
    # the decisions first, the rest on a second row.
    decisions = [b for b in buttons if b["action_id"] in _DECISION_IDS]
    rest = [b for b in buttons if b["action_id"] not in _DECISION_IDS]
    blocks = []
    for name, row in (("decide", decisions), ("actions", rest)):
        if row:
            blocks.append({"type": "actions", "block_id": _block_id(case, name), "elements": row})
    return blocks


_DECISION_IDS = frozenset({ActionId.APPROVE.value, ActionId.DENY.value, ActionId.RESOLVE.value})


# ---------------------------------------------------------------------------------------------------


def _header(case: Case) -> dict[str, Any]:
    _, label = _kind(case)
    emoji, urgency = _urgency(case)
    vip = " · ⭐ VIP" if case.is_vip else ""
    text = truncate(f"{emoji} {label} · {urgency}{vip}", MAX_HEADER)
    return {"type": "header", "block_id": _block_id(case, "header"), "text": plain(text)}


def _fallback(case: Case) -> str:
    """Notification and screen-reader text: kind, urgency, customer, amount."""
    _, label = _kind(case)
    emoji, urgency = _urgency(case)
    vip = ", VIP" if case.is_vip else ""
    who = case.customer_name or case.email or case.phone or case.caller_phone or "unknown caller"
    parts = [f"{emoji} {inline(label, 80)} ({inline(urgency.lower(), 40)}{vip})", inline(who, NAME_BUDGET)]
    money = _money(case.amount, case.currency)
    if money:
        parts.append(inline(money, 80))
    return truncate_mrkdwn(" — ".join(parts), FALLBACK_BUDGET)


def case_card(case: Case, *, next_reminder: datetime | None = None) -> dict[str, Any]:
    """The card for `case` as a chat.postMessage / chat.update payload: {"text", "blocks"}."""
    next_reminder = next_reminder or case.next_reminder_at
    if case.id is None:
        raise ValueError("a card needs a stored case: its buttons carry the case id")
    blocks = [
        _header(case),
        _facts(case),
        stripe_status_block(case.stripe_status, _block_id(case, "stripe")),
        _detail(case),
        _summary(case),
        _suppression(case),
        _evidence(case),
        _state(case, next_reminder),
        recipient_context(case),
        *_actions(case),
        _ledger_buttons(case),
    ]
    return {"text": _fallback(case), "blocks": [block for block in blocks if block is not None]}
