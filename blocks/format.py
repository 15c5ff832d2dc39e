"""mrkdwn fragments built from untrusted values: prose, identifiers, links, mentions and dates.

Everything a caller said or an upstream system sent goes through one of these before it reaches a
card, so the card can never ping a channel, fake a link or restyle itself.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from urllib.parse import quote, urlsplit

from blocks.limits import fit, fit_pieces

# Slack has no escape for its formatting characters, so in prose they become look-alikes - but only
# where Slack would read them as markup, at a word edge. Inside a word ("past_due", "INV_7") Slack
# leaves them alone and so do we. Identifiers go in code spans instead (see `code`).
_LOOKALIKES = {
    "*": "∗",  # U+2217
    "_": "ˍ",  # U+02CD
    "~": "∼",  # U+223C
}
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_CODE = {**_ESCAPES, "`": "ˋ"}  # U+02CB: a backtick would end the code span
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_SPACES = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")
# Characters that may stay as they are inside the URL part of <url|label>; everything else
# (spaces, <, >, |, quotes, non-ASCII) is percent-encoded so it cannot end the link early.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"


def _prose_pieces(text: str) -> list[str]:
    pieces: list[str] = []
    for index, char in enumerate(text):
        if char in _LOOKALIKES:
            before = text[index - 1] if index else " "
            after = text[index + 1] if index + 1 < len(text) else " "
            inside_word = before.isalnum() and after.isalnum()
            pieces.append(char if inside_word else _LOOKALIKES[char])
        elif char == "`":
            pieces.append(_CODE[char])
        else:
            pieces.append(_ESCAPES.get(char, char))
    return pieces


def _code_char(char: str) -> str:
    return _CODE.get(char, char)


def one_line(value: object) -> str:
    """Collapse whitespace so a value cannot start a fake line such as "*Amount:* 0"."""
    return _SPACES.sub(" ", str(value)).strip()


def inline(value: object, limit: int) -> str:
    """A short untrusted value on one line: escaped, formatting neutralised, cut to `limit`."""
    return fit_pieces(_prose_pieces(one_line(value)), limit)


def prose(value: object, limit: int) -> str:
    """Untrusted multi-line text (a summary): like `inline` but keeps paragraph breaks."""
    text = _BLANK_LINES.sub("\n\n", str(value).replace("\r\n", "\n").replace("\r", "\n")).strip()
    return fit_pieces(_prose_pieces(text), limit)


def code(value: object, limit: int) -> str:
    """An identifier in a code span: exact and copyable, immune to *bold* and _italic_."""
    return "`" + fit(one_line(value), max(limit - 2, 1), _code_char) + "`"


def mention(user: str | None, limit: int = 60) -> str | None:
    """`<@U…>` for a Slack user ID; any other actor ("system", a name) as escaped text."""
    if not user:
        return None
    if _USER_ID.fullmatch(user):
        return f"<@{user}>"
    return inline(user, limit)


def is_user_id(value: str | None) -> bool:
    return bool(value) and _USER_ID.fullmatch(value or "") is not None


def _as_utc(moment: datetime) -> datetime:
    # The database hands back aware UTC datetimes; a naive one can only have come from code that
    # meant UTC, so it is read as UTC rather than as this host's local time.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def slack_date(moment: datetime) -> str:
    """A moment each reader sees in their own time zone; the fallback is UTC."""
    moment = _as_utc(moment)
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def calendar_date(day: date) -> str:
    # A due date is a calendar day, not an instant: converting it to each reader's zone would move
    # it a day for half the world, so it is printed as it is.
    return f"{day:%a} {day.day} {day:%b %Y}"


def safe_url(url: str | None) -> str | None:
    """The URL ready for <url|label>, or None when it is not an absolute http(s) link."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        return None
    return quote(url, safe=_URL_SAFE).replace("&", "&amp;")


def link(url: str, label: str) -> str:
    """`url` must come from `safe_url`; `label` is ours, never user text."""
    return f"<{url}|{label}>"
