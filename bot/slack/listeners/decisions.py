"""Decisions from the card, the Home tab and a thread: approve, deny, resolve, callback done.

Thin: ack, then a plain function in bot.decisions. The middleware has already refused people who are
not finance people and clicks on a card older than the case; the functions check the rest (who may
approve, at what level, in which state) under the case's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from blocks.actions import ActionId, ButtonValue, CallbackId, ControlId
from blocks.modals import deny_modal, resolve_modal, submitted
from bot import decisions
from bot.decisions import RESOLUTION_LABELS, Resolution
from bot.slack.listeners.context import Interaction, interaction
from storage.db import reader
from storage.models import Case


def _case(it: Interaction) -> Case | None:
    with Session(reader(it.desk.runtime.engine)) as session:
        return session.get(Case, it.ref(ButtonValue).case_id)


def approve(ack: Ack, context: BoltContext) -> None:
    ack()
    it = interaction(context)
    case_id = it.ref(ButtonValue).case_id
    it.change_later(lambda: decisions.approve(it.desk.runtime.engine, it.desk.actions.directory, case_id, it.user,
                                              it.now()))


def callback_done(ack: Ack, context: BoltContext) -> None:
    ack()
    it = interaction(context)
    case_id = it.ref(ButtonValue).case_id
    it.change_later(lambda: decisions.callback_done(it.desk.runtime.engine, it.desk.actions.directory, case_id,
                                                    it.user, it.now()))


def _open(it: Interaction, trigger_id: str, client: WebClient, decision: str,
          modal: Callable[[Case], dict[str, Any]]) -> None:
    case = _case(it)
    if case is None:
        it.reply.ephemeral(ButtonValue.stale)
        return
    problem = decisions.cannot_open(it.desk.runtime.engine, it.desk.actions.directory, case, it.user, decision,
                                    it.now())
    if problem:
        it.reply.ephemeral(problem)
        return
    # trigger_id expires 3 s after the click: open the modal before anything slow.
    client.views_open(trigger_id=trigger_id, view=modal(case))


def deny(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    _open(interaction(context), body["trigger_id"], client, "deny", lambda case: deny_modal(
        case, min_length=decisions.DENY_REASON_MIN, max_length=decisions.DENY_REASON_MAX))


def resolve(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    outcomes = [(outcome.value, label) for outcome, label in RESOLUTION_LABELS.items()]
    _open(interaction(context), body["trigger_id"], client, "resolve", lambda case: resolve_modal(
        case, outcomes, note_max=decisions.NOTE_MAX, reference_max=decisions.REFERENCE_MAX))


def deny_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    parsed = decisions.parse_deny(submitted(view))
    if isinstance(parsed, dict):
        ack(response_action="errors", errors=parsed)
        return
    ack()
    it = interaction(context)
    case_id = it.ref(ButtonValue).case_id
    it.change_later(lambda: decisions.deny(it.desk.runtime.engine, it.desk.actions.directory, case_id, it.user,
                                           parsed, it.now()))


def resolve_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    parsed = decisions.parse_resolve(submitted(view))
    if isinstance(parsed, dict):
        ack(response_action="errors", errors=parsed)
        return
    it = interaction(context)
    outcome, note, reference = parsed
    case = _case(it)
    if case is not None and outcome in decisions.MONEY_RESOLUTIONS and decisions.awaiting_approval(case):
        # Said in place, so the person can pick another outcome or cancel and get approval first.
        ack(response_action="errors", errors={"outcome": decisions.approval_first(outcome)})
        return
    ack()
    case_id = it.ref(ButtonValue).case_id
    it.change_later(lambda: decisions.resolve(it.desk.runtime.engine, it.desk.actions.directory, case_id, it.user,
                                              outcome, note, reference, it.now()))


ACTIONS: dict[str, Callable[..., None]] = {
    ActionId.APPROVE: approve,
    ActionId.DENY: deny,
    ActionId.RESOLVE: resolve,
    ControlId.CALLBACK_DONE: callback_done,
}
VIEWS: dict[str, Callable[..., None]] = {
    CallbackId.DENY: deny_submitted,
    CallbackId.RESOLVE: resolve_submitted,
}

__all__ = ["ACTIONS", "VIEWS", "Resolution", "register"]


def register(app: App) -> None:
    for action_id, listener in ACTIONS.items():
        app.action(action_id)(listener)
    for callback_id, listener in VIEWS.items():
        app.view(callback_id)(listener)
