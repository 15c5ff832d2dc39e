"""Links that open a payload in Slack's Block Kit Builder, for debugging a card by eye."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

BUILDER_URL = "https://app.slack.com/block-kit-builder/#"


def block_kit_builder_url(message: dict[str, Any]) -> str:
    """The Builder reads a URL-quoted JSON `{"blocks": [...]}` from the fragment; `text` is not part of it."""
    payload = json.dumps({"blocks": message.get("blocks", [])}, separators=(",", ":"), ensure_ascii=False)
    return BUILDER_URL + quote(payload, safe="")
