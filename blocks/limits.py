"""Slack's Block Kit size limits, the helpers that keep text inside them, and a checker for the rules
the JSON schema cannot express (counts across a whole payload, uniqueness, the fallback `text`).

Lengths are counted in UTF-16 code units, not Python code points: Slack documents its limits in
"characters" and its own clients and SDK types are JavaScript, where an emoji outside the BMP counts
as two. Counting the stricter way means a string we accept is accepted whichever way Slack counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_HEADER = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_ID = 255
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
MAX_TEXT_OBJECT = 3000
# Undocumented: Slack answers msg_blocks_too_long at roughly 12-13k characters of block text
# (bolt-js #2509, #2867), and documents 12k cumulative for markdown blocks. Stay under the lower one.
MAX_CUMULATIVE_TEXT = 12_000
# Above this Slack truncates the top-level text and posts anyway, with a warning.
MAX_MESSAGE_TEXT = 40_000

ELLIPSIS = "…"

def slack_len(text: str) -> int:
    """Length as Slack's JavaScript-side limits see it (UTF-16 code units)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` (UTF-16 units), ending in "…" when anything was removed."""
    if slack_len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    budget = limit - slack_len(ELLIPSIS)
    used = 0
    end = 0
    for index, char in enumerate(text):
        size = _units(char)
        if used + size > budget:
            break
        used += size
        end = index + 1
    return text[:end].rstrip() + ELLIPSIS


def fit(text: str, limit: int, transform: Callable[[str], str]) -> str:
    """Apply a per-character `transform` (an escaper) and cut the result to `limit` units."""
    return fit_pieces([transform(char) for char in text], limit)


def fit_pieces(pieces: Sequence[str], limit: int) -> str:
    """Join already-escaped pieces (one per source character) and cut to `limit` units.

    Cutting after escaping could split an entity such as "&amp;" and show garbage; cutting before
    could still overflow because escaping lengthens text. Cutting between pieces avoids both.
    """
    whole = "".join(pieces)
    if slack_len(whole) <= limit:
        return whole
    if limit <= 0:
        return ""
    budget = limit - slack_len(ELLIPSIS)
    used = 0
    kept: list[str] = []
    for piece in pieces:
        size = slack_len(piece)
        if used + size > budget:
            break
        kept.append(piece)
        used += size
    return "".join(kept).rstrip() + ELLIPSIS


def truncate_mrkdwn(text: str, limit: int) -> str:
    """Cut mrkdwn that already contains markup (<@U1>, <url|label>, &amp;, `code`) without breaking a token.

    A cut inside "<https://…|Transcript>" would leave an unterminated link that Slack renders as raw
    text, and a cut inside a code span would leave a backtick that pairs with the next span's, turning
    code into prose and prose into code; so the cut backs off to before any token it would split.
    Untrusted text holds no backticks (blocks.format replaces them), so every backtick is one of ours.
    """
    if slack_len(text) <= limit:
        return text
    cut = truncate(text, limit)
    if not cut.endswith(ELLIPSIS):
        return cut
    body = cut[: -len(ELLIPSIS)]
    opening = body.rfind("<")
    if opening > body.rfind(">"):
        body = body[:opening]
    ampersand = body.rfind("&")
    if ampersand != -1 and ";" not in body[ampersand:]:
        body = body[:ampersand]
    if body.count("`") % 2:
        body = body[: body.rfind("`")]
    return body.rstrip() + ELLIPSIS


# ---------------------------------------------------------------------------------------------------
# Payload checks the JSON schema does not encode.


def _text_of(obj: Any) -> str | None:
    if isinstance(obj, dict) and obj.get("type") in {"plain_text", "mrkdwn"}:
        text = obj.get("text")
        return text if isinstance(text, str) else None
    return None


def _walk_text(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every text-object string in a block tree, with its path, for the cumulative-size rule."""
    text = _text_of(node)
    if text is not None:
        yield path, text
        return
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk_text(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_text(value, f"{path}[{index}]")


def _walk_action_ids(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        action_id = node.get("action_id")
        if isinstance(action_id, str):
            yield f"{path}.action_id", action_id
        for key, value in node.items():
            yield from _walk_action_ids(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_action_ids(value, f"{path}[{index}]")


def _too_long(path: str, text: Any, limit: int) -> list[str]:
    if isinstance(text, str) and slack_len(text) > limit:
        return [f"{path}: {slack_len(text)} characters, limit {limit}"]
    return []


def _check_button(element: dict[str, Any], path: str) -> list[str]:
    problems = _too_long(f"{path}.text.text", (element.get("text") or {}).get("text"), MAX_BUTTON_TEXT)
    problems += _too_long(f"{path}.value", element.get("value"), MAX_BUTTON_VALUE)
    confirm = element.get("confirm")
    if isinstance(confirm, dict):
        for key, limit in (("title", MAX_CONFIRM_TITLE), ("text", MAX_CONFIRM_TEXT),
                           ("confirm", MAX_CONFIRM_BUTTON), ("deny", MAX_CONFIRM_BUTTON)):
            problems += _too_long(f"{path}.confirm.{key}.text", (confirm.get(key) or {}).get("text"), limit)
    return problems


def _check_block(block: Any, path: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"{path}: not an object"]
    problems: list[str] = []
    kind = block.get("type")
    problems += _too_long(f"{path}.block_id", block.get("block_id"), MAX_ID)
    if kind == "section":
        text = block.get("text")
        fields = block.get("fields")
        if text is None and not fields:
            problems.append(f"{path}: a section needs text or fields")
        problems += _too_long(f"{path}.text.text", _text_of(text), MAX_SECTION_TEXT)
        if isinstance(fields, list):
            if len(fields) > MAX_FIELDS:
                problems.append(f"{path}.fields: {len(fields)} fields, limit {MAX_FIELDS}")
            for index, field in enumerate(fields):
                problems += _too_long(f"{path}.fields[{index}].text", _text_of(field), MAX_FIELD_TEXT)
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") == "button":
            problems += _check_button(accessory, f"{path}.accessory")
    elif kind == "header":
        problems += _too_long(f"{path}.text.text", _text_of(block.get("text")), MAX_HEADER)
    elif kind == "context":
        elements = block.get("elements") or []
        if len(elements) > MAX_CONTEXT_ELEMENTS:
            problems.append(f"{path}.elements: {len(elements)} elements, limit {MAX_CONTEXT_ELEMENTS}")
        for index, element in enumerate(elements):
            problems += _too_long(f"{path}.elements[{index}].text", _text_of(element), MAX_TEXT_OBJECT)
    elif kind == "actions":
        elements = block.get("elements") or []
        if len(elements) > MAX_ACTIONS_ELEMENTS:
            problems.append(f"{path}.elements: {len(elements)} elements, limit {MAX_ACTIONS_ELEMENTS}")
        for index, element in enumerate(elements):
            if isinstance(element, dict) and element.get("type") == "button":
                problems += _check_button(element, f"{path}.elements[{index}]")
    return problems


def _check_blocks(blocks: Any, max_blocks: int, *, cumulative: bool) -> list[str]:
    if not isinstance(blocks, list):
        return ["blocks: not a list"]
    problems: list[str] = []
    if len(blocks) > max_blocks:
        problems.append(f"blocks: {len(blocks)} blocks, limit {max_blocks}")
    block_ids: dict[str, str] = {}
    for index, block in enumerate(blocks):
        # Slack wants an action_id unique within its block (Block Kit reference); modals rely on this,
        # each input block naming its element "value".
        action_ids: dict[str, str] = {}
        path = f"blocks[{index}]"
        problems += _check_block(block, path)
        if isinstance(block, dict) and isinstance(block.get("block_id"), str):
            block_id = block["block_id"]
            if block_id in block_ids:
                problems.append(f"{path}.block_id: {block_id!r} duplicates {block_ids[block_id]}")
            else:
                block_ids[block_id] = path
        for where, action_id in _walk_action_ids(block, path):
            if action_id in action_ids:
                problems.append(f"{where}: action_id {action_id!r} duplicates {action_ids[action_id]}")
            else:
                action_ids[action_id] = where
    texts = list(_walk_text(blocks, "blocks"))
    if cumulative:
        total = sum(slack_len(text) for _, text in texts)
        if total > MAX_CUMULATIVE_TEXT:
            problems.append(f"blocks: {total} characters of text in all, limit about {MAX_CUMULATIVE_TEXT}")
    markdown = sum(
        slack_len(block.get("text", "")) for block in blocks
        if isinstance(block, dict) and block.get("type") == "markdown" and isinstance(block.get("text"), str)
    )
    if markdown > MAX_CUMULATIVE_TEXT:
        problems.append(f"blocks: {markdown} characters in markdown blocks, limit {MAX_CUMULATIVE_TEXT}")
    return problems


def check_message(message: dict[str, Any]) -> list[str]:
    """Limit violations in a chat.postMessage / chat.update payload; empty when it is fine."""
    problems: list[str] = []
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append("text: fallback text missing or empty (notifications and screen readers use it)")
    else:
        problems += _too_long("text", text, MAX_MESSAGE_TEXT)
    if "blocks" in message:
        problems += _check_blocks(message["blocks"], MAX_MESSAGE_BLOCKS, cumulative=True)
    return problems


def check_view(view: dict[str, Any]) -> list[str]:
    """Limit violations in a modal or Home tab view; empty when it is fine."""
    problems: list[str] = []
    if view.get("type") not in {"modal", "home"}:
        problems.append(f"type: {view.get('type')!r} is not a view type (modal or home)")
    blocks = view.get("blocks")
    if not blocks:
        problems.append("blocks: a view needs at least one block")
    else:
        problems += _check_blocks(blocks, MAX_VIEW_BLOCKS, cumulative=False)
    return problems
