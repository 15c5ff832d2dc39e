"""The Bolt app in HTTP mode: one URL for events, interactivity and slash commands."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from bot.actions.runner import ActionContext
from bot.runtime import Runtime
from bot.slack.listeners import case_actions, commands, decisions, home, mail, money_actions, reminders, review
from bot.slack.listeners.context import Desk, Prepare, on_error
from bot.web.limits import read_body

log = logging.getLogger(__name__)

LISTENERS: tuple[Callable[[App], None], ...] = (
    case_actions.register, money_actions.register, reminders.register, commands.register, review.register,
    home.register, decisions.register, mail.register,
)


def build_bolt_app(runtime: Runtime, client: WebClient, actions: ActionContext, *, socket_mode: bool = False) -> App:
    settings = runtime.settings
    assert settings.slack_bot_token is not None
    # Socket Mode requests arrive over the app-token WebSocket and carry no signature to check.
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    assert socket_mode or signing_secret is not None
    app = App(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=not socket_mode,
        # auth.test at construction would make the webhook depend on Slack being up at start-up.
        token_verification_enabled=False,
        # Provider calls can be slow; Bolt's default of 5 threads would queue clicks behind them.
        listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="bolt"),
        logger=logging.getLogger("bot.slack.bolt"),
    )
    app.use(Prepare(Desk(runtime, actions)))
    for register in LISTENERS:
        register(app)
    app.error(on_error)
    return app


def slack_events_endpoint(bolt: App) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        raw = await read_body(request)  # BodyTooLarge is a Refusal: the app answers 413
        bolt_request = BoltRequest(
            body=raw.decode("utf-8", errors="replace"),
            query=request.url.query,
            headers={key: [value] for key, value in request.headers.items()},
        )
        # dispatch blocks until the listener acks; run it off the event loop.
        bolt_response = await run_in_threadpool(bolt.dispatch, bolt_request)
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers={k: v[0] for k, v in bolt_response.headers.items() if k.lower() != "content-length"},
        )

    return endpoint
