"""Send to the customer: who may, to which address, and the outbox row committed with its audit event.

Plain functions over the database and MoonClerk; the listener only acks and calls them. Nothing here
talks to the mail server: `submit` writes a mail-outbox row (bot.mail.worker sends it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Engine, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from blocks.actions import ActionId
from blocks.format import code, inline
from blocks.mail import asked_recipient, queued_reply
from bot import lifecycle
from bot.actions.authz import Directory
from bot.actions.gates import recipient_mismatch
from bot.mail.draft import Draft, body_problem, document_for, draft, subject_problem
from bot.outcome import Outcome
from bot.slack.outbox import enqueue_card, enqueue_thread
from providers.base import NotFound, ProviderError
from providers.moonclerk import MoonClerkClient
from storage.audit import Event, write_audit
from storage.db import session_scope
from storage.mail import MailMessage, MailStatus
from storage.models import Case
from storage.states import CLOSED_STATES

ACTION = ActionId.SEND_TO_CUSTOMER.value
_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


@dataclass
class MailContext:
    engine: Engine
    directory: Directory
    moonclerk: MoonClerkClient | None
    mail_from: str | None  # None: SMTP is not configured, nothing can be sent
    clock: Callable[[], datetime]
    wake: Callable[[], None] = field(default=lambda: None)


class MailRequest(BaseModel):
    recipient: str
    subject: str
    body: str
    override_recipient: bool = False


def idempotency_key(call_id: str, n: int) -> str:
    return f"{call_id}:{ACTION}:{n}"


def parse_form(values: dict[str, str | list[str] | None]) -> MailRequest | dict[str, str]:
    """The modal's values, or its errors keyed by block (shown in place)."""
    errors: dict[str, str] = {}
    recipient = values.get("recipient")
    subject = values.get("subject")
    body = values.get("body")
    recipient = recipient.strip() if isinstance(recipient, str) else ""
    if not _EMAIL.fullmatch(recipient):
        errors["recipient"] = "Enter one email address"
    subject = " ".join(subject.split()) if isinstance(subject, str) else ""  # no header folding tricks
    if problem := subject_problem(subject):
        errors["subject"] = problem
    body = body if isinstance(body, str) else ""
    if problem := body_problem(body):
        errors["body"] = problem
    if errors:
        return errors
    override = values.get("override")
    return MailRequest(recipient=recipient, subject=subject, body=body,
                       override_recipient=isinstance(override, list) and "override" in override)


def _why(case: Case) -> str | None:
    return case.refund_reason or case.dispute_reason or case.caller_claim or case.kind


def _refuse(ctx: MailContext, case_id: int, user: str, reason: str) -> Outcome:
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        case = session.get(Case, case_id)
        if case is not None:
            write_audit(session, case, user, now, Event("action.refused", outcome="refused", reason=reason,
                                                        detail={"action": ACTION}))
    return Outcome(False, f"Not sent: {inline(reason, 500)}.")


def _who_and_what(ctx: MailContext, case: Case, user: str) -> str | None:
    closed = lifecycle.closed_reason(case.state)
    if closed:
        return closed
    if not case.is_billing:
        return "only billing cases can be emailed from finance-desk"
    if not ctx.directory.is_approver(user):
        return "only finance approvers named in the policy file can email customers"
    if ctx.mail_from is None:
        return "email is not configured (SMTP_URL and MAIL_FROM)"
    return None


def verify(ctx: MailContext, case: Case) -> str | None:
    """The address on the matched customer record, read from MoonClerk now and kept on the case.

    Raises ProviderError when MoonClerk cannot be asked: an outage is no evidence of anything.
    """
    if ctx.moonclerk is None or case.moonclerk_customer_id is None:
        return None
    try:
        email = ctx.moonclerk.get_customer(case.moonclerk_customer_id).email
    except NotFound:
        email = None
    email = email.strip() if email and _EMAIL.fullmatch(email.strip()) else None
    if email != case.verified_email:
        with session_scope(ctx.engine) as session:
            locked = session.get(Case, case.id, with_for_update=True)
            if locked is not None and locked.moonclerk_customer_id == case.moonclerk_customer_id:
                locked.verified_email = email
                enqueue_card(session, locked, ctx.clock())
        case.verified_email = email
        ctx.wake()
    return email


@dataclass(frozen=True)
class Prepared:
    draft: Draft
    n: int


def prepare(ctx: MailContext, case_id: int, user: str) -> Prepared | Outcome:
    """Before the modal opens: allowed, a verified recipient, and the draft."""
    with Session(ctx.engine) as session:
        case = session.get(Case, case_id)
        document = document_for(session, case) if case is not None else None
        n = _next_number(session, case_id)
    if case is None:
        return Outcome(False, "That case no longer exists.")
    # Refused (and audited) after the read session closed: on SQLite it holds the write lock.
    problem = _who_and_what(ctx, case, user)
    if problem:
        return _refuse(ctx, case_id, user, problem)
    # The modal must open within Slack's 3 seconds: it shows the address as last verified (the card's),
    # and the submit verifies it with MoonClerk again before anything is queued.
    verified = case.verified_email
    if not verified:
        return _refuse(ctx, case_id, user, "the case has no verified recipient (a matched MoonClerk customer "
                                           "with an email address on file)")
    return Prepared(draft=draft(case, document), n=n)


def _next_number(session: Session, case_id: int) -> int:
    count = session.exec(select(func.count()).select_from(MailMessage).where(MailMessage.case_id == case_id)).one()
    return int(count) + 1


def _domain(address: str) -> str:
    match = re.search(r"@([A-Za-z0-9.-]+)", address)
    return match.group(1) if match else "finance-desk.invalid"


def message_id(key: str, mail_from: str) -> str:
    """`<key@domain>` with every character outside letters, digits, `_` and `-` as `=XX`: a valid
    Message-ID whatever the DialNexa call ID holds, and the same one on every attempt."""
    local = "".join(char if char.isascii() and (char.isalnum() or char in "_-") else f"={ord(char):02X}"
                    for char in key)
    return f"<{local}@{_domain(mail_from)}>"


def submit(ctx: MailContext, case_id: int, n: int, user: str, request: MailRequest) -> Outcome:
    """Check everything again, then queue the email with its audit event and thread line, in one transaction."""
    with Session(ctx.engine) as session:
        case = session.get(Case, case_id)
    if case is None:
        return Outcome(False, "That case no longer exists.")
    problem = _who_and_what(ctx, case, user)
    if problem:
        return _refuse(ctx, case_id, user, problem)
    problem = subject_problem(request.subject) or body_problem(request.body)
    if problem:
        return _refuse(ctx, case_id, user, problem)
    try:
        verified = verify(ctx, case)
    except ProviderError as exc:
        return Outcome(False, f"MoonClerk could not be reached to verify the recipient ({inline(exc, 300)}); "
                              "nothing was sent. Try again shortly.")
    if not verified:
        return _refuse(ctx, case_id, user, "the case has no verified recipient")
    override = recipient_mismatch(request.recipient, verified)
    if override and not request.override_recipient:
        return _refuse(ctx, case_id, user, f"{request.recipient} is not the verified recipient ({verified}); "
                                           "a senior approver may send there with the override ticked")
    if override and not ctx.directory.is_senior(user):
        return _refuse(ctx, case_id, user, "sending to an address other than the verified recipient needs a "
                                           "senior approver")
    assert ctx.mail_from is not None
    now = ctx.clock()
    key = idempotency_key(case.call_id, n)
    with session_scope(ctx.engine) as session:
        locked = session.get(Case, case_id, with_for_update=True)
        if locked is None:
            return Outcome(False, "That case no longer exists.")
        closed = lifecycle.closed_reason(locked.state)
        if closed:
            write_audit(session, locked, user, now, Event("action.refused", outcome="refused", reason=closed,
                                                          detail={"action": ACTION}))
            return Outcome(False, f"Not sent: {inline(closed, 300)}.")
        with session.no_autoflush:
            document = document_for(session, locked)
        row = MailMessage(
            idempotency_key=key, message_id=message_id(key, ctx.mail_from), case_id=case_id, call_id=locked.call_id,
            sender=ctx.mail_from, recipient=request.recipient, verified_recipient=verified,
            asked_recipient=asked_recipient(locked), override_by=user if override else None,
            subject=request.subject, body=request.body,
            document=document if document and document in request.body else None,
            reason=(_why(locked) or "")[:1000] or None, approved_by=user, status=MailStatus.QUEUED,
            due_at=now, created_at=now, updated_at=now)
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        inserted = session.execute(
            insert(MailMessage).values(**row.model_dump(exclude={"id"}))
            .on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(col(MailMessage.id))
        ).first()
        if inserted is None:
            return Outcome(False, "This email was already sent or queued; nothing more was done.")
        write_audit(session, locked, user, now, Event(
            "email.queued", outcome="queued", reason=row.reason, record=row.document or "email",
            target=request.recipient,
            detail={"subject": request.subject, "message_id": row.message_id, "idempotency_key": key,
                    "verified_recipient": verified, "asked_recipient": row.asked_recipient,
                    "override": bool(override)}))
        if override:
            write_audit(session, locked, user, now, Event(
                "email.recipient_override", outcome="ok", target=request.recipient, reason=row.reason,
                detail={"verified_recipient": verified, "senior": user}))
        locked.mail_status, locked.mail_note, locked.verified_email = MailStatus.QUEUED, request.recipient, verified
        locked.updated_at = now
        enqueue_thread(session, locked, f"mail:{key}:queued", queued_reply(request.recipient, user, bool(override)),
                       now)
        enqueue_card(session, locked, now)
    ctx.wake()
    return Outcome(True, f"Queued: the email to {code(request.recipient, 320)}. The card's thread says when it "
                         "is sent.")


def verify_pending(ctx: MailContext, tried: set[tuple[int, int]], limit: int = 20) -> int:
    """Give open billing cases matched to a customer their verified recipient (the card then offers
    Send to customer). `tried` remembers (case, customer) pairs already asked about in this process."""
    with Session(ctx.engine) as session:
        cases = session.exec(
            select(Case).where(col(Case.is_billing).is_(True), col(Case.moonclerk_customer_id).is_not(None),
                               col(Case.verified_email).is_(None), col(Case.state).not_in(list(CLOSED_STATES)))
            .order_by(col(Case.id)).limit(limit + len(tried))
        ).all()
    done = 0
    for case in cases:
        assert case.id is not None and case.moonclerk_customer_id is not None
        pair = (case.id, case.moonclerk_customer_id)
        if pair in tried or done >= limit:
            continue
        try:
            verify(ctx, case)
        except ProviderError:
            return done  # MoonClerk is down: the next pass asks again
        tried.add(pair)
        done += 1
    return done
