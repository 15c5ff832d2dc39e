"""POST /webhooks/moonclerk/{token}: MoonClerk signs nothing, so the path carries an unguessable token."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.moonclerk_events import MalformedEvent, handle_event
from bot.runtime import Runtime
from bot.web.errors import Refusal, storage_unavailable
from bot.web.limits import parse_json, read_body
from providers.base import NotFound, ProviderError
from providers.moonclerk import MoonClerkClient

log = logging.getLogger(__name__)


def moonclerk_endpoint(runtime: Runtime) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        settings = runtime.settings
        token = settings.moonclerk_webhook_token
        offered = str(request.path_params.get("token", ""))
        # A wrong token looks exactly like a missing route: nothing tells a prober it was close.
        if token is None or not hmac.compare_digest(offered.encode(), token.get_secret_value().encode()):
            raise Refusal(404, "not_found", "no such route")
        if settings.moonclerk_api_key is None:
            raise Refusal(503, "not_configured", "MOONCLERK_API_KEY is not set")
        body = parse_json(await read_body(request))
        if not isinstance(body, dict) or "event" not in body:
            raise Refusal(400, "not_a_moonclerk_event", "expected {event, object, data}")
        client = MoonClerkClient(settings.moonclerk_api_key.get_secret_value(), settings.moonclerk_api_url,
                                 timeout=settings.provider_timeout_seconds)
        try:
            result = await run_in_threadpool(handle_event, runtime.engine, client, runtime.policy, body,
                                             datetime.now(UTC))
        except MalformedEvent as exc:
            # Nothing was read from MoonClerk: retrying the same body cannot help.
            raise Refusal(400, "malformed_event", str(exc)) from None
        except NotFound:
            return JSONResponse({"ok": True, "result": "ignored: MoonClerk has no such record"})
        except ProviderError:
            # A non-2xx makes MoonClerk retry (up to 10 times), so the event is not lost.
            log.warning("moonclerk webhook could not be confirmed with MoonClerk")
            raise Refusal(503, "provider_unavailable", "could not confirm with MoonClerk; retry later") from None
        except SQLAlchemyError:
            log.exception("moonclerk webhook could not be stored")
            raise storage_unavailable("event") from None
        finally:
            client.close()
        if runtime.wake_workers is not None:
            runtime.wake_workers()
        return JSONResponse({"ok": True, "result": result})

    return endpoint
