"""Core write statements run straight on the DBAPI cursor on SQLite, compiled once per set of columns.

Every delivery's transaction writes six to eight rows (case, audit event, card, reminders, delivery).
Through `Connection.execute`, SQLAlchemy's per-statement machinery (cache-key lookup, execution context,
parameter processing for every bind, result set-up) cost about four times what sqlite3 itself spent
executing them (profiled with py-spy on `bench.ingest`: ~25% of a delivery's server CPU). SQLAlchemy
still compiles each statement and supplies each column type's bind processor (the same conversions it
would apply); only the per-call wrapping is skipped. Reads keep the ordinary path: their rows need
SQLAlchemy's result processing.

Anything this does not cover runs through `Connection.execute` unchanged: other databases (on
PostgreSQL the round trip dominates, and psycopg's adaptation is SQLAlchemy's to manage), statements
with expanding parameters (`IN` lists), and RETURNING of anything but integer columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Dialect, Integer
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session

_Processor = Callable[[Any], Any]


_REQUIRED = object()


@dataclass(frozen=True)
class _Prepared:
    sql: str
    # Per `?` placeholder, in order: the parameter it takes and its value when that is not given (a value
    # written into the statement, or a column's NULL), or _REQUIRED.
    binds: tuple[tuple[str, Any], ...]
    processors: tuple[tuple[int, _Processor], ...]  # (position, conversion) for the binds that have one


class Written:
    """What a write returned: its row count, and its RETURNING rows (integer columns only)."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rowcount: int, rows: list[tuple[Any, ...]]) -> None:
        self.rowcount = rowcount
        self._rows = rows

    def first(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None


def write(connection: Connection, statement: Any, params: dict[str, Any] | Sequence[dict[str, Any]]) -> Any:
    """Execute an INSERT, UPDATE or DELETE in the connection's transaction: one parameter set, or a list
    of them with the same keys (executemany). Returns `Written`, or SQLAlchemy's result where it ran."""
    sets = [params] if isinstance(params, dict) else list(params)
    if not sets:
        return Written(0, [])  # nothing to write (SQLAlchemy would run it once without parameters)
    many = not isinstance(params, dict)
    if connection.dialect.name != "sqlite":
        return connection.execute(statement, params)
    prepared = _prepare(connection.dialect, statement, tuple(sets[0]))
    if prepared is None:
        return connection.execute(statement, params)
    rows = [_bound(prepared, one) for one in sets]
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(prepared.sql, rows)
            return Written(cursor.rowcount, [])
        cursor.execute(prepared.sql, rows[0])
        returned = cursor.fetchall() if cursor.description else []
        return Written(cursor.rowcount, returned)
    except Exception as exc:
        # Raised as SQLAlchemy raises it, so callers see one family of errors; never with the values
        # (a delivery's text is customer data).
        if isinstance(exc, connection.dialect.loaded_dbapi.Error):
            raise DBAPIError.instance(prepared.sql, None, exc, connection.dialect.loaded_dbapi.Error,
                                      hide_parameters=True, dialect=connection.dialect) from exc
        raise
    finally:
        cursor.close()


def write_in(session: Session, statement: Any, params: dict[str, Any] | Sequence[dict[str, Any]]) -> Any:
    """`write` on the session's connection (in its transaction, which this begins if needed), after the
    autoflush `session.execute` would do, so the statement sees the session's pending changes."""
    if session.autoflush:
        session.flush()
    return write(session.connection(), statement, params)


# Keyed by the statement and its parameters' names: an INSERT or UPDATE compiles to different SQL for a
# different set of columns, as in SQLAlchemy's own cache. Statements are module-level singletons; an
# UPDATE's SET varies with what changed, hence the bound.
@lru_cache(maxsize=512)
def _prepare(dialect: Dialect, statement: Any, keys: tuple[str, ...]) -> _Prepared | None:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if not isinstance(compiled, SQLCompiler) or not (compiled.isinsert or compiled.isupdate or compiled.isdelete):
        return None
    if not compiled.positional or compiled.positiontup is None:
        return None
    if any(bind.expanding or bind.callable is not None for bind in compiled.binds.values()):
        return None
    if compiled.escaped_bind_names:  # a column name SQL cannot take as a parameter name as it is
        return None
    if compiled.insert_prefetch or compiled.update_prefetch:  # Python-side column defaults to compute
        return None
    returning = compiled.effective_returning or []
    if any(not isinstance(getattr(column, "type", None), Integer) for column in returning):
        return None
    # What SQLCompiler.construct_params does per execution, decided once: a bind takes the parameter
    # named by its key, else (unless required) the value it carries.
    binds, processors = [], []
    for position, name in enumerate(compiled.positiontup):
        bind = compiled.binds[name]
        binds.append((bind.key, _REQUIRED if bind.required else bind.effective_value))
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors.append((position, processor))
    return _Prepared(compiled.string, tuple(binds), tuple(processors))


def _bound(prepared: _Prepared, params: dict[str, Any]) -> list[Any]:
    row = [params.get(key, default) for key, default in prepared.binds]
    if _REQUIRED in row:
        missing = [key for (key, _), value in zip(prepared.binds, row, strict=True) if value is _REQUIRED]
        raise InvalidRequestError(f"A value is required for bind parameter(s) {', '.join(missing)}")
    for position, processor in prepared.processors:
        row[position] = processor(row[position])
    return row
