"""One module per listener group, registered here (the Bolt starter template's layout)."""

from __future__ import annotations

from slack_bolt import App

from bot.actions.runner import ActionContext
from bot.runtime import Runtime


def register_listeners(app: App, runtime: Runtime, actions: ActionContext) -> None:
    from bot.slack.listeners import case_actions, commands, home, money_actions, reminders, review

    case_actions.register(app, runtime, actions)
    reminders.register(app, runtime)
    money_actions.register(app, actions)
    commands.register(app, runtime, actions)
    review.register(app, runtime, actions)
    home.register(app, runtime, actions)
