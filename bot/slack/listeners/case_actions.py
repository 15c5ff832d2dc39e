"""Card buttons: ack at once, then call a plain workflow function and tell the clicker the result."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy import Engine

from blocks.actions import ActionId, ButtonValue
from bot import workflow
from bot.actions.runner import ActionContext, refuse
from bot.runtime import Runtime

log = logging.getLogger(__name__)

Handler = Callable[[Engine, int, str, datetime], workflow.Outcome]

_HANDLERS: dict[ActionId, Handler] = {
    ActionId.ASSIGN_SELF: workflow.assign_self,
    ActionId.ROUTE_REVIEW: workflow.route_to_review,
    ActionId.DISMISS: workflow.dismiss,
}


# Closing a case ends its follow-ups and pages: only finance people may (approvers, senior approvers,
# the default finance owner). Assigning and routing to review stay open to the channel.
FINANCE_ONLY = frozenset({ActionId.DISMISS})


def _listener(runtime: Runtime, actions: ActionContext, action_id: ActionId, handler: Handler) -> Callable[..., None]:
    def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        try:
            value = ButtonValue.parse(str(action.get("value", "")))
        except ValueError:
            respond(response_type="ephemeral", replace_original=False, text="That button is out of date.")
            return
        user = body["user"]["id"]
        if action_id in FINANCE_ONLY and not actions.directory.is_finance(user):
            outcome = refuse(actions, value.case_id, user, action_id.value,
                             "only finance people (approvers or the default finance owner) may do this")
            respond(response_type="ephemeral", replace_original=False, text=outcome.message)
            return
        outcome = handler(runtime.engine, value.case_id, user, datetime.now(UTC))
        if not outcome.ok:
            respond(response_type="ephemeral", replace_original=False, text=outcome.message)

    return listener


def register(app: App, runtime: Runtime, actions: ActionContext) -> None:
    for action_id, handler in _HANDLERS.items():
        app.action(action_id.value)(_listener(runtime, actions, action_id, handler))
