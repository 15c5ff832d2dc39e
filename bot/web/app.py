"""The ASGI application: every inbound HTTP route of finance-desk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.lookup.directory import freshness as directory_freshness
from bot.runtime import Runtime
from bot.web.dialnexa import LargeBodyWorker, dialnexa_endpoint
from bot.web.errors import Refusal, http_error, refused, server_error
from bot.web.moonclerk import moonclerk_endpoint
from bot.web.observe import RequestMetrics, metrics_endpoint
from bot.web.poof import poof_endpoint
from bot.web.stripe import stripe_endpoint
from storage.db import is_reachable


def create_app(runtime: Runtime) -> Starlette:
    large_bodies = LargeBodyWorker(runtime)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        large_bodies.close()

    async def healthz(_: Request) -> Response:
        if not await run_in_threadpool(is_reachable, runtime.engine):
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        body: dict[str, object] = {"status": "ok", "database": "ok"}
        if runtime.settings.moonclerk_api_key is not None:
            # How fresh the customer directory is (bot.lookup.directory): informational, never degraded.
            body["directory"] = await run_in_threadpool(directory_freshness, runtime.engine)
        problems = runtime.health_problems()
        if problems:
            body.update(status="degraded", problems=problems)
        return JSONResponse(body)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint(runtime), methods=["GET"]),
        Route("/webhooks/dialnexa", dialnexa_endpoint(runtime, large_bodies), methods=["POST"]),
        Route("/webhooks/poof", poof_endpoint(runtime), methods=["POST"]),
        Route("/webhooks/moonclerk/{token}", moonclerk_endpoint(runtime), methods=["POST"]),
        Route("/webhooks/stripe", stripe_endpoint(runtime), methods=["POST"]),
        *runtime.extra_routes,
    ]
    return Starlette(
        routes=routes,
        exception_handlers={Refusal: refused, HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
        middleware=[Middleware(RequestMetrics)],
    )
