"""Delegation messages: the `/finance delegate` answers and the direct messages when one starts and ends.

People are shown by mention (validated Slack IDs only); the reason, typed by a person and redacted
before it was stored, through `inline`. A delegation's end is shown as the calendar day it runs to the
end of, in the policy's time zone, with that zone named: converting it to each reader's zone would
move it a day for half the world.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta, tzinfo
from enum import StrEnum
from typing import Any, Final

from blocks.format import calendar_date, inline, mention, slack_date
from blocks.lookup import notice
from storage.decisions import Delegation

LISTED: Final = 20  # per list in `/finance delegations`; more are counted, not shown


class Refusal(StrEnum):
    """Why a delegation was refused (the audit event's reason)."""

    NOT_APPROVER = "delegator_not_approver"
    SELF = "self_delegation"
    NOT_FINANCE = "delegate_not_finance"
    PAST = "date_in_past"
    TOO_FAR = "date_too_far"
    ALREADY = "already_delegating"
    DELEGATE_AWAY = "delegate_delegates"  # the delegate is away themselves: a chain
    ACTING = "delegator_is_delegate"  # the delegator acts for someone else: a chain


def _who(user: str | None) -> str:
    return mention(user) or "someone"


def _zone_name(zone: tzinfo) -> str:
    return inline(str(zone), 60)


def _last_day(row: Delegation, zone: tzinfo) -> date:
    return (row.ends_at.astimezone(zone) - timedelta(microseconds=1)).date()


def until(row: Delegation, zone: tzinfo) -> str:
    return f"the end of {calendar_date(_last_day(row, zone))} ({_zone_name(zone)})"


def _reason(row: Delegation) -> str:
    return f"\nReason: {inline(row.reason, 500)}" if row.reason else ""


# ---------------------------------------------------------------------------------------------------
# Answers to the commands (ephemeral)


def started_answer(row: Delegation, zone: tzinfo) -> dict[str, Any]:
    return notice(f"Delegation on: {_who(row.delegate)} may approve what you may until {until(row, zone)}, "
                  f"on your behalf.{_reason(row)}\nYou will both get a direct message. "
                  "Turn it off early with `/finance delegate off`.")


def refused_answer(why: Refusal, delegate: str | None, zone: tzinfo, *, other: Delegation | None = None,
                   latest: date | None = None) -> dict[str, Any]:
    person = _who(delegate)
    match why:
        case Refusal.NOT_APPROVER:
            text = "Only finance approvers named in the policy file can delegate their approvals."
        case Refusal.SELF:
            text = "You cannot delegate to yourself: name the person who approves while you are away."
        case Refusal.NOT_FINANCE:
            text = (f"{person} is not a finance person in the policy file (an approver or the default finance "
                    "owner), so they cannot approve for you.")
        case Refusal.PAST:
            text = f"That day has already ended ({_zone_name(zone)}): choose today or a later day."
        case Refusal.TOO_FAR:
            limit = f" (at the latest {calendar_date(latest)})" if latest else ""
            text = f"A delegation lasts at most 90 days{limit}: choose an earlier last day."
        case Refusal.ALREADY:
            held = f" to {_who(other.delegate)} until {until(other, zone)}" if other else ""
            text = (f"You already delegate{held}. Turn it off first with `/finance delegate off`, "
                    "then start the new one.")
        case Refusal.DELEGATE_AWAY:
            held = f" to {_who(other.delegate)}" if other else ""
            text = (f"{person} has delegated their own approvals{held}, so they cannot take yours: delegations "
                    "do not chain. Choose someone who is not away.")
        case Refusal.ACTING:
            held = f" for {_who(other.delegator)}" if other else ""
            text = (f"You are approving{held} as their delegate, so you cannot pass approvals on: delegations "
                    "do not chain.")
    return notice(f"Not delegated. {text}")


def ended_answer(row: Delegation) -> dict[str, Any]:
    return notice(f"Delegation off: {_who(row.delegate)} no longer approves on your behalf. "
                  "You will both get a direct message.")


def nothing_to_end_answer(received: Sequence[Delegation], zone: tzinfo) -> dict[str, Any]:
    text = "You have no active delegation to turn off."
    if received:
        givers = ", ".join(_who(row.delegator) for row in received)
        text += f" You approve on behalf of {givers}; only they can turn that off."
    return notice(text)


def _line(row: Delegation, zone: tzinfo) -> str:
    reason = f" · {inline(row.reason, 200)}" if row.reason else ""
    return f"• {_who(row.delegator)} → {_who(row.delegate)} until {until(row, zone)}{reason}"


def _list(title: str, rows: Sequence[Delegation], zone: tzinfo) -> str:
    lines = [_line(row, zone) for row in rows[:LISTED]]
    if len(rows) > LISTED:
        lines.append(f"…and {len(rows) - LISTED} more")
    return f"*{title}*\n" + "\n".join(lines)


def listing_answer(given: Sequence[Delegation], received: Sequence[Delegation], others: Sequence[Delegation],
                   zone: tzinfo) -> dict[str, Any]:
    if not (given or received or others):
        return notice("No delegations are active. Start one with `/finance delegate @person until YYYY-MM-DD`.")
    parts = []
    if given:
        parts.append(_list("You delegate", given, zone))
    if received:
        parts.append(_list("You approve on behalf of", received, zone))
    if others:
        parts.append(_list("Other active delegations", others, zone))
    text = "\n\n".join(parts)
    answer = notice(text)
    # One section per list, so a long list cannot push the others past Slack's section limit.
    answer["blocks"] = [notice(part)["blocks"][0] for part in parts]
    return answer


# ---------------------------------------------------------------------------------------------------
# Direct messages: (user ID, chat.postMessage fields) for each person told


def started_dm(row: Delegation, zone: tzinfo) -> list[tuple[str, dict[str, Any]]]:
    end = until(row, zone)
    to_delegator = (f"Your delegation has started: {_who(row.delegate)} may approve what you may until {end}; "
                    f"their approvals show as on your behalf.{_reason(row)}\n"
                    "Turn it off early with `/finance delegate off`.")
    to_delegate = (f"{_who(row.delegator)} has delegated their approvals to you until {end}. You may approve "
                   "what they may (at their level); the card and the audit trail say you approved on their "
                   f"behalf, and their approval reminders come to you too.{_reason(row)}")
    return [(row.delegator, {"text": to_delegator}), (row.delegate, {"text": to_delegate})]


def ended_dm(row: Delegation, zone: tzinfo) -> list[tuple[str, dict[str, Any]]]:
    if row.ended_by:
        at = slack_date(row.ended_at) if row.ended_at else "now"
        how = f"{_who(row.ended_by)} turned it off ({at})"
    else:
        how = f"its last day, {calendar_date(_last_day(row, zone))} ({_zone_name(zone)}), is over"
    to_delegator = f"Your delegation to {_who(row.delegate)} has ended: {how}. You approve for yourself again."
    to_delegate = f"You no longer approve on behalf of {_who(row.delegator)}: {how}."
    return [(row.delegator, {"text": to_delegator}), (row.delegate, {"text": to_delegate})]
