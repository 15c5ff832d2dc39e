"""Pure time maths for reminders: business hours, the reminder plan around a deadline, snooze targets.

Every datetime in and out is tz-aware UTC; the policy's zone is used only to decide what "9:00" or
"Monday" means there. Local times are built with zoneinfo from a calendar date and a wall-clock time,
so a DST change never shifts a window by an hour: 09:00 stays 09:00 on both sides of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.policy import BusinessHours, Policy

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead a business window is looked for: a week always holds one (the policy names ≥1 day).
_SEARCH_DAYS = 9
# Snoozes further out than this are refused: a typo in the picker should not bury a follow-up.
MAX_SNOOZE = timedelta(days=366)
SNOOZE_HOUR = time(9, 0)


class Kind(StrEnum):
    LEAD = "lead"
    DUE = "due"
    OVERDUE = "overdue"
    SNOOZED = "snoozed"
    ESCALATION = "escalation"
    ESCALATION_FOLLOWUP = "escalation_followup"
    # A case waiting for approval: one nudge in its thread, then one page to the senior approvers.
    APPROVAL_NUDGE = "approval_nudge"
    APPROVAL_ESCALATION = "approval_escalation"


# Kinds planned from the deadline (rescheduled when it changes).
SCHEDULED_KINDS = (Kind.LEAD, Kind.DUE, Kind.OVERDUE)
# Kinds that post in the card's thread and count as the card's "next reminder".
REMINDER_KINDS = (Kind.LEAD, Kind.DUE, Kind.OVERDUE, Kind.SNOOZED)
ESCALATION_KINDS = (Kind.ESCALATION, Kind.ESCALATION_FOLLOWUP)
# Cancelled by a decision (approve or deny), not by a follow-up being done.
APPROVAL_KINDS = (Kind.APPROVAL_NUDGE, Kind.APPROVAL_ESCALATION)


class SnoozeChoice(StrEnum):
    HOUR = "1h"
    TOMORROW = "tomorrow"
    PICK = "pick"


@dataclass(frozen=True)
class Hours:
    """Business hours in one zone. `end <= start` means the window runs past midnight (22:00-06:00);
    `end == start` means the whole day."""

    zone: ZoneInfo
    start: time
    end: time
    days: frozenset[int]  # date.weekday(): Monday is 0

    @classmethod
    def from_policy(cls, hours: BusinessHours) -> Hours:
        return cls(zone=hours.zone, start=hours.start, end=hours.end,
                   days=frozenset(WEEKDAYS.index(day) for day in hours.days))

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The business window that opens on local `day`, in UTC, or None on a day off."""
        if day.weekday() not in self.days:
            return None
        start = datetime.combine(day, self.start, tzinfo=self.zone).astimezone(UTC)
        end_day = day if self.end > self.start else day + timedelta(days=1)
        end = datetime.combine(end_day, self.end, tzinfo=self.zone).astimezone(UTC)
        # A wall-clock time inside a DST gap maps forward (02:30 → 03:30); a window squashed to
        # nothing by that is no window.
        return (start, end) if end > start else None

    def windows_from(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Windows in time order, starting with any that contains `moment` (it may have opened the
        day before, for windows that run past midnight)."""
        first = _utc(moment).astimezone(self.zone).date() - timedelta(days=1)
        for offset in range(_SEARCH_DAYS):
            window = self.window(first + timedelta(days=offset))
            if window is not None:
                yield window


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: reminders work in tz-aware UTC")
    return moment.astimezone(UTC)


def in_business_hours(moment: datetime, hours: Hours) -> bool:
    moment = _utc(moment)
    return any(start <= moment < end for start, end in hours.windows_from(moment))


def into_business_hours(moment: datetime, hours: Hours) -> datetime:
    """`moment` if it is within business hours, else the start of the next business window."""
    moment = _utc(moment)
    for start, end in hours.windows_from(moment):
        if start <= moment < end:
            return moment
        if start > moment:
            return start
    raise AssertionError("no business window within a week")  # unreachable: days is never empty


def implied_deadline(anchor: datetime, hours: Hours) -> datetime:
    """The deadline of a promised next step that came without one: the end of the next business day
    (the close of the first business window that opens after `anchor`)."""
    anchor = _utc(anchor)
    for start, end in hours.windows_from(anchor):
        if start > anchor:
            return end
    raise AssertionError("no business window within a week")


def effective_deadline(deadline: datetime | None, next_step: str | None, anchor: datetime,
                       hours: Hours) -> datetime | None:
    """The follow-up deadline reminders are planned around, or None when nothing was promised."""
    if deadline is not None:
        return _utc(deadline)
    if next_step and next_step.strip():
        return implied_deadline(anchor, hours)
    return None


@dataclass(frozen=True)
class Planned:
    kind: Kind
    due_at: datetime


def plan(deadline: datetime, policy: Policy) -> list[Planned]:
    """The reminders for one deadline, in time order: lead (moved forward into business hours),
    due (at the deadline) and overdue (after the policy's window).

    The lead reminder is left out when the lead time is zero, or when the next business hours only
    start at or after the deadline: the due reminder then comes first anyway.
    """
    deadline = _utc(deadline)
    hours = Hours.from_policy(policy.business_hours)
    planned: list[Planned] = []
    lead_minutes = policy.reminders.lead_time_minutes
    if lead_minutes > 0:
        lead = into_business_hours(deadline - timedelta(minutes=lead_minutes), hours)
        if lead < deadline:
            planned.append(Planned(Kind.LEAD, lead))
    planned.append(Planned(Kind.DUE, deadline))
    planned.append(Planned(Kind.OVERDUE, deadline + timedelta(minutes=policy.reminders.overdue_window_minutes)))
    return planned


def tomorrow_at(now: datetime, zone: ZoneInfo, at: time = SNOOZE_HOUR) -> datetime:
    """`at` on the next calendar day in `zone`, as UTC (DST-safe: built from the local date)."""
    local_day = _utc(now).astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(local_day, at, tzinfo=zone).astimezone(UTC)


def snooze_target(choice: SnoozeChoice | str, now: datetime, zone: ZoneInfo,
                  picked: int | None = None) -> datetime:
    """When a snooze fires. Raises ValueError for a picked time in the past or too far ahead."""
    now = _utc(now)
    choice = SnoozeChoice(choice)
    if choice is SnoozeChoice.HOUR:
        return now + timedelta(hours=1)
    if choice is SnoozeChoice.TOMORROW:
        return tomorrow_at(now, zone)
    if picked is None:
        raise ValueError("pick a date and time")
    until = datetime.fromtimestamp(picked, UTC)
    if until <= now:
        raise ValueError("pick a time in the future")
    if until - now > MAX_SNOOZE:
        raise ValueError("pick a time within a year")
    return until


# A bound on the walk below: a policy allows at most 30 days of business minutes, which a window of at
# least one day a week (the policy requires one) always covers well within this many calendar days.
_MAX_WALK_DAYS = 3660


def add_business_minutes(start: datetime, minutes: int, hours: Hours) -> datetime:
    """The moment `minutes` of business time after `start`: time outside business hours does not count,
    so 120 minutes from Friday 16:00 (hours 09-17) is Monday 10:00. Zero minutes is `start` itself."""
    start = _utc(start)
    remaining = timedelta(minutes=minutes)
    if remaining <= timedelta(0):
        return start
    # Walks day by day rather than through `windows_from`, which looks only a week ahead: a long
    # escalation delay (days of business time) needs more windows than that.
    first = start.astimezone(hours.zone).date() - timedelta(days=1)
    for offset in range(_MAX_WALK_DAYS):
        window = hours.window(first + timedelta(days=offset))
        if window is None or window[1] <= start:
            continue
        begin = max(window[0], start)
        available = window[1] - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
    raise AssertionError("business minutes could not be placed within ten years")  # unreachable


def approval_plan(anchor: datetime, policy: Policy) -> list[Planned]:
    """A case waiting for approval from `anchor`: one nudge in its thread, then one page to the seniors,
    each after the policy's business minutes (counted from `anchor`, not from each other)."""
    hours = Hours.from_policy(policy.business_hours)
    return [
        Planned(Kind.APPROVAL_NUDGE, add_business_minutes(anchor, policy.reminders.approval_nudge_minutes, hours)),
        Planned(Kind.APPROVAL_ESCALATION,
                add_business_minutes(anchor, policy.reminders.approval_escalation_minutes, hours)),
    ]
