"""Reminder, approval-nudge and escalation messages, and the snooze and done modals. Pure: values in,
Slack payloads out.

Times are `<!date^…>` stamps, so each reader sees their own time zone; the fallback text (shown where
Slack cannot format dates) is in the policy's zone. Caller-derived values go through blocks.format.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from zoneinfo import ZoneInfo

from blocks.actions import ActionId, CallbackId, ControlId, ReminderValue
from blocks.format import channel, code, inline, is_user_id, link, mention, mrkdwn, plain, prose, user_group
from blocks.limits import MAX_SECTION_TEXT, truncate, truncate_mrkdwn
from blocks.lookup import card_permalink
from bot.triage.model import KIND_LABELS, BillingKind
from providers.currency import format_amount
from storage.models import Case

SNOOZE_BLOCK = "when"
SNOOZE_INPUT = "value"

# What each routing reason (bot.triage.route) puts at stake, for the escalation page.
IMPACTS = {
    "VIP payment blocker": "a VIP customer is blocked from paying or from using the service",
    "failed renewal": "a renewal failed: the subscription and its revenue are at risk",
    "duplicate charge": "the customer was charged more than once and is owed money back",
    "dispute or chargeback": "a dispute or chargeback: funds are held and the response has a deadline",
    "collections-sensitive call": "a collections-sensitive call: wording and follow-up carry legal risk",
    "refund above the approval threshold": "a refund above the approval threshold is waiting for approval",
}
_CALL_FLAG = "caller or agent: "


def policy_date(moment: datetime, zone: ZoneInfo) -> str:
    """A `<!date>` stamp each reader sees in their own zone; the fallback is in the policy's zone."""
    moment = moment.astimezone(UTC)
    local = moment.astimezone(zone)
    fallback = f"{local:%a %d %b %Y %H:%M} {local.tzname() or zone.key}"
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def who(owner: str | None) -> str:
    person = mention(owner) if is_user_id(owner) or user_group(owner) else None
    return person or "nobody owns this case yet"


def group(group_id: str | None) -> str:
    return user_group(group_id) or ""


def card_reference(case: Case, finance_channel: str | None) -> str:
    """A link to the card (its permalink needs no API call), else where to find it."""
    opened = link(card_permalink(case.slack_channel, case.slack_ts), "Open the card")
    if opened:
        return opened
    where = channel(case.slack_channel) or channel(finance_channel)
    return f"the card for DialNexa call {code(case.call_id, 210)}" + (f" in {where}" if where else "")


# ---------------------------------------------------------------------------------------------------
# Reminders in the card's thread


def reminder_message(
    case: Case, reminder_id: int, kind: str, *, deadline: datetime | None, implied: bool, owner: str | None,
    oncall_group: str | None, zone: ZoneInfo, late_due_at: datetime | None = None,
    snoozed_by: str | None = None,
) -> dict[str, Any]:
    """One reminder: what is due, for whom, and the done / snooze / reassign controls."""
    assert case.id is not None
    person = who(owner)
    when = policy_date(deadline, zone) if deadline is not None else None
    if kind == "lead":
        headline = f"⏰ *Follow-up due {when}* · {person}"
    elif kind == "due":
        headline = f"⏰ *Follow-up due now* ({when}) · {person}"
    elif kind == "overdue":
        headline = f"🚨 *Follow-up overdue* since {when} · {person} {group(oncall_group)}".rstrip()
    else:
        by = f" by {mention(snoozed_by)}" if is_user_id(snoozed_by) else ""
        due = f": follow-up due {when}" if when else ""
        headline = f"💤 *Reminder snoozed{by}*{due} · {person}"
    lines = [headline]
    if case.next_step:
        lines.append(f"*Next step:* {inline(case.next_step, 300)}")
    if implied and deadline is not None:
        lines.append("_No deadline was given on the call: follow up by the end of the next business day._")
    if late_due_at is not None:
        lines.append(f"_(late: was due at {policy_date(late_due_at, zone)})_")
    text = truncate_mrkdwn("\n".join(lines), MAX_SECTION_TEXT)
    value = ReminderValue(case_id=case.id, reminder_id=reminder_id)
    actions = {
        "type": "actions",
        "block_id": value.block_id(),
        "elements": [
            {"type": "button", "action_id": ControlId.REMINDER_DONE, "text": plain("✅ Done"), "style": "primary",
             "value": value.dump()},
            {"type": "static_select", "action_id": ControlId.REMINDER_SNOOZE, "placeholder": plain("💤 Snooze…"),
             "options": [
                 {"text": plain("1 hour"), "value": "1h"},
                 {"text": plain(truncate(f"Tomorrow 9:00 ({zone.key})", 75)), "value": "tomorrow"},
                 {"text": plain("Pick a time…"), "value": "pick"},
             ]},
            {"type": "users_select", "action_id": ControlId.REMINDER_REASSIGN, "placeholder": plain("Reassign to…")},
        ],
    }
    return {"text": headline, "blocks": [{"type": "section", "text": mrkdwn(text)}, actions]}


def snooze_modal(value: ReminderValue, initial: datetime) -> dict[str, Any]:
    """"Pick a time…": a date-time picker, in the clicker's own Slack time zone."""
    return {
        "type": "modal", "callback_id": CallbackId.REMINDER_SNOOZE, "private_metadata": value.dump(),
        "title": plain("Snooze reminder"), "submit": plain("Snooze"), "close": plain("Cancel"),
        "blocks": [
            {"type": "input", "block_id": SNOOZE_BLOCK, "label": plain("Remind me at"),
             "element": {"type": "datetimepicker", "action_id": SNOOZE_INPUT,
                         "initial_date_time": int(initial.timestamp())}},
            {"type": "context", "elements": [mrkdwn("The reminder comes back in the card's thread then.")]},
        ],
    }


def picked_time(view: dict[str, Any]) -> int | None:
    """The epoch seconds chosen in the snooze modal, or None."""
    state = ((view.get("state") or {}).get("values") or {}).get(SNOOZE_BLOCK) or {}
    picked = (state.get(SNOOZE_INPUT) or {}).get("selected_date_time")
    try:
        return int(picked) if picked is not None else None
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------------
# "Done" on a reminder: what was done, then (when nothing else is open) an offer to resolve

# The outcomes a person picks when a follow-up is done: bot.decisions.Resolution and its labels, the
# same list as the resolve modal's. Repeated here because blocks may not import bot.decisions (it is
# above blocks); tests/test_nudges.py checks the two stay equal.
DONE_OUTCOMES: Final[tuple[tuple[str, str], ...]] = (
    ("refunded", "Refunded"),
    ("credited", "Credited"),
    ("invoice_sent", "Invoice sent"),
    ("document_sent", "Document sent"),
    ("payment_updated", "Payment updated"),
    ("question_answered", "Question answered"),
    ("payment_plan_agreed", "Payment plan agreed"),
    ("no_action_needed", "No action needed"),
    ("other", "Other"),
)
DONE_LABELS: Final[dict[str, str]] = dict(DONE_OUTCOMES)
DONE_OUTCOME_BLOCK, DONE_NOTE_BLOCK = "outcome", "note"
DONE_NOTE_MAX = 1000


def done_modal(value: ReminderValue) -> dict[str, Any]:
    """The reminder's Done: what was done (an outcome from the list) and a note (required for Other)."""
    options = [{"text": plain(label), "value": outcome} for outcome, label in DONE_OUTCOMES]
    return {
        "type": "modal", "callback_id": CallbackId.REMINDER_DONE, "private_metadata": value.dump(),
        "title": plain("Follow-up done"), "submit": plain("Done"), "close": plain("Cancel"),
        "blocks": [
            {"type": "input", "block_id": DONE_OUTCOME_BLOCK, "label": plain("What was done?"),
             "element": {"type": "static_select", "action_id": SNOOZE_INPUT, "options": options,
                         "placeholder": plain("Pick an outcome")}},
            {"type": "input", "block_id": DONE_NOTE_BLOCK, "optional": True, "label": plain("Note"),
             "hint": plain("Required when the outcome is Other. Card numbers and similar are redacted."),
             "element": {"type": "plain_text_input", "action_id": SNOOZE_INPUT, "multiline": True,
                         "max_length": DONE_NOTE_MAX}},
            {"type": "context", "elements": [mrkdwn("The case's reminders stop. It stays open until it is resolved.")]},
        ],
    }


def done_choice(view: dict[str, Any]) -> tuple[str | None, str | None]:
    """The outcome and note submitted in the done modal (None when left empty)."""
    values = (view.get("state") or {}).get("values") or {}
    outcome = (((values.get(DONE_OUTCOME_BLOCK) or {}).get(SNOOZE_INPUT) or {}).get("selected_option") or {})
    note = ((values.get(DONE_NOTE_BLOCK) or {}).get(SNOOZE_INPUT) or {}).get("value")
    picked = outcome.get("value")
    return (str(picked) if picked is not None else None), (str(note) if note is not None and str(note).strip()
                                                            else None)


def done_errors(outcome: str | None, note: str | None) -> dict[str, str]:
    """What is wrong with a done modal's answers, by block (empty when nothing is)."""
    errors: dict[str, str] = {}
    if outcome not in DONE_LABELS:
        errors[DONE_OUTCOME_BLOCK] = "Pick an outcome from the list."
    if note is not None and len(note) > DONE_NOTE_MAX:
        errors[DONE_NOTE_BLOCK] = f"Keep the note to {DONE_NOTE_MAX} characters."
    elif outcome == "other" and not (note or "").strip():
        errors[DONE_NOTE_BLOCK] = "Say what was done: a note is needed when the outcome is Other."
    return errors


def done_reply(user: str, outcome: str, note: str | None, *, resolve_value: str | None) -> dict[str, Any]:
    """The thread reply when a follow-up is done; with `resolve_value` (a ButtonValue) it offers Resolve,
    because nothing else is open on the case."""
    by = mention(user) or "Someone"
    label = DONE_LABELS.get(outcome) or inline(outcome, 40)
    text = f"✅ {by} marked the follow-up done: *{label}*; no more reminders for it."
    lines = [text]
    if note:
        lines.append(prose(note, DONE_NOTE_MAX))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": mrkdwn(truncate_mrkdwn("\n".join(lines),
                                                                                        MAX_SECTION_TEXT))}]
    if resolve_value is not None:
        blocks.append({"type": "context", "elements": [
            mrkdwn("Nothing else is open on this case (no reminder, no money action, no approval waiting).")]})
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "action_id": ActionId.RESOLVE, "text": plain("🏁 Resolve"), "style": "primary",
             "value": resolve_value}]})
    return {"text": text, "blocks": blocks}


# ---------------------------------------------------------------------------------------------------
# Approver nudges: a case waiting for approval


def _mentions(users: list[str], groups: list[str]) -> str:
    parts = [mention(user) for user in users] + [user_group(group) for group in groups]
    return " ".join(part for part in parts if part)


def _still_needed(missing: int, senior_missing: bool, given: int) -> str:
    parts: list[str] = []
    if given:
        parts.append(f"{given} approval{'s' if given > 1 else ''} given")
    parts.append(f"{missing} more needed" + (" from a different approver" if given else ""))
    if senior_missing:
        parts.append("a senior approver must be one of them" if missing > 1 else "it must be a senior approver")
    return "; ".join(parts) + "."


def approval_nudge_message(case: Case, *, users: list[str], groups: list[str], missing: int, senior_missing: bool,
                           given: int, waiting_since: datetime, zone: ZoneInfo,
                           fallback: str | None = None) -> dict[str, Any]:
    """The one nudge in a case's thread while it waits for approval: who may decide it now.

    `fallback` (a group or owner mention, already formatted) is used when the policy names nobody.
    """
    who_ = _mentions(users, groups) or fallback or "no approver is named in the policy"
    headline = f"⏳ *Waiting for approval* since {policy_date(waiting_since, zone)} · {who_}"
    lines = [truncate_mrkdwn(headline, 2000), _still_needed(missing, senior_missing, given)]
    if case.approval_reason:
        lines.append(f"_Why: {inline(case.approval_reason, 300)}_")
    lines.append("Approve or deny it on the card.")
    text = truncate_mrkdwn("\n".join(lines), MAX_SECTION_TEXT)
    return {"text": truncate(f"Waiting for approval · {who_}", 3000),
            "blocks": [{"type": "section", "text": mrkdwn(text)}]}


def approval_page_message(case: Case, *, users: list[str], groups: list[str], missing: int, senior_missing: bool,
                          given: int, waiting_since: datetime, zone: ZoneInfo, card: str,
                          fallback: str | None = None) -> dict[str, Any]:
    """The one page to the escalation channel when a case has waited too long for approval."""
    who_ = _mentions(users, groups) or fallback or ""
    since = policy_date(waiting_since, zone)
    headline = truncate_mrkdwn(f"🚨 *Approval overdue* · {_kind_label(case)} · waiting since {since} {who_}".rstrip(),
                               MAX_SECTION_TEXT)
    fields = [
        mrkdwn(truncate_mrkdwn(f"*Customer*\n{_customer(case)}", 2000)),
        mrkdwn(f"*Amount*\n{_amount(case.amount, case.currency)}"),
        mrkdwn(truncate_mrkdwn(f"*Still needed*\n{_still_needed(missing, senior_missing, given)}", 2000)),
        mrkdwn(f"*Owner*\n{who(case.owner)}"),
    ]
    if case.approval_reason:
        fields.append(mrkdwn(f"*Why approval*\n{inline(case.approval_reason, 300)}"))
    return {
        "text": headline,
        "blocks": [
            {"type": "section", "text": mrkdwn(headline)},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [mrkdwn(truncate_mrkdwn(f"Card: {card}", 3000))]},
        ],
    }


# ---------------------------------------------------------------------------------------------------
# Escalation pages


def impact(reason: str) -> str:
    if reason.startswith(_CALL_FLAG):
        return f"flagged on the call: {inline(reason[len(_CALL_FLAG):], 200)}"
    return IMPACTS.get(reason) or inline(reason, 200)


def _amount(amount: Decimal | None, currency: str | None) -> str:
    if amount is None:
        return "—"
    if currency:
        try:
            if amount.is_finite():
                return inline(format_amount(amount, currency.strip().upper()[:3]), 80)
        except (InvalidOperation, ValueError, KeyError):
            pass
        return inline(f"{amount} {currency}", 80)
    return inline(f"{amount} (currency not stated)", 80)


def _customer(case: Case) -> str:
    parts: list[str] = []
    if case.customer_name:
        parts.append(inline(case.customer_name, 100))
    if case.email:
        parts.append(code(case.email, 80))
    if not parts and (case.phone or case.caller_phone):
        parts.append(code(case.phone or case.caller_phone, 40))
    if case.is_vip:
        parts.append("⭐ VIP")
    return " · ".join(parts) or "unknown caller"


def _kind_label(case: Case) -> str:
    try:
        return KIND_LABELS[BillingKind(case.kind)]
    except ValueError:
        return inline(case.kind, 60)


def escalation_message(
    case: Case, reasons: list[str], *, owner: str | None, oncall_group: str | None, card: str,
    followup_minutes: int | None = None, late_due_at: datetime | None = None, zone: ZoneInfo | None = None,
) -> dict[str, Any]:
    """A page to the escalation channel: impact, urgency, customer, amount, owner and the card.

    `followup_minutes` makes it the follow-up page sent when nobody acted on the first one.
    """
    labels = ", ".join(inline(reason, 120) for reason in reasons) or "escalated"
    mentions = " ".join(part for part in (group(oncall_group), who(owner) if owner else "") if part)
    if followup_minutes is None:
        headline = f"🚨 *Escalation: {labels}* · {_kind_label(case)}"
    else:
        headline = (f"⏰ *Still unhandled {followup_minutes} min after the escalation: {labels}* · "
                    f"{_kind_label(case)}")
    headline = truncate_mrkdwn(f"{headline} {mentions}".rstrip(), MAX_SECTION_TEXT)
    impacts = "\n".join(f"• {impact(reason)}" for reason in reasons) or "—"
    fields = [
        mrkdwn(truncate_mrkdwn(f"*Impact*\n{impacts}", 2000)),
        mrkdwn(f"*Urgency*\n{inline(case.urgency.capitalize(), 40)}"),
        mrkdwn(truncate_mrkdwn(f"*Customer*\n{_customer(case)}", 2000)),
        mrkdwn(f"*Amount*\n{_amount(case.amount, case.currency)}"),
        mrkdwn(f"*Owner*\n{who(owner)}"),
    ]
    context = [mrkdwn(truncate_mrkdwn(f"Card: {card}", 3000))]
    if late_due_at is not None and zone is not None:
        context.append(mrkdwn(f"_(late: was due at {policy_date(late_due_at, zone)})_"))
    return {
        "text": headline,
        "blocks": [
            {"type": "section", "text": mrkdwn(headline)},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": context},
        ],
    }
