"""Reminder controls (done, snooze, reassign), the snooze modal and the card's Snooze button.

Thin: ack at once, read the click, call a plain function in bot.reminders.store, tell the clicker.
A handled reminder is replaced in place (through its response_url) so its controls cannot be used
twice; refusals are ephemeral.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from sqlmodel import Session

from blocks.actions import ActionId, ButtonValue
from blocks.reminders import (
    REMINDER_DONE,
    REMINDER_REASSIGN,
    REMINDER_SNOOZE,
    SNOOZE_BLOCK,
    SNOOZE_CALLBACK,
    ReminderValue,
    picked_time,
    snooze_modal,
)
from bot.reminders import store
from bot.reminders.schedule import SnoozeChoice, snooze_target
from bot.runtime import Runtime
from bot.workflow import Outcome
from storage.models import Case, utcnow

log = logging.getLogger(__name__)

OUT_OF_DATE = "That reminder is out of date."


def _value(action: dict[str, Any]) -> ReminderValue | None:
    """Buttons carry the value; selects carry it in their block's ID."""
    try:
        if action.get("value"):
            return ReminderValue.parse(str(action["value"]))
        return ReminderValue.from_block_id(str(action.get("block_id", "")))
    except ValueError:
        return None


def _ephemeral(respond: Respond, text: str) -> None:
    respond(response_type="ephemeral", replace_original=False, text=text)


def _answer(respond: Respond, outcome: Outcome) -> None:
    if outcome.ok:
        respond(replace_original=True, text=outcome.message)
    else:
        _ephemeral(respond, outcome.message)


def register(app: App, runtime: Runtime) -> None:
    engine, policy = runtime.engine, runtime.policy
    zone = policy.business_hours.zone

    def on_done(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        value = _value(action)
        if value is None:
            _ephemeral(respond, OUT_OF_DATE)
            return
        _answer(respond, store.follow_up_done(engine, value.case_id, body["user"]["id"], utcnow()))

    def on_snooze(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                  client: WebClient) -> None:
        ack()
        value = _value(action)
        choice = str((action.get("selected_option") or {}).get("value", ""))
        if value is None or choice not in {c.value for c in SnoozeChoice}:
            _ephemeral(respond, OUT_OF_DATE)
            return
        now = utcnow()
        if choice == SnoozeChoice.PICK:
            # trigger_id expires 3 s after the click: open the modal before anything else.
            client.views_open(trigger_id=body["trigger_id"],
                              view=snooze_modal(value, snooze_target(SnoozeChoice.HOUR, now, zone)))
            return
        until = snooze_target(choice, now, zone)
        _answer(respond, store.snooze(engine, value.case_id, value.reminder_id, until, body["user"]["id"], now,
                                      policy))

    def on_snooze_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        try:
            value = ReminderValue.parse(str(view.get("private_metadata", "")))
        except ValueError:
            ack()
            return
        now = utcnow()
        try:
            until = snooze_target(SnoozeChoice.PICK, now, zone, picked_time(view))
        except ValueError as exc:
            ack(response_action="errors", errors={SNOOZE_BLOCK: str(exc).capitalize() + "."})
            return
        ack()
        user = body["user"]["id"]
        _tell(client, value.case_id, user, store.snooze(engine, value.case_id, value.reminder_id, until, user,
                                                        now, policy))

    def on_reassign(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        value = _value(action)
        if value is None:
            _ephemeral(respond, OUT_OF_DATE)
            return
        outcome = store.reassign(engine, value.case_id, str(action.get("selected_user") or ""), body["user"]["id"],
                                 utcnow())
        _ephemeral(respond, outcome.message)

    def on_card_snooze(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        try:
            button = ButtonValue.parse(str(action.get("value", "")))
        except ValueError:
            _ephemeral(respond, "That button is out of date.")
            return
        _ephemeral(respond, store.snooze_next(engine, button.case_id, body["user"]["id"], utcnow(), policy).message)

    def _tell(client: WebClient, case_id: int, user: str, outcome: Outcome) -> None:
        """After a modal there is no response_url: answer ephemerally in the card's thread."""
        with Session(engine) as session:
            case = session.get(Case, case_id)
        if case is None or case.slack_channel is None:
            return
        client.chat_postEphemeral(channel=case.slack_channel, user=user, text=outcome.message,
                                  thread_ts=case.slack_ts)

    listeners: dict[str, Callable[..., None]] = {
        REMINDER_DONE: on_done,
        REMINDER_SNOOZE: on_snooze,
        REMINDER_REASSIGN: on_reassign,
        ActionId.SNOOZE.value: on_card_snooze,
    }
    for action_id, listener in listeners.items():
        app.action(action_id)(listener)
    app.view(SNOOZE_CALLBACK)(on_snooze_submit)
