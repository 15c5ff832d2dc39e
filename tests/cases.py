"""Cases written straight into the database, for tests of what happens to a stored case."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from storage.db import session_scope
from storage.models import Case


def make_case(engine: Engine, call_id: str, *, now: datetime, **fields: Any) -> int:
    """A billing case (a refund unless `fields` say otherwise) created at `now`; its ID."""
    values: dict[str, Any] = {"is_billing": True, "kind": "refund", "created_at": now, "updated_at": now, **fields}
    with session_scope(engine) as session:
        case = Case(call_id=call_id, **values)
        session.add(case)
        session.flush()
        assert case.id is not None
        return case.id


def load(engine: Engine, case_id: int) -> Case:
    with Session(engine) as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case
