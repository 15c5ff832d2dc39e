"""Case repository: the one place that creates or locks a case by its DialNexa call ID."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, select

from storage.models import Case, utcnow


@cache
def _default_row() -> dict[str, Any]:
    # Column defaults live on the model (pydantic), not in the table; computed once, copied per insert.
    return Case(call_id="-").model_dump(exclude={"id", "call_id", "created_at", "updated_at"})


@cache
def _stored_defaults() -> dict[str, Any]:
    # The insert leaves out the columns whose default is NULL anyway (no column has a server default):
    # fewer parameters to bind.
    return {name: value for name, value in _default_row().items() if value is not None}


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
    # Only the JSON lists are mutable; each case gets its own.
    row = {**{name: list(value) if isinstance(value, list) else value for name, value in _stored_defaults().items()},
           "call_id": call_id, "created_at": now, "updated_at": now}
    inserted = session.execute(_create_statement(dialect), row).first()
    if inserted is not None:
        return _attach(session, {**_default_row(), **row, "id": inserted[0]}), True
    query = select(Case).where(Case.call_id == call_id).execution_options(populate_existing=True)
    if dialect == "postgresql":
        query = query.with_for_update()
    return session.exec(query).one(), False


def _attach(session: Session, row: dict[str, Any]) -> Case:
    """The row this transaction just inserted, as if loaded: reading it back would only return what
    was written. No other transaction can lock it first: until this one commits it is invisible to
    them, and their insert of the same call ID waits on the unique index.

    Built the way the ORM builds a loaded row (a bare instance, then its attribute dict): the model's
    constructor, which sets ~70 fields one by one through instrumentation, cost more than the insert.
    """
    case: Case = inspect(Case).class_manager.new_instance()
    case.__dict__.update(row)
    make_transient_to_detached(case)
    session.add(case)
    return case


def get_by_call_id(session: Session, call_id: str) -> Case | None:
    return session.exec(select(Case).where(Case.call_id == call_id)).first()
