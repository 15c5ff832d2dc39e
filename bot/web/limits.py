"""Request body limits shared by every inbound route."""

from __future__ import annotations

from starlette.requests import Request

MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read the body, refusing as soon as it passes the limit rather than buffering it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body is larger than {limit} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise BodyTooLarge(f"body is larger than {limit} bytes")
    return bytes(chunks)
