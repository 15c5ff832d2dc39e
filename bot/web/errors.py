"""The one error policy of the HTTP edge: a route raises `Refusal`, the app renders every one alike.

The answer is always `{"ok": false, "error": <code>, "detail": <text>}` with the refusal's status; the
detail is written for the sender and never carries a stack trace, a body or anything internal.
"""

from __future__ import annotations

import logging
import secrets

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)


class Refusal(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def storage_unavailable(what: str) -> Refusal:
    """The database failed: 503, because every sender retries a non-2xx and the retry may well succeed."""
    return Refusal(503, "storage_unavailable", f"the {what} could not be stored; retry later")


def render(refusal: Refusal) -> JSONResponse:
    return JSONResponse({"ok": False, "error": refusal.code, "detail": refusal.detail}, status_code=refusal.status)


async def refused(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return render(exc)


async def http_error(_: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the same shape."""
    assert isinstance(exc, HTTPException)
    return render(Refusal(exc.status_code, str(exc.detail), str(exc.detail)))


async def server_error(_: Request, exc: Exception) -> Response:
    # The ID ties the sender's answer to the log line without telling the sender anything internal.
    error_id = secrets.token_hex(4)
    log.error("unhandled error %s: %s", error_id, exc.__class__.__name__)
    return render(Refusal(500, "internal_error", f"finance-desk could not handle this request (error ID {error_id})"))
