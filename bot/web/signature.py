"""DialNexa webhook signatures: HMAC-SHA256 of the raw body, or of `timestamp.body` when timestamped."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

TOLERANCE_SECONDS = 300
_SEPARATORS = re.compile(r"[,\s]+")


class SignatureError(Exception):
    """Why a delivery was refused; safe to show the caller (never contains a secret)."""


def _candidates(header: str, prefixes: tuple[str, ...]) -> list[str]:
    values = []
    for part in _SEPARATORS.split(header.strip()):
        lowered = part.lower()
        for prefix in prefixes:
            if lowered.startswith(prefix):
                lowered = lowered[len(prefix) :]
                break
        if lowered:
            values.append(lowered)
    return values


def verify(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes], now: float) -> None:
    """Raise SignatureError unless some configured secret signed this body.

    Without X-DialNexa-Timestamp the signature is over the raw body (`sha256=` prefix optional), as
    DialNexa documents. With it, only the timestamped form counts, so a captured body cannot be
    replayed under the weaker scheme once a sender has opted into timestamps.
    """
    signature = headers.get("x-dialnexa-signature") or headers.get("x-nexa-signature")
    if not signature:
        raise SignatureError("missing X-DialNexa-Signature header")
    if not secrets:
        raise SignatureError("no webhook secret is configured")
    timestamp = headers.get("x-dialnexa-timestamp")
    if timestamp is not None:
        try:
            sent_at = int(timestamp.strip())
        except ValueError:
            raise SignatureError("X-DialNexa-Timestamp is not a Unix time in seconds") from None
        if abs(now - sent_at) > TOLERANCE_SECONDS:
            raise SignatureError("X-DialNexa-Timestamp is outside the 5-minute window")
        message = timestamp.strip().encode() + b"." + body
        offered = _candidates(signature, ("v1=", "sha256="))
    else:
        message = body
        offered = _candidates(signature, ("sha256=",))
    for secret in secrets:
        expected = hmac.digest(secret, message, "sha256").hex()
        # Every candidate is compared against every secret so timing does not reveal which matched.
        if any(hmac.compare_digest(expected, value) for value in offered):
            return
    raise SignatureError("signature does not match")


def sign(body: bytes, secret: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers a DialNexa sender would attach; used by the demo, benchmarks and tests."""
    if timestamp is None:
        digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
        return {"X-DialNexa-Signature": f"sha256={digest}"}
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-DialNexa-Signature": f"v1={digest}", "X-DialNexa-Timestamp": str(timestamp)}
