"""The one way untrusted values become mrkdwn: prose, identifiers, links, mentions, dates and money.

Everything a caller said or an upstream system sent (a provider's error text included) goes through
`inline`, `prose` or `code` before it reaches any surface - cards, thread replies, notes, pages, review
posts, modals, ephemeral answers, the Home tab - so it can never ping anyone, fake a link, open a code
span, restyle itself or start a quote. Links are made only by `link`, which accepts nothing but an
absolute http(s) URL and encodes it itself; mentions only from validated Slack IDs. Text objects are
made by `mrkdwn`, which turns off Slack's auto-linking of bare names and URLs.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

from blocks.limits import fit, fit_pieces
from providers.currency import ISO_4217, format_amount

# Slack has no escape for its formatting characters, so in prose they become look-alikes - but only
# where Slack would read them as markup, at a word edge. Inside a word ("past_due", "INV_7") Slack
# leaves them alone and so do we. Identifiers go in code spans instead (see `code`).
_LOOKALIKES = {
    "*": "∗",  # U+2217
    "_": "ˍ",  # U+02CD
    "~": "∼",  # U+223C
}
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_CODE = {**_ESCAPES, "`": "ˋ"}  # U+02CB: a backtick would open or end a code span
# Slack reads ">" at the start of a line as a block quote even when it arrives as "&gt;".
_QUOTE = "＞"  # U+FF1E
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,40}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,40}")
_SPACES = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")
# Characters that may stay as they are inside the URL part of <url|label>; everything else
# (spaces, <, >, |, quotes, backticks, non-ASCII) is percent-encoded so it cannot end the link early.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"


def _prose_pieces(text: str) -> list[str]:
    pieces: list[str] = []
    # The value may be placed at the start of a line (a card field is "*Label*\n<value>"), so its
    # own start counts as one.
    line_start = True
    for index, char in enumerate(text):
        if char in _LOOKALIKES:
            before = text[index - 1] if index else " "
            after = text[index + 1] if index + 1 < len(text) else " "
            inside_word = before.isalnum() and after.isalnum()
            pieces.append(char if inside_word else _LOOKALIKES[char])
        elif char == ">" and line_start:
            pieces.append(_QUOTE)
        else:
            pieces.append(_CODE.get(char, char))
        if char == "\n":
            line_start = True
        elif not char.isspace():
            line_start = False
    return pieces


def _code_char(char: str) -> str:
    return _CODE.get(char, char)


def one_line(value: object) -> str:
    """Collapse whitespace so a value cannot start a fake line such as "*Amount:* 0"."""
    return _SPACES.sub(" ", str(value)).strip()


def inline(value: object, limit: int) -> str:
    """A short untrusted value on one line, as inert mrkdwn: escaped, formatting neutralised, cut to `limit`."""
    return fit_pieces(_prose_pieces(one_line(value)), limit)


def prose(value: object, limit: int) -> str:
    """Untrusted multi-line text (a summary): like `inline` but keeps paragraph breaks."""
    text = _BLANK_LINES.sub("\n\n", str(value).replace("\r\n", "\n").replace("\r", "\n")).strip()
    return fit_pieces(_prose_pieces(text), limit)


def code(value: object, limit: int) -> str:
    """An identifier in a code span: exact and copyable, immune to *bold* and _italic_."""
    text = one_line(value)
    if not text:
        # "``" is no code span to Slack: its backticks would pair with the next span's instead.
        return "—"
    return "`" + fit(text, max(limit - 2, 1), _code_char) + "`"


def money(amount: Decimal, currency: str | None, limit: int = 80) -> str:
    """`1,249.00 USD`, inert; a Decimal that will not format (NaN) or an unknown currency is shown as it is."""
    if currency and currency in ISO_4217 and amount.is_finite():
        try:
            return inline(format_amount(amount, currency), limit)
        except InvalidOperation:
            pass
    return inline(f"{amount} {currency or '(currency not stated)'}", limit)


def mention(user: str | None, limit: int = 60) -> str | None:
    """`<@U…>` for a Slack user ID, `<!subteam^S…>` for a user group (a policy [owners] entry may name
    one: the card shows the group as the owner until a person takes the case); any other actor
    ("system", a name) as inert text."""
    if not user:
        return None
    if _USER_ID.fullmatch(user):
        return f"<@{user}>"
    if _GROUP_ID.fullmatch(user):
        return f"<!subteam^{user}>"
    return inline(user, limit)


def is_user_id(value: str | None) -> bool:
    return bool(value) and _USER_ID.fullmatch(value or "") is not None


def channel(channel_id: str | None) -> str | None:
    """`<#C…>` for a Slack channel ID, else None: nothing else may become a channel link."""
    if channel_id and _CHANNEL_ID.fullmatch(channel_id):
        return f"<#{channel_id}>"
    return None


def user_group(group_id: str | None) -> str | None:
    """`<!subteam^S…>` (pings the group) for a Slack user-group ID, else None."""
    if group_id and _GROUP_ID.fullmatch(group_id):
        return f"<!subteam^{group_id}>"
    return None


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


def _encoded_url(url: str) -> str | None:
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        return None
    return quote(url, safe=_URL_SAFE).replace("&", "&amp;")


def link(url: str | None, label: str) -> str | None:
    """`<url|label>` for an absolute http(s) URL, which is encoded here; None for anything else.

    `url` is the raw value, from anywhere. `label` is mrkdwn we made: our own words or `inline` output.
    """
    if "<" in label or ">" in label:
        raise ValueError("a link label is mrkdwn already made safe: no raw < or >")
    encoded = _encoded_url(url) if url else None
    return f"<{encoded}|{label}>" if encoded else None


def mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn text object. verbatim: Slack must not turn bare URLs, #names or @here into live markup."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def plain(text: str) -> dict[str, Any]:
    """A plain_text object: Slack shows it as it is, so it needs no escaping."""
    return {"type": "plain_text", "text": text, "emoji": True}
