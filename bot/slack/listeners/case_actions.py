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
from bot.runtime import Runtime

log = logging.getLogger(__name__)

Handler = Callable[[Engine, int, str, datetime], workflow.Outcome]

_HANDLERS: dict[ActionId, Handler] = {
    ActionId.ASSIGN_SELF: workflow.assign_self,
    ActionId.ROUTE_REVIEW: workflow.route_to_review,
    ActionId.DISMISS: workflow.dismiss,
}


def _listener(runtime: Runtime, handler: Handler) -> Callable[..., None]:
    def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        try:
            value = ButtonValue.parse(str(action.get("value", "")))
        except ValueError:
            respond(response_type="ephemeral", replace_original=False, text="That button is out of date.")
            return
        outcome = handler(runtime.engine, value.case_id, body["user"]["id"], datetime.now(UTC))
        if not outcome.ok:
            respond(response_type="ephemeral", replace_original=False, text=outcome.message)

    return listener


def register(app: App, runtime: Runtime) -> None:
    for action_id, handler in _HANDLERS.items():
        app.action(action_id.value)(_listener(runtime, handler))
