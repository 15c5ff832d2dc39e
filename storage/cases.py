"""Case repository: the one place that creates or locks a case by its DialNexa call ID."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import JSON, bindparam, inspect, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, select

from storage.models import Case, utcnow
from storage.statements import read_first, write, write_in


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


def lock_existing(session: Session, call_id: str) -> Case | None:
    """The case for call_id, locked for this transaction (on SQLite the transaction holds the write
    lock already), or None when the call has none yet. For a session that has not loaded this case.

    Read with a Core statement and attached the way the ORM attaches a loaded row (`_attach`): the
    ORM's query machinery cost more than the read itself, which runs for every delivery.
    """
    row = read_first(session.connection(), _lock_statement(session.get_bind().dialect.name), {"call": call_id})
    return None if row is None else _attach(session, row)


@cache
def _lock_statement(dialect: str) -> Any:
    table = Case.__table__  # type: ignore[attr-defined]
    query = select(table).where(table.c.call_id == bindparam("call"))
    return query.with_for_update() if dialect == "postgresql" else query


def new_case(call_id: str) -> Case:
    """An unsaved case for call_id holding the column defaults: fill it in, then `insert_new` it.

    Built like `_attach` builds a row, without the model's constructor; mutable defaults are copied.
    """
    now = utcnow()
    row = dict(_default_row())
    for name in _mutable_defaults():
        row[name] = row[name].copy()
    case: Case = inspect(Case).class_manager.new_instance()
    case.__dict__.update(row, id=None, call_id=call_id, created_at=now, updated_at=now)
    return case


@cache
def _mutable_defaults() -> tuple[str, ...]:
    return tuple(name for name, value in _default_row().items() if isinstance(value, list | dict))


def set_fields(case: Case, values: dict[str, Any]) -> None:
    """Set several of a case's attributes. A case from `new_case` that is not inserted yet takes them
    straight into its attribute dict: nothing needs to track its changes (`insert_new` writes what it
    holds, then starts tracking), and ~40 fields set one by one through the model and SQLAlchemy's
    instrumentation cost more than its INSERT. Any other case is set attribute by attribute, tracked."""
    if inspect(case).transient:
        case.__dict__.update(values)
        return
    for name, value in values.items():
        setattr(case, name, value)


def insert_new(session: Session, case: Case) -> bool:
    """Insert a case from `new_case`, as filled in, unless its call ID has a case already (True if inserted).

    One INSERT with the final values, rather than an empty row and an UPDATE: every indexed column is
    written once. When it is inserted the case becomes part of the session as if just loaded (so later
    changes are tracked); when another transaction got there first, nothing is written and the caller
    locks that case instead (`lock_existing`), waiting on PostgreSQL for the other's commit.
    """
    values = case.__dict__
    # Every column is bound, NULL or not, so there is one statement to compile (storage.statements); but
    # None in a JSON column would be stored as JSON null, so there it is left out (SQL NULL).
    row = {name: values[name] for name in _insert_columns() if values[name] is not None or name not in _json_columns()}
    inserted = write_in(session, _create_statement(session.get_bind().dialect.name), row).first()
    if inserted is None:
        return False
    values["id"] = inserted[0]
    make_transient_to_detached(case)
    session.add(case)
    return True


def _attach(session: Session, row: dict[str, Any]) -> Case:
    """A row this transaction inserted or locked, as if loaded by the ORM. (A row it just inserted need
    not be read back: that would only return what was written. No other transaction can lock it first:
    until this one commits it is invisible to them, and their insert of the same call ID waits on the
    unique index.)

    Built the way the ORM builds a loaded row (a bare instance, then its attribute dict): the model's
    constructor, which sets ~70 fields one by one through instrumentation, cost more than the insert.
    """
    case: Case = inspect(Case).class_manager.new_instance()
    case.__dict__.update(row)
    make_transient_to_detached(case)
    session.add(case)
    return case


@cache
def _insert_columns() -> tuple[str, ...]:
    table = Case.__table__  # type: ignore[attr-defined]
    return tuple(column.key for column in table.columns if column.key != "id")


@cache
def _json_columns() -> frozenset[str]:
    table = Case.__table__  # type: ignore[attr-defined]
    return frozenset(column.key for column in table.columns if isinstance(column.type, JSON))


@cache
def _update_statement() -> Any:
    # The SET clause comes from each call's parameters: SQLAlchemy compiles it once per set of columns.
    table = Case.__table__  # type: ignore[attr-defined]
    return update(table).where(table.c.id == bindparam("locked_case_id"))


def write_changes(session: Session, case: Case) -> None:
    """Write what changed on a case (inserted by `insert_new`, or locked by `lock_existing` or
    `lock_or_create`) as one UPDATE, and detach it from the session.

    What a flush would write, without the unit of work around it: the attributes set since the row was
    inserted or loaded, where the value differs from the stored one. The case is detached afterwards so
    that nothing writes it a second time; its attributes stay readable. Call it once, after the last
    change, in the transaction that locked the case.
    """
    state = inspect(case)
    values = state.dict
    # An attribute that was not loaded before it was set has SQLAlchemy's NO_VALUE as its old value,
    # which equals nothing: it is written.
    changed = {key: values[key] for key, old in state.committed_state.items() if key in values and old != values[key]}
    if changed:
        changed["locked_case_id"] = case.id
        result = write(session.connection(), _update_statement(), changed)
        if result.rowcount != 1:
            raise StaleDataError(f"case {case.id} was not found to update")
    session.expunge(case)


def get_by_call_id(session: Session, call_id: str) -> Case | None:
    return session.exec(select(Case).where(Case.call_id == call_id)).first()
