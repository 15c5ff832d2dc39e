"""Triage of one call event: redact first, then classify and extract from the redacted text only."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import re2
from pydantic import BaseModel

from bot.triage.classify import classify
from bot.triage.extract import KEYS, URL_LIMIT, extract
from bot.triage.model import Classification, Extracted
from bot.triage.redact import SuppressedKind, card_number_in, redact, redact_url, redact_value
from providers.dialnexa import MAX_NESTING, CallEvent


class Triage(BaseModel):
    classification: Classification
    fields: Extracted
    summary: str | None
    suppressed: frozenset[SuppressedKind]
    # The call's own text fields (direction, agent_id, hangup_reason, status), redacted like the rest.
    call_text: dict[str, str | None] = {}
    # What could not be read and was left out: "analysis.<key>" -> why (see CallEvent.dropped).
    dropped: dict[str, str] = {}


# Analysis fields whose very name says the value is sensitive: the text redactor never sees the key, so
# a bare "000123456789" under "bank_account_number" would otherwise pass as an ordinary number. When
# several match, the first listed wins.
_SENSITIVE_KEYS: list[tuple[str, SuppressedKind]] = [
    (r"cvv|cvc|security_?code|card_?code", SuppressedKind.CARD_SECURITY_CODE),
    (r"(card|cc)_?(number|num|no)$|^pan$|full_card", SuppressedKind.CARD_NUMBER),
    (r"(card_?)?expir|^exp(_?date)?$", SuppressedKind.CARD_EXPIRY),
    (r"iban", SuppressedKind.IBAN),
    (r"routing|^aba|sort_?code|bank_?acc|acct_?(number|num|no)|account_?(number|num|no)$|swift|bic$",
     SuppressedKind.BANK_ACCOUNT),
    (r"ssn|social_?security|itin|^ein$|employer_?id|tax_?id|vat_?(id|number|no)|^tin$", SuppressedKind.TAX_ID),
]


def _key_set() -> Any:
    # One re2 pass per key tells which of the patterns match: an analysis may have thousands of keys.
    patterns = re2.Set.SearchSet()
    for pattern, _kind in _SENSITIVE_KEYS:
        patterns.Add(pattern)
    patterns.Compile()
    return patterns


_KEY_SET = _key_set()
# `re.sub(r"[^a-z0-9]+", "_", key)` at C speed: every other byte becomes "_", and runs collapse on split.
_KEY_BYTES = bytes(byte if chr(byte) in "abcdefghijklmnopqrstuvwxyz0123456789" else ord("_") for byte in range(256))
# Keys whose values are amounts: a card number given there is a card number, never money.
_AMOUNT_KEYS = frozenset(KEYS["amount"]) | {"credit_request", "credit_amount", "refund_amount", "total"}
_URL_SCHEMES = ("http://", "https://")
_CALL_TEXT_FIELDS = ("direction", "agent_id", "hangup_reason", "status")
DROPPED_NAME_LIMIT = 100


@lru_cache(maxsize=1024)
def _sensitive_kind(key: str) -> SuppressedKind | None:
    raw = key.lower().encode("utf-8", "replace").translate(_KEY_BYTES)
    matched = _KEY_SET.Match(b"_".join(filter(None, raw.split(b"_"))))
    return _SENSITIVE_KEYS[min(matched)][1] if matched else None


def redact_analysis(value: Any, kinds: set[SuppressedKind], depth: int = 0) -> Any:
    """Redact an analysis object: by key name first, then every string (and long number) by content.

    Links are judged whole by redact_url (a link with a sensitive value is dropped), amounts that are
    card numbers become card numbers, and nothing deeper than MAX_NESTING is kept (parse_event has
    already dropped such values; this bound keeps the walk itself safe on any input).
    """
    if isinstance(value, dict | list) and depth >= MAX_NESTING:
        return None
    if isinstance(value, dict):
        redacted: dict[str, Any] = {}
        for key, item in value.items():
            kind = _sensitive_kind(str(key))
            if kind is None and str(key).lower() in _AMOUNT_KEYS and _is_card_number(item):
                kind = SuppressedKind.CARD_NUMBER
            if kind is not None and item not in (None, "", [], {}):
                kinds.add(kind)
                redacted[key] = f"[redacted {kind.value}]"
            else:
                redacted[key] = redact_analysis(item, kinds, depth + 1)
        return redacted
    if isinstance(value, list):
        return [redact_analysis(item, kinds, depth + 1) for item in value]
    if isinstance(value, int | Decimal) and not isinstance(value, bool) and len(str(value)) >= 9:
        # Long JSON numbers are identifiers, not amounts; a card number sent as a number is caught here.
        text, found = redact_value(str(value))
        if found:
            kinds |= found
            return text
        return value
    if isinstance(value, str) and _is_link(value):
        return _redact_link(value, kinds)
    if isinstance(value, str):
        text, found = redact_value(value)
        kinds |= found
        return text
    return value


def _is_card_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal | float):
        return False
    return card_number_in(str(value))


def _is_link(value: str) -> bool:
    text = value.strip()
    return text.lower().startswith(_URL_SCHEMES) and len(text.split(maxsplit=1)) == 1


def _redact_link(url: str | None, kinds: set[SuppressedKind]) -> str | None:
    # A link longer than any the case keeps (extract.URL_LIMIT) is dropped unread.
    if url is None or len(url) > URL_LIMIT:
        return None
    kept, found = redact_url(url)
    kinds |= found
    return kept


def _call_text(event: CallEvent, kinds: set[SuppressedKind]) -> dict[str, str | None]:
    texts: dict[str, str | None] = {}
    for name in _CALL_TEXT_FIELDS:
        value = getattr(event, name)
        if value is None:
            texts[name] = None
            continue
        redacted = redact(value)
        kinds |= redacted.kinds
        texts[name] = redacted.text
    return texts


def triage(event: CallEvent, now: datetime) -> Triage:
    kinds: set[SuppressedKind] = set()
    summary = None
    if event.summary:
        redacted = redact(event.summary)
        summary, kinds = redacted.text, set(redacted.kinds)
    transcript = redact(event.transcript_text())
    kinds |= transcript.kinds
    analysis = redact_analysis(event.analysis, kinds)
    classification = classify(analysis, summary, transcript.text)
    fields = extract(
        analysis,
        summary,
        transcript.text,
        call_recording_url=_redact_link(event.recording_url, kinds),
        call_transcript_url=_redact_link(event.transcript_url, kinds),
        caller_phone=event.caller_number,
        now=now,
    )
    call_text = _call_text(event, kinds)
    dropped = _dropped(event, kinds)
    # The raw transcript ends here: only what triage derived from its redacted form is kept.
    return Triage(
        classification=classification,
        fields=fields,
        summary=summary,
        suppressed=frozenset(kinds),
        call_text=call_text,
        dropped=dropped,
    )


def _dropped(event: CallEvent, kinds: set[SuppressedKind]) -> dict[str, str]:
    """What parsing left out, keyed by where it was: a key is outside text too, so it is cut and
    redacted before it can reach the audit log."""
    named: dict[str, str] = {}
    for where, why in event.dropped.items():
        redacted = redact(where[:DROPPED_NAME_LIMIT])
        kinds |= redacted.kinds
        named[redacted.text] = why
    return named
