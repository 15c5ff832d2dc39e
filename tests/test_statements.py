"""storage.statements: a write on SQLite's cursor stores exactly what SQLAlchemy's own execution stores,
raises SQLAlchemy's errors without the values, and leaves what it does not cover to SQLAlchemy."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, event, insert, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError, OperationalError, StatementError
from sqlmodel import Session, select

from storage.db import make_engine, session_scope
from storage.migrate import upgrade
from storage.models import AuditEvent, Case, OutboxMessage
from storage.statements import Written, read_first, write, write_in

CASES = Case.__table__  # type: ignore[attr-defined]
AUDIT = AuditEvent.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
AT = datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=UTC)


def _row(call_id: str) -> dict[str, Any]:
    """A case with a value of every kind of column: text, Decimal, UTC time, bool, JSON list and object."""
    defaults = Case(call_id="-").model_dump(exclude={"id", "call_id", "created_at", "updated_at"})
    return {**defaults, "call_id": call_id, "created_at": AT, "updated_at": AT, "customer_name": "Zoë O'Brien",
            "amount": Decimal("1234.50"), "currency": "EUR", "is_billing": True, "is_vip": True,
            "follow_up_deadline": AT, "escalation_reasons": ["vip", "deadline ≤ 24h"],
            "approvals_given": [{"user": "U1", "amount": "12.00"}], "stripe_status": {"charge": {"status": "paid"}},
            "summary": "quote ' and ? and :name and %(x)s stay text"}


def _stored(engine: Engine, call_id: str) -> dict[str, Any]:
    with Session(engine) as session:
        case = session.exec(select(Case).where(Case.call_id == call_id)).one()
        return case.model_dump(exclude={"id", "call_id"})


def test_an_insert_stores_what_sqlalchemy_stores(engine: Engine) -> None:
    with session_scope(engine) as session:
        written = write_in(session, insert(CASES).returning(CASES.c.id), _row("call_fast"))
        session.connection().execute(insert(CASES), _row("call_core"))
    fast = _stored(engine, "call_fast")
    assert fast == _stored(engine, "call_core")
    assert fast["amount"] == Decimal("1234.50") and fast["created_at"] == AT
    assert fast["approvals_given"] == [{"user": "U1", "amount": "12.00"}]
    if engine.dialect.name == "sqlite":
        assert isinstance(written, Written) and isinstance(written.scalar(), int)


def test_an_update_with_a_value_written_into_it_and_executemany(engine: Engine) -> None:
    with session_scope(engine) as session:
        ids = [write_in(session, insert(CASES).returning(CASES.c.id), _row(f"call_{n}")).scalar() for n in range(3)]
        # The SET has a value of its own (compiled into the statement) beside the bound ones.
        statement = update(CASES).where(CASES.c.id == bindparam("case")).values(state="dismissed")
        result = write_in(session, statement, [{"case": ids[0], "next_reminder_at": AT},
                                               {"case": ids[1], "next_reminder_at": AT}])
        assert result.rowcount in (2, -1)
        assert write_in(session, statement, {"case": 999_999, "next_reminder_at": AT}).rowcount == 0
        with pytest.raises((InvalidRequestError, StatementError), match="case"):
            write_in(session, statement, {"next_reminder_at": AT})
    assert [_stored(engine, f"call_{n}")["state"] for n in range(3)] == ["dismissed", "dismissed", "new"]
    assert _stored(engine, "call_1")["next_reminder_at"] == AT and _stored(engine, "call_2")["next_reminder_at"] is None


def test_a_conflict_returns_no_row_and_the_row_stays(engine: Engine) -> None:
    from storage.cases import _create_statement

    with session_scope(engine) as session:
        statement = _create_statement(engine.dialect.name)
        assert write_in(session, statement, _row("call_once")).first() is not None
        assert write_in(session, statement, {**_row("call_once"), "customer_name": "Other"}).first() is None
    assert _stored(engine, "call_once")["customer_name"] == "Zoë O'Brien"


def test_a_failure_is_sqlalchemys_error_without_the_values(engine: Engine) -> None:
    secret = "customer text that must not reach a log"
    with session_scope(engine) as session:
        write_in(session, insert(CASES), _row("call_dup"))
    with pytest.raises(IntegrityError) as raised, session_scope(engine) as session:
        write_in(session, insert(CASES), {**_row("call_dup"), "summary": secret})
    assert secret not in str(raised.value)
    # The transaction was rolled back and the database is usable.
    with session_scope(engine) as session:
        write_in(session, insert(AUDIT), {"at": AT, "actor": "test", "action": "x", "outcome": "ok", "detail": {}})


def test_what_it_does_not_cover_runs_through_sqlalchemy(engine: Engine) -> None:
    with session_scope(engine) as session:
        ids = [write_in(session, insert(CASES).returning(CASES.c.id), _row(f"call_in_{n}")).scalar() for n in range(2)]
        # An expanding IN list, and a RETURNING of text: SQLAlchemy's own result.
        result = write(session.connection(), update(CASES).where(CASES.c.id.in_(bindparam("ids", expanding=True)))
                       .values(owner="U0OWNER").returning(CASES.c.call_id), {"ids": ids})
        assert sorted(row[0] for row in result) == ["call_in_0", "call_in_1"]
        # A read: also SQLAlchemy's, with its result processing (a UTC datetime back).
        read = write(session.connection(), select(CASES.c.created_at).where(CASES.c.id == ids[0]), {})
        assert read.scalar() == AT
        # No parameter sets: nothing is written (not one row of column defaults).
        assert write_in(session, insert(AUDIT), []).rowcount == 0
    with engine.connect() as connection:
        assert connection.execute(select(AUDIT.c.id)).first() is None


def test_write_in_sees_the_sessions_pending_changes(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(Case(call_id="call_pending", created_at=AT, updated_at=AT))
        # Autoflush, as session.execute does: the pending case exists for the statement.
        result = write_in(session, update(CASES).where(CASES.c.call_id == "call_pending").values(owner="U0X"), {})
        assert result.rowcount == 1


def test_outbox_json_none_is_stored_as_sqlalchemy_stores_it(engine: Engine) -> None:
    rows = {"kind": "thread", "channel": None, "text": "t", "blocks": None, "version": 1, "created_at": AT,
            "due_at": AT, "attempts": 0}
    with session_scope(engine) as session:
        case_id = write_in(session, insert(CASES).returning(CASES.c.id), _row("call_outbox")).scalar()
        write_in(session, insert(OUTBOX), {**rows, "case_id": case_id, "dedup_key": "fast"})
        session.connection().execute(insert(OUTBOX), {**rows, "case_id": case_id, "dedup_key": "core"})
    with engine.connect() as connection:
        stored = dict(connection.execute(select(OUTBOX.c.dedup_key, OUTBOX.c.blocks.is_(None))).all())
        raw = dict(connection.exec_driver_sql("SELECT dedup_key, blocks FROM outbox").all())
    assert stored["fast"] == stored["core"] and raw["fast"] == raw["core"]


def test_a_locked_database_at_begin_is_sqlalchemys_operational_error(tmp_path: Path) -> None:
    # The webhooks answer 503 for SQLAlchemy's errors: BEGIN IMMEDIATE, issued on the driver's own
    # connection, must fail the same way when another process holds the write lock.
    engine = make_engine(f"sqlite:///{tmp_path / 'locked.db'}")
    upgrade(engine)
    event.listen(engine, "connect", lambda connection, _record: connection.execute("PRAGMA busy_timeout=50"))
    engine.dispose()
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"), session_scope(engine) as session:
            write_in(session, insert(AUDIT), {"at": AT, "actor": "t", "action": "x", "outcome": "ok", "detail": {}})
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()


def test_a_read_returns_what_sqlalchemy_returns(engine: Engine) -> None:
    from storage.cases import _lock_statement

    with session_scope(engine) as session:
        write_in(session, insert(CASES), _row("call_read"))
        statement = _lock_statement(engine.dialect.name)
        fast = read_first(session.connection(), statement, {"call": "call_read"})
        core = session.connection().execute(statement, {"call": "call_read"}).first()
        assert core is not None and fast == dict(core._mapping)
        assert fast["amount"] == Decimal("1234.50") and fast["created_at"] == AT and fast["is_vip"] is True
        assert fast["escalation_reasons"] == ["vip", "deadline ≤ 24h"]
        assert read_first(session.connection(), statement, {"call": "call_none"}) is None
        # A bound value that needs converting (a UTC time) is converted as SQLAlchemy converts it.
        since = select(CASES.c.call_id).where(CASES.c.created_at == bindparam("at"))
        assert read_first(session.connection(), since, {"at": AT}) == {"call_id": "call_read"}
