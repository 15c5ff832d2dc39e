"""Request body limits and JSON parsing shared by every inbound route."""

from __future__ import annotations

import json
from decimal import Decimal

from starlette.requests import Request

from bot.web.errors import Refusal

MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(Refusal):
    def __init__(self, detail: str) -> None:
        super().__init__(413, "body_too_large", detail)


class MalformedJson(Refusal):
    """The detail names what kind of problem it was, never the body.

    It takes the detail alone so that it survives the trip back from the large-body worker process
    (an exception is pickled as its class and its args).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(400, "malformed_json", detail)


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
