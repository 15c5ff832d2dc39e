"""Counts and times every inbound webhook and Slack request for /metrics, and serves /metrics."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import metrics
from bot.runtime import Runtime
from bot.web.errors import Refusal


class RequestMetrics:
    """Pure ASGI middleware: the source label comes from a closed set (the MoonClerk path token never
    becomes a label) and the outcome from the status the route answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        source = metrics.webhook_source(scope.get("path", "")) if scope["type"] == "http" else None
        if source is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler is answered 500 by the server

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            metrics.observe_webhook(source, status, time.perf_counter() - started)


def metrics_endpoint(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    token = runtime.settings.metrics_token

    async def serve_metrics(request: Request) -> Response:
        if token is not None:
            given = request.headers.get("authorization", "")
            expected = f"Bearer {token.get_secret_value()}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise Refusal(401, "unauthorized", "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>")
        body = await run_in_threadpool(metrics.render, runtime.engine)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    return serve_metrics
