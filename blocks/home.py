"""The App Home tab: an approver's cases, approvals waiting for them, overdue follow-ups, the review
queue's size. Pure: HomeData in, a `views.publish` view out.

Each case row links to its card (`https://slack.com/archives/<channel>/p<ts>`) with a URL button;
Slack still sends a block_actions event for a URL button, so their action IDs (all starting
`home_open`) are acknowledged and otherwise ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from blocks.actions import HOME_OPEN_PREFIX, ControlId
from blocks.format import plain, slack_date
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


def _row(case: Case, group: str, *, overdue: bool = False) -> dict[str, Any]:
    line = case_line(case, when=case.follow_up_deadline if overdue else None,
                     extra="follow-up overdue" if overdue else None).removeprefix("• ")
    block = section(line, block_id=f"home-{group}-{case.id}")
    url = card_permalink(case.slack_channel, case.slack_ts)
    if url:
        block["accessory"] = {"type": "button", "action_id": f"{HOME_OPEN_PREFIX}_{group}_{case.id}",
                              "text": plain("Open card"), "url": url}
    return block


def _group(title: str, listed: CaseList, group: str, empty: str, *, overdue: bool = False) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [section(f"*{title} ({listed.total})*", block_id=f"home-{group}-title")]
    if not listed.cases:
        blocks.append(context(empty))
        return blocks
    blocks += [_row(case, group, overdue=overdue) for case in listed.cases]
    if listed.total > len(listed.cases):
        blocks.append(context(f"…and {listed.total - len(listed.cases)} more: `/finance queue` lists them all."))
    return blocks


def home_view(data: HomeData) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        header("finance-desk"),
        context(f"Updated {slack_date(data.now)} · `/finance help` for lookups and the queue"),
        divider(),
    ]
    blocks += _group("Assigned to you", data.assigned, "assigned", "Nothing is assigned to you.")
    blocks.append(divider())
    if data.is_approver:
        blocks += _group("Awaiting your approval", data.awaiting, "approval", "No approvals are waiting for you.")
    else:
        blocks.append(section("*Awaiting your approval*", block_id="home-approval-title"))
        blocks.append(context("You are not a finance approver in the policy file, so no approvals wait for you."))
    blocks.append(divider())
    blocks += _group("Overdue follow-ups", data.overdue, "overdue", "No follow-up is overdue.", overdue=True)
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
