"""Case repository: the one place that creates or locks a case by its DialNexa call ID."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from storage.models import Case, utcnow


@cache
def _default_row() -> dict[str, Any]:
    # Column defaults live on the model (pydantic), not in the table; computed once, copied per insert.
    return Case(call_id="-").model_dump(exclude={"id", "call_id", "created_at", "updated_at"})


def _defaults() -> dict[str, Any]:
    return copy.deepcopy(_default_row())


@cache
def _create_statement(dialect: str) -> Any:
    # A Core statement built once and fed parameters, so SQLAlchemy compiles it once: building a
    # 70-column ORM insert per delivery cost more than the database work.
    table = Case.__table__  # type: ignore[attr-defined]
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=["call_id"]).returning(table.c.id)


def lock_or_create(session: Session, call_id: str) -> tuple[Case, bool]:
    """Return the case for call_id, locked for this transaction, creating it if needed.

    The insert relies on the unique constraint, so two concurrent deliveries of one call (in one
    process or many) both end up holding the same row; the second waits for the first's commit.
    """
    dialect = session.get_bind().dialect.name
    now = utcnow()
    row = {**_defaults(), "call_id": call_id, "created_at": now, "updated_at": now}
    created = session.execute(_create_statement(dialect), row).first() is not None
    query = select(Case).where(Case.call_id == call_id).execution_options(populate_existing=True)
    if dialect == "postgresql":
        query = query.with_for_update()
    case = session.exec(query).one()
    return case, created


def get_by_call_id(session: Session, call_id: str) -> Case | None:
    return session.exec(select(Case).where(Case.call_id == call_id)).first()
