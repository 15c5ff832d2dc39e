"""Triage of one call event: redact first, then classify and extract from the redacted text only."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from bot.triage.classify import classify
from bot.triage.extract import extract
from bot.triage.model import Classification, Extracted
from bot.triage.redact import SuppressedKind, redact, redact_value
from providers.dialnexa import CallEvent


class Triage(BaseModel):
    classification: Classification
    fields: Extracted
    summary: str | None
    suppressed: frozenset[SuppressedKind]


# Analysis fields whose very name says the value is sensitive: the text redactor never sees the key, so
# a bare "000123456789" under "bank_account_number" would otherwise pass as an ordinary number.
_SENSITIVE_KEYS: list[tuple[re.Pattern[str], SuppressedKind]] = [
    (re.compile(r"cvv|cvc|security_?code|card_?code"), SuppressedKind.CARD_SECURITY_CODE),
    (re.compile(r"(card|cc)_?(number|num|no)$|^pan$|full_card"), SuppressedKind.CARD_NUMBER),
    (re.compile(r"(card_?)?expir|^exp(_?date)?$"), SuppressedKind.CARD_EXPIRY),
    (re.compile(r"iban"), SuppressedKind.IBAN),
    (re.compile(r"routing|^aba|sort_?code|bank_?acc|acct_?(number|num|no)|account_?(number|num|no)$|swift|bic$"),
     SuppressedKind.BANK_ACCOUNT),
    (re.compile(r"ssn|social_?security|itin|^ein$|employer_?id|tax_?id|vat_?(id|number|no)|^tin$"),
     SuppressedKind.TAX_ID),
]


def _sensitive_kind(key: str) -> SuppressedKind | None:
    normalised = re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")
    for pattern, kind in _SENSITIVE_KEYS:
        if pattern.search(normalised):
            return kind
    return None


def redact_analysis(value: Any, kinds: set[SuppressedKind]) -> Any:
    """Redact an analysis object: by key name first, then every string (and long number) by content."""
    if isinstance(value, dict):
        redacted: dict[str, Any] = {}
        for key, item in value.items():
            kind = _sensitive_kind(str(key))
            if kind is not None and item not in (None, "", [], {}):
                kinds.add(kind)
                redacted[key] = f"[redacted {kind.value}]"
            else:
                redacted[key] = redact_analysis(item, kinds)
        return redacted
    if isinstance(value, list):
        return [redact_analysis(item, kinds) for item in value]
    if isinstance(value, int | Decimal) and not isinstance(value, bool) and len(str(value)) >= 9:
        # Long JSON numbers are identifiers, not amounts; a card number sent as a number is caught here.
        text, found = redact_value(str(value))
        if found:
            kinds |= found
            return text
        return value
    if isinstance(value, str):
        text, found = redact_value(value)
        kinds |= found
        return text
    return value


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
        call_recording_url=event.recording_url,
        call_transcript_url=event.transcript_url,
        caller_phone=event.caller_number,
        now=now,
    )
    # The raw transcript ends here: only what triage derived from its redacted form is kept.
    return Triage(classification=classification, fields=fields, summary=summary, suppressed=frozenset(kinds))
