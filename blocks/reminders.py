"""Reminder and escalation messages, and the snooze modal. Pure: values in, Slack payloads out.

Times are `<!date^…>` stamps, so each reader sees their own time zone; the fallback text (shown where
Slack cannot format dates) is in the policy's zone. Caller-derived values go through blocks.format.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from blocks.actions import CallbackId, ControlId, ReminderValue
from blocks.format import channel, code, inline, is_user_id, link, mention, mrkdwn, plain, user_group
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
    person = mention(owner) if is_user_id(owner) else None
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
