"""Core write statements run straight on the DBAPI cursor on SQLite, compiled once per set of columns.

Every delivery's transaction writes six to eight rows (case, audit event, card, reminders, delivery).
Through `Connection.execute` and `Session.execute`, SQLAlchemy's per-statement machinery (cache-key
lookup, execution context, parameter processing for every bind, result set-up) took several times what
sqlite3 itself spent executing them. SQLAlchemy still compiles each statement and supplies each column
type's bind processor (the same conversions it would apply); only the per-call wrapping is skipped.
Measured with `python -m bench.instructions`: 11.98 M instructions per delivery before, 11.05 M with the
writes here, 9.7 M with the read and the rest of that change set. `read_first` does the same for the one read every
delivery makes (its case, by call ID), with each column type's result processor.

Anything this does not cover runs through `Connection.execute` unchanged: other databases (on
PostgreSQL the round trip dominates, and psycopg's adaptation is SQLAlchemy's to manage), statements
with expanding parameters (`IN` lists), RETURNING of anything but integer columns, and reads other
than a plain SELECT of columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, Connection, Dialect, Integer, Select
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session

_Processor = Callable[[Any], Any]
_Binds = tuple[tuple[str, Any], ...]
_Processors = tuple[tuple[int, _Processor], ...]
_REQUIRED = object()


@dataclass(frozen=True)
class _Prepared:
    sql: str
    # Per `?` placeholder, in order: the parameter it takes and its value when that is not given (a value
    # written into the statement, or a column's NULL), or _REQUIRED.
    binds: _Binds
    processors: _Processors  # (position, conversion) for the binds that have one
    # A read's columns: the key each value is returned under, and the conversions of the values.
    columns: tuple[str, ...] = ()
    results: _Processors = ()


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
    prepared = _prepare(connection.dialect, statement, tuple(sets[0])) if _fast(connection) else None
    if prepared is None:
        return connection.execute(statement, params)
    rows = [_bound(prepared, one) for one in sets]
    with _cursor(connection, prepared.sql) as cursor:
        if not isinstance(params, dict):
            cursor.executemany(prepared.sql, rows)
            return Written(cursor.rowcount, [])
        cursor.execute(prepared.sql, rows[0])
        return Written(cursor.rowcount, cursor.fetchall() if cursor.description else [])


def write_in(session: Session, statement: Any, params: dict[str, Any] | Sequence[dict[str, Any]]) -> Any:
    """`write` on the session's connection (in its transaction, which this begins if needed), after the
    autoflush `session.execute` would do, so the statement sees the session's pending changes."""
    if session.autoflush:
        session.flush()
    return write(session.connection(), statement, params)


def read_first(connection: Connection, statement: Any, params: dict[str, Any]) -> dict[str, Any] | None:
    """The first row of a SELECT as {column key: value}, converted as SQLAlchemy converts it; None if none."""
    prepared = _prepare_read(connection.dialect, statement, tuple(params)) if _fast(connection) else None
    if prepared is None:
        found = connection.execute(statement, params).first()
        return None if found is None else dict(found._mapping)
    with _cursor(connection, prepared.sql) as cursor:
        cursor.execute(prepared.sql, _bound(prepared, params))
        raw = cursor.fetchone()
    if raw is None:
        return None
    row = list(raw)
    for position, processor in prepared.results:
        row[position] = processor(row[position])
    return dict(zip(prepared.columns, row, strict=True))


def _fast(connection: Connection) -> bool:
    return connection.dialect.name == "sqlite"


@contextmanager
def _cursor(connection: Connection, sql: str) -> Iterator[Any]:
    """A cursor of the connection's driver connection, in its transaction; driver errors are raised as
    SQLAlchemy raises them (callers catch one family), never with the values (customer data)."""
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi.Error, hide_parameters=True,
                                  dialect=connection.dialect) from exc
    finally:
        cursor.close()


# Keyed by the statement and its parameters' names: an INSERT or UPDATE compiles to different SQL for a
# different set of columns, as in SQLAlchemy's own cache. Statements are module-level singletons; an
# UPDATE's SET varies with what changed, hence the bound.
@lru_cache(maxsize=512)
def _prepare(dialect: Dialect, statement: Any, keys: tuple[str, ...]) -> _Prepared | None:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if not _plain(compiled) or not (compiled.isinsert or compiled.isupdate or compiled.isdelete):
        return None
    if compiled.insert_prefetch or compiled.update_prefetch:  # Python-side column defaults to compute
        return None
    returning = compiled.effective_returning or []
    if any(not isinstance(getattr(column, "type", None), Integer) for column in returning):
        return None
    return _Prepared(compiled.string, *_binds(compiled, dialect))


@lru_cache(maxsize=64)
def _prepare_read(dialect: Dialect, statement: Any, keys: tuple[str, ...]) -> _Prepared | None:
    if not isinstance(statement, Select):
        return None
    compiled = statement.compile(dialect=dialect)
    columns = list(statement.selected_columns)
    names = [column.key for column in columns if isinstance(column, Column)]
    # Only plain table columns, each once: their keys name the row's values.
    if not _plain(compiled) or len(names) != len(columns) or len(set(names)) != len(names):
        return None
    results = []
    for position, column in enumerate(columns):
        processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if processor is not None:
            results.append((position, processor))
    return _Prepared(compiled.string, *_binds(compiled, dialect), tuple(names), tuple(results))


def _plain(compiled: Any) -> bool:
    """A statement whose SQL is fixed and whose parameters go in by position, one per placeholder."""
    if not isinstance(compiled, SQLCompiler) or not compiled.positional or compiled.positiontup is None:
        return False
    if any(bind.expanding or bind.callable is not None for bind in compiled.binds.values()):
        return False  # IN lists expand per execution; a callable's value is computed per execution
    return not compiled.escaped_bind_names  # a column name SQL cannot take as a parameter name as it is


def _binds(compiled: SQLCompiler, dialect: Dialect) -> tuple[_Binds, _Processors]:
    # What SQLCompiler.construct_params does per execution, decided once: a bind takes the parameter
    # named by its key, else (unless required) the value it carries.
    binds, processors = [], []
    for position, name in enumerate(compiled.positiontup or ()):
        bind = compiled.binds[name]
        binds.append((bind.key, _REQUIRED if bind.required else bind.effective_value))
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors.append((position, processor))
    return tuple(binds), tuple(processors)


def _bound(prepared: _Prepared, params: dict[str, Any]) -> list[Any]:
    row = [params.get(key, default) for key, default in prepared.binds]
    if _REQUIRED in row:
        missing = [key for (key, _), value in zip(prepared.binds, row, strict=True) if value is _REQUIRED]
        raise InvalidRequestError(f"A value is required for bind parameter(s) {', '.join(missing)}")
    for position, processor in prepared.processors:
        row[position] = processor(row[position])
    return row
