"""The App Home tab: a person's open cases (each with Resolve), the approvals they may give now (each
with Approve and Deny), payouts waiting for their confirmation, overdue follow-ups, the review queue's
size. Pure: HomeData in, a `views.publish` view out; who may decide what is worked out in bot.

Each case row links to its card (`https://slack.com/archives/<channel>/p<ts>`) with a URL button;
Slack still sends a block_actions event for a URL button, so their action IDs (all starting
`home_open`) are acknowledged and otherwise ignored. The decision buttons carry the card's own action
IDs and values (ButtonValue with the card version), so the card's listeners and rules apply unchanged,
stale-version check included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from blocks.actions import HOME_OPEN_PREFIX, ActionId, ButtonValue, ControlId
from blocks.format import inline, money, plain, slack_date
from blocks.limits import MAX_VIEW_BLOCKS
from blocks.lookup import card_permalink, case_line, channel_link, context, divider, header, section
from storage.models import Case


@dataclass(frozen=True)
class CaseList:
    """Some of the cases a query found (as many as fit), and how many it found."""

    cases: list[Case]
    total: int


@dataclass(frozen=True)
class HomeData:
    """What one person's Home tab shows (built by bot.lookup.queries.home_data)."""

    user: str
    is_approver: bool
    assigned: CaseList
    awaiting: CaseList
    overdue: CaseList
    review_size: int
    now: datetime
    review_channel: str | None = None
    payouts: CaseList = CaseList([], 0)  # payouts waiting for this approver's confirmation
    may_resolve: bool = True  # a finance person: "My open cases" offer Resolve


def _row(case: Case, group: str, *, overdue: bool = False, extra: str | None = None) -> dict[str, Any]:
    line = case_line(case, when=case.follow_up_deadline if overdue else None,
                     extra="follow-up overdue" if overdue else extra).removeprefix("• ")
    block = section(line, block_id=f"home-{group}-{case.id}")
    url = card_permalink(case.slack_channel, case.slack_ts)
    if url:
        block["accessory"] = {"type": "button", "action_id": f"{HOME_OPEN_PREFIX}_{group}_{case.id}",
                              "text": plain("Open card"), "url": url}
    return block


def _value(case: Case) -> str:
    assert case.id is not None
    return ButtonValue(case_id=case.id, call_id=case.call_id, v=case.card_version).dump()


def _buttons(case: Case, group: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    # One actions block per case: the block ID says which case, and the same action IDs may repeat
    # across blocks (Slack requires them unique only within a block).
    return {"type": "actions", "block_id": f"home-{group}-do-{case.id}", "elements": elements}


def _approval_note(case: Case) -> str:
    parts = []
    if case.amount is not None:
        parts.append(f"*{money(case.amount, case.currency, 40)}*")
    needed = max(1, case.approvals_needed)
    if needed > 1:
        parts.append(f"{len(case.approvals_given or [])} of {needed} approvals")
    if case.approval_reason:
        parts.append(inline(case.approval_reason, 120))
    return " · ".join(parts)


def _approval_rows(case: Case) -> list[dict[str, Any]]:
    value = _value(case)
    return [_row(case, "approval", extra=_approval_note(case) or None), _buttons(case, "approval", [
        {"type": "button", "action_id": ActionId.APPROVE.value, "text": plain("✅ Approve"), "value": value,
         "style": "primary",
         "confirm": {"title": plain("Approve this case?"),
                     "text": plain("Your approval is recorded on the case; money actions may then run up to "
                                   "the approved amount."),
                     "confirm": plain("Approve"), "deny": plain("Cancel"), "style": "primary"}},
        {"type": "button", "action_id": ActionId.DENY.value, "text": plain("⛔ Deny"), "value": value},
    ])]


def _open_rows(case: Case, may_resolve: bool) -> list[dict[str, Any]]:
    row = _row(case, "assigned")
    if not may_resolve:
        return [row]
    return [row, _buttons(case, "assigned", [{"type": "button", "action_id": ActionId.RESOLVE.value,
                                               "text": plain("🏁 Resolve"), "value": _value(case)}])]


def _group(title: str, listed: CaseList, group: str, empty: str,
           rows: Callable[[Case], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [section(f"*{title} ({listed.total})*", block_id=f"home-{group}-title")]
    if not listed.cases:
        blocks.append(context(empty))
        return blocks
    for case in listed.cases:
        blocks += rows(case)
    if listed.total > len(listed.cases):
        blocks.append(context(f"…and {listed.total - len(listed.cases)} more: `/finance queue` lists them all."))
    return blocks


def home_view(data: HomeData) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        header("finance-desk"),
        context(f"Updated {slack_date(data.now)} · `/finance help` for lookups and the queue"),
        divider(),
    ]
    blocks += _group("My open cases", data.assigned, "assigned", "No open case is assigned to you.",
                     lambda case: _open_rows(case, data.may_resolve))
    blocks.append(divider())
    if data.is_approver:
        blocks += _group("Awaiting your approval", data.awaiting, "approval",
                         "Nothing is waiting for your approval.", _approval_rows)
        if data.payouts.total:
            blocks += _group("Payouts waiting for your confirmation", data.payouts, "payout", "",
                             lambda case: [_row(case, "payout")])
    else:
        blocks.append(section("*Awaiting your approval*", block_id="home-approval-title"))
        blocks.append(context("You are not a finance approver in the policy file (nor standing in for one), "
                              "so no approvals wait for you."))
    blocks.append(divider())
    blocks += _group("Overdue follow-ups", data.overdue, "overdue", "No follow-up is overdue.",
                     lambda case: [_row(case, "overdue", overdue=True)])
    blocks.append(divider())
    noun = "case needs" if data.review_size == 1 else "cases need"
    review = section(f"*Review queue:* {data.review_size} {noun} a person to pick the MoonClerk customer.",
                     block_id="home-review")
    url = channel_link(data.review_channel)
    if url:
        review["accessory"] = {"type": "button", "action_id": ControlId.HOME_OPEN_REVIEW,
                               "text": plain("Open review channel"), "url": url}
    blocks.append(review)
    return {"type": "home", "blocks": blocks[:MAX_VIEW_BLOCKS]}
