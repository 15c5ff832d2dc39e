"""Card buttons that change the case: ack at once, then call a plain workflow function and tell the
clicker only when nothing changed (the card and its thread show what did)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from slack_bolt import Ack, App, BoltContext
from sqlalchemy import Engine

from blocks.actions import ActionId, ButtonValue
from bot import workflow
from bot.actions.authz import FINANCE_ONLY_REASON
from bot.actions.runner import refuse
from bot.outcome import Outcome
from bot.slack.listeners.context import Interaction, interaction

Change = Callable[[Engine, int, str, datetime], Outcome]


def _change(it: Interaction, action: ActionId, change: Change) -> None:
    case_id = it.ref(ButtonValue).case_id
    if it.permits(action):
        outcome = change(it.desk.runtime.engine, case_id, it.user, it.now())
    else:
        outcome = refuse(it.desk.actions, case_id, it.user, action.value, FINANCE_ONLY_REASON)
    if not outcome.ok:
        it.reply.ephemeral(outcome.message)


def assign_self(ack: Ack, context: BoltContext) -> None:
    ack()
    _change(interaction(context), ActionId.ASSIGN_SELF, workflow.assign_self)


def route_review(ack: Ack, context: BoltContext) -> None:
    ack()
    _change(interaction(context), ActionId.ROUTE_REVIEW, workflow.route_to_review)


def dismiss(ack: Ack, context: BoltContext) -> None:
    ack()
    _change(interaction(context), ActionId.DISMISS, workflow.dismiss)


ACTIONS: dict[str, Callable[..., None]] = {
    ActionId.ASSIGN_SELF: assign_self,
    ActionId.ROUTE_REVIEW: route_review,
    ActionId.DISMISS: dismiss,
}


def register(app: App) -> None:
    for action_id, listener in ACTIONS.items():
        app.action(action_id)(listener)
