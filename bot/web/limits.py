"""Request body limits and JSON parsing shared by every inbound route."""

from __future__ import annotations

import json
from decimal import Decimal

from starlette.requests import Request

MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(Exception):
    pass


class MalformedJson(Exception):
    """str() names what kind of problem it was, never the body."""


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


def parse_json(raw: bytes) -> object:
    """The body as JSON, every number with a fraction as a Decimal (amounts never pass through float).

    Nesting deeper than the interpreter's recursion limit raises RecursionError inside the parser:
    that is the sender's malformed body too, never a 500.
    """
    try:
        return json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise MalformedJson(f"body is not valid JSON: {exc.__class__.__name__}") from None
