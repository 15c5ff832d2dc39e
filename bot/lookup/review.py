"""Matching cases to MoonClerk customers, and the review queue where a person settles the unsure ones.

`match_case` runs off the webhook's hot path (a background job): it reads the case, asks MoonClerk
(through the cached `MoonClerkLookup`) without holding any database lock, then stores the result in
one transaction with its audit event, the card update and, for an unsure match, one post to the
review channel. It is idempotent: the same facts give the same stored result, and a result that did
not change writes nothing and posts nothing (the review post is keyed by the candidates it offers).

The audit trail is the record of who decided: `match.matched` / `match.review` / `match.unmatched`
come from matching (their detail keeps the customer ID the call itself stated, so an ID that
matching wrote onto the case is never mistaken for evidence next time), `match.chosen` and
`match.rejected` from a person. After a person's decision matching leaves the case alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final

from sqlalchemy import Engine, bindparam
from sqlmodel import Session, col, select

from blocks.actions import PickValue
from blocks.format import code, mention
from blocks.review import review_message
from bot import reminders
from bot.lookup import directory
from bot.lookup.customers import MoonClerkLookup, lookup_for
from bot.lookup.matching import CallerFacts, MatchResult, decide, nothing_to_match, score_customer
from bot.policy import Policy
from bot.slack.outbox import enqueue_card, enqueue_message, enqueue_thread
from bot.triage.route import apply_routing
from providers.base import ProviderError
from providers.moonclerk import MoonClerkClient
from storage.audit import Event, write_audit
from storage.db import session_scope
from storage.models import AuditEvent, Case, utcnow
from storage.states import CLOSED_STATES, MatchStatus

log = logging.getLogger(__name__)

AUTOMATIC: Final = frozenset({"match.matched", "match.review", "match.unmatched"})
HUMAN: Final = frozenset({"match.chosen", "match.rejected"})


@dataclass(frozen=True)
class MatchOutcome:
    case_id: int
    status: str  # the case's match_status afterwards (a MatchStatus)
    changed: bool = False
    skipped: str | None = None  # why nothing was attempted
    error: str | None = None  # MoonClerk could not be read; the case keeps its status for a retry


@dataclass(frozen=True)
class _History:
    human: AuditEvent | None
    stated: int | None  # the customer ID the call itself stated


def _history(session: Session, case: Case) -> _History:
    events = session.exec(
        select(AuditEvent).where(AuditEvent.case_id == case.id, col(AuditEvent.action).in_(sorted(AUTOMATIC | HUMAN)))
        .order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
    ).all()
    human = next((event for event in events if event.action in HUMAN), None)
    stated = case.moonclerk_customer_id
    last = next((event for event in events if event.action in AUTOMATIC), None)
    if last is not None and stated is not None and last.detail.get("assigned") == stated:
        # Matching wrote this ID itself; what the call said is what it recorded then.
        recorded = last.detail.get("stated")
        stated = recorded if isinstance(recorded, int) else None
    return _History(human, stated)


def facts_of(case: Case, stated_customer_id: int | None) -> CallerFacts:
    return CallerFacts.of(email=case.email, phone=case.phone or case.caller_phone, name=case.customer_name,
                          account_id=case.account_id, customer_id=stated_customer_id, payment_id=case.payment_id)


def compute_match(lookup: MoonClerkLookup, facts: CallerFacts, engine: Engine | None = None) -> MatchResult:
    """Find candidates (the directory's indexes once it is synced, else the cached list scan), score
    only them, and confirm a match with one direct MoonClerk read before it is stored: a stale row (a
    customer since deleted or changed) is corrected and the decision taken again. Raises ProviderError
    when MoonClerk fails."""
    if facts.empty:
        return nothing_to_match()
    found = directory.candidates(engine, lookup, facts)
    items = {item.customer.id: item for item in found.found}
    scored = {cid: score_customer(facts, item.customer, item.payments, found.phones.get(cid))
              for cid, item in items.items()}
    result = decide(scored.values())
    confirmed = set(found.confirmed)
    while result.status == MatchStatus.MATCHED and result.customer_id not in confirmed:
        chosen = result.customer_id
        assert chosen is not None
        confirmed.add(chosen)
        fresh = directory.confirm_customer(engine, lookup, chosen, found.stored.get(chosen))
        if fresh is None:
            scored.pop(chosen, None)  # deleted in MoonClerk since the directory saw it
        else:
            scored[chosen] = score_customer(facts, fresh, items[chosen].payments)
        result = decide(scored.values())
    if not found.complete:
        note = f"only the first {lookup.max_customers} MoonClerk customers were searched"
        result = MatchResult(result.status, result.score, result.customer_id, (*result.evidence, note),
                             result.candidates)
    return result


def _apply(case: Case, result: MatchResult, stated: int | None) -> bool:
    """Store the result on the case; True when anything visible changed."""
    before = (case.match_status, case.match_score, list(case.match_evidence), list(case.match_candidates),
              case.moonclerk_customer_id)
    case.match_status = result.status
    case.match_score = result.score
    case.match_evidence = list(result.evidence)
    case.match_candidates = result.candidate_dicts()
    case.moonclerk_customer_id = result.customer_id if result.status == MatchStatus.MATCHED else stated
    after = (case.match_status, case.match_score, list(case.match_evidence), list(case.match_candidates),
             case.moonclerk_customer_id)
    return before != after


def _reroute(session: Session, case: Case, policy: Policy, now: datetime) -> None:
    """A matched customer ID can make the case a VIP's: refresh routing (never the owner) and page
    for any escalation reason that is new, as ingest does."""
    apply_routing(case, policy, now, set_owner=False)
    reminders.on_case_changed(session, case, policy, now)


def match_case(
    engine: Engine, moonclerk: MoonClerkClient | MoonClerkLookup, case_id: int, review_channel: str | None,
    now: datetime, *, policy: Policy | None = None,
) -> MatchOutcome:
    """Match one case to a MoonClerk customer and store the result (see the module docstring).

    `policy`, when given, re-applies routing after the customer ID changes (VIPs by customer ID).
    A MoonClerk failure is returned as `error` and leaves the case as it was, for the next run.
    """
    lookup = lookup_for(moonclerk)
    for _ in range(3):
        with Session(engine) as session:
            case = session.get(Case, case_id)
            if case is None:
                return MatchOutcome(case_id, MatchStatus.PENDING, skipped="no such case")
            history = _history(session, case)
        if not case.is_billing:
            return MatchOutcome(case_id, case.match_status, skipped="not a billing case")
        if history.human is not None:
            return MatchOutcome(case_id, case.match_status, skipped="a person already decided")
        facts = facts_of(case, history.stated)
        try:
            result = compute_match(lookup, facts, engine)
        except ProviderError as exc:
            log.warning("matching case %s: MoonClerk failed: %s", case_id, exc)
            return MatchOutcome(case_id, case.match_status, error=str(exc))
        with session_scope(engine) as session:
            case = session.get(Case, case_id, with_for_update=True, populate_existing=True)
            if case is None:
                return MatchOutcome(case_id, MatchStatus.PENDING, skipped="no such case")
            history = _history(session, case)
            if history.human is not None:
                return MatchOutcome(case_id, case.match_status, skipped="a person already decided")
            if facts_of(case, history.stated) != facts:
                continue  # the call changed while MoonClerk was read: match the new facts
            changed = _store(session, case, result, history.stated, review_channel, now, policy)
            return MatchOutcome(case_id, case.match_status, changed=changed)
    return MatchOutcome(case_id, MatchStatus.PENDING, skipped="the case kept changing; try again")


def _store(session: Session, case: Case, result: MatchResult, stated: int | None, review_channel: str | None,
           now: datetime, policy: Policy | None) -> bool:
    previous_customer = case.moonclerk_customer_id
    changed = _apply(case, result, stated)
    ids = [candidate.customer_id for candidate in result.candidates]
    if result.status == MatchStatus.REVIEW and review_channel:
        # Keyed by the candidates offered: at most one post per candidate set, even when a run changed
        # nothing (so a review channel configured later still gets the question).
        message = review_message(case)
        key = "match-review:" + "-".join(str(i) for i in ids)
        enqueue_message(session, case, key[:200], review_channel, message["text"], now, blocks=message["blocks"])
    if not changed:
        return False
    if policy is not None and case.moonclerk_customer_id != previous_customer:
        _reroute(session, case, policy, now)
    case.updated_at = now
    session.add(case)
    write_audit(session, case, "finance-desk", now, Event(
        f"match.{result.status}", outcome=result.status,
        record=f"moonclerk customer {result.customer_id}" if result.customer_id else None, target="moonclerk",
        reason="; ".join(result.evidence)[:1000],
        detail={"score": result.score, "candidates": ids, "stated": stated, "assigned": case.moonclerk_customer_id},
    ))
    enqueue_card(session, case, now)
    return True


def match_pending(
    engine: Engine, moonclerk: MoonClerkClient | MoonClerkLookup, review_channel: str | None, now: datetime,
    *, policy: Policy | None = None, limit: int = 20,
) -> list[MatchOutcome]:
    """Match open billing cases still `pending`, oldest first (the background job's unit of work)."""
    with Session(engine) as session:
        ids = session.exec(
            select(Case.id).where(col(Case.is_billing).is_(True), col(Case.match_status) == MatchStatus.PENDING,
                                  col(Case.state).not_in(sorted(CLOSED_STATES)))
            .order_by(col(Case.created_at), col(Case.id)).limit(limit)
        ).all()
    outcomes: list[MatchOutcome] = []
    for case_id in ids:
        assert case_id is not None
        outcome = match_case(engine, moonclerk, case_id, review_channel, now, policy=policy)
        outcomes.append(outcome)
        if outcome.error:
            break  # MoonClerk is failing: stop for now rather than hammer it
    return outcomes


IDENTITY_FIELDS: Final = ("email", "phone", "caller_phone", "customer_name", "account_id",
                          "moonclerk_customer_id", "payment_id")


def identity(case: Case) -> tuple[Any, ...]:
    """The fields matching reads; snapshot before a merge and pass to `mark_for_matching` after."""
    return tuple(getattr(case, name) for name in IDENTITY_FIELDS)


def mark_for_matching(session: Session, case: Case, before: tuple[Any, ...] | None) -> bool:
    """In ingest's transaction: queue the case for (re-)matching when what identifies the caller changed.

    `before` is None for a case created in this transaction. Nothing changes once a person has
    decided. Returns True when the case was marked pending.
    """
    if not case.is_billing or case.id is None:
        return False
    if before is not None and identity(case) == before and case.match_status != MatchStatus.PENDING:
        return False
    # Nobody can have decided on a case this transaction created: one query fewer per new call.
    if before is not None and _decided(session, case.id):
        return False
    case.match_status = MatchStatus.PENDING
    if case not in session:  # adding walks every mapped attribute; ingest's case is there
        session.add(case)
    return True


@cache
def _decided_statement() -> Any:
    # Built once: this runs in every ingest of a known billing case.
    return select(AuditEvent.id).where(col(AuditEvent.case_id) == bindparam("case"),
                                       col(AuditEvent.action).in_(sorted(HUMAN))).limit(1)


def _decided(session: Session, case_id: int) -> bool:
    return session.exec(_decided_statement(), params={"case": case_id}).first() is not None


class MatchWorker:
    """Matches pending cases in a pool of `pool` threads, so a burst of cases does not queue behind one
    slow MoonClerk read. `wake()` (called when a case is stored) starts at once; the `poll_seconds`
    poll only catches what another process stored. A case whose MoonClerk read failed is retried
    after `retry_seconds`, not in a loop."""

    def __init__(self, engine: Engine, moonclerk: MoonClerkClient | MoonClerkLookup, review_channel: str | None,
                 *, policy: Policy | None = None, poll_seconds: float = 2.0, pool: int = 8,
                 retry_seconds: float = 30.0, clock: Callable[[], datetime] = utcnow,
                 on_changed: Callable[[int], object] | None = None) -> None:
        self.engine, self.lookup, self.review_channel = engine, lookup_for(moonclerk), review_channel
        # Told of each case whose match changed (the card's Stripe line follows the matched customer).
        self.on_changed = on_changed
        self.policy, self.poll_seconds, self.clock = policy, poll_seconds, clock
        self.pool, self.retry_seconds = max(1, pool), retry_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._inflight: set[int] = set()
        self._retry_at: dict[int, float] = {}

    def start(self) -> MatchWorker:
        if self._thread is None:
            self._executor = ThreadPoolExecutor(max_workers=self.pool, thread_name_prefix="match")
            self._thread = threading.Thread(target=self._run, name="match-worker", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _pending(self) -> list[int]:
        with Session(self.engine) as session:
            ids = session.exec(
                select(Case.id).where(col(Case.is_billing).is_(True), col(Case.match_status) == MatchStatus.PENDING,
                                      col(Case.state).not_in(sorted(CLOSED_STATES)))
                .order_by(col(Case.created_at), col(Case.id)).limit(self.pool * 4)
            ).all()
        now = time.monotonic()
        with self._lock:
            self._retry_at = {k: v for k, v in self._retry_at.items() if v > now}
            return [i for i in ids if i is not None and i not in self._inflight and i not in self._retry_at]

    def _one(self, case_id: int) -> None:
        try:
            outcome = match_case(self.engine, self.lookup, case_id, self.review_channel, self.clock(),
                                 policy=self.policy)
            failed = bool(outcome.error) or outcome.status == MatchStatus.PENDING
            if outcome.changed and self.on_changed is not None:
                self.on_changed(case_id)
        except Exception:
            log.exception("matching case %s failed", case_id)
            failed = True
        with self._lock:
            self._inflight.discard(case_id)
            if failed:
                self._retry_at[case_id] = time.monotonic() + self.retry_seconds
        self._wake.set()  # a free slot: take the next pending case now

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                ids = self._pending()
            except Exception:  # a database hiccup must not kill the thread
                log.exception("matching run failed")
                ids = []
            executor = self._executor
            with self._lock:
                free = self.pool - len(self._inflight)
                chosen = ids[:max(0, free)]
                self._inflight.update(chosen)
            for case_id in chosen:
                if executor is not None:
                    executor.submit(self._one, case_id)
            self._wake.wait(self.poll_seconds)


# ---------------------------------------------------------------------------------------------------
# A person's pick in the review channel


@dataclass(frozen=True)
class PickOutcome:
    ok: bool
    message: str  # for the picker
    case: Case | None = None


def parse_pick(value: str) -> PickValue | None:
    """`"<case id>:<customer id>"` or `"<case id>:none"` (blocks.actions.PickValue); None when malformed."""
    try:
        return PickValue.parse(value)
    except ValueError:
        return None


def pick(engine: Engine, value: str, user: str, now: datetime, *, may_decide: Callable[[str], bool],
         policy: Policy | None = None) -> PickOutcome:
    """Settle a review: the picked customer becomes the case's, or "none of these" leaves it unmatched.

    `policy`, when given, re-applies routing after the customer ID changes, as matching does: picking
    a VIP's customer makes the case a VIP's (status, urgency, escalation reasons), never changing the owner.
    """
    parsed = parse_pick(value)
    if parsed is None:
        return PickOutcome(False, PickValue.stale)
    if not may_decide(user):
        return PickOutcome(False, "Only finance approvers named in the policy file can settle a customer match.")
    case_id, customer_id = parsed.case_id, parsed.customer_id
    with session_scope(engine) as session:
        case = session.get(Case, case_id, with_for_update=True)
        if case is None:
            return PickOutcome(False, "That case no longer exists.")
        offered = {c.get("customer_id"): c for c in case.match_candidates if isinstance(c, dict)}
        if customer_id is not None and customer_id not in offered:
            return PickOutcome(False, "That customer is no longer among this case's candidates; nothing was changed.")
        previous_customer = case.moonclerk_customer_id
        if customer_id is None:
            case.match_status, case.match_score = MatchStatus.UNMATCHED, 0.0
            case.match_evidence = [f"{user} said none of the candidates is the caller"]
            case.moonclerk_customer_id = None
            action, text = "match.rejected", f"{mention(user)} said none of the MoonClerk candidates is this caller."
            record = None
        else:
            chosen = offered[customer_id]
            case.match_status, case.match_score = MatchStatus.MATCHED, 1.0
            case.match_evidence = [f"chosen by {user} in review", *[str(e) for e in chosen.get("evidence") or []]]
            case.moonclerk_customer_id = customer_id
            action = "match.chosen"
            text = f"{mention(user)} matched this caller to MoonClerk customer {code(customer_id, 24)}."
            record = f"moonclerk customer {customer_id}"
        if policy is not None and case.moonclerk_customer_id != previous_customer:
            _reroute(session, case, policy, now)
        case.updated_at = now
        session.add(case)
        write_audit(session, case, user, now, Event(action, record=record, target="slack:review",
                                                    reason="picked in the review channel",
                                                    detail={"customer_id": customer_id}))
        enqueue_card(session, case, now)
        enqueue_thread(session, case, f"{action}:{now.timestamp()}", text, now)
    return PickOutcome(True, text, case)
