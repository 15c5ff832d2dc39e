"""Replies in a card's thread: the case's history (who did what, what a provider answered)."""

from __future__ import annotations

from typing import Any

from blocks.format import mrkdwn
from blocks.limits import MAX_SECTION_TEXT, truncate_mrkdwn


def thread_reply(text: str) -> dict[str, Any]:
    """A chat.postMessage payload for one history line.

    `text` is mrkdwn the app composed (it may hold <@U…> mentions and <!date^…> stamps), so it is not
    escaped here: callers put every untrusted part through blocks.format first.
    """
    # Slack rejects an empty section; a placeholder keeps an outbox row from failing for ever.
    body = truncate_mrkdwn(text.strip(), MAX_SECTION_TEXT) or "(no details)"
    return {
        "text": body,
        "blocks": [{"type": "section", "text": mrkdwn(body)}],
    }
