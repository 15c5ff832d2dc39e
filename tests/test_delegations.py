"""Delegation: `/finance delegate …` through the listener, its rules and refusals (audited), the end of
the last day in the policy's zone on a driven clock, and the direct messages to both people, each once,
sent to the Slack stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from bot import delegations
from bot.actions.authz import Directory
from bot.actions.runner import ActionContext
from bot.delegations import (
    BadDelegation,
    Delegate,
    DelegateOff,
    ListDelegations,
    acting_for,
    delegates_of,
    end_of,
    notify_delegations,
)
from bot.reminders.rows import FireSettings
from bot.reminders.scheduler import ReminderScheduler
from bot.runtime import Runtime
from bot.slack.listeners import commands
from bot.slack.listeners.context import Desk
from bot.standins import SlackStandIn
from storage.decisions import Delegation
from storage.models import AuditEvent
from tests.clock import Clock
from tests.test_listeners import RESPONSE_URL, Inline, Recorder, run

A1, A2, SENIOR, OWNER, STRANGER = "U0APPROVER1", "U0APPROVER2", "U0SENIOR", "U0OWNER", "U0STRANGER"
NEW_YORK = "America/New_York"
# 10:00 in New York on Tuesday 1 December 2026.
T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def desk(runtime: Runtime, clock: Clock) -> Desk:
    actions = ActionContext(engine=runtime.engine, directory=Directory(runtime.policy, None), moonclerk=None,
                            invoices=None, payouts=None, clock=clock, background=Inline())
    return Desk(runtime, actions)


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


def client_for(slack: SlackStandIn) -> WebClient:
    return WebClient(token="xoxb-fake", base_url=f"{slack.url}/api/")


def slash(desk: Desk, text: str, user: str = A1) -> tuple[Recorder, str]:
    """Run `/finance <text>` as `user`; the ack and the one answer's text (from the ack or respond)."""
    ack, prepared = run(desk, commands.finance, {"command": "/finance", "text": text, "user_id": user,
                                                 "response_url": RESPONSE_URL})
    answers = [call for call in ack.calls if call.get("text")] + prepared.respond.calls
    assert len(answers) == 1, (ack.calls, prepared.respond.calls)
    assert answers[0]["response_type"] == "ephemeral"
    return ack, str(answers[0]["text"])


def audit(engine: Engine, action: str) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(col(AuditEvent.action) == action)
                                 .order_by(col(AuditEvent.id))).all())


def rows(engine: Engine) -> list[Delegation]:
    with Session(engine) as session:
        return list(session.exec(select(Delegation).order_by(col(Delegation.id))).all())


def dms(slack: SlackStandIn, user: str) -> list[str]:
    return [str(message["text"]) for message in slack.all_messages(user)]


# ---------------------------------------------------------------------------------------------------
# The grammar


@pytest.mark.parametrize(("text", "expected"), [
    ("delegate <@U0APPROVER2|dana> until 2026-12-10", Delegate(A2, date(2026, 12, 10))),
    ("delegate <@U0APPROVER2> until 2026-12-10 on leave, back Monday",
     Delegate(A2, date(2026, 12, 10), "on leave, back Monday")),
    ("Delegate U0APPROVER2 UNTIL 2026-12-10", Delegate(A2, date(2026, 12, 10))),
    ("delegate off", DelegateOff()), ("delegate OFF", DelegateOff()), ("delegations", ListDelegations()),
])
def test_delegation_commands_parse(text: str, expected: object) -> None:
    assert delegations.parse(text) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("delegate", "Name the person"),
    ("delegate @dana until 2026-12-10", "@ menu"),
    ("delegate dana until 2026-12-10", "@mention"),
    ("delegate <@U0APPROVER2> 2026-12-10", "until when"),
    ("delegate <@U0APPROVER2> until tomorrow", "YYYY-MM-DD"),
    ("delegate <@U0APPROVER2> until 2026-02-30", "not a date"),
    ("delegate <@U0APPROVER2> until 2026-12-10 " + "x" * 501, "at most 500"),
    ("delegations please", "takes nothing"),
    ("delegate <@U0APPROVER2> until 2026-12-10 \x07", "control characters"),
])
def test_bad_delegation_commands_say_what_is_wrong(text: str, problem: str) -> None:
    parsed = delegations.parse(text)
    assert isinstance(parsed, BadDelegation) and problem in parsed.problem


def test_other_verbs_are_left_to_the_finance_grammar() -> None:
    assert delegations.parse("queue") is None and delegations.parse("") is None
    assert delegations.parse("delegatexyz") is None


def test_a_bad_command_is_answered_in_the_ack_with_the_usage(desk: Desk, engine: Engine) -> None:
    ack, text = slash(desk, "delegate @dana until 2026-12-10")
    assert ack.calls[0]["response_type"] == "ephemeral" and "/finance delegate @person" in text
    assert rows(engine) == []


# ---------------------------------------------------------------------------------------------------
# Start, list, off


def test_start_list_and_turn_off(desk: Desk, engine: Engine, clock: Clock) -> None:
    ack, text = slash(desk, "delegate <@U0APPROVER2|dana> until 2026-12-10 leave; card 4242 4242 4242 4242")
    assert ack.calls == [{}]  # acked empty, answered through response_url
    assert "Delegation on: <@U0APPROVER2> may approve what you may until the end of Thu 10 Dec 2026" in text
    assert NEW_YORK in text and "4242 4242" not in text and "[card ending 4242]" in text
    [row] = rows(engine)
    assert (row.delegator, row.delegate, row.starts_at, row.ended_at) == (A1, A2, T0, None)
    assert row.ends_at == datetime(2026, 12, 11, 5, 0, tzinfo=UTC)  # midnight in New York, in UTC
    assert row.reason is not None and "4242 4242" not in row.reason
    [started] = audit(engine, "delegation.started")
    assert started.case_id is None and started.actor == A1
    assert started.detail == {"delegator": A1, "delegate": A2, "ends_at": "2026-12-11T05:00:00+00:00"}

    # The list: given, received, and everyone else's.
    clock.advance(60)
    _, listed = slash(desk, "delegations", user=A1)
    assert "*You delegate*" in listed and "<@U0APPROVER1> → <@U0APPROVER2>" in listed
    _, received = slash(desk, "delegations", user=A2)
    assert "*You approve on behalf of*" in received and "*You delegate*" not in received
    _, others = slash(desk, "delegations", user=SENIOR)
    assert "*Other active delegations*" in others and "<@U0APPROVER1> → <@U0APPROVER2>" in others
    _, stranger = slash(desk, "delegations", user=STRANGER)
    assert stranger == commands.NOT_ALLOWED

    # Only the giver turns it off; the delegate is told so.
    _, not_yours = slash(desk, "delegate off", user=A2)
    assert "no active delegation" in not_yours and "only they can turn that off" in not_yours
    clock.advance(60)
    _, off = slash(desk, "delegate off")
    assert "Delegation off: <@U0APPROVER2> no longer approves" in off
    [row] = rows(engine)
    assert row.ended_at == clock.now and row.ended_by == A1
    [ended] = audit(engine, "delegation.ended")
    assert ended.actor == A1 and ended.detail["how"] == "turned_off" and ended.detail["delegate"] == A2
    with Session(engine) as session:
        assert acting_for(session, A2, clock.now) == []
    _, again = slash(desk, "delegate off")
    assert "no active delegation" in again
    _, empty = slash(desk, "delegations")
    assert "No delegations are active" in empty


def test_after_turning_off_a_new_delegation_may_start(desk: Desk, engine: Engine, clock: Clock) -> None:
    slash(desk, "delegate <@U0APPROVER2> until 2026-12-10")
    slash(desk, "delegate off")
    _, text = slash(desk, "delegate <@U0SENIOR> until 2026-12-03")
    assert text.startswith("Delegation on:")
    with Session(engine) as session:
        assert delegates_of(session, [A1, A2], clock.now) == {A1: SENIOR}


# ---------------------------------------------------------------------------------------------------
# Refusals, each answered and audited


REFUSALS: list[tuple[str, list[tuple[str, str]], str, str, str]] = [
    # (name, delegations already made [(by, text)], who asks, the command, words in the answer)
    ("stranger", [], STRANGER, "delegate <@U0APPROVER2> until 2026-12-10", "Only finance approvers"),
    ("owner_not_approver", [], OWNER, "delegate <@U0APPROVER2> until 2026-12-10", "Only finance approvers"),
    ("self", [], A1, "delegate <@U0APPROVER1> until 2026-12-10", "cannot delegate to yourself"),
    ("not_finance", [], A1, "delegate <@U0STRANGER> until 2026-12-10", "<@U0STRANGER> is not a finance person"),
    ("past", [], A1, "delegate <@U0APPROVER2> until 2026-11-30", "already ended"),
    ("too_far", [], A1, "delegate <@U0APPROVER2> until 2027-03-02", "at most 90 days (at the latest Mon 1 Mar 2027)"),
    ("second", [(A1, "delegate <@U0APPROVER2> until 2026-12-10")], A1, "delegate <@U0SENIOR> until 2026-12-10",
     "You already delegate to <@U0APPROVER2>"),
    ("chain_delegate_away", [(A2, "delegate <@U0SENIOR> until 2026-12-10")], A1,
     "delegate <@U0APPROVER2> until 2026-12-10", "do not chain"),
    ("chain_delegator_acting", [(A2, "delegate <@U0APPROVER1> until 2026-12-10")], A1,
     "delegate <@U0SENIOR> until 2026-12-10", "You are approving for <@U0APPROVER2>"),
]


@pytest.mark.parametrize(("name", "before", "user", "text", "words"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_answered_and_audited(desk: Desk, engine: Engine, name: str, before: list[tuple[str, str]],
                                            user: str, text: str, words: str) -> None:
    for by, earlier in before:
        assert slash(desk, earlier, user=by)[1].startswith("Delegation on:")
    made = len(rows(engine))
    _, answer = slash(desk, text, user=user)
    assert answer.startswith("Not delegated.") and words in answer, answer
    assert len(rows(engine)) == made  # nothing changed
    [refused] = audit(engine, "delegation.refused")
    assert refused.actor == user and refused.outcome == "refused" and refused.case_id is None
    assert refused.detail["delegate"] == delegations.parse(text).delegate  # type: ignore[union-attr]


def test_today_and_the_ninetieth_day_are_allowed(desk: Desk, engine: Engine) -> None:
    assert slash(desk, "delegate <@U0APPROVER2> until 2026-12-01")[1].startswith("Delegation on:")
    assert slash(desk, "delegate <@U0OWNER> until 2027-03-01", user=SENIOR)[1].startswith("Delegation on:")
    assert audit(engine, "delegation.refused") == []


def test_the_date_is_a_day_in_the_policy_zone(desk: Desk, clock: Clock) -> None:
    # 02:00 UTC on 2 December is still 1 December in New York: "today" there, not the past.
    clock.now = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    assert slash(desk, "delegate <@U0APPROVER2> until 2026-12-01")[1].startswith("Delegation on:")


# ---------------------------------------------------------------------------------------------------
# The end of the last day, on a driven clock


def test_a_delegation_ends_at_midnight_in_the_policy_zone(desk: Desk, engine: Engine) -> None:
    slash(desk, "delegate <@U0SENIOR> until 2026-12-10")
    with Session(engine) as session:
        assert acting_for(session, SENIOR, datetime(2026, 12, 11, 4, 59, tzinfo=UTC)) == [A1]
        assert delegates_of(session, [A1], datetime(2026, 12, 11, 4, 59, 59, tzinfo=UTC)) == {A1: SENIOR}
        assert acting_for(session, SENIOR, datetime(2026, 12, 11, 5, 0, tzinfo=UTC)) == []
        assert delegates_of(session, [A1], datetime(2026, 12, 11, 5, 0, tzinfo=UTC)) == {}
        assert acting_for(session, SENIOR, T0 - timedelta(seconds=1)) == []  # not before it started


def test_end_of_day_follows_daylight_saving() -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(NEW_YORK)
    assert end_of(date(2026, 7, 4), zone) == datetime(2026, 7, 5, 4, 0, tzinfo=UTC)  # EDT, UTC-4
    assert end_of(date(2026, 12, 10), zone) == datetime(2026, 12, 11, 5, 0, tzinfo=UTC)  # EST, UTC-5


# ---------------------------------------------------------------------------------------------------
# Direct messages, once each


def test_both_people_are_told_once_when_it_starts_and_once_when_it_expires(
    desk: Desk, engine: Engine, clock: Clock, slack: SlackStandIn,
) -> None:
    client, zone = client_for(slack), desk.runtime.policy.business_hours.zone
    slash(desk, "delegate <@U0APPROVER2> until 2026-12-10 annual leave")
    assert notify_delegations(engine, client, clock.now, zone) == 2
    assert notify_delegations(engine, client, clock.now, zone) == 0
    [to_delegator], [to_delegate] = dms(slack, A1), dms(slack, A2)
    assert "Your delegation has started: <@U0APPROVER2> may approve" in to_delegator
    assert "the end of Thu 10 Dec 2026 (America/New_York)" in to_delegator
    assert "<@U0APPROVER1> has delegated their approvals to you" in to_delegate and "annual leave" in to_delegate

    # Nothing to say while it runs; at its end (midnight in New York) both are told, once.
    clock.now = datetime(2026, 12, 11, 4, 59, tzinfo=UTC)
    assert notify_delegations(engine, client, clock.now, zone) == 0
    clock.now = datetime(2026, 12, 11, 5, 0, tzinfo=UTC)
    assert notify_delegations(engine, client, clock.now, zone) == 2
    clock.advance(30)
    assert notify_delegations(engine, client, clock.now, zone) == 0
    assert len(dms(slack, A1)) == 2 and len(dms(slack, A2)) == 2
    assert "its last day, Thu 10 Dec 2026 (America/New_York), is over" in dms(slack, A2)[1]
    [ended] = audit(engine, "delegation.ended")  # the expiry, audited once
    assert ended.actor == "system" and ended.detail["how"] == "expired"
    assert ended.detail["ends_at"] == "2026-12-11T05:00:00+00:00"
    [row] = rows(engine)
    assert row.ended_at == row.ends_at and row.ended_by is None and row.end_notified_at is not None


def test_turning_off_is_told_to_both(desk: Desk, engine: Engine, clock: Clock, slack: SlackStandIn) -> None:
    client, zone = client_for(slack), desk.runtime.policy.business_hours.zone
    slash(desk, "delegate <@U0APPROVER2> until 2026-12-10")
    clock.advance(5)
    slash(desk, "delegate off")
    # Never told it started: both messages go, start first, in one pass.
    assert notify_delegations(engine, client, clock.now, zone) == 4
    assert notify_delegations(engine, client, clock.now, zone) == 0
    started, ended = dms(slack, A2)
    assert "has delegated their approvals to you" in started
    assert "You no longer approve on behalf of <@U0APPROVER1>: <@U0APPROVER1> turned it off" in ended
    assert len(audit(engine, "delegation.ended")) == 1  # turning off audited it; no second event


def test_a_failed_message_is_sent_again_and_an_undeliverable_one_is_not(
    desk: Desk, engine: Engine, clock: Clock, slack: SlackStandIn,
) -> None:
    client, zone = client_for(slack), desk.runtime.policy.business_hours.zone
    slash(desk, "delegate <@U0APPROVER2> until 2026-12-10")
    slack.fail_next("/api/chat.postMessage", 500)
    assert notify_delegations(engine, client, clock.now, zone) == 0  # Slack failed: nothing marked told
    assert rows(engine)[0].start_notified_at is None
    assert notify_delegations(engine, client, clock.now, zone) == 2
    assert len(dms(slack, A1)) == len(dms(slack, A2)) == 1

    # The delegate cannot be messaged (e.g. deactivated): the delegator is still told, and no retry loops.
    slack.set_channel_error(A2, "channel_not_found")
    slash(desk, "delegate off")
    assert notify_delegations(engine, client, clock.now, zone) == 1
    assert notify_delegations(engine, client, clock.now, zone) == 0
    assert len(dms(slack, A1)) == 2


def test_the_scheduler_pass_sends_them(runtime: Runtime, desk: Desk, engine: Engine, clock: Clock,
                                       slack: SlackStandIn) -> None:
    slash(desk, "delegate <@U0APPROVER2> until 2026-12-10")
    settings = FireSettings(policy=runtime.policy, escalation_channel=None, finance_channel="C0FINANCE")
    scheduler = ReminderScheduler(engine, settings, clock=clock, worker_id="w1", client=client_for(slack))
    scheduler.run_once()
    scheduler.run_once()
    assert len(dms(slack, A1)) == len(dms(slack, A2)) == 1


def test_two_processes_tell_each_person_once(desk: Desk, engine: Engine, clock: Clock, slack: SlackStandIn) -> None:
    from concurrent.futures import ThreadPoolExecutor

    zone = desk.runtime.policy.business_hours.zone
    slash(desk, "delegate <@U0APPROVER2> until 2026-12-10", user=A1)
    slash(desk, "delegate <@U0OWNER> until 2026-12-10", user=SENIOR)
    with ThreadPoolExecutor(4) as pool:
        sent = list(pool.map(lambda _: notify_delegations(engine, client_for(slack), clock.now, zone), range(4)))
    assert sum(sent) == 4
    assert [len(dms(slack, user)) for user in (A1, A2, SENIOR, OWNER)] == [1, 1, 1, 1]



def test_two_starts_at_once_make_one_delegation(runtime: Runtime, engine: Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    people, zone = Directory(runtime.policy, None), runtime.policy.business_hours.zone
    # The same person twice, and a chain made from both ends at once (A2→SENIOR beside A1→A2).
    commands_at_once = [(A1, Delegate(A2, date(2026, 12, 10))), (A1, Delegate(SENIOR, date(2026, 12, 10))),
                        (A2, Delegate(SENIOR, date(2026, 12, 10)))]
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda pair: delegations.start(engine, people, pair[0], pair[1], T0, zone),
                                 commands_at_once))
    made = rows(engine)
    assert len(made) == sum(isinstance(o, delegations.Started) for o in outcomes) >= 1
    assert len({row.delegator for row in made}) == len(made)  # one each
    delegators, delegates = {row.delegator for row in made}, {row.delegate for row in made}
    assert not delegators & delegates  # no chain
