"""Delegation: while `delegator` is away, `delegate` may approve what the delegator may.

A delegation is active from its start until the end of its last day in the policy's time zone
(`ends_at`, stored in UTC) or until it is turned off, whichever comes first.

`/finance delegate @user until YYYY-MM-DD [reason]`, `/finance delegate off` and `/finance delegations`
are parsed here (`parse`) and carried out by `start`, `turn_off` and `listing`; every start, end and
refusal is audited. `notify_delegations` tells both people by direct message when one starts and
when it ends; the reminder scheduler calls it on every pass.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Final, Literal, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import ColumnElement, Engine, and_, or_, text, update
from sqlmodel import Session, col, select

from blocks.delegations import Refusal, ended_dm, started_dm
from bot.triage.redact import redact
from storage.audit import Event, write_audit
from storage.db import session_scope
from storage.decisions import Delegation

log = logging.getLogger(__name__)

MAX_DAYS_AHEAD: Final = 90
MAX_REASON: Final = 500
# The delegation commands' own text: a mention, a date and a reason of MAX_REASON, with room to spare.
MAX_TEXT: Final = 700
SYSTEM: Final = "system"
USAGE: Final = ("Usage: `/finance delegate @person until YYYY-MM-DD [reason]` · `/finance delegate off` · "
                "`/finance delegations`")

# What Slack sends for a person picked from the @-menu when the command escapes mentions:
# <@U123|name> (or <@U123>); a bare user ID is taken too (pasted from a profile).
_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,20})(?:\|[^<>]*)?>|([UW][A-Z0-9]{2,20})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# One lock key for every change to the delegations table (PostgreSQL advisory lock): the checks
# (one active delegation per person, no chains) read rows that another change may be adding.
_LOCK_KEY: Final = 0x0DE1E6A7E


# ---------------------------------------------------------------------------------------------------
# The grammar (pure)


@dataclass(frozen=True)
class Delegate:
    delegate: str
    last_day: date
    reason: str | None = None


@dataclass(frozen=True)
class DelegateOff:
    pass


@dataclass(frozen=True)
class ListDelegations:
    pass


@dataclass(frozen=True)
class BadDelegation:
    problem: str


DelegationCommand = Delegate | DelegateOff | ListDelegations | BadDelegation


def parse(raw: str | None) -> DelegationCommand | None:
    """The delegation command in `/finance …` text, or None when the text is another /finance verb."""
    words = (raw or "").split(maxsplit=1)
    verb = words[0].lower() if words else ""
    if verb not in {"delegate", "delegations"}:
        return None
    rest = words[1].strip() if len(words) > 1 else ""
    if len(raw or "") > MAX_TEXT:
        return BadDelegation(f"That is longer than {MAX_TEXT} characters; a reason is at most {MAX_REASON}.")
    if _CONTROL.search(raw or ""):
        return BadDelegation("That has control characters in it.")
    if verb == "delegations":
        return ListDelegations() if not rest else BadDelegation("`delegations` takes nothing after it.")
    if rest.lower() == "off":
        return DelegateOff()
    if not rest:
        return BadDelegation("Name the person who approves for you, and until when.")
    who, _, after = rest.partition(" ")
    found = _MENTION.fullmatch(who)
    if found is None:
        if who.startswith("@"):
            return BadDelegation("Pick the person from Slack's @ menu so the command carries who they are; "
                                 "a typed name is not enough.")
        return BadDelegation("Name the person with an @mention, e.g. `/finance delegate @dana until 2026-12-24`.")
    delegate = found.group(1) or found.group(2)
    until, _, after = after.strip().partition(" ")
    if until.lower() != "until":
        return BadDelegation("Say until when: `until YYYY-MM-DD` after the person.")
    day_text, _, reason = after.strip().partition(" ")
    if not _DATE.fullmatch(day_text):
        return BadDelegation("The last day is a date written YYYY-MM-DD, e.g. 2026-12-24.")
    try:
        last_day = date.fromisoformat(day_text)
    except ValueError:
        return BadDelegation(f"{day_text} is not a date in the calendar.")
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        return BadDelegation(f"A reason is at most {MAX_REASON} characters.")
    return Delegate(delegate, last_day, reason or None)


# ---------------------------------------------------------------------------------------------------
# Outcomes


class People(Protocol):
    """Who is who in the policy (bot.actions.authz.Directory answers these)."""

    def is_finance(self, user: str) -> bool: ...

    def is_approver(self, user: str) -> bool: ...


@dataclass(frozen=True)
class Started:
    delegation: Delegation


@dataclass(frozen=True)
class Refused:
    why: Refusal
    delegator: str
    delegate: str | None = None
    other: Delegation | None = None  # the active delegation in the way, when one is
    latest: date | None = None  # the last day that may be chosen (TOO_FAR)


@dataclass(frozen=True)
class Ended:
    delegation: Delegation


@dataclass(frozen=True)
class NothingToEnd:
    received: list[Delegation] = field(default_factory=list)  # what they act for, which only its giver ends


@dataclass(frozen=True)
class Listing:
    user: str
    given: list[Delegation]
    received: list[Delegation]
    others: list[Delegation]


# ---------------------------------------------------------------------------------------------------
# Queries


def _active(now: datetime) -> ColumnElement[bool]:
    return and_(col(Delegation.starts_at) <= now, col(Delegation.ends_at) > now, col(Delegation.ended_at).is_(None))


def acting_for(session: Session, delegate: str, now: datetime) -> list[str]:
    """The people whose approvals `delegate` may give at `now`, oldest delegation first."""
    rows = session.exec(select(Delegation.delegator).where(col(Delegation.delegate) == delegate, _active(now))
                        .order_by(col(Delegation.starts_at))).all()
    return list(dict.fromkeys(rows))


def delegates_of(session: Session, delegators: list[str], now: datetime) -> dict[str, str]:
    """Each delegator's active delegate, for those of `delegators` who are away at `now`."""
    if not delegators:
        return {}
    rows = session.exec(select(Delegation.delegator, Delegation.delegate)
                        .where(col(Delegation.delegator).in_(delegators), _active(now))
                        .order_by(col(Delegation.starts_at))).all()
    return {delegator: delegate for delegator, delegate in rows}


def active(session: Session, now: datetime) -> list[Delegation]:
    """Every delegation active at `now`, soonest ending first."""
    query = select(Delegation).where(_active(now)).order_by(col(Delegation.ends_at), col(Delegation.id))
    return list(session.exec(query).all())


def end_of(last_day: date, zone: tzinfo) -> datetime:
    """The end of `last_day` in `zone` (midnight starting the next day there), in UTC."""
    return datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


# ---------------------------------------------------------------------------------------------------
# Commands


def _serialise(session: Session) -> None:
    # SQLite already takes the write lock at BEGIN (storage.db); on PostgreSQL two starts at once
    # (the same person twice, or A→B beside B→C) would each pass the checks without seeing the other.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def _detail(row: Delegation, **extra: Any) -> dict[str, Any]:
    return {"delegator": row.delegator, "delegate": row.delegate, "ends_at": row.ends_at.isoformat(), **extra}


def _refusal(session: Session, people: People, delegator: str, command: Delegate, now: datetime,
             zone: tzinfo) -> Refused | None:
    delegate = command.delegate
    if not people.is_approver(delegator):
        return Refused(Refusal.NOT_APPROVER, delegator, delegate)
    if delegate == delegator:
        return Refused(Refusal.SELF, delegator, delegate)
    if not people.is_finance(delegate):
        return Refused(Refusal.NOT_FINANCE, delegator, delegate)
    today = now.astimezone(zone).date()
    if command.last_day < today:
        return Refused(Refusal.PAST, delegator, delegate)
    latest = today + timedelta(days=MAX_DAYS_AHEAD)
    if command.last_day > latest:
        return Refused(Refusal.TOO_FAR, delegator, delegate, latest=latest)
    rows = active(session, now)
    for row in rows:
        if row.delegator == delegator:
            return Refused(Refusal.ALREADY, delegator, delegate, other=row)
    for row in rows:
        if row.delegator == delegate:
            return Refused(Refusal.DELEGATE_AWAY, delegator, delegate, other=row)
        if row.delegate == delegator:
            return Refused(Refusal.ACTING, delegator, delegate, other=row)
    return None


def start(engine: Engine, people: People, delegator: str, command: Delegate, now: datetime,
          zone: tzinfo) -> Started | Refused:
    """Start `delegator`'s delegation now, to the end of `command.last_day` in `zone`; or refuse, audited."""
    with session_scope(engine) as session:
        _serialise(session)
        refused = _refusal(session, people, delegator, command, now, zone)
        if refused is not None:
            write_audit(session, None, delegator, now, Event(
                "delegation.refused", outcome="refused", reason=refused.why.value,
                detail={"delegator": delegator, "delegate": command.delegate,
                        "last_day": command.last_day.isoformat()}))
            return refused
        # Typed by a person: redacted like call text before it is stored or shown anywhere.
        reason = redact(command.reason).text.strip()[:MAX_REASON] if command.reason else None
        row = Delegation(delegator=delegator, delegate=command.delegate, reason=reason or None, starts_at=now,
                         ends_at=end_of(command.last_day, zone), created_at=now)
        session.add(row)
        session.flush()
        write_audit(session, None, delegator, now, Event("delegation.started", record=str(row.id),
                                                         detail=_detail(row)))
        return Started(row)


def turn_off(engine: Engine, user: str, now: datetime) -> Ended | NothingToEnd:
    """End `user`'s active delegation now."""
    with session_scope(engine) as session:
        _serialise(session)
        rows = active(session, now)
        mine = [row for row in rows if row.delegator == user]
        if not mine:
            return NothingToEnd([row for row in rows if row.delegate == user])
        row = mine[0]
        row.ended_at, row.ended_by = now, user
        session.add(row)
        write_audit(session, None, user, now, Event("delegation.ended", record=str(row.id),
                                                    detail=_detail(row, how="turned_off")))
        return Ended(row)


def listing(engine: Engine, user: str, now: datetime) -> Listing:
    with Session(engine) as session:
        rows = active(session, now)
    given = [row for row in rows if row.delegator == user]
    received = [row for row in rows if row.delegate == user]
    others = [row for row in rows if user not in (row.delegator, row.delegate)]
    return Listing(user, given, received, others)


# ---------------------------------------------------------------------------------------------------
# Direct messages when a delegation starts and ends

# Slack errors no retry fixes: the person cannot be messaged. Anything else (rate limits, Slack down,
# the network, a revoked token about to be replaced) is retried on a later pass.
_UNDELIVERABLE: Final = frozenset({
    "channel_not_found", "user_not_found", "user_disabled", "account_inactive", "cannot_dm_bot",
    "is_archived", "not_in_channel", "messages_tab_disabled", "restricted_action", "user_not_visible",
})

Phase = Literal["start", "end"]


def _pending(now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    started = and_(col(Delegation.start_notified_at).is_(None), col(Delegation.starts_at) <= now)
    # An end is told only after its start was: the two messages arrive in order.
    ended = and_(col(Delegation.end_notified_at).is_(None), col(Delegation.start_notified_at).is_not(None),
                 or_(col(Delegation.ended_at).is_not(None), col(Delegation.ends_at) <= now))
    return started, ended


def _claim(engine: Engine, row_id: int, phase: Phase, now: datetime) -> Delegation | None:
    """Mark the message as sent before sending it, so two processes never both send it; the row, or None
    when another process has it. Noticing an expiry ends the delegation and audits it, once."""
    column = Delegation.start_notified_at if phase == "start" else Delegation.end_notified_at
    with session_scope(engine) as session:
        claimed = session.execute(update(Delegation).where(col(Delegation.id) == row_id, col(column).is_(None))
                                  .values({column: now}))
        if getattr(claimed, "rowcount", 0) != 1:
            return None
        row = session.get(Delegation, row_id, populate_existing=True)
        assert row is not None
        if phase == "end" and row.ended_at is None:
            # Expired at the end of its last day: it ended then, by nobody's hand (ended_by stays empty).
            row.ended_at = row.ends_at
            session.add(row)
            write_audit(session, None, SYSTEM, now, Event("delegation.ended", record=str(row.id),
                                                          detail=_detail(row, how="expired")))
        return row


def _release(engine: Engine, row_id: int, phase: Phase) -> None:
    column = Delegation.start_notified_at if phase == "start" else Delegation.end_notified_at
    with session_scope(engine) as session:
        session.execute(update(Delegation).where(col(Delegation.id) == row_id).values({column: None}))


def _send(engine: Engine, client: WebClient, row_id: int, phase: Phase, now: datetime, zone: tzinfo) -> int:
    row = _claim(engine, row_id, phase, now)
    if row is None:
        return 0
    messages = started_dm(row, zone) if phase == "start" else ended_dm(row, zone)
    sent = 0
    for user, message in messages:
        try:
            client.chat_postMessage(channel=user, **message)
            sent += 1
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            if error in _UNDELIVERABLE:
                log.warning("delegation %s: could not message %s (%s); not retried", row_id, user, error)
                continue
            log.warning("delegation %s: %s message failed (%s); the next pass sends it again", row_id, phase, error)
            _release(engine, row_id, phase)
            return sent
        except Exception as exc:  # the network, a timeout: retried on the next pass
            log.warning("delegation %s: %s message failed (%s); the next pass sends it again", row_id, phase,
                        exc.__class__.__name__)
            _release(engine, row_id, phase)
            return sent
    return sent


def notify_delegations(engine: Engine, client: WebClient, now: datetime, zone: tzinfo = UTC) -> int:
    """Message both people of every delegation that started or ended and has not been told; returns how
    many messages were sent. Each start and each end is told once (a failed send is retried)."""
    started, ended = _pending(now)
    sent = 0
    # Starts first, then ends read afresh: a delegation turned off before anyone was told is announced,
    # then ended, in one pass.
    phases: tuple[tuple[Phase, ColumnElement[bool]], ...] = (("start", started), ("end", ended))
    for phase, pending in phases:
        with Session(engine) as session:
            ids = list(session.exec(select(Delegation.id).where(pending).order_by(col(Delegation.id))).all())
        for row_id in ids:
            if row_id is not None:
                sent += _send(engine, client, row_id, phase, now, zone)
    return sent
