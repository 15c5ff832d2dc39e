"""Webhook → case: parse, triage, and merge one DialNexa delivery into its case, durably."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Engine, bindparam, insert
from sqlmodel import Session, col, select

from bot import metrics
from bot.lookup.review import identity, mark_for_matching
from bot.policy import Policy
from bot.reminders.store import sync_case
from bot.slack.outbox import enqueue_card
from bot.triage.model import Classification
from bot.triage.pipeline import Triage, triage
from bot.triage.redact import redact
from bot.triage.route import routing_values
from providers.dialnexa import CallEvent, EventKind, Ignored, NotACallEvent, parse_event
from storage.audit import Event, write_audit
from storage.cases import insert_new, lock_existing, new_case, set_fields, write_changes
from storage.db import session_scope
from storage.models import Case, WebhookDelivery
from storage.statements import write

log = logging.getLogger(__name__)

_STAGE_RANK = {
    EventKind.CALL_INITIATED: 0,
    EventKind.TRANSFER_COMPLETED: 1,
    EventKind.CALL_ENDED: 2,
    EventKind.CALL_ANALYZED: 3,
}
_SOURCE_RANK = {"none": 0, "rules": 1, "analysis": 2}
# Column sizes (storage.models.Case): outside text longer than its column would fail the whole write.
_CALL_TEXT = ("direction", "agent_id", "hangup_reason")
_EVENT_NAME_LIMIT = 100


@dataclass(frozen=True)
class IngestResult:
    outcome: str  # stored | duplicate | ignored
    call_id: str | None = None
    case_id: int | None = None
    created: bool = False
    is_billing: bool = False


def ingest(engine: Engine, body: object, raw: bytes, policy: Policy, now: datetime) -> IngestResult:
    """Store one verified delivery; returns only after the case is committed.

    Raises providers.dialnexa.NotACallEvent for bodies that are not call events.
    """
    parsed = _parse(body)
    digest = hashlib.sha256(raw).hexdigest()
    if isinstance(parsed, Ignored):
        with session_scope(engine) as session:
            session.add(WebhookDelivery(event_name=_ignored_name(parsed), body_sha256=digest, outcome="ignored"))
        return IngestResult(outcome="ignored")
    # Triage is pure CPU work: do it before taking the database write lock.
    result = triage(parsed, now)
    with session_scope(engine) as session:
        case = lock_existing(session, parsed.call_id)
        created = False
        if case is None:
            # A new call's case is filled in before it is inserted, so that it is written once with its
            # final values. Another transaction may have inserted it meanwhile (PostgreSQL): then this
            # delivery is merged into that case, once its transaction has committed.
            fresh = new_case(parsed.call_id)
            _fill(fresh, parsed, result, policy, now)
            created = insert_new(session, fresh)
            case = fresh if created else lock_existing(session, parsed.call_id)
            assert case is not None  # the insert found it
        # Core statements run on the session's connection: they need none of the ORM's execution machinery.
        connection = session.connection()
        # A call's deliveries are stored with its case and cases are never deleted, so a case this
        # transaction created has no earlier delivery to compare with: one query fewer.
        seen = None if created else connection.execute(
            _statements()["seen"], {"call": parsed.call_id, "digest": digest}
        ).first()
        outcome = "duplicate" if seen is not None else "stored"
        if seen is None:
            # Everything below reads only rows that are written with Core statements (audit, outbox,
            # reminders), never the merged case: it is written once, after its last change (the card
            # version, the next reminder), as one UPDATE without a unit-of-work flush around it.
            with session.no_autoflush:
                _store(session, case, created, parsed, result, policy, now)
                write_changes(session, case)
        write(connection, _statements()["delivery"], {
            **_delivery_defaults(), "received_at": now, "call_id": parsed.call_id, "event_name": parsed.event_name,
            "event_kind": parsed.event.value, "body_sha256": digest, "outcome": outcome,
        })
    if created:
        metrics.case_created(case.kind)
    log.info("dialnexa %s %s for call %s: %s", parsed.event_name, outcome, parsed.call_id, case.kind,
             extra={"call_id": parsed.call_id, "case_id": case.id})
    return IngestResult(outcome=outcome, call_id=parsed.call_id, case_id=case.id, created=created,
                        is_billing=case.is_billing)


def _store(session: Session, case: Case, created: bool, parsed: CallEvent, result: Triage, policy: Policy,
           now: datetime) -> None:
    """Merge a new delivery into its case, then write what follows from it: audit, card, reminders."""
    before = None
    if not created:  # a created case was filled in before it was inserted
        before = identity(case)
        _fill(case, parsed, result, policy, now)
    # Matching runs later, off this hot path (MatchWorker); this only queues the case for it.
    mark_for_matching(session, case, before)
    write_audit(session, case, "dialnexa", now, Event(
        "case.created" if created else "case.updated", outcome=case.kind, record=_record_of(case),
        reason=f"{parsed.event_name} ({parsed.event.value})", detail=_audit_detail(case, result),
    ))
    on_case_changed(session, case, policy, now, created=created)


def _fill(case: Case, parsed: CallEvent, result: Triage, policy: Policy, now: datetime) -> None:
    """Merge the delivery into the case, then route it: routing reads the merged values."""
    set_fields(case, _merged(case, parsed, result))
    set_fields(case, {**routing_values(case, policy, now), "updated_at": now})


@cache
def _statements() -> dict[str, Any]:
    # Built once, then only bound: they run in every delivery's transaction.
    table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    return {
        "seen": select(WebhookDelivery.id).where(col(WebhookDelivery.call_id) == bindparam("call"),
                                                 col(WebhookDelivery.body_sha256) == bindparam("digest")).limit(1),
        "delivery": insert(table),
    }


@cache
def _delivery_defaults() -> dict[str, Any]:
    # Column defaults live on the model; computed once, then merged into each row's parameters.
    return WebhookDelivery(body_sha256="-", outcome="-").model_dump(exclude={"id"})


def _ignored_name(parsed: Ignored) -> str | None:
    """An unused event's name is outside text like any other: redacted and cut to its column."""
    if parsed.event_name is None:
        return None
    return redact(parsed.event_name).text[:_EVENT_NAME_LIMIT]


def _parse(body: object) -> CallEvent | Ignored:
    parsed = parse_event(body)
    # The call ID is the case's key, stored and shown as it is, so it cannot be redacted like other
    # text: one that carries a sensitive value is refused whole (DialNexa's own IDs never do).
    if isinstance(parsed, CallEvent) and redact(parsed.call_id).kinds:
        raise NotACallEvent("the call ID carries a card number, bank detail or tax ID; it is not stored")
    return parsed


def preview_case(body: object, policy: Policy, now: datetime) -> Case:
    """The case one delivery would produce, in memory only (for `finance-desk preview`)."""
    parsed = _parse(body)
    if isinstance(parsed, Ignored):
        raise NotACallEvent(f"{parsed.event_name or 'this body'} is not a call event ({parsed.reason})")
    case = Case(id=1, call_id=parsed.call_id, created_at=now, updated_at=now)
    _fill(case, parsed, triage(parsed, now), policy, now)
    return case


def on_case_changed(session: Session, case: Case, policy: Policy, now: datetime, *, created: bool = False) -> None:
    """What follows a change, in the same transaction: the card, its reminders and escalation pages.

    `created=True` when this transaction created the case (it has no reminder rows to look at yet).
    """
    if case.is_billing:
        enqueue_card(session, case, now)
    # The card is enqueued above anyway, so the reminders need not enqueue it for their own change.
    sync_case(session, case, policy, now, update_card=False, created=created)


def _audit_detail(case: Case, result: Triage) -> dict[str, object]:
    detail: dict[str, object] = {"rule": case.rule, "confidence": case.confidence,
                                 "suppressed_kinds": sorted(case.suppressed_kinds)}
    if result.dropped:
        # Unknown fields are ignored, but one that could not even be read is named, with why.
        detail["dropped"] = dict(sorted(result.dropped.items()))
    return detail


def _record_of(case: Case) -> str | None:
    for label, value in (("invoice", case.invoice_number), ("payment", case.payment_id),
                         ("subscription", case.subscription_id)):
        if value:
            return f"{label} {value}"
    return None


@cache
def _column_lengths() -> dict[str, int]:
    table = Case.__table__  # type: ignore[attr-defined]
    return {column.name: column.type.length for column in table.columns if getattr(column.type, "length", None)}


def _fit(name: str, text: str) -> str:
    """Outside text cut to its column: a value longer than the column (a 700-character "e-mail" in a
    transcript) would fail the whole write on PostgreSQL, and DialNexa would retry it forever."""
    limit = _column_lengths().get(name)
    return text[:limit] if limit is not None else text


def _merged(case: Case, event: CallEvent, result: Triage) -> dict[str, Any]:
    """What folding a delivery into the case sets; an empty value never erases what an earlier event filled."""
    changes: dict[str, Any] = {}
    # The call's own text fields are outside text too: stored as triage redacted them.
    if _STAGE_RANK[event.event] >= _STAGE_RANK.get(EventKind(case.stage), 0):
        changes["stage"] = event.event.value
        changes["call_status"] = _fit("call_status", result.call_text.get("status") or "") or case.call_status
    for name in _CALL_TEXT:
        text = result.call_text.get(name)
        if text is not None:
            changes[name] = _fit(name, text)
    if event.duration_seconds is not None:
        changes["duration_seconds"] = event.duration_seconds
    changes["caller_phone"] = event.caller_number or case.caller_phone
    changes["started_at"] = event.initiated_at or case.started_at
    changes["ended_at"] = event.ended_at or case.ended_at
    if result.summary:
        changes["summary"] = result.summary

    changes.update(_merged_classification(case, result.classification))

    # Analysis-backed values may correct earlier ones; rule-derived values only fill gaps. (The captured
    # fields read here are none of the ones set above.)
    authoritative = result.classification.source == "analysis"
    for name, value in result.fields:
        if value is None:
            continue
        if getattr(case, name) is None or authoritative:
            changes[name] = _fit(name, value) if isinstance(value, str) else value

    if result.suppressed:
        changes["suppressed"] = True
        changes["suppressed_kinds"] = sorted(set(case.suppressed_kinds) | {kind.value for kind in result.suppressed})
    return changes


def _merged_classification(case: Case, new: Classification) -> dict[str, Any]:
    current = (_SOURCE_RANK.get(case.classification_source, 0), case.confidence)
    incoming = (_SOURCE_RANK[new.source], new.confidence)
    # A billing verdict is never undone by a later, weaker "not billing" (e.g. a bare call_ended).
    if case.is_billing and not new.is_billing and new.source != "analysis":
        return {}
    if incoming >= current or (new.is_billing and not case.is_billing):
        return {"kind": new.kind.value, "is_billing": new.is_billing, "rule": new.rule, "confidence": new.confidence,
                "classification_source": new.source, "evidence": new.evidence}
    return {}
