"""App Home: publish the opener's Home tab on `app_home_opened`; ack the tab's link buttons."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from blocks.actions import HOME_OPEN_PREFIX
from blocks.home import home_view
from bot.actions.authz import refusal
from bot.actions.runner import ActionContext
from bot.lookup.queries import home_data
from bot.runtime import Runtime
from bot.slack.listeners.context import interaction
from storage.models import Case


def build_home(runtime: Runtime, actions: ActionContext, user: str, now: datetime) -> dict[str, Any]:
    """The Home view for `user`: a plain function, testable without Slack."""
    directory = actions.directory
    approver = directory.is_approver(user)

    def may_approve(case: Case) -> bool:
        return refusal(directory, user, case.amount, case.currency) is None

    data = home_data(runtime.engine, user, now, is_approver=approver, may_approve=may_approve,
                     review_channel=runtime.settings.review_channel)
    return home_view(data)


def app_home_opened(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    # Bolt acks events itself before this runs.
    if event.get("tab", "home") != "home" or not event.get("user"):
        return
    it = interaction(context)
    user = str(event["user"])
    client.views_publish(user_id=user, view=build_home(it.desk.runtime, it.desk.actions, user, it.now()))


def open_link(ack: Ack) -> None:
    ack()  # URL buttons open the link in Slack; the click itself needs only an ack


EVENTS: dict[str, Callable[..., None]] = {"app_home_opened": app_home_opened}
ACTIONS: dict[re.Pattern[str], Callable[..., None]] = {re.compile(f"^{HOME_OPEN_PREFIX}"): open_link}


def register(app: App) -> None:
    for event, listener in EVENTS.items():
        app.event(event)(listener)
    for action_id, link in ACTIONS.items():
        app.action(action_id)(link)
