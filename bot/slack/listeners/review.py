"""The review channel's customer picker: ack, settle the match (bot.lookup.review.pick), then replace
the review message with the outcome, or tell the picker why nothing changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond

from blocks.review import PICK_ACTION, review_settled
from bot.actions.runner import ActionContext
from bot.lookup.review import pick
from bot.runtime import Runtime


def register(app: App, runtime: Runtime, actions: ActionContext) -> None:
    may_decide = actions.directory.is_finance

    @app.action(PICK_ACTION)
    def review_pick(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        user = str(body.get("user", {}).get("id") or "")
        value = str((action.get("selected_option") or {}).get("value") or "")
        outcome = pick(runtime.engine, value, user, datetime.now(UTC), may_decide=may_decide,
                       policy=runtime.policy)
        if outcome.ok and outcome.case is not None:
            message = review_settled(outcome.case, user)
            respond(replace_original=True, text=message["text"], blocks=message["blocks"])
        else:
            respond(response_type="ephemeral", replace_original=False, text=outcome.message)
