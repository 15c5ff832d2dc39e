"""Decisions on a case: approve, deny, resolve, and the callback a caller is owed. Plain functions.

Each decision is one transaction with the case row locked (BEGIN IMMEDIATE on SQLite), so two
approvers clicking at once are counted one after the other: never one decision twice, never one
approval lost. Every refusal is audited and told to the person who clicked, with the case's state.

Who may approve: an approver named in the policy, or the delegate of one (acting at that person's
level, "on behalf of" them). Above the currency's approval threshold only a senior approver's
approval completes a case; above its dual-approval threshold two different people must approve, and
then at least one of them is a senior when the amount is also above the approval threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from blocks.format import inline, mention, money
from bot import lifecycle
from bot.actions.authz import Directory
from bot.delegations import acting_for
from bot.lifecycle import Reply
from bot.outcome import Outcome
from bot.reminders.schedule import APPROVAL_KINDS
from bot.reminders.store import cancel_case
from bot.slack.outbox import enqueue_card, enqueue_thread
from bot.triage.redact import redact
from storage.audit import Event, write_audit
from storage.db import reader, session_scope
from storage.decisions import Approval
from storage.models import Case
from storage.states import CaseState, is_closed

FROM_CARD: Final = "slack:card"
DENY_REASON_MIN, DENY_REASON_MAX = 10, 1000
NOTE_MAX = 1000
REFERENCE_MAX = 200


class Resolution(StrEnum):
    """How a case was resolved: the resolve modal's choices, stored in `Case.resolution`."""

    REFUNDED = "refunded"
    CREDITED = "credited"
    INVOICE_SENT = "invoice_sent"
    DOCUMENT_SENT = "document_sent"
    PAYMENT_UPDATED = "payment_updated"
    QUESTION_ANSWERED = "question_answered"
    PAYMENT_PLAN_AGREED = "payment_plan_agreed"
    NO_ACTION_NEEDED = "no_action_needed"
    OTHER = "other"


RESOLUTION_LABELS: Final[dict[Resolution, str]] = {
    Resolution.REFUNDED: "Refunded",
    Resolution.CREDITED: "Credited",
    Resolution.INVOICE_SENT: "Invoice sent",
    Resolution.DOCUMENT_SENT: "Document sent",
    Resolution.PAYMENT_UPDATED: "Payment updated",
    Resolution.QUESTION_ANSWERED: "Question answered",
    Resolution.PAYMENT_PLAN_AGREED: "Payment plan agreed",
    Resolution.NO_ACTION_NEEDED: "No action needed",
    Resolution.OTHER: "Other",
}
# Outcomes that say money moved back to the customer: never on a case still waiting for its approval.
MONEY_RESOLUTIONS: Final = frozenset({Resolution.REFUNDED, Resolution.CREDITED})


@dataclass(frozen=True)
class Authority:
    """Whose approval a click gives: `principal`'s (the clicker's own, or a delegator's), at their level."""

    principal: str
    senior: bool
    delegate: str | None = None  # who clicked, when acting on behalf of `principal`

    def describe(self) -> str:
        if self.delegate is None:
            return mention(self.principal) or self.principal
        return f"{mention(self.delegate)} on behalf of {mention(self.principal)}"


def authorities(session: Session, directory: Directory, user: str, now: datetime) -> list[Authority]:
    """Every authority `user` holds now, seniors first: their own, then each active delegator's."""
    found = [Authority(user, directory.is_senior(user))] if directory.is_approver(user) else []
    for delegator in acting_for(session, user, now):
        if delegator != user and directory.is_approver(delegator):
            found.append(Authority(delegator, directory.is_senior(delegator), delegate=user))
    return sorted(found, key=lambda authority: not authority.senior)


def may_decide(session: Session, directory: Directory, user: str, now: datetime) -> bool:
    return bool(authorities(session, directory, user, now))


def awaiting_approval(case: Case) -> bool:
    """The case needs approval and has not got it yet (while it is open)."""
    return case.approval_required and case.approved_at is None and not is_closed(case.state)


def requirement(directory: Directory, case: Case) -> tuple[int, str | None]:
    """How many different approvers this case needs, and why one of them must be a senior (or None).

    Read from the policy now, not from routing, so a policy change applies to cases already waiting.
    """
    policy = directory.policy
    amount, currency = case.approval_subject
    return policy.approvals_needed(amount, currency), policy.senior_reason(amount, currency)


def given(session: Session, case: Case) -> list[Approval]:
    return list(session.exec(select(Approval).where(
        col(Approval.case_id) == case.id, col(Approval.round) == case.approval_round).order_by(col(Approval.id))).all())


def still_needed(directory: Directory, case: Case) -> tuple[int, bool]:
    """Approvals still missing on this case, and whether one of them must come from a senior."""
    needed, senior_reason = requirement(directory, case)
    approvals = case.approvals_given or []
    missing = max(0, needed - len(approvals))
    return missing, senior_reason is not None and not any(item.get("senior") for item in approvals)


def _state_line(case: Case) -> str:
    state = case.state or CaseState.NEW
    if state == CaseState.DENIED and case.decision_reason:
        return f"it was denied ({inline(case.decision_reason, 200)})"
    if is_closed(state):
        return f"it is already {state}"
    if case.approved_at is not None:
        return "it is already approved"
    return f"it is {state}"


def _refused(session: Session, case: Case, user: str, now: datetime, decision: str, reason: str) -> Outcome:
    write_audit(session, case, user, now, Event("decision.refused", outcome="refused", reason=reason,
                                                target=FROM_CARD, detail={"decision": decision, "state": case.state}))
    return Outcome(False, f"Not done: {reason}. Nothing was changed.")


def _locked(session: Session, case_id: int) -> Case | None:
    return session.get(Case, case_id, with_for_update=True, populate_existing=True)


_GONE = Outcome(False, "That case no longer exists.")


# -- approve -------------------------------------------------------------------------------------

def approve(engine: Engine, directory: Directory, case_id: int, user: str, now: datetime) -> Outcome:
    with session_scope(engine) as session:
        case = _locked(session, case_id)
        if case is None:
            return _GONE
        if is_closed(case.state) or case.approved_at is not None:
            return _refused(session, case, user, now, "approve", f"{_state_line(case)}")
        if not case.approval_required:
            return _refused(session, case, user, now, "approve", "this case does not need approval")
        held = authorities(session, directory, user, now)
        if not held:
            return _refused(session, case, user, now, "approve",
                            "only finance approvers named in the policy (or their delegates) can approve")
        approvals = given(session, case)
        needed, senior_reason = requirement(directory, case)
        fresh, usable = _usable(held, [(a.approver, a.principal, a.senior) for a in approvals], needed, senior_reason)
        if not fresh:
            # A double click, or the same person again: their approval already counts, once.
            return Outcome(False, f"Your approval is already counted ({len(approvals)} of {needed}); "
                                  "it needs a different approver.")
        if not usable:
            return _refused(session, case, user, now, "approve", f"{senior_reason}; a senior approver must approve it")
        authority = usable[0]
        # What the card shows follows the policy as it is now, like the rules above.
        case.approvals_needed, case.senior_needed = needed, senior_reason is not None
        return _record_approval(session, case, user, authority, approvals, needed, now)


def _usable(held: list[Authority], given_by: list[tuple[str, str, bool]], needed: int,
            senior_reason: str | None) -> tuple[list[Authority], list[Authority]]:
    """Of the authorities a person holds, those not yet used on this round (fresh), and of those the
    ones an approval may use now (usable). `given_by` is (approver, principal, senior) per approval.

    A delegate and the person they act for are one approver: neither may approve twice. While a senior
    is still needed, a non-senior approval is taken only if a later slot is left for the senior.
    """
    taken = {approver for approver, _, _ in given_by} | {principal for _, principal, _ in given_by}
    fresh = [a for a in held if a.principal not in taken and (a.delegate or a.principal) not in taken]
    has_senior = any(senior for _, _, senior in given_by)
    slots_after = needed - len(given_by) - 1
    usable = [a for a in fresh if a.senior or senior_reason is None or has_senior or slots_after > 0]
    return fresh, usable


def may_approve_now(directory: Directory, held: list[Authority], case: Case) -> bool:
    """Would an approve click by the holder of `held` count on this case now? (The Home tab asks.)"""
    if not held or not awaiting_approval(case):
        return False
    given_by = [(str(item.get("by")), str(item.get("for") or item.get("by")), bool(item.get("senior")))
                for item in case.approvals_given or []]
    needed, senior_reason = requirement(directory, case)
    if len(given_by) >= needed:
        return False
    return bool(_usable(held, given_by, needed, senior_reason)[1])


def _record_approval(session: Session, case: Case, user: str, authority: Authority, approvals: list[Approval],
                     needed: int, now: datetime) -> Outcome:
    assert case.id is not None
    subject, currency = case.approval_subject
    session.add(Approval(case_id=case.id, round=case.approval_round, approver=user, principal=authority.principal,
                         senior=authority.senior, amount=subject, currency=currency, at=now))
    entry = {"by": user, "for": authority.principal if authority.delegate else None, "senior": authority.senior}
    case.approvals_given = [*(case.approvals_given or []), entry]  # a new list: JSON columns track assignment
    count = len(approvals) + 1
    amount = money(subject, currency) if subject is not None and currency else None
    detail: dict[str, Any] = {
        "amount": str(subject) if subject is not None else None, "currency": currency,
        "approvals": count, "needed": needed, "senior": authority.senior, "round": case.approval_round,
        "on_behalf_of": authority.principal if authority.delegate else None, "final": count >= needed,
    }
    who = authority.describe()
    for_amount = f" for {amount}" if amount else ""
    if count < needed:
        case.updated_at = now
        session.add(case)
        write_audit(session, case, user, now, Event("case.approved", outcome="partial", target=FROM_CARD,
                                                    record=amount, detail=detail))
        enqueue_card(session, case, now)
        text = (f"👍 {who} approved this case{for_amount} ({count} of {needed} approvals); "
                f"{needed - count} more from a different approver needed.")
        enqueue_thread(session, case, f"case.approved:{case.approval_round}:{count}", text, now)
        return Outcome(True, text)
    case.approved_amount, case.approved_currency, case.approved_at = subject, currency, now
    text = f"✅ Approved by {who}{for_amount}" + (f" ({count} of {needed} approvals)." if needed > 1 else ".")
    cancel_case(session, case, now, "approved", kinds=APPROVAL_KINDS, update_card=False)
    lifecycle.transition(session, case, CaseState.APPROVED, by=user, now=now,
                         event=Event("case.approved", target=FROM_CARD, record=amount, detail=detail),
                         reply=Reply(f"case.approved:{case.approval_round}:{count}", text))
    return Outcome(True, text)


# -- deny ----------------------------------------------------------------------------------------

def clean_text(text: str) -> str:
    """What a person typed, as it may be stored and shown: redacted like call text, trimmed."""
    return redact(text.strip()).text.strip()


def deny(engine: Engine, directory: Directory, case_id: int, user: str, reason: str, now: datetime) -> Outcome:
    reason = clean_text(reason)
    with session_scope(engine) as session:
        case = _locked(session, case_id)
        if case is None:
            return _GONE
        if is_closed(case.state) or case.approved_at is not None:
            return _refused(session, case, user, now, "deny", _state_line(case))
        held = authorities(session, directory, user, now)
        if not held:
            return _refused(session, case, user, now, "deny",
                            "only finance approvers named in the policy (or their delegates) can deny")
        if not DENY_REASON_MIN <= len(reason) <= DENY_REASON_MAX:
            return Outcome(False, f"A reason of {DENY_REASON_MIN} to {DENY_REASON_MAX} characters is needed.")
        authority = held[0]
        case.decision_reason = reason
        text = f"⛔ Denied by {authority.describe()}: {inline(reason, DENY_REASON_MAX)}"
        lifecycle.transition(
            session, case, CaseState.DENIED, by=user, now=now,
            event=Event("case.denied", reason=reason, target=FROM_CARD,
                        detail={"on_behalf_of": authority.principal if authority.delegate else None}),
            reply=Reply(f"case.denied:{now.timestamp()}", text))
    return Outcome(True, text)


# -- resolve -------------------------------------------------------------------------------------

def resolve(engine: Engine, directory: Directory, case_id: int, user: str, outcome: Resolution, note: str | None,
            reference: str | None, now: datetime) -> Outcome:
    note = clean_text(note)[:NOTE_MAX] if note else None
    reference = clean_text(reference)[:REFERENCE_MAX] if reference else None
    with session_scope(engine) as session:
        case = _locked(session, case_id)
        if case is None:
            return _GONE
        if is_closed(case.state):
            return _refused(session, case, user, now, "resolve", _state_line(case))
        if not directory.is_finance(user):
            return _refused(session, case, user, now, "resolve",
                            "only finance people (approvers or the default finance owner) can resolve cases")
        if outcome in MONEY_RESOLUTIONS and awaiting_approval(case):
            return _refused(session, case, user, now, "resolve", approval_first(outcome))
        if outcome is Resolution.OTHER and not note:
            return Outcome(False, "Say what was done: a note is needed when the outcome is Other.")
        case.resolution, case.resolution_note, case.resolution_reference = outcome.value, note, reference
        text = f"🏁 Resolved by {mention(user)}: {RESOLUTION_LABELS[outcome]}"
        if reference:
            text += f" · reference {inline(reference, REFERENCE_MAX)}"
        if note:
            text += f"\n{inline(note, NOTE_MAX)}"
        lifecycle.transition(
            session, case, CaseState.DONE, by=user, now=now,
            event=Event("case.resolved", reason=note, record=reference, target=FROM_CARD,
                        detail={"outcome": outcome.value}),
            reply=Reply(f"case.resolved:{now.timestamp()}", text), close_reason="resolved")
    return Outcome(True, text)


# -- before a modal opens -------------------------------------------------------------------------

def approval_first(outcome: Resolution) -> str:
    return (f"This case needs approval before it can be resolved as {RESOLUTION_LABELS[outcome].lower()}: "
            "get approval first")


def cannot_open(engine: Engine, directory: Directory, case: Case, user: str, decision: str,
                now: datetime) -> str | None:
    """Why `user` may not even start this decision (audited), or None; the submit checks again."""
    with session_scope(engine) as session:
        reason: str | None = None
        if is_closed(case.state) or (decision == "deny" and case.approved_at is not None):
            reason = _state_line(case)
        elif decision == "deny" and not authorities(session, directory, user, now):
            reason = "only finance approvers named in the policy (or their delegates) can deny"
        elif decision == "resolve" and not directory.is_finance(user):
            reason = "only finance people (approvers or the default finance owner) can resolve cases"
        return _refused(session, case, user, now, decision, reason).message if reason else None


# -- the modals' forms ------------------------------------------------------------------------------

Values = dict[str, str | list[str] | None]
# A reference is an ID someone will search for elsewhere: letters, digits and a few separators only.
_REFERENCE_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _-.:#/+")


def parse_deny(values: Values) -> str | dict[str, str]:
    """The deny modal's reason, or its error keyed by block ID (shown in place)."""
    raw = values.get("reason")
    reason = raw.strip() if isinstance(raw, str) else ""
    if not DENY_REASON_MIN <= len(reason) <= DENY_REASON_MAX:
        return {"reason": f"Give a reason of {DENY_REASON_MIN} to {DENY_REASON_MAX} characters"}
    return reason


def parse_resolve(values: Values) -> tuple[Resolution, str | None, str | None] | dict[str, str]:
    """The resolve modal's outcome, note and reference, or the errors keyed by block ID."""
    errors: dict[str, str] = {}
    raw_outcome = values.get("outcome")
    outcome = Resolution(raw_outcome) if raw_outcome in set(Resolution) else None
    if outcome is None:
        errors["outcome"] = "Choose an outcome from the list"
    raw_note = values.get("note")
    note = raw_note.strip() if isinstance(raw_note, str) and raw_note.strip() else None
    if note is not None and len(note) > NOTE_MAX:
        errors["note"] = f"At most {NOTE_MAX} characters"
    elif outcome is Resolution.OTHER and note is None:
        errors["note"] = "Say what was done: a note is needed when the outcome is Other"
    raw_reference = values.get("reference")
    reference = raw_reference.strip() if isinstance(raw_reference, str) and raw_reference.strip() else None
    if reference is not None and (len(reference) > REFERENCE_MAX or not set(reference) <= _REFERENCE_CHARS):
        errors["reference"] = (f"At most {REFERENCE_MAX} characters: letters, digits, spaces and _ - . : # / + "
                               "(e.g. ch_3Nq…, 48213, ZD-1042)")
    if errors:
        return errors
    assert outcome is not None
    return outcome, note, reference


# -- the callback a caller is owed -----------------------------------------------------------------

def callback_done(engine: Engine, directory: Directory, case_id: int, user: str, now: datetime) -> Outcome:
    with session_scope(engine) as session:
        case = _locked(session, case_id)
        if case is None:
            return _GONE
        if is_closed(case.state):
            return _refused(session, case, user, now, "callback_done", _state_line(case))
        if not case.callback_expected or case.callback_done_at is not None:
            return Outcome(False, "No call back is owed on this case.")
        case.callback_done_by, case.callback_done_at, case.updated_at = user, now, now
        session.add(case)
        write_audit(session, case, user, now, Event("case.callback_done", target=FROM_CARD,
                                                    reason="the caller was called back"))
        enqueue_card(session, case, now)
        text = f"📞 {mention(user)} called the customer back."
        enqueue_thread(session, case, f"case.callback_done:{now.timestamp()}", text, now)
    return Outcome(True, text)


# -- clicks on a card that changed, and clicks by people who may not -----------------------------

def stale_card(engine: Engine, case_id: int, version: int, message_ts: str | None) -> Case | None:
    """The case, when a click on its card came from a render older than the case; else None.

    Only the card itself is versioned: a button in its thread (a payout confirmation, a Resolve offer)
    was drawn once and is checked by what it does.
    """
    with Session(reader(engine)) as session:  # before the ack: never behind a writer's lock
        case = session.get(Case, case_id)
    if case is None or message_ts is None or message_ts != case.slack_ts or version >= case.card_version:
        return None
    return case


def stale_answer(engine: Engine, case: Case, version: int, user: str, element: str, now: datetime) -> str:
    """Audit a click on an old card and say what the case is now."""
    with session_scope(engine) as session:
        write_audit(session, case, user, now, Event("card.stale_click", outcome="refused", target=FROM_CARD,
                                                    detail={"element": element, "clicked_version": version,
                                                            "current_version": case.card_version}))
    return f"This card changed since it was shown to you; nothing was done. The case is now {_current(case)}."


def refuse_interaction(engine: Engine, case_id: int | None, user: str, element: str, reason: str,
                       now: datetime) -> str:
    """Audit a refused click (on the case, when there is one) and say why."""
    with session_scope(engine) as session:
        case = session.get(Case, case_id) if case_id is not None else None
        write_audit(session, case, user, now, Event("action.refused", outcome="refused", reason=reason,
                                                    target=FROM_CARD, detail={"action": element}))
    return f"Not done: {reason}. Nothing was changed."


def _current(case: Case) -> str:
    parts = [str(case.state or CaseState.NEW).replace("_", " ")]
    if case.approved_at is not None:
        parts.append("approved")
    elif awaiting_approval(case):
        parts.append(f"waiting for approval ({len(case.approvals_given or [])} of {max(1, case.approvals_needed)})")
    if case.owner:
        parts.append(f"owned by {mention(case.owner)}")
    return ", ".join(parts)
