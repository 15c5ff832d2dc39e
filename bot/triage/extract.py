"""The fields the MoonClerk/Poof seeds ask DialNexa to capture, from the analysis first, then the text.

Inputs are already redacted. Redaction markers (`[card ending 4242]`, `[redacted iban]`) are blanked
before any pattern runs, so digits inside them can never become an invoice number, an ID or an amount.
Money is parsed to Decimal and is never touched by float arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

from bot.triage import scan
from bot.triage.model import Extracted
from bot.triage.redact import card_number_in
from providers.currency import ISO_4217, normalise_currency, parse_amount
from providers.dialnexa import is_missing, normalise_phone, parse_timestamp
from storage.fields import analysis_keys

TEXT_LIMIT = 500
ID_LIMIT = 64
URL_LIMIT = 2048
MAX_AMOUNT_DIGITS = 15  # digits before the decimal point
MAX_AMOUNT_SIGNIFICANT = 24  # digits in all: "0.000…0001" with a thousand places is not a charge either
CRYPTO_LIMIT = 40  # the case's column; no coin's name is longer
MAX_CUSTOMER_ID = 2**31 - 1
# A bare date as a deadline means "by close of business"; 17:00 UTC is the one fixed reading of that.
DEADLINE_HOUR = time(17, 0, tzinfo=UTC)
# A follow-up promised on this call cannot sensibly be due long before the call or years after it;
# outside this window the value is a parse or extraction error, so it is dropped rather than routed.
DEADLINE_PAST_SLACK = timedelta(days=1)
DEADLINE_FUTURE_LIMIT = timedelta(days=400)

# "due March 1" said in mid-March is overdue, said in May it is next year's: see _nearest_year.
YEARLESS_LOOKBACK = timedelta(days=90)

T = TypeVar("T")

# Analysis key spellings per field, first present (non-missing) value that reads wins; each field
# declares its own in storage.fields.
KEYS: dict[str, tuple[str, ...]] = analysis_keys(Extracted)

_CRYPTO_NAMES = {
    "btc": "bitcoin", "xbt": "bitcoin", "eth": "ethereum", "ether": "ethereum", "sol": "solana",
    "ltc": "litecoin", "usdt": "tether", "usdc": "usd coin", "doge": "dogecoin", "xmr": "monero",
}
_TRUE = frozenset({"yes", "y", "true", "t", "1", "requested", "approved", "required", "consented"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "not_requested", "not_required", "declined", "none"})

# --- text patterns ------------------------------------------------------------------------------------
# Every pattern here runs on outside text, so every one is re2 (see bot.triage.scan): linear in its
# input whatever the input. Texts arrive normalised by the redactor (NFKC, ASCII digits), so re2's ASCII
# \d and \s read them as Python's Unicode classes would.

# Square-bracket markers are what the redactor writes; long runs of mask characters are what
# DialNexa and callers' own systems write ("****4242").
# Both are blanked by hand-written scanners (_blank_markers) with the meaning of
# `\[[^\[\]\n]{0,80}\]|[*xX•#]{4,}[\s-]?\d{0,4}`.
# Mask characters are found in a flag copy of the text, one byte per character so offsets carry over:
# the bullet (the one non-ASCII mask) becomes "*", every other non-ASCII character "?", then each mask a
# NUL (and a NUL something else). str.translate would do it in one call, but at a fraction of the speed
# once the text holds a single non-ASCII character, such as the " … " that replaced a marker.
_MASK_BYTES = bytes.maketrans(b"*xX#\x00", b"\x00\x00\x00\x00\x01")
_MASK_RUN = b"\x00" * 4
_ASCII_SPACE = frozenset(" \t\n\r\f\v")
_MARKERISH = scan.compile(r"[\[\]]|redact|\bending\b|[*•]{2,}|[xX]{4,}", ignore_case=True)

_PROVIDER_PREFIX = scan.compile(r"(?:sub|ch|pi|py|txn|in|cus)_[A-Za-z0-9]{6,}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_EMAIL_CORE = r"[A-Za-z0-9][A-Za-z0-9._%+'-]*@" + _LABEL + r"(?:\." + _LABEL + r")*\.[A-Za-z]{2,24}\b"
_EMAIL = scan.compile(_EMAIL_CORE)
# An address starts after a character that cannot be part of one (Python's `(?<![\w.+-])`): the
# character before it is matched, not looked behind.
_EMAIL_IN_TEXT = scan.compile(r"(?:^|[^\pL\pN_.+-])(?P<email>" + _EMAIL_CORE + ")")
# "sent it to bob@…": the address is part of the match, which is what a lookahead used to check.
_RECIPIENT = scan.compile(
    r"\bsen[dt]\b[^.?!\n@]{0,40}?\bto\s+(?:the\s+address\s+|email\s+)?(?P<email>" + _EMAIL_CORE + ")",
    ignore_case=True,
)

# Each pattern with how its capture becomes an invoice number. INV-prefixed numbers keep the prefix with
# one canonical dash ("INV 2026-00017" -> INV-2026-00017); a bare "invoice number 10423" stays digits.
# Each text pattern goes with words it cannot match without (see scan.Text.mentions): most calls name no
# subscription or e-mail address, and ruling a pattern out that way costs a fraction of a search.
_INVOICE_PATTERNS: tuple[tuple[Any, Callable[[str], str | None], tuple[str, ...]], ...] = (
    (
        scan.compile(r"\bINV(?:[\s#:.-]{0,3})(\d[\dA-Z]*(?:-[\dA-Z]+)*)\b", ignore_case=True),
        lambda raw: _canonical_invoice("INV-" + raw),
        ("inv",),
    ),
    # Stripe invoice references, as MoonClerk returns them: case matters, so kept as written.
    (scan.compile(r"\b(in_[A-Za-z0-9]{8,})\b"), lambda raw: raw, ("in_",)),
    (
        scan.compile(
            r"\binvoice\s*(?:number|no\.?|num(?:ber)?|id|#|reference|ref)\s*(?:is\s+|was\s+|:\s*|#\s*)?"
            r"(\d{2,}(?:[\s-]\d{2,})+|[A-Za-z0-9][A-Za-z0-9-]{2,30})\b",
            ignore_case=True,
        ),
        lambda raw: _spoken_invoice(raw),
        ("invoice",),
    ),
    (
        scan.compile(r"\binvoice\s+#?(\d{3,}(?:[-\s]\d{2,})*)\b", ignore_case=True),
        lambda raw: _spoken_invoice(raw),
        ("invoice",),
    ),
)
_PAYMENT_PATTERNS = (
    (scan.compile(r"\b((?:ch|pi|py|txn)_[A-Za-z0-9]{6,})\b"), ("ch_", "pi_", "py_", "txn_")),
    (
        scan.compile(
            r"\b(?:payment|transaction|charge)\s*(?:id|number|no\.?|reference|ref|#)\s*(?:is\s+|was\s+|:\s*|#\s*)?"
            r"([A-Za-z0-9][A-Za-z0-9_-]{3,40})\b",
            ignore_case=True,
        ),
        ("payment", "transaction", "charge"),
    ),
)
_SUBSCRIPTION_PATTERNS = (
    (scan.compile(r"\b(sub_[A-Za-z0-9]{6,})\b"), ("sub_",)),
    (
        scan.compile(
            r"\bsubscription\s*(?:id|number|no\.?|reference|ref|#)\s*(?:is\s+|was\s+|:\s*|#\s*)?"
            r"([A-Za-z0-9][A-Za-z0-9_-]{3,40})\b",
            ignore_case=True,
        ),
        ("subscription",),
    ),
)

# Amounts. What used to be lookarounds is matched instead: the character before (no minus sign, and for
# a number not a word character, "." or ","), and after a number the character that proves it ended
# (never more digits, nor "," or "." followed by digits). Currency codes are only the ISO ones, so an
# unknown "5 XYZ" is no match at all rather than a match to throw away.
_NUMBER = r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d{1,4})?|\d+(?:\.\d{1,4})?)"
_NUMBER_ENDED = r",*(?:$|[^\d,.]|\.(?:$|\D))"
_SYMBOL = r"(?P<currency>US\$|USD\$|C\$|CA\$|A\$|AU\$|[$€£₹¥])"
_ISO_CODE = r"(?P<currency>" + "|".join(sorted(ISO_4217)) + ")"
_WORD_CURRENCY = r"(?P<currency>(?i:dollars?|euros?|pounds?|rupees?|yen))"
_WORD_END = r"(?:$|[^\pL\pN_])"
_NUMBER_START = r"(?:^|[^\pL\pN_.,\-−])"
# A symbol may sit inside a longer one ("$" in "CA$", "A$" in "CA$"), so its minus sign is matched, not
# excluded: a refused "-CA$5" must not turn into "A$5" (see _symbol_amount).
_SYMBOL_AMOUNT = scan.compile(r"(?P<minus>[\-−])?" + _SYMBOL + r"\s?" + _NUMBER + _NUMBER_ENDED)
_SYMBOLS = ("$", "€", "£", "₹", "¥")  # every _SYMBOL holds one
_AMOUNT_PATTERNS: tuple[tuple[Any, tuple[str, ...] | None], ...] = (
    # ISO codes only in upper case: "try 50" or "all 3" must not become TRY or ALL.
    (scan.compile(_NUMBER_START + _NUMBER + r"\s?" + _ISO_CODE + _WORD_END), None),
    (scan.compile(r"(?:^|[^\pL\pN_\-−])" + _ISO_CODE + r"\s?" + _NUMBER + _NUMBER_ENDED), None),
    (scan.compile(_NUMBER_START + _NUMBER + r"\s?" + _WORD_CURRENCY + _WORD_END),
     ("dollar", "euro", "pound", "rupee", "yen")),
)

_MONTHS = {
    name: index
    for index, names in enumerate(
        (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
         ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
         ("oct", "october"), ("nov", "november"), ("dec", "december")),
        start=1,
    )
    for name in names
}
_MONTH = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
# A date not glued to other digits: the characters either side are matched, not looked around.
_ISO_DATE = scan.compile(r"(?:^|\D)(\d{4})-(\d{2})-(\d{2})(?:$|\D)")
_ISO_DATE_START = scan.compile(r"(\d{4})-(\d{2})-(\d{2})(?:$|\D)")
_MONTH_DAY = scan.compile(_MONTH + r"\s+" + _DAY + r"(?:,?\s+(\d{4}))?\b", ignore_case=True)
_DAY_MONTH = scan.compile(r"\b" + _DAY + r"(?:\s+of)?\s+" + _MONTH + r"(?:,?\s+(\d{4}))?\b", ignore_case=True)
_SLASH_DATE = scan.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
# "due to" is matched as its own (first) alternative and skipped: what `due(?!\s+to\b)` used to say.
_DUE = scan.compile(
    r"\bdue\s+to\b|\bdue(?:\s+date)?(?:\s+(?:is|was|on|by|of))?\s*[:\-]?\s*(?P<window>[^!?\n]{0,40})",
    ignore_case=True,
)

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SMALL_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "twelve": 12,
}
_SPAN = scan.compile(
    r"\b(?:within|in|inside)\s+(?:the\s+next\s+)?(\d{1,3}|a|an|one|two|three|four|five|six|seven|eight|nine|ten|"
    r"twelve)\s+(business\s+days?|working\s+days?|hours?|days?|weeks?)\b",
    ignore_case=True,
)
_WEEKDAY = scan.compile(
    r"\b(?:(by|on|before|next|this|until)\s+)?(" + "|".join(_WEEKDAYS) + r")\b", ignore_case=True
)
_TOMORROW = scan.compile(r"\btomorrow\b", ignore_case=True)
_TODAY = scan.compile(
    r"\b(?:today|end\s+of\s+(?:the\s+)?day|eod|close\s+of\s+business|cob|tonight)\b", ignore_case=True
)
_NEXT_WEEK = scan.compile(r"\bnext\s+week\b", ignore_case=True)
_END_OF_WEEK = scan.compile(r"\b(?:end\s+of\s+(?:the\s+|this\s+)?week|eow)\b", ignore_case=True)
# A summary sentence is only read for a deadline if it talks about following up, so "the payment is
# due tomorrow" does not become the follow-up deadline.
_FOLLOW_UP_CUE = scan.compile(
    r"\b(?:follow(?:s|ed|ing)?[\s-]?up|call(?:s|ed|ing)?[\s-]?back|callback|get\s+back|respond|reply|reach\s+out|"
    r"deadline|promised?|will\s+(?:send|email|contact|call|confirm|update|resolve))\b",
    ignore_case=True,
)
# Words every match of a pattern holds one of (lower case), as with the `needs` of the patterns above: a
# summary or sentence with none of them is passed over without a search.
_FOLLOW_UP_WORDS = ("follow", "call", "get", "respond", "reply", "reach", "deadline", "promise", "will")
_CALLBACK = scan.compile(
    r"\b(?:request(?:s|ed)?|expect(?:s|ed|ing)?|want(?:s|ed)?|asked\s+for|needs?|promised)\s+(?:a\s+)?"
    r"call[\s-]?back\b|\b(?:call|ring)\s+(?:me|them|him|her|the\s+caller|the\s+customer)\s+back\b"
    r"|\bpromised\s+to\s+call\b",
    ignore_case=True,
)
_CALLBACK_WORDS = ("call", "ring")
_PAYMENT_STATUS = scan.compile(
    r"\b(?:payment|charge|renewal|transaction)\s+(?:is\s+|was\s+|has\s+been\s+|is\s+still\s+|shows\s+(?:as\s+)?)?"
    r"(declined|failed|pending|refunded|processing|succeeded|successful|cleared|posted|overdue|past\s+due)\b",
    ignore_case=True,
)
# A sentence ends at ".", "!" or "?" followed by whitespace, or at a line break.
_SENTENCE_END = scan.compile(r"[.!?]\s+|\n+")
_DIGIT = scan.compile(r"\d")
_DASH_DOT = str.maketrans("-.", "  ")
_REFERENCE = scan.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/#-]*")
_INV_PREFIX = scan.compile(r"INV[\s#:.-]*(\S.*)")
_CANONICAL_INVOICE = scan.compile(r"[A-Z0-9][A-Z0-9_./-]*")
_SMALL_INT = scan.compile(r"\d{1,18}")
_CRYPTO_ADDRESS = scan.compile(r"[A-Za-z0-9:._-]{20,128}")
_ISO_DAY = scan.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_MOMENT = scan.compile(r"\d{4}-\d{2}-\d{2}[T ]\d")
_EPOCH = scan.compile(r"\d{9,14}(?:\.\d+)?")

# Work limits for adversarial text: a real call names a due date or an e-mail address within its first
# few candidates; these stop a body built of thousands of near-misses from costing thousands of checks.
MAX_CANDIDATES = 200  # rejected matches one finder looks at before giving up
MAX_DUE_WINDOWS = 20  # "due …" windows read for a date (each costs a dozen small searches)
SUMMARY_DEADLINE_SCAN = 10_000  # characters of the summary read sentence by sentence for a deadline


def extract(
    analysis: dict[str, Any],
    summary: str | None,
    transcript: str,
    *,
    call_recording_url: str | None,
    call_transcript_url: str | None,
    caller_phone: str | None,
    now: datetime,
) -> Extracted:
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    flat = _flatten(analysis)
    summary_text = _blank_markers(summary or "")
    transcript_text = _blank_markers(transcript or "")
    texts = [scan.Text(text) for text in (summary_text, transcript_text) if text.strip()]

    def pick(field: str, parse: Callable[[Any], T | None]) -> T | None:
        for key in KEYS[field]:
            if key in flat and not is_missing(flat[key]):
                parsed = parse(flat[key])
                if parsed is not None:
                    return parsed
        return None

    recipient = pick("recipient_email", _email) or _first(texts, _recipient_in)
    email = pick("email", _email) or _first(texts, lambda text: _email_in(text, exclude=recipient))
    amount, currency = _money(flat, texts)

    due = pick("due_date", lambda value: _date_value(value, now))
    if due is None:
        due = _first(texts, lambda text: _due_in(text, now))

    deadline = pick("follow_up_deadline", lambda value: _deadline(value, now))
    if deadline is None and summary_text:
        deadline = _deadline_in_summary(summary_text, now)

    callback = pick("callback_expected", _bool)
    if callback is None and _mentions(summary_text, _CALLBACK_WORDS) and _CALLBACK.search(summary_text):
        callback = True

    claim = pick("caller_claim", _text)
    if claim is None and summary and summary.strip():
        claim = _text(_first_sentence(summary.strip()))

    return Extracted(
        customer_name=pick("customer_name", _name),
        account_id=pick("account_id", _identifier),
        email=email,
        phone=pick("phone", lambda value: _phone(value, caller_phone)) or caller_phone,
        moonclerk_customer_id=pick("moonclerk_customer_id", _positive_int),
        invoice_number=pick("invoice_number", _invoice_value) or _first(texts, _invoice_in),
        payment_id=pick("payment_id", _identifier) or _first(texts, lambda t: _id_in(t, _PAYMENT_PATTERNS)),
        subscription_id=(
            pick("subscription_id", _identifier) or _first(texts, lambda t: _id_in(t, _SUBSCRIPTION_PATTERNS))
        ),
        tax_region=pick("tax_region", _short_text),
        amount=amount,
        currency=currency,
        due_date=due,
        payment_status=pick("payment_status", _status) or _first(texts, _status_in),
        caller_claim=claim,
        refund_reason=pick("refund_reason", _text),
        dispute_reason=pick("dispute_reason", _text),
        credit_request=pick("credit_request", _credit),
        approval_requested=pick("approval_requested", _bool),
        finance_owner=pick("finance_owner", _short_text),
        escalation_reason=pick("escalation_reason", _text),
        next_step=pick("next_step", _text),
        follow_up_deadline=deadline,
        callback_expected=callback,
        recipient_email=recipient,
        payout_recipient=pick("payout_recipient", _name),
        payout_consent=pick("payout_consent", _bool),
        crypto=pick("crypto", _crypto),
        crypto_address=pick("crypto_address", _crypto_address),
        transcript_url=pick("transcript_url", _url) or _url(call_transcript_url),
        recording_url=pick("recording_url", _url) or _url(call_recording_url),
        crm_url=pick("crm_url", _url),
        support_ticket_url=pick("support_ticket_url", _url),
        payment_platform_url=pick("payment_platform_url", _url),
    )


# --- analysis values ----------------------------------------------------------------------------------


def _flatten(analysis: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    if not isinstance(analysis, dict):
        return flat
    for key, value in analysis.items():
        if isinstance(key, str):
            flat.setdefault(_key_slug(key), value)
    return flat


def _key_slug(key: str) -> str:
    r"""`re.sub(r"[\s\-.]+", "_", key.strip().lower())` with str methods: an analysis may have thousands
    of keys, and a regex call per key costs more than the rest of the work on it."""
    spaced = key.strip().lower().translate(_DASH_DOT)
    parts = spaced.split()
    slug = "_".join(parts)
    if spaced[:1].isspace():
        slug = "_" + slug
    if parts and spaced[-1:].isspace():
        slug += "_"
    return slug


def _text(value: object, limit: int = TEXT_LIMIT) -> str | None:
    if is_missing(value) or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = " ".join(value.split())
    elif isinstance(value, int | Decimal):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
    else:
        return None
    if not text or is_missing(text):
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _short_text(value: object) -> str | None:
    return _text(value, limit=200)


def _name(value: object) -> str | None:
    text = _short_text(value)
    if text is None or _MARKERISH.search(text) or "@" in text or not any(_is_letter(char) for char in text):
        return None
    return text


def _identifier(value: object) -> str | None:
    """An account, payment or subscription reference, never a redaction marker, a word or a sentence."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    text = _text(value, limit=ID_LIMIT + 1)
    if text is None or len(text) > ID_LIMIT or _MARKERISH.search(text):
        return None
    if not _REFERENCE.fullmatch(text):
        return None
    # "monthly" under `subscription` or "business" under `account` is a description, not a reference.
    if not _DIGIT.search(text) and not _PROVIDER_PREFIX.fullmatch(text):
        return None
    return text


def _invoice_value(value: object) -> str | None:
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    text = _text(value, limit=ID_LIMIT + 1)
    if text is None or _MARKERISH.search(text):
        return None
    return _canonical_invoice(text)


def _canonical_invoice(raw: str) -> str | None:
    text = raw.strip().upper()
    prefixed = _INV_PREFIX.fullmatch(text)
    if prefixed:
        text = "INV-" + prefixed.group(1)
    text = "".join(text.split()).strip("-.#:")
    if not (3 <= len(text) <= ID_LIMIT) or not _DIGIT.search(text):
        return None
    if not _CANONICAL_INVOICE.fullmatch(text):
        return None
    return text


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not _SMALL_INT.fullmatch(value):
            return None
        value = int(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    if not isinstance(value, int):
        return None
    number = value
    # The column that stores it is a 32-bit INTEGER on PostgreSQL; anything larger is no MoonClerk ID.
    return number if 0 < number <= MAX_CUSTOMER_ID else None


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    if isinstance(value, int | Decimal) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower().replace(" ", "_")
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def _credit(value: object) -> str | None:
    # The router treats any credit_request text as "the caller asked for a credit", so a "no" or
    # `false` here must become None rather than the string "no".
    if isinstance(value, bool):
        return "yes" if value else None
    if isinstance(value, str):
        flag = _bool(value)
        if flag is not None:
            return "yes" if flag else None
        return _text(value)
    amount = parse_amount(value)
    return str(amount) if amount is not None and amount > 0 else None


def _status(value: object) -> str | None:
    text = _short_text(value)
    return text.lower() if text else None


def _email(value: object) -> str | None:
    text = _text(value, limit=320)
    if text is None:
        return None
    found = _EMAIL.fullmatch(text.strip().rstrip("."))
    return found.group(0).lower() if found else None


def _phone(value: object, caller_phone: str | None) -> str | None:
    text = _text(value, limit=40)
    if text is None or _MARKERISH.search(text):
        return None
    digits = "".join(char for char in text if char.isdecimal())
    # A ten-digit number said without a country code is local to the caller; DialNexa's own numbers
    # arrive with it, so borrow +1 only when the caller is on +1.
    if not text.lstrip().startswith("+") and len(digits) == 10 and (caller_phone or "").startswith("+1"):
        digits = "1" + digits
    return normalise_phone(digits)


def _crypto(value: object) -> str | None:
    text = _short_text(value)
    if text is None:
        return None
    word = text.lower()
    word = _CRYPTO_NAMES.get(word, word)
    return word if len(word) <= CRYPTO_LIMIT else None


def _crypto_address(value: object) -> str | None:
    text = _text(value, limit=130)
    if text is None or _MARKERISH.search(text):
        return None
    return text if _CRYPTO_ADDRESS.fullmatch(text) else None


def _url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > URL_LIMIT or len(text.split()) != 1:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return None
    return text


# --- money --------------------------------------------------------------------------------------------


def _money(flat: dict[str, Any], texts: list[scan.Text]) -> tuple[Decimal | None, str | None]:
    """Amount and currency as a pair; an amount only stands alone when the analysis gave it that way."""
    currency = None
    for key in KEYS["currency"]:
        if key in flat and not is_missing(flat[key]):
            currency = normalise_currency(flat[key])
            if currency is not None:
                break
    raw_amount = _first_value(flat, KEYS["amount"])
    if raw_amount is not None and not isinstance(raw_amount, bool) and card_number_in(str(raw_amount)):
        return None, currency  # a card number in an amount field is never money
    if raw_amount is not None:
        # "49.99 USD" or "€30" as an analysis string carries its own currency.
        pair = _amount_in(_blank_markers(raw_amount)) if isinstance(raw_amount, str) else None
        if pair is not None:
            return pair if currency in {None, pair[1]} else (None, currency)
        # An analysis amount that does not parse is not replaced by a guess from the text.
        return _non_negative(parse_amount(raw_amount)), currency
    for text in texts:
        pair = _amount_in(text)
        if pair is not None:
            if currency is not None and pair[1] != currency:
                return None, currency
            return pair
    return None, currency


def _first_value(flat: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((flat[key] for key in keys if key in flat and not is_missing(flat[key])), None)


def _non_negative(amount: Decimal | None) -> Decimal | None:
    # Beyond a trillion-trillion is not a charge but a parse of something else, and could not be
    # quantized to a currency's minor unit (28 significant digits) when the card is drawn.
    if amount is None or amount < 0 or amount.adjusted() >= MAX_AMOUNT_DIGITS:
        return None
    if len(amount.as_tuple().digits) > MAX_AMOUNT_SIGNIFICANT:
        return None
    return amount


def _amount_in(text: str | scan.Text) -> tuple[Decimal, str] | None:
    """The amount written first, whichever pattern reads it; each pattern needs one search."""
    source = text if isinstance(text, scan.Text) else scan.Text(text)
    best = _symbol_amount(source) if source.mentions(*_SYMBOLS) else None
    for pattern, needs in _AMOUNT_PATTERNS:
        if needs is not None and not source.mentions(*needs):
            continue
        found = scan.search(pattern, source)
        read = _read_amount(found) if found is not None else None
        if read is not None and (best is None or read[0] < best[0]):
            best = read
    return (best[1], best[2]) if best else None


def _symbol_amount(text: scan.Text) -> tuple[int, Decimal, str] | None:
    pos = 0
    for _ in range(MAX_CANDIDATES):
        found = scan.search(_SYMBOL_AMOUNT, text, pos)
        if found is None:
            return None
        read = _read_amount(found)
        if read is not None and found.group(1) is None:
            return read
        # Refused (a negative amount): go on after the number, whose next character was only looked at.
        pos = scan.end(found, "number")
    return None


def _read_amount(found: Any) -> tuple[int, Decimal, str] | None:
    currency = normalise_currency(scan.group(found, "currency"))
    amount = _non_negative(parse_amount(scan.group(found, "number")))
    if currency is None or amount is None:
        return None
    return min(scan.start(found, "currency"), scan.start(found, "number")), amount, currency


# --- identifiers in text ------------------------------------------------------------------------------


def _blank_markers(text: str) -> str:
    """`_MARKER.sub(" … ", text)`, by hand: a body of thousands of markers costs a C-speed split per
    marker instead of a trip through re2's Python wrapper."""
    return _blank_masks(scan.replace_brackets(text, " … "))


def _blank_masks(text: str) -> str:
    """Runs of four or more mask characters, with an optional separator and up to four digits after."""
    flagged = text.replace("•", "*").encode("ascii", "replace").translate(_MASK_BYTES)
    pos = flagged.find(_MASK_RUN)
    if pos == -1:
        return text
    out: list[str] = []
    done = 0
    while pos != -1:
        end = pos + 4
        while end < len(flagged) and flagged[end] == 0:
            end += 1
        if end < len(text) and (text[end] == "-" or text[end] in _ASCII_SPACE):
            end += 1
        digits = 0
        while digits < 4 and _ascii_digit(text, end):
            end += 1
            digits += 1
        out.append(text[done:pos])
        out.append(" … ")
        done = end
        pos = flagged.find(_MASK_RUN, end)
    out.append(text[done:])
    return "".join(out)


def _ascii_digit(text: str, index: int) -> bool:
    return index < len(text) and "0" <= text[index] <= "9"


def _first(texts: list[scan.Text], find: Callable[[scan.Text], T | None]) -> T | None:
    for text in texts:
        found = find(text)
        if found is not None:
            return found
    return None


def _first_accepted(
    pattern: Any, text: scan.Text, accept: Callable[[Any], T | None], *, limit: int = MAX_CANDIDATES
) -> tuple[int, T] | None:
    """The first match `accept` turns into a value, with its start; gives up after `limit` refusals."""
    for count, found in enumerate(scan.finditer(pattern, text)):
        if count > limit:
            return None
        value = accept(found)
        if value is not None:
            return found.start(), value
    return None


def _email_in(text: scan.Text, exclude: str | None) -> str | None:
    if not text.mentions("@"):
        return None

    def accept(found: Any) -> str | None:
        # Python's `\b` after the top-level domain: a letter such as "é" would continue the word.
        if scan.is_word(text.char_at(scan.end(found, "email"))):
            return None
        email = (scan.group(found, "email") or "").lower()
        return email if email != exclude else None

    hit = _first_accepted(_EMAIL_IN_TEXT, text, accept)
    return hit[1] if hit else None


def _recipient_in(text: scan.Text) -> str | None:
    if not text.mentions("@"):
        return None

    def accept(found: Any) -> str | None:
        if scan.is_word(text.char_at(scan.end(found, "email"))):
            return None
        return (scan.group(found, "email") or "").lower()

    hit = _first_accepted(_RECIPIENT, text, accept)
    return hit[1] if hit else None


def _invoice_in(text: scan.Text) -> str | None:
    """The invoice number mentioned first, whichever pattern reads it."""
    best: tuple[int, str] | None = None
    for pattern, normalise, needs in _INVOICE_PATTERNS:
        if not text.mentions(*needs):
            continue
        hit = _first_accepted(pattern, text, _reading(normalise))
        if hit is not None and (best is None or hit[0] < best[0]):
            best = hit
    return best[1] if best else None


def _reading(normalise: Callable[[str], str | None]) -> Callable[[Any], str | None]:
    return lambda found: normalise(scan.group(found) or "")


def _spoken_invoice(raw: str) -> str | None:
    # "invoice number INV-1042" is left to the prefixed pattern, which adds the canonical dash.
    return None if raw.upper().startswith("INV") else _canonical_invoice(raw)


def _id_in(text: scan.Text, patterns: tuple[tuple[Any, tuple[str, ...]], ...]) -> str | None:
    def accept(found: Any) -> str | None:
        token = scan.group(found) or ""
        return token if len(token) <= ID_LIMIT and any(char.isdigit() for char in token) else None

    for pattern, needs in patterns:
        if not text.mentions(*needs):
            continue
        hit = _first_accepted(pattern, text, accept)
        if hit is not None:
            return hit[1]
    return None


def _status_in(text: scan.Text) -> str | None:
    if not text.mentions("payment", "charge", "renewal", "transaction"):
        return None
    found = scan.search(_PAYMENT_STATUS, text)
    return " ".join((scan.group(found) or "").lower().split()) if found else None


def _first_sentence(text: str) -> str:
    found = _SENTENCE_END.search(text)
    if found is None:
        return text
    # The stop belongs to the sentence it ends; the whitespace after it to neither.
    return text[: found.start() + 1] if text[found.start()] in ".!?" else text[: found.start()]


def _sentences(text: str) -> Iterator[str]:
    start = 0
    for found in _SENTENCE_END.finditer(text):
        end = found.start() + 1 if text[found.start()] in ".!?" else found.start()
        yield text[start:end]
        start = found.end()
    yield text[start:]


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    """scan.Text.mentions for a text searched only once or twice: whether any of the words occurs in it."""
    folded = text.casefold()
    return any(map(folded.__contains__, words))


def _is_letter(char: str) -> bool:
    return char.isalnum() and not char.isdecimal()


# --- dates --------------------------------------------------------------------------------------------


def _date_value(value: object, now: datetime) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        stamp = _timestamp(value)
        return stamp.date() if stamp else None
    text = value.strip()
    iso = _ISO_DATE_START.match(text)
    if iso:
        # The date as written: converting "2026-12-01T22:00-05:00" to UTC would move it a day.
        return _make_date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
    return _date_in(text, now) or _relative_date(text, now)


def _date_in(text: str | scan.Text, now: datetime) -> date | None:
    """The first calendar date written in the text; a date with no year is the one nearest to now."""
    source = text if isinstance(text, scan.Text) else scan.Text(text)
    candidates = [
        hit
        for hit in (
            _first_iso_date(source),
            _first_accepted(_MONTH_DAY, source, lambda found: _named_month_date(found, 1, 2, now)),
            _first_accepted(_DAY_MONTH, source, lambda found: _named_month_date(found, 2, 1, now)),
            _first_accepted(_SLASH_DATE, source, _slash_date),
        )
        if hit is not None
    ]
    return min(candidates)[1] if candidates else None


def _first_iso_date(text: scan.Text) -> tuple[int, date] | None:
    # The characters either side are part of the match, so after a refusal the next search starts right
    # after the date's last digit: "2026-13-40-2026-11-22" still finds the second date.
    pos = 0
    for _ in range(MAX_CANDIDATES):
        found = scan.search(_ISO_DATE, text, pos)
        if found is None:
            return None
        parsed = _make_date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
        if parsed:
            return found.start(1), parsed
        pos = found.end(3)
    return None


def _named_month_date(found: Any, month_group: int, day_group: int, now: datetime) -> date | None:
    month = _MONTHS[(scan.group(found, month_group) or "").lower().rstrip(".")]
    day = int(found.group(day_group))
    year = found.group(3)
    return _make_date(int(year), month, day) if year else _nearest_year(month, day, now)


def _slash_date(found: Any) -> date | None:
    first, second, year = int(found.group(1)), int(found.group(2)), int(found.group(3))
    # 03/04/2026 is March or April depending on who wrote it, so only unambiguous forms count.
    if first > 12 >= second:
        return _make_date(year, second, first)
    if second > 12 >= first or first == second:
        return _make_date(year, first, second)
    return None


def _make_date(year: int, month: int, day: int) -> date | None:
    if not 2000 <= year <= 2100:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _nearest_year(month: int, day: int, now: datetime) -> date | None:
    """The next such date, unless it fell within the last quarter: "due March 1" said on March 11 is
    an overdue invoice, "due December 1" said in March is this coming December."""
    earliest = now.date() - YEARLESS_LOOKBACK
    options = [d for d in (_make_date(now.year + delta, month, day) for delta in (-1, 0, 1)) if d]
    upcoming = [d for d in options if d >= earliest]
    return min(upcoming) if upcoming else None


def _due_in(text: scan.Text, now: datetime) -> date | None:
    if not text.mentions("due"):
        return None
    windows = 0
    for count, found in enumerate(scan.finditer(_DUE, text)):
        if count > MAX_CANDIDATES or windows >= MAX_DUE_WINDOWS:
            return None
        window = scan.group(found, "window")
        if window is None:
            continue  # "due to"
        windows += 1
        parsed = _date_in(window, now) or _relative_date(window, now)
        if parsed is not None:
            return parsed
    return None


def _relative_date(text: str, now: datetime) -> date | None:
    moment = _relative(text, now)
    return moment.date() if moment else None


def _relative(text: str, now: datetime) -> datetime | None:
    """"tomorrow", "within 24 hours", "in 2 days", "by Friday", "next week" relative to now, in UTC."""
    today_close = datetime.combine(now.date(), DEADLINE_HOUR)
    span = _SPAN.search(text)
    if span:
        count_word = span.group(1).lower()
        count = int(count_word) if count_word.isdigit() else _SMALL_NUMBERS[count_word]
        unit = span.group(2).lower()
        if unit.startswith("hour"):
            return now + timedelta(hours=count)
        if unit.startswith("week"):
            return now + timedelta(weeks=count)
        if unit.startswith(("business", "working")):
            return _add_business_days(now, count)
        return now + timedelta(days=count)
    if _TOMORROW.search(text):
        return today_close + timedelta(days=1)
    if _NEXT_WEEK.search(text):
        return now + timedelta(days=7)
    weekday = _WEEKDAY.search(text)
    if weekday:
        target = _WEEKDAYS.index(weekday.group(2).lower())
        ahead = (target - now.weekday()) % 7
        if ahead == 0 and (now >= today_close or (weekday.group(1) or "").lower() == "next"):
            ahead = 7
        return today_close + timedelta(days=ahead)
    if _END_OF_WEEK.search(text):
        ahead = (4 - now.weekday()) % 7
        return today_close + timedelta(days=ahead if ahead or now < today_close else 7)
    if _TODAY.search(text):
        return today_close if now < today_close else datetime.combine(now.date(), time(23, 59, tzinfo=UTC))
    return None


def _add_business_days(start: datetime, count: int) -> datetime:
    moment = start
    while count > 0:
        moment += timedelta(days=1)
        if moment.weekday() < 5:
            count -= 1
    return moment


def _deadline(value: object, now: datetime) -> datetime | None:
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    elif isinstance(value, date):
        moment = datetime.combine(value, DEADLINE_HOUR)
    elif isinstance(value, str):
        text = value.strip()
        if _ISO_DAY.fullmatch(text):
            day = _make_date(int(text[:4]), int(text[5:7]), int(text[8:10]))
            moment = datetime.combine(day, DEADLINE_HOUR) if day else None
        elif _ISO_MOMENT.match(text) or _EPOCH.fullmatch(text):
            moment = _timestamp(text)
        else:
            # An analysis field may hold just "24 hours" or "2 days": a span from the call.
            moment = _relative(text, now) or _relative(f"within {text}", now)
            if moment is None:
                day = _date_in(text, now)
                moment = datetime.combine(day, DEADLINE_HOUR) if day else None
    elif not isinstance(value, bool):
        moment = _timestamp(value)
    return _plausible(moment, now)


def _timestamp(value: object) -> datetime | None:
    # parse_timestamp compares the number before checking it, so NaN would raise instead of failing.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    try:
        return parse_timestamp(value)
    except (ArithmeticError, ValueError):
        return None


def _deadline_in_summary(summary: str, now: datetime) -> datetime | None:
    scanned = summary[:SUMMARY_DEADLINE_SCAN]
    if not _mentions(scanned, _FOLLOW_UP_WORDS):
        return None
    for sentence in _sentences(scanned):
        if not (_mentions(sentence, _FOLLOW_UP_WORDS) and _FOLLOW_UP_CUE.search(sentence)):
            continue
        moment = _relative(sentence, now)
        if moment is None:
            day = _date_in(sentence, now)
            moment = datetime.combine(day, DEADLINE_HOUR) if day else None
        moment = _plausible(moment, now)
        if moment is not None:
            return moment
    return None


def _plausible(moment: datetime | None, now: datetime) -> datetime | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    if moment < now - DEADLINE_PAST_SLACK or moment > now + DEADLINE_FUTURE_LIMIT:
        return None
    return moment
