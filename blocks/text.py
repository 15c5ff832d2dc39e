"""A plain-text view of a Block Kit message, for terminals (`finance-desk demo`) and logs."""

from __future__ import annotations

import re
from typing import Any

_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
_MENTION = re.compile(r"<@([A-Z0-9]+)>")
_GROUP = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>")
_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")


def _plain(text: str) -> str:
    text = _DATE.sub(r"\1", text)
    text = _LINK.sub(r"\2 (\1)", text)
    text = _MENTION.sub(r"@\1", text)
    text = _GROUP.sub(r"@group:\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text(obj: Any) -> str:
    return _plain(str(obj.get("text", ""))) if isinstance(obj, dict) else ""


def render(message: dict[str, Any], width: int = 100) -> list[str]:
    lines: list[str] = []
    for block in message.get("blocks") or [{"type": "section", "text": {"text": message.get("text", "")}}]:
        kind = block.get("type")
        if kind == "header":
            title = _text(block.get("text"))
            lines += [title, "=" * min(width, max(len(title), 10))]
        elif kind == "section":
            if block.get("text"):
                lines += _text(block["text"]).splitlines()
            for field in block.get("fields", []):
                lines.append("  " + _text(field).replace("\n", " "))
        elif kind == "context":
            lines.append("  " + "  ·  ".join(_text(e) for e in block.get("elements", []) if "text" in e))
        elif kind == "actions":
            buttons = [f"[{_text(e.get('text'))}]" for e in block.get("elements", [])]
            lines.append("  " + " ".join(buttons))
        elif kind == "divider":
            lines.append("-" * min(width, 40))
    return lines
