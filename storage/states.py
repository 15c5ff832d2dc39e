"""The values stored in a case's `state`, `action_status` and `match_status` columns.

StrEnums, so a member compares equal to the text stored before they existed and a row read back (a
plain string) compares equal to a member. Which state may follow which is `bot.lifecycle`'s business.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class CaseState(StrEnum):
    """Where a case is in its workflow, shown on the card."""

    NEW = "new"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    FAILED = "failed"
    # Shown on cards of earlier versions' cases; nothing sets it now, and such a case is still open.
    SNOOZED = "snoozed"
    DONE = "done"
    # Closed by an approver's deny, with a reason (bot.decisions).
    DENIED = "denied"
    # Nothing sets it; kept so rows and old cards that hold it still read as closed.
    REJECTED = "rejected"
    DISMISSED = "dismissed"


# Once a case reaches one of these nobody acts on it again: no money action, no reminder, no page.
CLOSED_STATES: Final = frozenset({CaseState.DONE, CaseState.DENIED, CaseState.REJECTED, CaseState.DISMISSED})
OPEN_STATES: Final = frozenset(CaseState) - CLOSED_STATES


class ActionStatus(StrEnum):
    """How a provider action stands: on its ledger row (`ProviderAction.status`) and on the card.

    awaiting_approval (a payout waiting for its second approver) → running → succeeded | failed |
    unknown (a Stripe refund also pending | requires_action | canceled); "paid" is a Poof invoice whose
    payment Poof confirmed (the card only).
    """

    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # A Stripe refund's own states: Stripe accepted it and it is not final yet (`pending`), the
    # customer's bank needs something (`requires_action`), or it was cancelled (`canceled`).
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    CANCELED = "canceled"
    # The provider may have acted (a timeout after sending): never retried, only reconciled.
    UNKNOWN = "unknown"
    PAID = "paid"


class MatchStatus(StrEnum):
    """How sure matching is of the case's MoonClerk customer (see bot.lookup.matching)."""

    PENDING = "pending"
    MATCHED = "matched"
    REVIEW = "review"
    UNMATCHED = "unmatched"


def is_closed(state: str | None) -> bool:
    """Whether a stored state is closed; a case written before `state` had a value is new, so open."""
    return (state or CaseState.NEW) in CLOSED_STATES
