"""The mail outbox: one row per email to a customer, written with its audit event, sent by a worker.

status: queued → sending (claimed under a lease) → sent | failed; or in_doubt when the whole message
had gone to the server and the answer was lost (a dropped connection, or a process that died after the
final `.`). An in-doubt row is never sent again by itself: the server may have accepted it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class MailStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"


class MailMessage(SQLModel, table=True):
    __tablename__ = "mail_outbox"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_mail_outbox_idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    # "<DialNexa call ID>:send_to_customer:<n>": the n-th email for the call; also the Message-ID's left part.
    idempotency_key: str = Field(max_length=300)
    message_id: str = Field(max_length=400)
    case_id: int = Field(foreign_key="cases.id", index=True)
    call_id: str = Field(max_length=200, index=True)
    sender: str = Field(max_length=320)
    recipient: str = Field(max_length=320)
    verified_recipient: str | None = Field(default=None, max_length=320)
    asked_recipient: str | None = Field(default=None, max_length=320)
    override_by: str | None = Field(default=None, max_length=40)  # the senior who sent to another address
    subject: str = Field(max_length=300)
    body: str = Field(sa_type=Text)
    document: str | None = Field(default=None, max_length=3000)  # the link or document sent, if any
    reason: str | None = Field(default=None, max_length=1000)  # why the caller asked
    approved_by: str = Field(max_length=40)
    status: str = Field(default=MailStatus.QUEUED, max_length=20, index=True)
    attempts: int = 0
    due_at: datetime = _ts(index=True)
    claimed_by: str | None = Field(default=None, max_length=100)
    claim_expires_at: datetime | None = _ts(default=None)
    # Set right before the end of the message data goes to the server: from then on it may be delivered.
    committed_at: datetime | None = _ts(default=None)
    sent_at: datetime | None = _ts(default=None)
    server_answer: str | None = Field(default=None, max_length=500)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
