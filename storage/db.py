"""Engine and session setup: SQLite in WAL mode by default, PostgreSQL through DATABASE_URL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session


def normalise_url(url: str) -> str:
    # psycopg 3 is the installed driver; plain postgresql:// would make SQLAlchemy look for psycopg2.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    # A failed statement's error names the statement, never its values: they are customer data, and
    # errors are logged.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        # A small pool keeps connections (and their PRAGMAs) open: opening one per transaction
        # cost more than the transaction itself.
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8, max_overflow=8, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy decide when transactions start, so BEGIN IMMEDIATE below is honoured.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: read-modify-write of a case must not interleave with
        # another writer, and upgrading a read lock later can fail with SQLITE_BUSY at once. A reader
        # (see `reader`) takes no lock: in WAL mode it sees the last commit and never waits for a writer.
        # Straight on the driver's connection: every delivery begins one, and exec_driver_sql's execution
        # machinery cost several times the statement.
        begin = "BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
        try:
            connection.connection.driver_connection.execute(begin)
        except sqlite3.Error as exc:  # e.g. "database is locked": raised as SQLAlchemy raises it
            raise DBAPIError.instance(begin, None, exc, sqlite3.Error, dialect=connection.dialect) from exc


READ_ONLY = "finance_desk_read_only"


def reader(engine: Engine) -> Engine:
    """The engine for a transaction that only reads (e.g. before a click is acknowledged): on SQLite it
    does not queue behind writers for the write lock; on PostgreSQL it is the same engine."""
    return engine.execution_options(**{READ_ONLY: True})


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def is_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
