"""Approvals and delegations: who decided what on a case, and who may decide for whom.

An approval is one approver's yes to one case at one amount. A case that needs two approvals holds
two rows from two different people; the unique key makes the same approver twice (a double click, two
clicks at once) one row. `principal` is whose authority was used: the approver's own, or the
delegator's when a delegate acted on their behalf; two approvals count as two only when neither
their approvers nor their principals are the same person.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import DecimalString, UTCDateTime


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("case_id", "round", "approver", name="uq_approvals_case_round_approver"),
        UniqueConstraint("case_id", "round", "principal", name="uq_approvals_case_round_principal"),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    # A new approval (e.g. for a larger amount) starts a new round; earlier rounds stay as history.
    round: int = 1
    # The Slack user who clicked, and whose authority they used (themselves, or the delegator).
    approver: str = Field(max_length=40)
    principal: str = Field(max_length=40)
    senior: bool = False
    amount: Decimal | None = Field(default=None, sa_type=DecimalString)
    currency: str | None = Field(default=None, max_length=3)
    at: datetime = _ts(default_factory=_utcnow)


class Delegation(SQLModel, table=True):
    """`delegator` lets `delegate` approve what they may, from `starts_at` until `ends_at` (the end of the
    chosen day in the policy's zone, stored in UTC), unless turned off earlier (`ended_at`)."""

    __tablename__ = "delegations"
    __table_args__ = (Index("ix_delegations_delegate_ends_at", "delegate", "ends_at"),)

    id: int | None = Field(default=None, primary_key=True)
    delegator: str = Field(max_length=40, index=True)
    delegate: str = Field(max_length=40)
    reason: str | None = Field(default=None, max_length=500)
    starts_at: datetime = _ts()
    ends_at: datetime = _ts()
    ended_at: datetime | None = _ts(default=None)
    ended_by: str | None = Field(default=None, max_length=40)
    created_at: datetime = _ts(default_factory=_utcnow)
    # Both people are told when it starts and when it ends; these record that they were.
    start_notified_at: datetime | None = _ts(default=None)
    end_notified_at: datetime | None = _ts(default=None)
