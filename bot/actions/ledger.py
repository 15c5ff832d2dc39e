"""The action ledger: claim an action once per DialNexa call, then record how it ended."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from storage.models import ProviderAction


def idempotency_key(call_id: str, action: str) -> str:
    return f"{call_id}:{action}"


def claim(
    session: Session, *, case_id: int, call_id: str, action: str, provider: str, user: str, status: str,
    amount: Decimal | None, currency: str | None, params: dict[str, Any], now: datetime,
) -> tuple[ProviderAction, bool]:
    """Create the ledger row for (call, action) or return the existing one; True when this call created it.

    The unique key does the work: two approvers clicking at once, a Slack retry or a restarted process
    all race for one insert, and only one wins.
    """
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    row = ProviderAction(
        idempotency_key=idempotency_key(call_id, action), case_id=case_id, call_id=call_id, action=action,
        provider=provider, status=status, requested_by=user, amount=amount, currency=currency, params=params,
        created_at=now, updated_at=now,
    )
    inserted = session.execute(
        insert(ProviderAction).values(**row.model_dump(exclude={"id"}))
        .on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(col(ProviderAction.id))
    ).first()
    existing = session.exec(
        select(ProviderAction).where(ProviderAction.idempotency_key == row.idempotency_key)
        .execution_options(populate_existing=True)
    ).one()
    return existing, inserted is not None


def transition(session: Session, action_id: int, from_status: Collection[str], to_status: str, now: datetime,
               **values: Any) -> bool:
    """Move a row between states only if it is still in one of `from_status` (an atomic compare-and-set)."""
    changed = session.execute(
        update(ProviderAction)
        .where(col(ProviderAction.id) == action_id, col(ProviderAction.status).in_(from_status))
        .values(status=to_status, updated_at=now, **values)
    ).rowcount  # type: ignore[attr-defined]
    return bool(changed == 1)


def set_values(session: Session, action_id: int | None, **values: Any) -> None:
    session.execute(update(ProviderAction).where(col(ProviderAction.id) == action_id).values(**values))
