"""Request signing written independently of the app's verifier, exactly as the senders document it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any


def dialnexa_headers(body: bytes, secret: str, *, prefix: bool = True, timestamp: int | None = None) -> dict[str, str]:
    if timestamp is not None:
        mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return {"X-DialNexa-Signature": f"v1={mac}", "X-DialNexa-Timestamp": str(timestamp),
                "Content-Type": "application/json"}
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-DialNexa-Signature": f"sha256={mac}" if prefix else mac, "Content-Type": "application/json"}


def slack_headers(body: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:{body}".encode()
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"}


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
