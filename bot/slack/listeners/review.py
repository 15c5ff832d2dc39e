"""The review channel's customer picker: ack, settle the match (bot.lookup.review.pick), then replace
the review message with the outcome, or tell the picker why nothing changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext

from blocks.actions import ControlId
from blocks.review import review_settled
from bot.actions import authz
from bot.lookup.review import pick
from bot.slack.listeners.context import interaction


def review_pick(ack: Ack, action: dict[str, Any], context: BoltContext) -> None:
    ack()
    it = interaction(context)
    runtime = it.desk.runtime
    # pick() reads the option value itself (it is also called without Slack); the middleware has already
    # answered options that do not parse.
    value = str((action.get("selected_option") or {}).get("value") or "")
    outcome = pick(runtime.engine, value, it.user, it.now(), policy=runtime.policy,
                   may_decide=lambda user: authz.permits(it.desk.actions.directory, user, ControlId.REVIEW_PICK))
    if outcome.ok and outcome.case is not None:
        it.reply.replace(review_settled(outcome.case, it.user))
        status = it.desk.actions.stripe_status
        if status is not None and outcome.case.id is not None:
            status.refresh_later(outcome.case.id)  # the picked customer's Stripe line
    else:
        it.reply.ephemeral(outcome.message)


ACTIONS: dict[str, Callable[..., None]] = {ControlId.REVIEW_PICK: review_pick}


def register(app: App) -> None:
    for action_id, listener in ACTIONS.items():
        app.action(action_id)(listener)
