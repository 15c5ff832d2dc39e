"""POST /webhooks/dialnexa: verify, parse, store, answer. Nothing here talks to Slack."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from anyio import CapacityLimiter, to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.ingest import ingest
from bot.runtime import Runtime
from bot.web.limits import BodyTooLarge, read_body
from bot.web.signature import SignatureError, verify
from providers.dialnexa import NotACallEvent

log = logging.getLogger(__name__)

# Writers queue on a limiter rather than inside SQLite's busy handler, which sleeps up to 100 ms and
# is unfair; on PostgreSQL a few concurrent writers are plenty for one process.
INGEST_THREADS = 4


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": code, "detail": detail}, status_code=status)


def dialnexa_endpoint(runtime: Runtime) -> Callable[[Request], object]:
    limiter: list[CapacityLimiter] = []  # made on first use, inside the server's event loop

    async def endpoint(request: Request) -> Response:
        if not limiter:
            limiter.append(CapacityLimiter(INGEST_THREADS))
        try:
            raw = await read_body(request)
        except BodyTooLarge as exc:
            return error(413, "body_too_large", str(exc))
        try:
            verify(request.headers, raw, runtime.settings.webhook_secrets(), now=time.time())
        except SignatureError as exc:
            log.warning("dialnexa delivery refused: %s", exc)
            return error(401, "invalid_signature", str(exc))
        try:
            # Decimal for every JSON number with a fraction: amounts must never pass through float.
            body = json.loads(raw, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            return error(400, "malformed_json", f"body is not valid JSON: {exc.__class__.__name__}")
        try:
            result = await to_thread.run_sync(
                ingest, runtime.engine, body, raw, runtime.policy, datetime.now(UTC), limiter=limiter[0]
            )
        except NotACallEvent as exc:
            return error(400, "not_a_call_event", str(exc))
        except Exception:
            # DialNexa retries non-2xx answers, so the delivery is not lost; say nothing internal.
            log.exception("dialnexa delivery could not be stored")
            return error(503, "storage_unavailable", "the delivery could not be stored; retry later")
        if runtime.wake_workers is not None and result.is_billing and result.outcome == "stored":
            runtime.wake_workers()
        return JSONResponse(
            {"ok": True, "outcome": result.outcome, "call_id": result.call_id, "created": result.created}
        )

    return endpoint
