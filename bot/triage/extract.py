"""The fields the MoonClerk/Poof seeds ask DialNexa to capture, from the analysis first, then the text.

Inputs are already redacted. Redaction markers (`[card ending 4242]`, `[redacted iban]`) are blanked
before any pattern runs, so digits inside them can never become an invoice number, an ID or an amount.
Money is parsed to Decimal and is never touched by float arithmetic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

from bot.triage.model import Extracted
from providers.currency import normalise_currency, parse_amount
from providers.dialnexa import is_missing, normalise_phone, parse_timestamp

TEXT_LIMIT = 500
ID_LIMIT = 64
URL_LIMIT = 2048
# A bare date as a deadline means "by close of business"; 17:00 UTC is the one fixed reading of that.
DEADLINE_HOUR = time(17, 0, tzinfo=UTC)
# A follow-up promised on this call cannot sensibly be due long before the call or years after it;
# outside this window the value is a parse or extraction error, so it is dropped rather than routed.
DEADLINE_PAST_SLACK = timedelta(days=1)
DEADLINE_FUTURE_LIMIT = timedelta(days=400)

# "due March 1" said in mid-March is overdue, said in May it is next year's: see _nearest_year.
YEARLESS_LOOKBACK = timedelta(days=90)

T = TypeVar("T")

# --- analysis key spellings, first present (non-missing) wins ---------------------------------------
KEYS: dict[str, tuple[str, ...]] = {
    "customer_name": ("customer_name", "name", "caller_name", "customer", "full_name"),
    "account_id": ("account_id", "account", "account_number", "customer_account"),
    "email": ("customer_email", "email", "caller_email", "email_address"),
    "phone": ("phone", "phone_number", "customer_phone", "caller_phone", "callback_number"),
    "moonclerk_customer_id": ("moonclerk_customer_id", "customer_id"),
    "invoice_number": ("invoice_number", "invoice", "invoice_id", "invoice_no"),
    "payment_id": ("payment_id", "transaction_id", "charge_id"),
    "subscription_id": ("subscription_id", "subscription"),
    "tax_region": ("tax_region", "country", "state", "region", "tax_country"),
    "amount": ("amount", "charge_amount", "refund_amount", "disputed_amount"),
    "currency": ("currency", "currency_code"),
    "due_date": ("due_date", "invoice_due_date", "payment_due_date"),
    "payment_status": ("payment_status", "payment_state"),
    "caller_claim": ("caller_claim", "customer_claim", "issue", "request", "claim", "complaint"),
    "refund_reason": ("refund_reason",),
    "dispute_reason": ("dispute_reason", "chargeback_reason"),
    "credit_request": ("credit_request", "credit_requested", "credit"),
    "approval_requested": ("approval_required", "approval_requested", "needs_approval", "requires_approval"),
    "finance_owner": ("finance_owner", "owner", "assigned_to"),
    "escalation_reason": ("escalation_reason", "escalate_reason"),
    "next_step": ("promised_next_step", "next_step", "next_steps", "follow_up_action"),
    "follow_up_deadline": ("follow_up_deadline", "deadline", "follow_up_by", "follow_up_date", "callback_by"),
    "callback_expected": ("callback_expected", "callback_requested", "expects_callback", "wants_callback"),
    "recipient_email": ("recipient_email", "send_to", "send_to_email"),
    "payout_recipient": ("payout_recipient",),
    "payout_consent": ("payout_consent", "consent_to_payout"),
    "crypto": ("crypto", "cryptocurrency", "crypto_currency", "coin"),
    "crypto_address": ("crypto_address", "wallet_address", "payout_address"),
    "transcript_url": ("transcript_url", "transcript_link"),
    "recording_url": ("recording_url", "recording_link"),
    "crm_url": ("crm_url", "crm_link", "hubspot_url", "salesforce_url"),
    "support_ticket_url": (
        "support_ticket", "support_ticket_url", "ticket_url", "zendesk_url", "ticket_link",
    ),
    "payment_platform_url": (
        "payment_platform_url", "payment_link", "payment_url", "moonclerk_url", "poof_url", "stripe_url",
    ),
}

_CRYPTO_NAMES = {
    "btc": "bitcoin", "xbt": "bitcoin", "eth": "ethereum", "ether": "ethereum", "sol": "solana",
    "ltc": "litecoin", "usdt": "tether", "usdc": "usd coin", "doge": "dogecoin", "xmr": "monero",
}
_TRUE = frozenset({"yes", "y", "true", "t", "1", "requested", "approved", "required", "consented"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "not_requested", "not_required", "declined", "none"})

# --- text patterns ------------------------------------------------------------------------------------
# Square-bracket markers are what the redactor writes; long runs of mask characters are what
# DialNexa and callers' own systems write ("****4242").
_MARKER = re.compile(r"\[[^\[\]\n]{0,80}\]|[*xX•#]{4,}[\s-]?\d{0,4}")
_MARKERISH = re.compile(r"[\[\]]|redact|\bending\b|[*•]{2,}|[xX]{4,}", re.IGNORECASE)

_PROVIDER_PREFIX = re.compile(r"(?:sub|ch|pi|py|txn|in|cus)_[A-Za-z0-9]{6,}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+'-]*@" + _LABEL + r"(?:\." + _LABEL + r")*\.[A-Za-z]{2,24}\b"
)
_RECIPIENT = re.compile(
    r"\bsen[dt]\b[^.?!\n@]{0,40}?\bto\s+(?:the\s+address\s+|email\s+)?(?=\S+@)", re.IGNORECASE
)

# Each pattern with how its capture becomes an invoice number. INV-prefixed numbers keep the prefix with
# one canonical dash ("INV 2026-00017" -> INV-2026-00017); a bare "invoice number 10423" stays digits.
_INVOICE_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[str], str | None]], ...] = (
    (
        re.compile(r"\bINV(?:[\s#:.-]{0,3})(\d[\dA-Z]*(?:-[\dA-Z]+)*)\b", re.IGNORECASE),
        lambda raw: _canonical_invoice("INV-" + raw),
    ),
    # Stripe invoice references, as MoonClerk returns them: case matters, so kept as written.
    (re.compile(r"\b(in_[A-Za-z0-9]{8,})\b"), lambda raw: raw),
    (
        re.compile(
            r"\binvoice\s*(?:number|no\.?|num(?:ber)?|id|#|reference|ref)\s*(?:is\s+|was\s+|:\s*|#\s*)?"
            r"(\d{2,}(?:[\s-]\d{2,})+|[A-Za-z0-9][A-Za-z0-9-]{2,30})\b",
            re.IGNORECASE,
        ),
        lambda raw: _spoken_invoice(raw),
    ),
    (re.compile(r"\binvoice\s+#?(\d{3,}(?:[-\s]\d{2,})*)\b", re.IGNORECASE), lambda raw: _spoken_invoice(raw)),
)
_PAYMENT_PATTERNS = (
    re.compile(r"\b((?:ch|pi|py|txn)_[A-Za-z0-9]{6,})\b"),
    re.compile(
        r"\b(?:payment|transaction|charge)\s*(?:id|number|no\.?|reference|ref|#)\s*(?:is\s+|was\s+|:\s*|#\s*)?"
        r"([A-Za-z0-9][A-Za-z0-9_-]{3,40})\b",
        re.IGNORECASE,
    ),
)
_SUBSCRIPTION_PATTERNS = (
    re.compile(r"\b(sub_[A-Za-z0-9]{6,})\b"),
    re.compile(
        r"\bsubscription\s*(?:id|number|no\.?|reference|ref|#)\s*(?:is\s+|was\s+|:\s*|#\s*)?"
        r"([A-Za-z0-9][A-Za-z0-9_-]{3,40})\b",
        re.IGNORECASE,
    ),
)

_NUMBER = r"(\d{1,3}(?:,\d{3})+(?:\.\d{1,4})?|\d+(?:\.\d{1,4})?)"
_SYMBOL = r"(US\$|USD\$|C\$|CA\$|A\$|AU\$|[$€£₹¥])"
_WORD_CURRENCY = r"(dollars?|euros?|pounds?|rupees?|yen)"
# ISO codes only in upper case: "try 50" or "all 3" must not become TRY or ALL.
_CODE_AFTER = r"([A-Z]{3})\b"
_CODE_BEFORE = r"\b([A-Z]{3})"
_AMOUNT_PATTERNS = (
    re.compile(_SYMBOL + r"\s?" + _NUMBER + r"(?![\d,]*\.?\d)"),
    re.compile(r"(?<![\w.,])" + _NUMBER + r"\s?" + _CODE_AFTER),
    re.compile(_CODE_BEFORE + r"\s?" + _NUMBER + r"(?![\d,]*\.?\d)"),
    re.compile(r"(?<![\w.,])" + _NUMBER + r"\s?" + r"(?i:" + _WORD_CURRENCY + r")\b"),
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
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_MONTH_DAY = re.compile(_MONTH + r"\s+" + _DAY + r"(?:,?\s+(\d{4}))?\b", re.IGNORECASE)
_DAY_MONTH = re.compile(r"\b" + _DAY + r"(?:\s+of)?\s+" + _MONTH + r"(?:,?\s+(\d{4}))?\b", re.IGNORECASE)
_SLASH_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
_DUE = re.compile(
    r"\bdue(?!\s+to\b)(?:\s+date)?(?:\s+(?:is|was|on|by|of))?\s*[:\-]?\s*([^!?\n]{0,40})", re.IGNORECASE
)

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SMALL_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "twelve": 12,
}
_SPAN = re.compile(
    r"\b(?:within|in|inside)\s+(?:the\s+next\s+)?(\d{1,3}|a|an|one|two|three|four|five|six|seven|eight|nine|ten|"
    r"twelve)\s+(business\s+days?|working\s+days?|hours?|days?|weeks?)\b",
    re.IGNORECASE,
)
_WEEKDAY = re.compile(
    r"\b(?:(by|on|before|next|this|until)\s+)?(" + "|".join(_WEEKDAYS) + r")\b", re.IGNORECASE
)
_TOMORROW = re.compile(r"\btomorrow\b", re.IGNORECASE)
_TODAY = re.compile(
    r"\b(?:today|end\s+of\s+(?:the\s+)?day|eod|close\s+of\s+business|cob|tonight)\b", re.IGNORECASE
)
_NEXT_WEEK = re.compile(r"\bnext\s+week\b", re.IGNORECASE)
_END_OF_WEEK = re.compile(r"\b(?:end\s+of\s+(?:the\s+|this\s+)?week|eow)\b", re.IGNORECASE)
# A summary sentence is only read for a deadline if it talks about following up, so "the payment is
# due tomorrow" does not become the follow-up deadline.
_FOLLOW_UP_CUE = re.compile(
    r"\b(?:follow(?:s|ed|ing)?[\s-]?up|call(?:s|ed|ing)?[\s-]?back|callback|get\s+back|respond|reply|reach\s+out|"
    r"deadline|promised?|will\s+(?:send|email|contact|call|confirm|update|resolve))\b",
    re.IGNORECASE,
)
_CALLBACK = re.compile(
    r"\b(?:request(?:s|ed)?|expect(?:s|ed|ing)?|want(?:s|ed)?|asked\s+for|needs?|promised)\s+(?:a\s+)?"
    r"call[\s-]?back\b|\b(?:call|ring)\s+(?:me|them|him|her|the\s+caller|the\s+customer)\s+back\b"
    r"|\bpromised\s+to\s+call\b",
    re.IGNORECASE,
)
_PAYMENT_STATUS = re.compile(
    r"\b(?:payment|charge|renewal|transaction)\s+(?:is\s+|was\s+|has\s+been\s+|is\s+still\s+|shows\s+(?:as\s+)?)?"
    r"(declined|failed|pending|refunded|processing|succeeded|successful|cleared|posted|overdue|past\s+due)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


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
    texts = [text for text in (summary_text, transcript_text) if text.strip()]

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
    if callback is None and summary_text and _CALLBACK.search(summary_text):
        callback = True

    claim = pick("caller_claim", _text)
    if claim is None and summary and summary.strip():
        claim = _text(_SENTENCE.split(summary.strip(), maxsplit=1)[0])

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
            flat.setdefault(re.sub(r"[\s\-.]+", "_", key.strip().lower()), value)
    return flat


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
    if text is None or _MARKERISH.search(text) or "@" in text or not re.search(r"[^\W\d_]", text):
        return None
    return text


def _identifier(value: object) -> str | None:
    """An account, payment or subscription reference, never a redaction marker, a word or a sentence."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    text = _text(value, limit=ID_LIMIT + 1)
    if text is None or len(text) > ID_LIMIT or _MARKERISH.search(text):
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:/#-]*", text):
        return None
    # "monthly" under `subscription` or "business" under `account` is a description, not a reference.
    if not re.search(r"\d", text) and not _PROVIDER_PREFIX.match(text):
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
    prefixed = re.fullmatch(r"INV[\s#:.-]*(\S.*)", text)
    if prefixed:
        text = "INV-" + prefixed.group(1)
    text = re.sub(r"\s+", "", text).strip("-.#:")
    if not (3 <= len(text) <= ID_LIMIT) or not re.search(r"\d", text):
        return None
    if not re.fullmatch(r"[A-Z0-9][A-Z0-9_./-]*", text):
        return None
    return text


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"\d{1,18}", value):
            return None
        value = int(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    if not isinstance(value, int):
        return None
    number = value
    return number if number > 0 else None


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
    digits = re.sub(r"\D", "", text)
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
    return _CRYPTO_NAMES.get(word, word)


def _crypto_address(value: object) -> str | None:
    text = _text(value, limit=130)
    if text is None or _MARKERISH.search(text):
        return None
    return text if re.fullmatch(r"[A-Za-z0-9:._-]{20,128}", text) else None


def _url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > URL_LIMIT or re.search(r"\s", text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return None
    return text


# --- money --------------------------------------------------------------------------------------------


def _money(flat: dict[str, Any], texts: list[str]) -> tuple[Decimal | None, str | None]:
    """Amount and currency as a pair; an amount only stands alone when the analysis gave it that way."""
    currency = None
    for key in KEYS["currency"]:
        if key in flat and not is_missing(flat[key]):
            currency = normalise_currency(flat[key])
            if currency is not None:
                break
    raw_amount = _first_value(flat, KEYS["amount"])
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
    return amount if amount is not None and amount >= 0 else None


def _amount_in(text: str) -> tuple[Decimal, str] | None:
    best: tuple[int, Decimal, str] | None = None
    for pattern in _AMOUNT_PATTERNS:
        for found in pattern.finditer(text):
            first, second = found.group(1), found.group(2)
            raw_currency, raw_number = (first, second) if not first[0].isdigit() else (second, first)
            currency = normalise_currency(raw_currency)
            if currency is None:
                continue
            if text[max(0, found.start() - 1) : found.start()] in {"-", "−"}:
                continue  # a negative amount is never a charge or a refund the bot should act on
            amount = parse_amount(raw_number)
            if amount is None or amount < 0:
                continue
            if best is None or found.start() < best[0]:
                best = (found.start(), amount, currency)
            break
    return (best[1], best[2]) if best else None


# --- identifiers in text ------------------------------------------------------------------------------


def _blank_markers(text: str) -> str:
    return _MARKER.sub(" … ", text)


def _first(texts: list[str], find: Callable[[str], T | None]) -> T | None:
    for text in texts:
        found = find(text)
        if found is not None:
            return found
    return None


def _email_in(text: str, exclude: str | None) -> str | None:
    for found in _EMAIL.finditer(text):
        email = found.group(0).lower()
        if email != exclude:
            return email
    return None


def _recipient_in(text: str) -> str | None:
    for cue in _RECIPIENT.finditer(text):
        found = _EMAIL.match(text, cue.end())
        if found:
            return found.group(0).lower()
    return None


def _invoice_in(text: str) -> str | None:
    """The invoice number mentioned first, whichever pattern reads it."""
    best: tuple[int, str] | None = None
    for pattern, normalise in _INVOICE_PATTERNS:
        for found in pattern.finditer(text):
            invoice = normalise(found.group(1))
            if invoice is not None:
                if best is None or found.start() < best[0]:
                    best = (found.start(), invoice)
                break
    return best[1] if best else None


def _spoken_invoice(raw: str) -> str | None:
    # "invoice number INV-1042" is left to the prefixed pattern, which adds the canonical dash.
    return None if raw.upper().startswith("INV") else _canonical_invoice(raw)


def _id_in(text: str, patterns: tuple[re.Pattern[str], ...]) -> str | None:
    for pattern in patterns:
        for found in pattern.finditer(text):
            token = found.group(1)
            if re.search(r"\d", token) and len(token) <= ID_LIMIT:
                return token
    return None


def _status_in(text: str) -> str | None:
    found = _PAYMENT_STATUS.search(text)
    return " ".join(found.group(1).lower().split()) if found else None


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
    iso = _ISO_DATE.match(text)
    if iso:
        # The date as written: converting "2026-12-01T22:00-05:00" to UTC would move it a day.
        return _make_date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
    return _date_in(text, now) or _relative_date(text, now)


def _date_in(text: str, now: datetime) -> date | None:
    """The first calendar date written in the text; a date with no year is the one nearest to now."""
    candidates: list[tuple[int, date]] = []
    for found in _ISO_DATE.finditer(text):
        parsed = _make_date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
        if parsed:
            candidates.append((found.start(), parsed))
    for pattern, month_group, day_group in ((_MONTH_DAY, 1, 2), (_DAY_MONTH, 2, 1)):
        for found in pattern.finditer(text):
            month = _MONTHS[found.group(month_group).lower().rstrip(".")]
            day = int(found.group(day_group))
            year = found.group(3)
            parsed = _make_date(int(year), month, day) if year else _nearest_year(month, day, now)
            if parsed:
                candidates.append((found.start(), parsed))
    for found in _SLASH_DATE.finditer(text):
        first, second, year = int(found.group(1)), int(found.group(2)), int(found.group(3))
        # 03/04/2026 is March or April depending on who wrote it, so only unambiguous forms count.
        if first > 12 >= second:
            parsed = _make_date(year, second, first)
        elif second > 12 >= first or first == second:
            parsed = _make_date(year, first, second)
        else:
            parsed = None
        if parsed:
            candidates.append((found.start(), parsed))
    return min(candidates)[1] if candidates else None


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


def _due_in(text: str, now: datetime) -> date | None:
    for found in _DUE.finditer(text):
        window = found.group(1)
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
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = _make_date(int(text[:4]), int(text[5:7]), int(text[8:10]))
            moment = datetime.combine(day, DEADLINE_HOUR) if day else None
        elif re.match(r"\d{4}-\d{2}-\d{2}[T ]\d", text) or re.fullmatch(r"\d{9,14}(\.\d+)?", text):
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
    for sentence in _SENTENCE.split(summary):
        if not _FOLLOW_UP_CUE.search(sentence):
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
