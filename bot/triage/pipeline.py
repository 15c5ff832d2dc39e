"""Triage of one call event: redact first, then classify and extract from the redacted text only."""

from __future__ import annotations

from datetime import datetime

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


def triage(event: CallEvent, now: datetime) -> Triage:
    kinds: set[SuppressedKind] = set()
    summary = None
    if event.summary:
        redacted = redact(event.summary)
        summary, kinds = redacted.text, set(redacted.kinds)
    transcript = redact(event.transcript_text())
    kinds |= transcript.kinds
    analysis, analysis_kinds = redact_value(event.analysis)
    kinds |= analysis_kinds
    assert isinstance(analysis, dict)
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
