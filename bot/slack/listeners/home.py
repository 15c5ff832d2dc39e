"""App Home: publish the opener's Home tab on `app_home_opened`; ack the tab's link buttons."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from blocks.home import OPEN_ACTION_PREFIX, home_view
from bot.actions.authz import refusal
from bot.actions.runner import ActionContext
from bot.lookup.queries import home_data
from bot.runtime import Runtime
from storage.models import Case

log = logging.getLogger(__name__)


def build_home(runtime: Runtime, actions: ActionContext, user: str, now: datetime) -> dict[str, Any]:
    """The Home view for `user`: a plain function, testable without Slack."""
    directory = actions.directory
    approver = directory.is_approver(user)

    def may_approve(case: Case) -> bool:
        return refusal(directory, user, case.amount, case.currency) is None

    data = home_data(runtime.engine, user, now, is_approver=approver, may_approve=may_approve,
                     review_channel=runtime.settings.review_channel)
    return home_view(data)


def register(app: App, runtime: Runtime, actions: ActionContext) -> None:
    @app.event("app_home_opened")
    def app_home_opened(event: dict[str, Any], client: WebClient) -> None:
        # Bolt acks events itself before this runs.
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        user = str(event["user"])
        client.views_publish(user_id=user, view=build_home(runtime, actions, user, datetime.now(UTC)))

    @app.action(re.compile(f"^{OPEN_ACTION_PREFIX}"))
    def open_link(ack: Ack) -> None:
        ack()  # URL buttons open the link in Slack; the click itself needs only an ack
