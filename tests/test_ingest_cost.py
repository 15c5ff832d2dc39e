"""What one delivery costs the database, and that the short path for a new call stores exactly what the
general path stores.

A delivery that creates its case skips what cannot exist yet (earlier deliveries, a person's matching
decision, reminder rows to cancel or read back): these tests hold that budget and compare the result,
row by row, with the same delivery merged into a case that already existed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session, col, select

from bot.ingest import ingest
from bot.policy import Policy
from storage.cases import lock_or_create
from storage.db import session_scope
from storage.models import AuditEvent, Case, OutboxMessage
from storage.reminders import Reminder

SAMPLES = Path(__file__).resolve().parents[1] / "bot" / "samples"
NOW = datetime(2026, 11, 24, 15, tzinfo=UTC)
BILLING = ["01_refund", "02_dispute", "03_vip_failed_renewal", "04_invoice_resend", "06_card_read_aloud"]


def delivery(name: str, call_id: str) -> tuple[Any, bytes]:
    """The sample with every mention of its call id (the id, the recording URL) replaced."""
    text = (SAMPLES / f"{name}.json").read_text(encoding="utf-8")
    sample = json.loads(text)
    original = sample["payload"]["call"]["id"] if "payload" in sample else sample["call_id"]
    raw = text.replace(original, call_id).encode()
    return json.loads(raw), raw


@contextmanager
def statements(engine: Engine, words: int = 3) -> Iterator[list[str]]:
    """Every statement the database was given. On SQLite it is sqlite3's own trace: writes skip
    SQLAlchemy's execution (storage.statements), so its events would not see them."""
    seen: list[str] = []

    def record(statement: str) -> None:
        seen.append(" ".join(statement.split()[:words]))

    if engine.dialect.name != "sqlite":
        def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            record(statement)

        event.listen(engine, "before_cursor_execute", on_execute)
        try:
            yield seen
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
        return

    traced: list[Any] = []

    def on_checkout(dbapi_connection: Any, *_args: Any) -> None:
        dbapi_connection.set_trace_callback(record)
        traced.append(dbapi_connection)

    event.listen(engine, "checkout", on_checkout)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", on_checkout)
        for connection in traced:
            connection.set_trace_callback(None)


def stored(engine: Engine, call_id: str) -> dict[str, Any]:
    """Everything a delivery wrote for its case, with ids, call ids and creation times taken out."""
    with Session(engine) as session:
        case = session.exec(select(Case).where(Case.call_id == call_id)).one()
        fields = case.model_dump(exclude={"id", "call_id", "created_at", "updated_at"})
        reminders = session.exec(select(Reminder).where(Reminder.case_id == case.id)).all()
        outbox = session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case.id)).all()
        audit = session.exec(select(AuditEvent).where(AuditEvent.case_id == case.id)
                             .order_by(col(AuditEvent.id))).all()
    normalised: dict[str, Any] = json.loads(json.dumps({
        "case": fields,
        "reminders": sorted((r.kind, r.status, r.due_at, r.reason, r.dedup_key.split(":", 1)[1]) for r in reminders),
        "outbox": sorted((m.kind, m.version, m.dedup_key.split(":")[0]) for m in outbox),
        "audit": [(a.actor, a.outcome, a.record, a.reason, a.detail) for a in audit],
    }, default=str).replace(call_id, "<call>"))
    return normalised


@pytest.mark.parametrize("name", BILLING)
def test_a_new_calls_delivery_reads_nothing_back_but_its_look_up(engine: Engine, policy: Policy, name: str) -> None:
    body, raw = delivery(name, f"call_cost_{name}")
    with statements(engine, words=10_000) as seen:
        result = ingest(engine, body, raw, policy, NOW)
    assert result.created and result.is_billing
    # The one read: is there a case for this call already?
    selects = [s for s in seen if s.startswith("SELECT")]
    assert len(selects) == 1 and " FROM cases WHERE cases.call_id = " in selects[0]
    # Created once with everything the delivery says, then written once more with only what its card
    # and reminders changed afterwards (no indexed column is written twice).
    writes = [s for s in seen if s.startswith(("INSERT INTO cases", "UPDATE cases"))]
    assert [" ".join(s.split()[:3]) for s in writes] == ["INSERT INTO cases", "UPDATE cases SET"]
    assert "kind" in writes[0].split("VALUES")[0]
    assigned = writes[1].split(" SET ", 1)[1].split(" WHERE ", 1)[0]
    assert {part.split("=")[0].strip() for part in assigned.split(",")} == {"card_version", "next_reminder_at"}


@pytest.mark.parametrize("name", BILLING)
def test_a_known_calls_delivery_finds_its_case_at_once(engine: Engine, policy: Policy, name: str) -> None:
    body, raw = delivery(name, f"call_known_{name}")
    assert ingest(engine, body, raw, policy, NOW).created
    with statements(engine, words=10_000) as seen:
        # Another body (not a duplicate) for the same call: merged into its case.
        result = ingest(engine, body, raw + b" ", policy, NOW)
    assert not result.created and result.outcome == "stored"
    # Looked up once; no insert is tried (and nothing is filled in for one); written with one UPDATE.
    assert len([s for s in seen if " FROM cases WHERE cases.call_id = " in s]) == 1
    assert [" ".join(s.split()[:3]) for s in seen if s.startswith(("INSERT INTO cases", "UPDATE cases"))] in (
        [], ["UPDATE cases SET"])


@pytest.mark.parametrize("name", [*BILLING, "05_not_billing"])
def test_a_new_call_is_stored_as_the_general_path_stores_it(engine: Engine, policy: Policy, name: str) -> None:
    new_body, new_raw = delivery(name, f"call_new_{name}")
    assert ingest(engine, new_body, new_raw, policy, NOW).created
    # The same delivery for a call whose (empty) case already exists takes every general step: the
    # duplicate and matching look-ups, cancelling stale reminders, reading the next one back.
    with session_scope(engine) as session:
        lock_or_create(session, f"call_old_{name}")
    old_body, old_raw = delivery(name, f"call_old_{name}")
    assert not ingest(engine, old_body, old_raw, policy, NOW).created

    fast, general = stored(engine, f"call_new_{name}"), stored(engine, f"call_old_{name}")
    assert fast["case"] == general["case"]
    assert fast["reminders"] == general["reminders"]
    assert fast["outbox"] == general["outbox"]
    assert fast["audit"] == general["audit"]  # the action differs only: case.created vs case.updated
    if name != "05_not_billing":
        assert fast["case"]["next_reminder_at"] is not None
