"""Reminder controls (done, snooze, reassign), the done and snooze modals and the card's Snooze button.

Thin: ack at once, call a plain function in bot.reminders.store, tell the person. A snoozed reminder
is replaced in place (through its response_url) so its controls cannot be used twice; refusals are
ephemeral. Done asks what was done in a modal, which has no response_url: its answer is ephemeral,
and the thread reply says it for everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from blocks.actions import ActionId, ButtonValue, CallbackId, ControlId, ReminderValue
from blocks.reminders import SNOOZE_BLOCK, done_choice, done_errors, done_modal, picked_time, snooze_modal
from bot.outcome import Outcome
from bot.reminders import store
from bot.reminders.schedule import SnoozeChoice, snooze_target
from bot.slack.listeners.context import Interaction, interaction


def _answer(it: Interaction, outcome: Outcome) -> None:
    if outcome.ok:
        it.reply.replace({"text": outcome.message})
    else:
        it.reply.ephemeral(outcome.message)


def reminder_done(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """Done on a reminder: ask what was done (outcome and note) before anything is recorded."""
    ack()
    # trigger_id expires 3 s after the click: open the modal before anything else.
    client.views_open(trigger_id=body["trigger_id"], view=done_modal(interaction(context).ref(ReminderValue)))


def done_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    it = interaction(context)
    outcome, note = done_choice(view)
    errors = done_errors(outcome, note)
    if errors or outcome is None:
        ack(response_action="errors", errors=errors)
        return
    ack()
    runtime = it.desk.runtime
    answer = store.follow_up_done(runtime.engine, it.ref(ReminderValue).case_id, it.user, it.now(), outcome, note)
    it.reply.ephemeral(answer.message)


def reminder_snooze(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                    context: BoltContext) -> None:
    ack()
    it = interaction(context)
    value, runtime, now = it.ref(ReminderValue), it.desk.runtime, it.now()
    zone = runtime.policy.business_hours.zone
    choice = str((action.get("selected_option") or {}).get("value", ""))
    if choice not in set(SnoozeChoice):
        it.reply.ephemeral(ReminderValue.stale)
        return
    if choice == SnoozeChoice.PICK:
        # trigger_id expires 3 s after the click: open the modal before anything else.
        client.views_open(trigger_id=body["trigger_id"],
                          view=snooze_modal(value, snooze_target(SnoozeChoice.HOUR, now, zone)))
        return
    until = snooze_target(choice, now, zone)
    _answer(it, store.snooze(runtime.engine, value.case_id, value.reminder_id, until, it.user, now, runtime.policy))


def snooze_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    it = interaction(context)
    value, runtime, now = it.ref(ReminderValue), it.desk.runtime, it.now()
    try:
        until = snooze_target(SnoozeChoice.PICK, now, runtime.policy.business_hours.zone, picked_time(view))
    except ValueError as exc:
        ack(response_action="errors", errors={SNOOZE_BLOCK: str(exc).capitalize() + "."})
        return
    ack()
    outcome = store.snooze(runtime.engine, value.case_id, value.reminder_id, until, it.user, now, runtime.policy)
    it.reply.ephemeral(outcome.message)


def reminder_reassign(ack: Ack, action: dict[str, Any], context: BoltContext) -> None:
    ack()
    it = interaction(context)
    outcome = store.reassign(it.desk.runtime.engine, it.ref(ReminderValue).case_id,
                             str(action.get("selected_user") or ""), it.user, it.now())
    it.reply.ephemeral(outcome.message)


def snooze(ack: Ack, context: BoltContext) -> None:
    """The card's Snooze button: the case's next reminder an hour later."""
    ack()
    it = interaction(context)
    runtime = it.desk.runtime
    outcome = store.snooze_next(runtime.engine, it.ref(ButtonValue).case_id, it.user, it.now(), runtime.policy)
    it.reply.ephemeral(outcome.message)


ACTIONS: dict[str, Callable[..., None]] = {
    ControlId.REMINDER_DONE: reminder_done,
    ControlId.REMINDER_SNOOZE: reminder_snooze,
    ControlId.REMINDER_REASSIGN: reminder_reassign,
    ActionId.SNOOZE: snooze,
}
VIEWS: dict[str, Callable[..., None]] = {
    CallbackId.REMINDER_SNOOZE: snooze_submitted,
    CallbackId.REMINDER_DONE: done_submitted,
}


def register(app: App) -> None:
    for action_id, listener in ACTIONS.items():
        app.action(action_id)(listener)
    for callback_id, listener in VIEWS.items():
        app.view(callback_id)(listener)
