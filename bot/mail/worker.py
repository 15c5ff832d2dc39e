"""The mail-outbox worker: claims queued emails under a lease and sends each once, then records how.

Exactly once, as far as SMTP allows: a row is claimed by an atomic UPDATE (any number of processes on
one database), and `committed_at` is written and committed right before the end of the message data
goes to the server. A row whose lease ran out (its process died) is sent again only if it never got
that far; otherwise it may have been accepted, so it becomes *in doubt* and is never re-sent by itself.
Every attempt carries the same Message-ID, derived from the idempotency key.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import Engine, or_, update
from sqlmodel import Session, col, select

from blocks.mail import failed_reply, in_doubt_reply, sent_reply
from bot.actions.runner import ActionContext
from bot.mail.send import MailContext, verify_pending
from bot.polling import PollingWorker, new_worker_id
from bot.runtime import Runtime
from bot.slack.outbox import enqueue_card, enqueue_thread
from providers.mail import InDoubt, MailError, Permanent, SmtpSender, Temporary, parse_smtp_url
from storage.audit import Event, write_audit
from storage.db import session_scope
from storage.mail import MailMessage, MailStatus
from storage.models import Case, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BASE_BACKOFF_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 600.0


class LeaseLost(Exception):
    """Another worker took the row over while this one was slow: stop before the message could be accepted."""


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)))


def build_message(row: MailMessage, now: datetime) -> EmailMessage:
    message = EmailMessage()
    message["From"] = row.sender
    message["To"] = row.recipient
    message["Subject"] = row.subject
    message["Message-ID"] = row.message_id
    message["Date"] = format_datetime(row.created_at or now)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(row.body)
    return message


class MailWorker(PollingWorker):
    thread_name, what = "mail-worker", "mail outbox pass"

    def __init__(self, engine: Engine, sender: SmtpSender, *, clock: Callable[[], datetime] = utcnow,
                 on_done: Callable[[], None] = lambda: None, poll_seconds: float = 1.0,
                 lease: timedelta | None = None, worker_id: str | None = None,
                 verifier: Callable[[], int] | None = None, verify_seconds: float = 30.0) -> None:
        self.engine = engine
        self.sender = sender
        self.clock = clock
        self.on_done = on_done  # wakes the Slack outbox worker for the thread line and the card
        super().__init__(poll_seconds)
        # Longer than one send can take (connect, TLS, login, data: each bounded by the timeout).
        self.lease = lease or timedelta(seconds=4 * sender.timeout + 30)
        self.worker_id = worker_id or new_worker_id()
        # Periodic: gives matched cases their verified recipient (bot.mail.send.verify_pending).
        self.verifier = verifier
        self.verify_seconds = verify_seconds
        self._verified_at: datetime | None = None
        # How the emails this process handled ended ("sent", "failed", "in_doubt", "retry"): for --drain.
        self.stats: Counter[str] = Counter()

    def start(self) -> MailWorker:
        self._start_thread()
        return self

    def after_pass(self) -> None:
        self.verify_due()

    def verify_due(self) -> int:
        now = self.clock()
        if self.verifier is None or (self._verified_at is not None
                                     and (now - self._verified_at).total_seconds() < self.verify_seconds):
            return 0
        self._verified_at = now
        found = self.verifier()
        if found:
            self.on_done()
        return found

    # -- one pass ------------------------------------------------------------------------------
    def run_once(self, limit: int = 20) -> int:
        now = self.clock()
        with Session(self.engine) as session:
            due = session.exec(
                select(MailMessage.id).where(
                    or_(
                        (col(MailMessage.status) == MailStatus.QUEUED) & (col(MailMessage.due_at) <= now),
                        (col(MailMessage.status) == MailStatus.SENDING) & (col(MailMessage.claim_expires_at) < now),
                    ))
                .order_by(col(MailMessage.due_at), col(MailMessage.id)).limit(limit)
            ).all()
        processed = 0
        for row_id in due:
            if self._stop.is_set():
                break
            assert row_id is not None
            row = self._claim(row_id)
            if row is not None:
                self._process(row)
                processed += 1
        if processed:
            self.on_done()
        return processed

    def _claim(self, row_id: int) -> MailMessage | None:
        """Take the row, or settle it as in doubt when a dead process may have had it accepted."""
        now = self.clock()
        with session_scope(self.engine) as session:
            abandoned = session.execute(
                update(MailMessage).where(
                    col(MailMessage.id) == row_id, col(MailMessage.status) == MailStatus.SENDING,
                    col(MailMessage.claim_expires_at) < now, col(MailMessage.committed_at).is_not(None))
                .values(status=MailStatus.IN_DOUBT, updated_at=now, claimed_by=None,
                        last_error="the process sending it stopped after the message had gone to the server")
            ).rowcount  # type: ignore[attr-defined]
            if abandoned:
                row = session.get(MailMessage, row_id)
                assert row is not None
                self._record(session, row, MailStatus.IN_DOUBT, row.last_error or "", now)
                self.stats[str(MailStatus.IN_DOUBT)] += 1
                return None
            claimed = session.execute(
                update(MailMessage).where(
                    col(MailMessage.id) == row_id,
                    or_((col(MailMessage.status) == MailStatus.QUEUED) & (col(MailMessage.due_at) <= now),
                        (col(MailMessage.status) == MailStatus.SENDING) & (col(MailMessage.claim_expires_at) < now)),
                    col(MailMessage.committed_at).is_(None))
                .values(status=MailStatus.SENDING, claimed_by=self.worker_id, claim_expires_at=now + self.lease,
                        attempts=MailMessage.attempts + 1, updated_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if not claimed:
                return None
            row = session.get(MailMessage, row_id)
            assert row is not None
            session.expunge(row)
            return row

    def _commit_point(self, row: MailMessage) -> None:
        """Right before the end of the data: record that the server may accept it from now on."""
        now = self.clock()
        with session_scope(self.engine) as session:
            mine = session.execute(
                update(MailMessage).where(col(MailMessage.id) == row.id, col(MailMessage.claimed_by) == self.worker_id,
                                          col(MailMessage.status) == MailStatus.SENDING)
                .values(committed_at=now, updated_at=now)
            ).rowcount  # type: ignore[attr-defined]
        if not mine:
            raise LeaseLost(f"mail row {row.id} was taken over by another worker")

    def _process(self, row: MailMessage) -> None:
        now = self.clock()
        try:
            answer = self.sender.send(build_message(row, now), row.sender, row.recipient,
                                      on_commit=lambda: self._commit_point(row))
        except LeaseLost:
            log.warning("mail row %s: lease lost before sending; the other worker sends it", row.id)
            return
        except Temporary as exc:
            self._temporary(row, str(exc))
            return
        except InDoubt as exc:
            self._settle(row, MailStatus.IN_DOUBT, str(exc))
            return
        except (Permanent, MailError) as exc:
            self._settle(row, MailStatus.FAILED, str(exc))
            return
        self._settle(row, MailStatus.SENT, answer)

    def _temporary(self, row: MailMessage, error: str) -> None:
        if row.attempts >= MAX_ATTEMPTS:
            self._settle(row, MailStatus.FAILED, f"gave up after {row.attempts} attempts: {error}")
            return
        self.stats["retry"] += 1
        now = self.clock()
        log.info("mail row %s: temporary failure (attempt %s), retrying: %s", row.id, row.attempts, error)
        with session_scope(self.engine) as session:
            session.execute(
                update(MailMessage).where(col(MailMessage.id) == row.id, col(MailMessage.claimed_by) == self.worker_id,
                                          col(MailMessage.status) == MailStatus.SENDING)
                .values(status=MailStatus.QUEUED, due_at=now + backoff(row.attempts), claimed_by=None,
                        claim_expires_at=None, last_error=error[:500], updated_at=now))

    def _settle(self, row: MailMessage, status: MailStatus, answer: str) -> None:
        now = self.clock()
        with session_scope(self.engine) as session:
            values = {"status": status, "updated_at": now, "claim_expires_at": None}
            if status == MailStatus.SENT:
                values |= {"sent_at": now, "server_answer": answer[:500]}
            else:
                values |= {"last_error": answer[:500]}
            moved = session.execute(
                update(MailMessage).where(col(MailMessage.id) == row.id, col(MailMessage.status) == MailStatus.SENDING,
                                          col(MailMessage.claimed_by) == self.worker_id).values(**values)
            ).rowcount  # type: ignore[attr-defined]
            if not moved:
                log.warning("mail row %s ended %s, but another worker had taken it over", row.id, status)
                return
            self.stats[str(status)] += 1
            fresh = session.get(MailMessage, row.id)
            assert fresh is not None
            self._record(session, fresh, status, answer, now)
        log.info("mail row %s for call %s: %s", row.id, row.call_id, status)

    def _record(self, session: Session, row: MailMessage, status: MailStatus, answer: str, now: datetime) -> None:
        """The audit event, the thread line and the card, in the transaction that settled the row."""
        case = session.get(Case, row.case_id, with_for_update=True)
        if case is None:
            return
        action = "email.sent" if status == MailStatus.SENT else "email.failed"
        write_audit(session, case, row.approved_by, now, Event(
            action, outcome=str(status), reason=row.reason, record=row.document or "email", target=row.recipient,
            detail={"subject": row.subject, "message_id": row.message_id, "idempotency_key": row.idempotency_key,
                    "approved_by": row.approved_by, "override_by": row.override_by, "attempts": row.attempts,
                    "server_answer": answer[:500]}))
        if status == MailStatus.SENT:
            text, note = sent_reply(row.recipient, row.approved_by, row.subject, row.document), row.recipient
        elif status == MailStatus.IN_DOUBT:
            text, note = in_doubt_reply(row.recipient, row.approved_by, answer), answer
        else:
            text, note = failed_reply(row.recipient, row.approved_by, answer), answer
        # The card shows the latest email only: an older one settling late must not overwrite it.
        latest = session.exec(select(MailMessage.id).where(MailMessage.case_id == row.case_id)
                              .order_by(col(MailMessage.id).desc())).first()
        if latest == row.id:
            case.mail_status, case.mail_note = str(status), note[:500]
            enqueue_card(session, case, now)
        enqueue_thread(session, case, f"mail:{row.idempotency_key}:{status}", text, now)


def mail_worker(runtime: Runtime, actions: ActionContext, on_done: Callable[[], None]) -> MailWorker | None:
    """The mail worker of `serve`, `socket` and `worker` (not started), when SMTP_URL and MAIL_FROM are set."""
    settings = runtime.settings
    if settings.smtp_url is None or settings.mail_from is None:
        return None
    sender = SmtpSender(parse_smtp_url(settings.smtp_url.get_secret_value()),
                        timeout=max(10.0, 3 * settings.provider_timeout_seconds))
    ctx = MailContext(engine=runtime.engine, directory=actions.directory, moonclerk=actions.moonclerk,
                      mail_from=settings.mail_from, clock=actions.clock, wake=on_done)
    tried: set[tuple[int, int]] = set()
    worker = MailWorker(runtime.engine, sender, on_done=on_done,
                        verifier=(lambda: verify_pending(ctx, tried)) if actions.moonclerk is not None else None)
    log.info("emails to customers go through %s", sender.target.describe())
    return worker


def start_mail_worker(runtime: Runtime, actions: ActionContext, on_done: Callable[[], None]) -> MailWorker | None:
    worker = mail_worker(runtime, actions, on_done)
    return worker.start() if worker is not None else None


def drain(worker: MailWorker) -> dict[str, int]:
    """`finance-desk worker --drain`: verify recipients, then send every email that is due, once.

    A row that failed temporarily is due again only after its backoff, so this ends; the next drain
    (or a running worker) picks it up then."""
    verified = worker.verify_due()
    while worker.run_once():
        pass
    return {"verified": verified, **{str(status): count for status, count in sorted(worker.stats.items())}}
