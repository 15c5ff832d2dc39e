"""POST /webhooks/stripe: Stripe's signed events (refunds, disputes, failed invoice payments).

The `Stripe-Signature` header is checked against every STRIPE_WEBHOOK_SECRET (several while one is
rotated) with a 300-second tolerance before the body is read as an event; the work (re-fetching the
object from Stripe, then one database transaction) runs off the event loop, in bot.stripe_events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.runtime import Runtime
from bot.stripe_events import handle_event
from bot.web.errors import Refusal, storage_unavailable
from bot.web.limits import read_body
from providers.base import ProviderError
from providers.stripe import STRIPE_API_VERSION, InvalidEvent, StripeClient, verify_event

log = logging.getLogger(__name__)

_warned_versions: set[str] = set()
_warned_lock = threading.Lock()


def _check_version(api_version: str | None) -> None:
    """Say once per version that the endpoint's API version is not the one finance-desk pins: the
    object is re-fetched at the pinned version anyway, but the endpoint should be moved to it."""
    if not api_version or api_version == STRIPE_API_VERSION:
        return
    with _warned_lock:
        if api_version in _warned_versions:
            return
        _warned_versions.add(api_version)
    log.warning("Stripe sends webhook events at API version %s; finance-desk reads objects at %s (set the "
                "endpoint's version in Stripe to match)", api_version[:40], STRIPE_API_VERSION)


def stripe_endpoint(runtime: Runtime) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        settings = runtime.settings
        # Without the key nothing could be re-fetched, and an event is never acted on unconfirmed.
        if not settings.stripe_webhook_secret or settings.stripe_api_key is None:
            raise Refusal(404, "not_configured", "STRIPE_WEBHOOK_SECRET and STRIPE_API_KEY are not set")
        raw = await read_body(request)
        secrets = [secret.get_secret_value() for secret in settings.stripe_webhook_secret]
        try:
            event = await run_in_threadpool(verify_event, raw, request.headers.get("stripe-signature"), secrets)
        except InvalidEvent as exc:
            raise Refusal(400, exc.code, str(exc)) from None
        _check_version(event.api_version)
        client = StripeClient(settings.stripe_api_key.get_secret_value(), settings.stripe_api_url,
                              timeout=settings.provider_timeout_seconds)
        try:
            result = await run_in_threadpool(handle_event, runtime.engine, client, runtime.policy, event,
                                             datetime.now(UTC))
        except ProviderError as exc:
            # Stripe retries a non-2xx for days, and the retry re-fetches the object all the same.
            log.warning("stripe webhook %s (%s): Stripe could not be reached to confirm it (%s)", event.id[:80],
                        event.type[:80], exc.__class__.__name__)
            raise Refusal(503, "provider_unavailable", "could not confirm with Stripe; retry later") from None
        except SQLAlchemyError:
            log.exception("stripe webhook %s could not be stored", event.id[:80])
            raise storage_unavailable("event") from None
        finally:
            client.close()
        if runtime.on_stripe_object is not None:
            runtime.on_stripe_object(event.object)
        if runtime.wake_workers is not None:
            runtime.wake_workers()
        return JSONResponse({"ok": True, "result": result})

    return endpoint
