"""Case repository: the one place that creates or locks a case by its DialNexa call ID."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from storage.models import Case


def lock_or_create(session: Session, call_id: str) -> tuple[Case, bool]:
    """Return the case for call_id, locked for this transaction, creating it if needed.

    The insert relies on the unique constraint, so two concurrent deliveries of one call (in one
    process or many) both end up holding the same row; the second waits for the first's commit.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # Column defaults live on the model (pydantic), so build the row from a fresh instance.
    row = Case(call_id=call_id).model_dump(exclude={"id"})
    statement = insert(Case).values(**row).on_conflict_do_nothing(index_elements=["call_id"]).returning(col(Case.id))
    created = session.execute(statement).first() is not None
    query = select(Case).where(Case.call_id == call_id).execution_options(populate_existing=True)
    if dialect == "postgresql":
        query = query.with_for_update()
    case = session.exec(query).one()
    return case, created


def get_by_call_id(session: Session, call_id: str) -> Case | None:
    return session.exec(select(Case).where(Case.call_id == call_id)).first()
