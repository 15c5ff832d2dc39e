"""The durable outbox: Slack work is written with the change it reports, then sent by a worker.

A card row means "make the case's card in Slack match the case": the first send posts it and
stores its ts, later sends chat.update that message. Thread rows are replies in the card's thread.
Both are upserts on a unique key, so concurrent writers in several processes cannot duplicate them.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from storage.models import Case, OutboxMessage, utcnow
from storage.statements import write_in


@cache
def _statements(dialect: str) -> tuple[Any, Any]:
    """Core upserts built once per dialect, so each enqueue only binds parameters."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    # Re-arming bumps the version, which tells a worker sending an older render to send again.
    rearm = insert.on_conflict_do_update(
        index_elements=["dedup_key"],
        set_={"version": table.c.version + 1, "sent_at": None, "failed_at": None,
              "due_at": insert.excluded.due_at, "last_error": None},
    )
    once = insert.on_conflict_do_nothing(index_elements=["dedup_key"])
    return rearm, once


@cache
def _defaults() -> dict[str, Any]:
    # Column defaults live on the model; computed once and merged into each row (building a model per
    # row cost more than the insert).
    return OutboxMessage(case_id=0, kind="-", dedup_key="-").model_dump(
        exclude={"id", "case_id", "kind", "dedup_key", "created_at", "due_at"})


def _row(**fields: Any) -> dict[str, Any]:
    """The parameters of one outbox row, column defaults filled in."""
    return {**_defaults(), **fields}


def enqueue_card(session: Session, case: Case, now: datetime | None = None, *, same_buttons: bool = False) -> None:
    """Ask for the card to be posted or brought up to date; many changes collapse into one send.

    `same_buttons`: only a shown fact changed (the Stripe status line), never what the buttons would do,
    so the card keeps its version and a click on the previous render still counts.
    """
    assert case.id is not None
    now = now or utcnow()
    if not same_buttons:
        case.card_version += 1
    if case not in session:  # adding walks every mapped attribute; ingest's case is there
        session.add(case)
    rearm, _ = _statements(session.get_bind().dialect.name)
    write_in(session, rearm,
             _row(case_id=case.id, kind="card", dedup_key=f"card:{case.id}", due_at=now, created_at=now))


def enqueue_thread(
    session: Session, case: Case, key: str, text: str, now: datetime | None = None,
    blocks: list[dict[str, Any]] | None = None,
) -> None:
    """One reply in the card's thread, at most once per key (e.g. "action:42:succeeded")."""
    assert case.id is not None
    now = now or utcnow()
    _, once = _statements(session.get_bind().dialect.name)
    write_in(session, once, _row(case_id=case.id, kind="thread", dedup_key=f"thread:{case.id}:{key}", text=text,
                               blocks=blocks, due_at=now, created_at=now))


def enqueue_message(
    session: Session, case: Case, key: str, channel: str, text: str, now: datetime | None = None,
    blocks: list[dict[str, Any]] | None = None,
) -> None:
    """One standalone post to another channel (escalation pings, the review queue), at most once per key."""
    assert case.id is not None
    now = now or utcnow()
    _, once = _statements(session.get_bind().dialect.name)
    write_in(session, once, _row(case_id=case.id, kind="message", dedup_key=f"message:{case.id}:{key}",
                               channel=channel, text=text, blocks=blocks, due_at=now, created_at=now))
