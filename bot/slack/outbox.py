"""The durable outbox: Slack work is written with the change it reports, then sent by a worker.

A card row means "make the case's card in Slack match the case": the first send posts it and
stores its ts, later sends chat.update that message. Thread rows are replies in the card's thread.
Both are upserts on a unique key, so concurrent writers in several processes cannot duplicate them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from storage.models import Case, OutboxMessage, utcnow


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def enqueue_card(session: Session, case: Case, now: datetime | None = None) -> None:
    """Ask for the card to be posted or brought up to date; many changes collapse into one send."""
    assert case.id is not None
    now = now or utcnow()
    case.card_version += 1
    session.add(case)
    row = OutboxMessage(case_id=case.id, kind="card", dedup_key=f"card:{case.id}", due_at=now, created_at=now)
    statement = _insert(session)(OutboxMessage).values(**row.model_dump(exclude={"id"}))
    # Bumping the version tells a worker that is sending an older render to send again.
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["dedup_key"],
            set_={"version": OutboxMessage.version + 1, "sent_at": None, "failed_at": None,
                  "due_at": now, "last_error": None},
        )
    )


def enqueue_thread(
    session: Session, case: Case, key: str, text: str, now: datetime | None = None,
    blocks: list[dict[str, Any]] | None = None,
) -> None:
    """One reply in the card's thread, at most once per key (e.g. "action:42:succeeded")."""
    assert case.id is not None
    now = now or utcnow()
    row = OutboxMessage(
        case_id=case.id, kind="thread", dedup_key=f"thread:{case.id}:{key}", text=text, blocks=blocks,
        due_at=now, created_at=now,
    )
    statement = _insert(session)(OutboxMessage).values(**row.model_dump(exclude={"id"}))
    session.execute(statement.on_conflict_do_nothing(index_elements=["dedup_key"]))


def enqueue_message(
    session: Session, case: Case, key: str, channel: str, text: str, now: datetime | None = None,
    blocks: list[dict[str, Any]] | None = None,
) -> None:
    """One standalone post to another channel (escalation pings, the review queue), at most once per key."""
    assert case.id is not None
    now = now or utcnow()
    row = OutboxMessage(
        case_id=case.id, kind="message", dedup_key=f"message:{case.id}:{key}", channel=channel, text=text,
        blocks=blocks, due_at=now, created_at=now,
    )
    statement = _insert(session)(OutboxMessage).values(**row.model_dump(exclude={"id"}))
    session.execute(statement.on_conflict_do_nothing(index_elements=["dedup_key"]))
