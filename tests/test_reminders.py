"""Follow-up reminders: business-hours maths, durable scheduling, exactly-once firing (restarts, several
processes on one PostgreSQL), and the done / snooze / reassign controls over real Slack HTTP.

Time is driven by an injected clock (or explicit datetimes); no test waits for a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, col, select

import storage.reminders  # noqa: F401  (registers the reminders table on SQLModel.metadata)
from blocks.actions import ControlId, ReminderValue
from blocks.reminders import escalation_message, reminder_message, snooze_modal
from bot import workflow
from bot.ingest import ingest
from bot.policy import Policy
from bot.reminders import on_case_changed, on_case_closed, store
from bot.reminders.rows import FireSettings
from bot.reminders.schedule import (
    Hours,
    SnoozeChoice,
    implied_deadline,
    in_business_hours,
    into_business_hours,
    plan,
    snooze_target,
    tomorrow_at,
)
from bot.reminders.scheduler import ReminderScheduler
from bot.runtime import Runtime
from bot.standins import SlackStandIn
from storage.db import session_scope
from storage.models import AuditEvent, Case, OutboxMessage
from storage.reminders import Reminder
from tests.blockkit import assert_valid_message, assert_valid_view
from tests.clock import Clock
from tests.conftest import TEST_POLICY
from tests.signing import dumps, slack_headers
from tests.slackapp import CHANNEL, SIGNING_SECRET, SlackApp
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[1]
NY = ZoneInfo("America/New_York")
ESCALATION_CHANNEL = "C0ESCALATE"
REMINDER_DONE, REMINDER_SNOOZE, REMINDER_REASSIGN = (ControlId.REMINDER_DONE, ControlId.REMINDER_SNOOZE,
                                                   ControlId.REMINDER_REASSIGN)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_policy(**overrides: Any) -> Policy:
    data: dict[str, Any] = {
        "default_finance_owner": "U0OWNER", "oncall_user_group": "S0ONCALL",
        "reminders": {"lead_time_minutes": 240, "overdue_window_minutes": 120},
        "business_hours": {"timezone": "America/New_York", "start": "09:00", "end": "17:00",
                           "days": ["mon", "tue", "wed", "thu", "fri"]},
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return Policy.model_validate(data)


def due_times(deadline: datetime, policy: Policy | None = None) -> dict[str, datetime]:
    return {item.kind.value: item.due_at for item in plan(deadline, policy or make_policy())}


# ---------------------------------------------------------------------------------------------------
# Pure time maths


def test_lead_reminder_inside_business_hours_stays_put() -> None:
    # Tue 24 Nov, deadline 15:00 New York (20:00 UTC): 4 h before is 11:00, inside hours.
    assert due_times(utc(2026, 11, 24, 20)) == {
        "lead": utc(2026, 11, 24, 16), "due": utc(2026, 11, 24, 20), "overdue": utc(2026, 11, 24, 22)}


@pytest.mark.parametrize(("deadline", "lead_minutes", "lead"), [
    (utc(2026, 11, 24, 15), 240, utc(2026, 11, 24, 14)),         # 06:00 → 09:00 the same day
    (utc(2026, 11, 25, 14, 30), 840, utc(2026, 11, 25, 14)),     # Tue 19:30 (after close) → Wed 09:00
    (utc(2026, 11, 23, 15), 1440, utc(2026, 11, 23, 14)),        # Sunday → Monday 09:00
    (utc(2026, 3, 9, 14), 240, utc(2026, 3, 9, 13)),             # after spring-forward: 09:00 EDT is 13:00 UTC
    (utc(2026, 3, 9, 14), 2880, utc(2026, 3, 9, 13)),            # Saturday before the change → Monday 09:00 EDT
    (utc(2026, 11, 2, 16), 1440, utc(2026, 11, 2, 14)),          # Sunday after fall-back → Monday 09:00 EST
])
def test_lead_reminder_moves_forward_into_business_hours(deadline: datetime, lead_minutes: int,
                                                          lead: datetime) -> None:
    policy = make_policy(reminders={"lead_time_minutes": lead_minutes})
    assert due_times(deadline, policy)["lead"] == lead


def test_lead_reminder_is_left_out_when_business_hours_open_after_the_deadline() -> None:
    # Monday 08:30 New York: 4 h before is 04:30; hours open at 09:00, after the deadline.
    assert set(due_times(utc(2026, 11, 23, 13, 30))) == {"due", "overdue"}
    assert set(due_times(utc(2026, 11, 24, 20), make_policy(reminders={"lead_time_minutes": 0}))) == {
        "due", "overdue"}


def test_business_windows_are_wall_clock_times_across_dst() -> None:
    hours = Hours.from_policy(make_policy().business_hours)
    assert hours.window(datetime(2026, 10, 30).date()) == (utc(2026, 10, 30, 13), utc(2026, 10, 30, 21))  # EDT
    assert hours.window(datetime(2026, 11, 2).date()) == (utc(2026, 11, 2, 14), utc(2026, 11, 2, 22))  # EST
    assert hours.window(datetime(2026, 11, 1).date()) is None  # Sunday
    # A window opening inside the spring-forward gap (02:30 does not exist on 8 March) opens at 03:30.
    gap = Hours(zone=NY, start=clock_time(2, 30), end=clock_time(4, 0), days=frozenset(range(7)))
    assert gap.window(datetime(2026, 3, 8).date()) == (utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 8))
    assert into_business_hours(utc(2026, 3, 8, 6), gap) == utc(2026, 3, 8, 7, 30)


def test_overnight_and_whole_day_windows() -> None:
    night = Hours(zone=ZoneInfo("UTC"), start=clock_time(22), end=clock_time(6), days=frozenset(range(5)))
    assert in_business_hours(utc(2026, 11, 24, 3), night)  # Tuesday 03:00, in Monday night's window
    assert in_business_hours(utc(2026, 11, 28, 3), night)  # Saturday 03:00, in Friday night's window
    assert into_business_hours(utc(2026, 11, 28, 7), night) == utc(2026, 11, 30, 22)
    allday = Hours(zone=NY, start=clock_time(0), end=clock_time(0), days=frozenset({0}))
    assert in_business_hours(utc(2026, 11, 23, 12), allday)
    assert into_business_hours(utc(2026, 11, 24, 12), allday) == utc(2026, 11, 30, 5)


def test_a_promised_next_step_without_a_date_is_due_by_the_end_of_the_next_business_day() -> None:
    hours = Hours.from_policy(make_policy().business_hours)
    assert implied_deadline(utc(2026, 11, 24, 15), hours) == utc(2026, 11, 25, 22)  # Tue 10:00 → Wed 17:00
    assert implied_deadline(utc(2026, 11, 24, 12), hours) == utc(2026, 11, 24, 22)  # Tue 07:00 → Tue 17:00
    assert implied_deadline(utc(2026, 11, 20, 23), hours) == utc(2026, 11, 23, 22)  # Fri 18:00 → Mon 17:00


def test_snooze_targets() -> None:
    now = utc(2026, 3, 7, 20)  # Saturday 15:00 EST; tomorrow is the spring-forward Sunday
    assert snooze_target(SnoozeChoice.HOUR, now, NY) == utc(2026, 3, 7, 21)
    assert snooze_target(SnoozeChoice.TOMORROW, now, NY) == utc(2026, 3, 8, 13)  # 09:00 EDT
    assert tomorrow_at(utc(2026, 11, 1, 3), NY) == utc(2026, 11, 1, 14)  # 23:00 EDT Sat → Sun 09:00 EST
    picked = int(utc(2026, 3, 10, 15).timestamp())
    assert snooze_target(SnoozeChoice.PICK, now, NY, picked) == utc(2026, 3, 10, 15)
    for bad in (None, int(now.timestamp()) - 60, int((now + timedelta(days=400)).timestamp())):
        with pytest.raises(ValueError):
            snooze_target(SnoozeChoice.PICK, now, NY, bad)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)))
def test_into_business_hours_never_skips_a_business_moment(moment: datetime) -> None:
    hours = Hours.from_policy(make_policy().business_hours)
    moved = into_business_hours(moment, hours)
    assert moved >= moment and in_business_hours(moved, hours)
    if moved > moment:
        assert not in_business_hours(moment, hours)
        local = moved.astimezone(NY)
        assert (local.hour, local.minute) == (9, 0) and local.weekday() < 5
        # Nothing in between was business hours: sample it every 30 minutes.
        probe = moment
        while probe < moved:
            assert not in_business_hours(probe, hours)
            probe += timedelta(minutes=30)


def test_messages_match_the_block_kit_schema() -> None:
    case = Case(id=7, call_id="call_x", kind="refund", is_billing=True, owner="U0ALICE",
                next_step="Email the <customer> *today*", customer_name="Dana & Co", amount=None,
                slack_channel=CHANNEL, slack_ts="1700000000.000100", escalation_reasons=["duplicate charge"])
    for kind in ("lead", "due", "overdue", "snoozed"):
        message = reminder_message(case, 99, kind, deadline=utc(2026, 11, 24, 20), implied=kind == "due",
                                   owner="U0ALICE", oncall_group="S0ONCALL", zone=NY,
                                   late_due_at=utc(2026, 11, 24, 16), snoozed_by="U0BOB")
        assert_valid_message(message)
        assert "<customer>" not in json.dumps(message)  # caller text is escaped
    assert "<!subteam^S0ONCALL>" in reminder_message(
        case, 99, "overdue", deadline=utc(2026, 11, 24, 20), implied=False, owner=None, oncall_group="S0ONCALL",
        zone=NY)["text"]
    value = ReminderValue(case_id=7, reminder_id=99)
    assert ReminderValue.parse(value.dump()) == value == ReminderValue.from_block_id(value.block_id())
    assert_valid_view(snooze_modal(value, utc(2026, 11, 24, 21)))
    assert_valid_message(escalation_message(case, ["duplicate charge", "caller or agent: <!channel>"],
                                            owner="U0ALICE", oncall_group="S0ONCALL", card="the card"))


# ---------------------------------------------------------------------------------------------------
# Database helpers




def new_case(engine: Engine, policy: Policy, now: datetime, call_id: str = "call_r1", **fields: Any) -> int:
    values: dict[str, Any] = {
        "call_id": call_id, "kind": "refund", "is_billing": True, "owner": "U0ALICE", "created_at": now,
        "updated_at": now, "slack_channel": CHANNEL, "slack_ts": "1700000000.000100",
        "next_step": "Email the customer", **fields}
    with session_scope(engine) as session:
        case = Case(**values)
        session.add(case)
        session.flush()
        on_case_changed(session, case, policy, now)
        assert case.id is not None
        return case.id


def change(engine: Engine, case_id: int, policy: Policy, now: datetime, **fields: Any) -> None:
    """What ingest does on a merge (with the hook wired): change the case, then resync its reminders."""
    with session_scope(engine) as session:
        case = session.get(Case, case_id, with_for_update=True)
        assert case is not None
        for name, value in fields.items():
            setattr(case, name, value)
        session.add(case)
        on_case_changed(session, case, policy, now)


def reminders(engine: Engine, case_id: int | None = None) -> list[Reminder]:
    with Session(engine) as session:
        query = select(Reminder).order_by(col(Reminder.id))
        if case_id is not None:
            query = query.where(col(Reminder.case_id) == case_id)
        return list(session.exec(query).all())


def pending(engine: Engine, case_id: int) -> dict[str, datetime]:
    return {r.kind: r.due_at for r in reminders(engine, case_id) if r.status == "pending"}


def case_row(engine: Engine, case_id: int) -> Case:
    with Session(engine) as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case


def outbox(engine: Engine, kind: str = "thread") -> list[OutboxMessage]:
    """Outbox rows of `kind`; for "thread", only the reminders (not other history replies)."""
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)
                            .order_by(col(OutboxMessage.id))).all()
    return [row for row in rows if kind != "thread" or ":reminder:" in row.dedup_key]


def scheduler(engine: Engine, policy: Policy, clock: Clock, worker_id: str = "w1",
              **kwargs: Any) -> ReminderScheduler:
    settings = FireSettings(policy=policy, escalation_channel=ESCALATION_CHANNEL, finance_channel=CHANNEL)
    return ReminderScheduler(engine, settings, clock=clock, worker_id=worker_id, **kwargs)


DEADLINE = utc(2026, 11, 24, 20)  # Tuesday 15:00 New York
LEAD, OVERDUE = utc(2026, 11, 24, 16), utc(2026, 11, 24, 22)
MONDAY = utc(2026, 11, 23, 15)


# ---------------------------------------------------------------------------------------------------
# Scheduling


def test_deadline_schedules_reschedules_and_never_duplicates(engine: Engine, policy: Policy) -> None:
    case_id = new_case(engine, policy, MONDAY, follow_up_deadline=DEADLINE)
    assert pending(engine, case_id) == {"lead": LEAD, "due": DEADLINE, "overdue": OVERDUE}
    assert case_row(engine, case_id).next_reminder_at == LEAD  # shown on the card (ingest updates it)
    change(engine, case_id, policy, MONDAY + timedelta(minutes=5))  # a retried or merged webhook
    assert len(reminders(engine, case_id)) == 3

    later = DEADLINE + timedelta(days=1)
    change(engine, case_id, policy, MONDAY, follow_up_deadline=later)
    assert pending(engine, case_id) == {"lead": LEAD + timedelta(days=1), "due": later,
                                         "overdue": OVERDUE + timedelta(days=1)}
    cancelled = [r for r in reminders(engine, case_id) if r.status == "cancelled"]
    assert len(cancelled) == 3 and {r.cancel_reason for r in cancelled} == {"rescheduled"}
    assert case_row(engine, case_id).next_reminder_at == LEAD + timedelta(days=1)

    change(engine, case_id, policy, MONDAY, follow_up_deadline=DEADLINE)  # and back again
    assert pending(engine, case_id) == {"lead": LEAD, "due": DEADLINE, "overdue": OVERDUE}
    assert len(reminders(engine, case_id)) == 6  # the old rows came back; nothing was duplicated

    change(engine, case_id, policy, MONDAY, follow_up_deadline=None, next_step=None)
    assert pending(engine, case_id) == {}
    assert case_row(engine, case_id).next_reminder_at is None

    # Outside ingest (which enqueues the card itself), a sync asks for the card update on its own.
    assert outbox(engine, "card") == []
    with session_scope(engine) as session:
        case = session.get(Case, case_id, with_for_update=True)
        assert case is not None
        case.follow_up_deadline = DEADLINE
        store.sync_case(session, case, policy, MONDAY)
    assert len(outbox(engine, "card")) == 1 and case_row(engine, case_id).next_reminder_at == LEAD


def test_a_promised_next_step_alone_gets_reminders_and_non_billing_calls_none(engine: Engine,
                                                                              policy: Policy) -> None:
    case_id = new_case(engine, policy, MONDAY, next_step="Call the customer back")
    # Monday 10:00 New York → end of Tuesday (17:00 EST = 22:00 UTC)
    assert pending(engine, case_id)["due"] == utc(2026, 11, 24, 22)
    other = new_case(engine, policy, MONDAY, call_id="call_chat", is_billing=False, kind="not_billing",
                     follow_up_deadline=DEADLINE)
    assert reminders(engine, other) == []


def test_deadline_already_past_sends_one_reminder_at_once(engine: Engine, policy: Policy) -> None:
    # An hour after the deadline: "due" goes out at once (it is past), "overdue" at its time.
    case_id = new_case(engine, policy, DEADLINE + timedelta(hours=1), follow_up_deadline=DEADLINE)
    assert pending(engine, case_id) == {"due": DEADLINE, "overdue": OVERDUE}
    # Past the overdue time too: only the overdue reminder, not both one after the other.
    case_id = new_case(engine, policy, OVERDUE + timedelta(hours=1), call_id="call_r2",
                       follow_up_deadline=DEADLINE)
    assert pending(engine, case_id) == {"overdue": OVERDUE}  # fires on the next pass


# ---------------------------------------------------------------------------------------------------
# Firing


def test_each_reminder_fires_once_in_the_thread_mentioning_the_owner(engine: Engine, policy: Policy) -> None:
    case_id = new_case(engine, policy, MONDAY, follow_up_deadline=DEADLINE)
    unowned = new_case(engine, policy, MONDAY, call_id="call_r2", owner=None, follow_up_deadline=DEADLINE)
    clock = Clock(LEAD + timedelta(seconds=5))
    reminders_ = scheduler(engine, policy, clock)
    assert reminders_.run_once() == 2
    assert reminders_.run_once() == 0
    posted = outbox(engine)
    assert [row.case_id for row in posted] == [case_id, unowned]
    assert "<@U0ALICE>" in (posted[0].text or "") and "Follow-up due" in (posted[0].text or "")
    assert "<@U0OWNER>" in (posted[1].text or "")  # the policy's default finance owner
    assert "late" not in json.dumps(posted[0].blocks)
    assert_valid_message({"text": posted[0].text, "blocks": posted[0].blocks})
    actions = {e["action_id"] for b in posted[0].blocks or [] for e in b.get("elements", [])}
    assert actions == {REMINDER_DONE, REMINDER_SNOOZE, REMINDER_REASSIGN}
    assert case_row(engine, case_id).next_reminder_at == DEADLINE

    clock.now = DEADLINE + timedelta(seconds=1)
    assert reminders_.run_once() == 2
    clock.now = OVERDUE + timedelta(seconds=1)
    assert reminders_.run_once() == 2
    texts = [row.text or "" for row in outbox(engine) if row.case_id == case_id]
    assert len(texts) == 3 and "due now" in texts[1] and "overdue" in texts[2]
    assert "<!subteam^S0ONCALL>" in texts[2]
    assert case_row(engine, case_id).next_reminder_at is None
    assert all(r.status == "sent" and not r.late for r in reminders(engine))


def test_a_claim_is_exclusive_and_a_dead_workers_lease_is_taken_over(engine: Engine, policy: Policy) -> None:
    case_id = new_case(engine, policy, MONDAY, follow_up_deadline=DEADLINE)
    now = LEAD + timedelta(seconds=1)
    settings_ = FireSettings(policy=policy)
    assert store.claim_due(engine, "A", now) == [reminders(engine, case_id)[0].id]
    assert store.claim_due(engine, "B", now) == []  # A holds the lease
    later = now + store.LEASE + timedelta(seconds=1)  # A died: its lease ran out
    [taken] = store.claim_due(engine, "B", later)
    assert store.fire(engine, taken, "A", later, settings_) is None  # A woke up: no longer its claim
    assert store.fire(engine, taken, "B", later, settings_) == "sent"
    assert store.fire(engine, taken, "B", later, settings_) is None
    assert len(outbox(engine)) == 1


def test_a_reminder_that_cannot_be_fired_does_not_hold_up_the_others(engine: Engine, policy: Policy,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    good = [new_case(engine, policy, MONDAY, call_id=f"call_ok{n}", follow_up_deadline=DEADLINE) for n in range(2)]
    bad = new_case(engine, policy, MONDAY, call_id="call_bad", follow_up_deadline=DEADLINE)
    real = store._fire_reminder

    def flaky(session: Any, case: Case, *args: Any) -> str:
        if case.id == bad:
            raise RuntimeError("boom")
        return real(session, case, *args)

    monkeypatch.setattr(store, "_fire_reminder", flaky)
    clock = Clock(LEAD + timedelta(seconds=1))
    reminders_ = scheduler(engine, policy, clock)
    reminders_.run_once()
    assert sorted(row.case_id for row in outbox(engine)) == good  # the batch fell back to one by one
    for _ in range(store.MAX_ATTEMPTS):  # retried after each lease, then given up on
        clock.now += store.LEASE + timedelta(seconds=1)
        reminders_.run_once()
    [lead] = [r for r in reminders(engine, bad) if r.kind == "lead"]
    assert (lead.status, lead.cancel_reason, lead.attempts) == ("cancelled", "failed", store.MAX_ATTEMPTS)


def test_resolving_or_dismissing_cancels_reminders(engine: Engine, policy: Policy) -> None:
    case_id = new_case(engine, policy, MONDAY, follow_up_deadline=DEADLINE)
    other = new_case(engine, policy, MONDAY, call_id="call_r2", follow_up_deadline=DEADLINE)
    with session_scope(engine) as session:  # the hook bot.workflow calls when a case closes
        case = session.get(Case, case_id, with_for_update=True)
        assert case is not None
        on_case_closed(session, case, MONDAY, "dismissed")
    assert pending(engine, case_id) == {} and case_row(engine, case_id).next_reminder_at is None
    assert {r.cancel_reason for r in reminders(engine, case_id)} == {"dismissed"}
    # A case closed on a path that does not call the hook: its reminder is cancelled when it comes up.
    with session_scope(engine) as session:
        case = session.get(Case, other)
        assert case is not None
        case.state = "done"
        session.add(case)
    assert scheduler(engine, policy, Clock(LEAD + timedelta(seconds=1))).run_once() == 1
    assert outbox(engine) == []
    assert [r.cancel_reason for r in reminders(engine, other) if r.kind == "lead"] == ["closed"]
    # ... and a later sync of the closed case cancels the rest.
    change(engine, other, policy, MONDAY)
    assert pending(engine, other) == {}
    # Dismissing from the card (bot.workflow calls the hook once wired) never posts a reminder either.
    third = new_case(engine, policy, MONDAY, call_id="call_r3", follow_up_deadline=DEADLINE)
    assert workflow.dismiss(engine, third, "U0ALICE", MONDAY).ok
    scheduler(engine, policy, Clock(OVERDUE + timedelta(seconds=1))).run_once()
    assert outbox(engine) == [] and pending(engine, third) == {}


def test_restart_after_downtime_fires_each_missed_reminder_once_marked_late(engine: Engine,
                                                                             policy: Policy) -> None:
    case_id = new_case(engine, policy, MONDAY, follow_up_deadline=DEADLINE)
    friday = new_case(engine, policy, MONDAY, call_id="call_r2", follow_up_deadline=utc(2026, 11, 27, 20))
    clock = Clock(MONDAY)
    first = scheduler(engine, policy, clock, "before", interval_seconds=3600)
    first.start()
    assert first.wait_for_passes(1)
    first.stop()  # the process stops on Monday...
    assert outbox(engine) == []

    clock.now = DEADLINE + timedelta(hours=1)  # ... and comes back on Tuesday after the deadline
    second = scheduler(engine, policy, clock, "after", interval_seconds=3600)
    second.start()
    assert second.wait_for_passes(1)  # the catch-up pass at start
    second.stop()
    sent = [r for r in reminders(engine) if r.status == "sent"]
    assert sorted(r.kind for r in sent) == ["due", "lead"] and all(r.late for r in sent)
    assert all(r.case_id == case_id for r in sent)
    texts = [row.text or "" for row in outbox(engine)]
    blocks = json.dumps([row.blocks for row in outbox(engine)])
    assert len(texts) == 2 and blocks.count("late: was due at") == 2
    assert pending(engine, case_id) == {"overdue": OVERDUE}
    assert set(pending(engine, friday)) == {"lead", "due", "overdue"}

    third = scheduler(engine, policy, clock, "again", interval_seconds=3600)
    third.start()
    assert third.wait_for_passes(1)
    third.stop()
    assert len(outbox(engine)) == 2  # a second restart fires nothing twice
    clock.now = OVERDUE + timedelta(seconds=2)
    assert third.run_once() == 1
    assert [r.late for r in reminders(engine, case_id) if r.kind == "overdue"] == [False]


def test_apscheduler_fires_on_the_next_due_time_and_on_wake(engine: Engine, policy: Policy) -> None:
    now = datetime.now(UTC)
    case_id = new_case(engine, policy, now)
    running = scheduler(engine, policy, Clock(now), interval_seconds=3600)
    running.clock = lambda: datetime.now(UTC)
    running.start()
    try:
        assert running.wait_for_passes(1)
        with session_scope(engine) as session:
            store.add(session, "once", case_id=case_id, kind="snoozed", dedup_key="soon",
                      due_at=datetime.now(UTC) + timedelta(milliseconds=300), created_at=datetime.now(UTC))
            store.add(session, "once", case_id=case_id, kind="snoozed", dedup_key="now",
                      due_at=datetime.now(UTC) - timedelta(seconds=1), created_at=datetime.now(UTC))
        running.wake()  # e.g. ingest just scheduled something: no waiting for the hourly poll
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(outbox(engine)) < 2:
            time.sleep(0.02)
    finally:
        running.stop()
    assert {r.dedup_key for r in reminders(engine) if r.status == "sent"} >= {"soon", "now"}
    assert len(outbox(engine)) == 2


# ---------------------------------------------------------------------------------------------------
# Done, snooze, reassign (plain functions)


def test_snooze_done_and_reassign(engine: Engine, policy: Policy) -> None:
    case_id = new_case(engine, policy, MONDAY, follow_up_deadline=DEADLINE)
    clock = Clock(LEAD + timedelta(seconds=1))
    scheduler(engine, policy, clock).run_once()
    lead_id = next(r.id for r in reminders(engine, case_id) if r.kind == "lead")
    assert lead_id is not None
    now = clock.now

    # From the reminder: an hour, then (changing one's mind) tomorrow 9:00 - one snoozed reminder.
    assert store.snooze(engine, case_id, lead_id, now + timedelta(hours=1), "U0BOB", now, policy).ok
    tomorrow = snooze_target(SnoozeChoice.TOMORROW, now, policy.business_hours.zone)
    outcome = store.snooze(engine, case_id, lead_id, tomorrow, "U0BOB", now, policy)
    assert outcome.ok and "<!date^" in outcome.message
    assert pending(engine, case_id)["snoozed"] == tomorrow == utc(2026, 11, 25, 14)
    assert not store.snooze(engine, case_id, lead_id, now - timedelta(minutes=1), "U0BOB", now, policy).ok
    assert not store.snooze(engine, case_id + 99, lead_id, tomorrow, "U0BOB", now, policy).ok

    # The card's Snooze button: the next reminder (the due one) comes an hour later.
    assert store.snooze_next(engine, case_id, "U0BOB", now, policy).ok
    assert pending(engine, case_id)["due"] == DEADLINE + timedelta(hours=1)
    assert case_row(engine, case_id).next_reminder_at == DEADLINE + timedelta(hours=1)

    assert store.reassign(engine, case_id, "U0CAROL", "U0BOB", now).ok
    assert case_row(engine, case_id).owner == "U0CAROL"
    assert not store.reassign(engine, case_id, "not-a-user", "U0BOB", now).ok
    clock.now = DEADLINE + timedelta(hours=1, seconds=1)
    scheduler(engine, policy, clock).run_once()
    assert "<@U0CAROL>" in (outbox(engine)[-1].text or "")  # reminders follow the new owner

    assert store.follow_up_done(engine, case_id, "U0CAROL", clock.now, "question_answered").ok
    assert pending(engine, case_id) == {} and case_row(engine, case_id).next_reminder_at is None
    change(engine, case_id, policy, clock.now)  # a later webhook does not bring them back
    assert pending(engine, case_id) == {}
    with Session(engine) as session:
        actions = [e.action for e in session.exec(select(AuditEvent).where(AuditEvent.case_id == case_id)).all()]
    assert actions.count("reminder.snoozed") == 3 and "case.reassigned" in actions and "reminder.done" in actions

    # With nothing pending, the card's Snooze makes a snoozed reminder an hour out.
    assert store.snooze_next(engine, case_id, "U0BOB", clock.now, policy).ok
    assert pending(engine, case_id) == {"snoozed": clock.now + timedelta(hours=1)}


@freeze_time("2026-11-24 16:00:30")
def test_snooze_with_a_frozen_clock(engine: Engine, policy: Policy) -> None:
    case_id = new_case(engine, policy, MONDAY, follow_up_deadline=DEADLINE)
    reminders_ = scheduler(engine, policy, Clock(MONDAY))
    reminders_.clock = lambda: datetime.now(UTC)
    assert reminders_.run_once() == 1  # the lead reminder, due at 16:00
    assert store.snooze_next(engine, case_id, "U0BOB", datetime.now(UTC), policy).ok
    assert pending(engine, case_id)["due"] == DEADLINE + timedelta(hours=1)


def test_concurrent_claims_never_overlap(engine: Engine, policy: Policy) -> None:
    now = datetime.now(UTC)
    case_id = new_case(engine, policy, now, next_step=None)
    with session_scope(engine) as session:
        for n in range(200):
            session.add(Reminder(case_id=case_id, kind="snoozed", dedup_key=f"many:{n}", due_at=now))
    claims: dict[str, list[int]] = {}

    def claimer(name: str) -> None:
        mine = claims.setdefault(name, [])
        while batch := store.claim_due(engine, name, now, limit=7):
            mine.extend(batch)

    threads = [threading.Thread(target=claimer, args=(f"t{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    everything = [row_id for batch in claims.values() for row_id in batch]
    assert sorted(everything) == sorted(r.id for r in reminders(engine))  # all claimed, none twice


# ---------------------------------------------------------------------------------------------------
# Several processes on one PostgreSQL


# One process of the race: what `finance-desk worker --drain` does, split so that both processes are
# connected and ready before either starts claiming.
RACER = """
import json, pathlib, sys, time
from bot.config import load_settings
from bot.reminders.scheduler import drain, scheduler_for
from bot.runtime import build_runtime
from bot.slack.service import outbox_worker, web_client
ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
runtime = build_runtime(load_settings(require_slack=True))
outbox = outbox_worker(runtime, web_client(runtime))
reminders = scheduler_for(runtime, on_fired=outbox.wake, batch=int(sys.argv[3]))
ready.touch()
while not go.exists():
    time.sleep(0.001)
print(json.dumps(drain(outbox, reminders)))
"""


def test_two_processes_fire_hundreds_of_due_reminders_once_each(engine: Engine, db_url: str,
                                                                tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the multi-process guarantee is for PostgreSQL; SQLite is single-host")
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for n in range(100):
            case = Case(call_id=f"call_many_{n:03d}", kind="refund", is_billing=True, owner="U0ALICE",
                        slack_channel=CHANNEL, slack_ts=f"1700000000.{n:06d}", created_at=now, updated_at=now)
            session.add(case)
            session.flush()
            assert case.id is not None
            for kind in ("lead", "due", "overdue"):
                session.add(Reminder(case_id=case.id, kind=kind, dedup_key=f"{case.id}:{kind}",
                                     due_at=now - timedelta(seconds=30), created_at=now))
    expected = {r.id for r in reminders(engine)}
    assert len(expected) == 300
    with SlackStandIn() as slack:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "DATABASE_URL"))}
        env.update(DATABASE_URL=db_url, SLACK_BOT_TOKEN="xoxb-fake", SLACK_SIGNING_SECRET="signing",
                   FINANCE_CHANNEL=CHANNEL, SLACK_API_URL=f"{slack.url}/api/", DIALNEXA_WEBHOOK_SECRETS="whsec_x",
                   SLACK_POST_INTERVAL_SECONDS="0", FINANCE_DESK_POLICY=str(TEST_POLICY))
        go = tmp_path / "go"
        processes = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / f"ready{n}"), str(go), "5"],
                                      env=env, cwd=ROOT, stdout=subprocess.PIPE)
                     for n in range(2)]
        until(lambda: all((tmp_path / f"ready{n}").exists() for n in range(2)), timeout=60)
        go.touch()  # both start claiming at the same moment
        outputs = []
        for process in processes:
            out, _ = process.communicate(timeout=120)
            assert process.returncode == 0
            outputs.append(json.loads(out.decode().strip().splitlines()[-1]))
        posted = [m for m in slack.all_messages(CHANNEL) if m.get("thread_ts")]
    fired = [ReminderValue.from_block_id(m["blocks"][-1]["block_id"]).reminder_id for m in posted]
    assert sorted(fired) == sorted(expected)  # every reminder posted, none twice
    assert sum(o["stats"].get("sent", 0) for o in outputs) == 300
    print("fired per process:", [o["stats"] for o in outputs])
    assert all(r.status == "sent" for r in reminders(engine))
    assert len({r.claimed_by for r in reminders(engine)}) == 1  # leases are cleared once fired
    assert all(row.sent_at is not None for row in outbox(engine)) and len(outbox(engine)) == 300


# ---------------------------------------------------------------------------------------------------
# Over real Slack HTTP: the controls on a reminder and the card's Snooze button


@pytest.fixture
def app(runtime: Runtime, db_url: str) -> Iterator[SlackApp]:
    application = SlackApp(runtime, db_url)
    yield application
    application.stop()


def act(app: SlackApp, user: str, action: dict[str, Any], name: str, message_ts: str) -> httpx.Response:
    payload = {
        "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0FIN"},
        "api_app_id": "A0", "token": "unused", "trigger_id": f"trigger-{user}-{time.time()}",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": CHANNEL},
        "team": {"id": "T0FIN", "domain": "finance"}, "channel": {"id": CHANNEL, "name": "finance"},
        "response_url": app.slack.response_url(name), "actions": [{**action, "action_ts": str(time.time())}],
    }
    return app._post(payload)


def submit_snooze(app: SlackApp, view: dict[str, Any], user: str, epoch: int) -> httpx.Response:
    state = {"when": {"value": {"type": "datetimepicker", "selected_date_time": epoch}}}
    payload = {"type": "view_submission", "user": {"id": user, "team_id": "T0FIN"}, "team": {"id": "T0FIN"},
               "api_app_id": "A0", "token": "unused", "trigger_id": "t",
               "view": {**view, "id": "V1", "state": {"values": state}}}
    body = "payload=" + urllib.parse.quote(json.dumps(payload))
    return httpx.post(f"{app.server.url}/slack/events", content=body, headers=slack_headers(body, SIGNING_SECRET),
                      timeout=10)


def submit_done(app: SlackApp, view: dict[str, Any], user: str, outcome: str | None,
                note: str | None) -> httpx.Response:
    state: dict[str, Any] = {
        "outcome": {"value": {"type": "static_select",
                              "selected_option": {"value": outcome} if outcome else None}},
        "note": {"value": {"type": "plain_text_input", "value": note}}}
    payload = {"type": "view_submission", "user": {"id": user, "team_id": "T0FIN"}, "team": {"id": "T0FIN"},
               "api_app_id": "A0", "token": "unused", "trigger_id": "t",
               "view": {**view, "id": "V2", "state": {"values": state}}}
    body = "payload=" + urllib.parse.quote(json.dumps(payload))
    return httpx.post(f"{app.server.url}/slack/events", content=body, headers=slack_headers(body, SIGNING_SECRET),
                      timeout=10)


def deliver(app: SlackApp, sample: str) -> Case:
    payload = json.loads((ROOT / "bot" / "samples" / sample).read_text())
    result = ingest(app.runtime.engine, payload, dumps(payload), app.runtime.policy, datetime.now(UTC))
    app.service.worker.wake()
    return until(lambda: (case := app.case(result.call_id or "")).slack_ts and case)


def test_reminder_controls_over_slack(app: SlackApp) -> None:
    engine, policy = app.runtime.engine, app.runtime.policy
    case = deliver(app, "01_refund.json")
    assert case.id is not None
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        store.add(session, "once", case_id=case.id, kind="due", dedup_key="e2e",
                  due_at=now - timedelta(seconds=1), created_at=now)
    [mine] = [r for r in reminders(engine, case.id) if r.dedup_key == "e2e"]
    assert mine.id is not None
    value = ReminderValue(case_id=case.id, reminder_id=mine.id)
    block_id = value.block_id()
    scheduler(engine, policy, Clock(now)).run_once()  # (or the app's own scheduler, once wired)
    app.service.worker.wake()
    reply = app.slack.wait_until(
        lambda: next((m for m in app.slack.thread(CHANNEL, case.slack_ts or "")[1:] if m.get("blocks")
                      and m["blocks"][-1].get("block_id") == block_id), None), 10)
    assert "Follow-up due now" in reply["text"]

    # Snooze for an hour: the reminder is replaced in place (its controls go away).
    act(app, "U0APPROVER1", {"type": "static_select", "action_id": REMINDER_SNOOZE, "block_id": block_id,
                       "selected_option": {"text": {"type": "plain_text", "text": "1 hour"}, "value": "1h"}},
        "snooze-1h", reply["ts"])
    answer = app.slack.wait_until(lambda: (app.slack.responses_for("snooze-1h") or [None])[-1], 10)
    assert answer["replace_original"] is True and "snoozed this reminder" in answer["text"]
    assert "snoozed" in pending(engine, case.id)

    # Pick a time: a modal with a date-time picker; a past time is refused in the modal.
    act(app, "U0APPROVER1", {"type": "static_select", "action_id": REMINDER_SNOOZE, "block_id": block_id,
                       "selected_option": {"text": {"type": "plain_text", "text": "Pick"}, "value": "pick"}},
        "snooze-pick", reply["ts"])
    view = app.opened_view()
    assert_valid_view(view)
    refused = submit_snooze(app, view, "U0APPROVER1", int(now.timestamp()) - 3600)
    assert refused.json()["response_action"] == "errors" and "future" in refused.json()["errors"]["when"]
    picked = int((now + timedelta(days=2)).timestamp())
    assert submit_snooze(app, view, "U0APPROVER1", picked).status_code == 200
    app.slack.wait_for("chat.postEphemeral", timeout=10)
    assert pending(engine, case.id)["snoozed"] == datetime.fromtimestamp(picked, UTC)

    # Reassign with the users select.
    act(app, "U0APPROVER1", {"type": "users_select", "action_id": REMINDER_REASSIGN, "block_id": block_id,
                       "selected_user": "U0CAROL"}, "reassign", reply["ts"])
    assert "<@U0CAROL>" in app.ephemeral_for("reassign")
    assert app.case(case.call_id).owner == "U0CAROL"

    # The card's Snooze button answers ephemerally and moves the next reminder (whichever it is) an hour.
    before = sorted(pending(engine, case.id).items(), key=lambda item: item[1])[0]
    app.click(app.case(case.call_id), "snooze", "U0APPROVER1", response_name="card-snooze")
    assert "Snoozed" in app.ephemeral_for("card-snooze")
    assert pending(engine, case.id)[before[0]] == before[1] + timedelta(hours=1)

    # Done: a modal asks what was done; Other without a note is refused in place, then it is recorded.
    act(app, "U0APPROVER2", {"type": "button", "action_id": REMINDER_DONE, "block_id": block_id,
                             "value": value.dump()}, "done", reply["ts"])
    app.slack.wait_until(lambda: len(app.slack.wait_for("views.open")) >= 2 or None, 10)  # after the snooze one
    done_view = app.opened_view()
    assert done_view["callback_id"] == "reminder_done_modal"
    assert_valid_view(done_view)
    refused = submit_done(app, done_view, "U0APPROVER2", "other", None)
    assert refused.json() == {"response_action": "errors",
                              "errors": {"note": "Say what was done: a note is needed when the outcome is Other."}}
    assert "snoozed" in pending(engine, case.id)  # nothing changed
    assert submit_done(app, done_view, "U0APPROVER2", "question_answered", "Told them card 4111 1111 1111 1111"
                       ).status_code == 200
    app.slack.wait_until(lambda: pending(engine, case.id) == {} or None, 10)
    assert app.case(case.call_id).next_reminder_at is None
    assert app.case(case.call_id).follow_up_done_at is not None

    def history() -> list[str] | None:
        texts = app.thread_texts(app.case(case.call_id))
        return texts if any("marked the follow-up done" in text for text in texts) else None

    texts = app.slack.wait_until(history, 10)
    assert any("reassigned this case to <@U0CAROL>" in text for text in texts)
    assert "4111 1111 1111 1111" not in json.dumps(app.slack.thread(CHANNEL, case.slack_ts or ""))
