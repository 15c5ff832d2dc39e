"""App Home: publish the opener's Home tab on `app_home_opened`; ack the tab's link buttons.

Who may decide what is answered here, with bot.decisions' own terms (authorities, still_needed), so
the Home tab offers Approve and Deny exactly where a click would be accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import Session

from blocks.actions import HOME_OPEN_PREFIX
from blocks.home import home_view
from bot.actions.authz import Directory, refusal
from bot.actions.runner import ActionContext
from bot.decisions import authorities, may_approve_now
from bot.lookup.queries import home_data
from bot.runtime import Runtime
from bot.slack.listeners.context import interaction
from storage.db import reader
from storage.models import Case


def home_for(engine: Engine, directory: Directory, user: str, now: datetime, *,
             review_channel: str | None = None) -> dict[str, Any]:
    """The Home view for `user`: a plain function, testable without Slack."""
    with Session(reader(engine)) as session:
        held = authorities(session, directory, user, now)

    def may_confirm(case: Case) -> bool:
        # A payout's second approval is a money action: the approver's own authority, not a delegate's.
        return refusal(directory, user, case.amount, case.currency) is None

    data = home_data(engine, user, now, is_approver=bool(held),
                     may_decide=lambda case: may_approve_now(directory, held, case), may_confirm=may_confirm,
                     review_channel=review_channel, may_resolve=directory.is_finance(user))
    return home_view(data)


def build_home(runtime: Runtime, actions: ActionContext, user: str, now: datetime) -> dict[str, Any]:
    return home_for(runtime.engine, actions.directory, user, now, review_channel=runtime.settings.review_channel)


def publish_home(runtime: Runtime, actions: ActionContext, client: WebClient, user: str, now: datetime) -> None:
    """Publish `user`'s Home again (after a decision made from it, so the row leaves at once)."""
    client.views_publish(user_id=user, view=build_home(runtime, actions, user, now))


def app_home_opened(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    # Bolt acks events itself before this runs.
    if event.get("tab", "home") != "home" or not event.get("user"):
        return
    it = interaction(context)
    publish_home(it.desk.runtime, it.desk.actions, client, str(event["user"]), it.now())


def open_link(ack: Ack) -> None:
    ack()  # URL buttons open the link in Slack; the click itself needs only an ack


EVENTS: dict[str, Callable[..., None]] = {"app_home_opened": app_home_opened}
ACTIONS: dict[re.Pattern[str], Callable[..., None]] = {re.compile(f"^{HOME_OPEN_PREFIX}"): open_link}


def register(app: App) -> None:
    for event, listener in EVENTS.items():
        app.event(event)(listener)
    for action_id, link in ACTIONS.items():
        app.action(action_id)(link)
