"""`finance-desk audit export`: the audit trail as CSV or JSON Lines, oldest first."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Final, TextIO

from sqlalchemy import Engine, inspect
from sqlmodel import Session, col, select

from storage.models import AuditEvent

COLUMNS = ("at", "actor", "action", "call_id", "record", "target", "reason", "outcome", "detail")
# A spreadsheet reads a cell starting with one of these as a formula (CSV injection); caller text
# reaches reason, record and detail, so such cells are written with a leading apostrophe.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


class ExportError(Exception):
    """The export cannot start; str() is one line, safe to print."""


def csv_cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _events(engine: Engine, since: datetime) -> Iterator[AuditEvent]:
    with Session(engine) as session:
        query = select(AuditEvent).where(AuditEvent.at >= since).order_by(col(AuditEvent.at), col(AuditEvent.id))
        yield from session.exec(query.execution_options(yield_per=500))


def export(engine: Engine, since: datetime, fmt: str, out: TextIO) -> int:
    if not inspect(engine).has_table(AuditEvent.__tablename__):
        raise ExportError("the database has no audit trail yet (never migrated): run `finance-desk db upgrade` "
                          "against this DATABASE_URL first")
    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    for event in _events(engine, since):
        row = {
            "at": event.at.isoformat(), "actor": event.actor, "action": event.action, "call_id": event.call_id,
            "record": event.record, "target": event.target, "reason": event.reason, "outcome": event.outcome,
            "detail": event.detail,
        }
        if writer is not None:
            writer.writerow([csv_cell(json.dumps(row[c], sort_keys=True) if c == "detail" else str(row[c] or ""))
                             for c in COLUMNS])
        else:
            out.write(json.dumps(row, sort_keys=True) + "\n")
        count += 1
    return count
