"""One module per listener, registered here (the Bolt starter template's layout)."""

from __future__ import annotations

from slack_bolt import App

from bot.runtime import Runtime


def register_listeners(app: App, runtime: Runtime) -> None:
    from bot.slack.listeners import case_actions

    case_actions.register(app, runtime)
