"""DialNexa webhook parsing: every documented envelope and field spelling into one CallEvent.

DialNexa's docs describe three inconsistent webhook models (see shared/reference/dialnexa.md §1.3);
this module accepts all of them, plus the peers' `{event, call}` and `{message: {...}}` envelopes.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any

import phonenumbers
import re2
from pydantic import BaseModel, Field


class EventKind(StrEnum):
    CALL_INITIATED = "call_initiated"
    CALL_ENDED = "call_ended"
    CALL_ANALYZED = "call_analyzed"
    TRANSFER_COMPLETED = "transfer_completed"


class NotACallEvent(ValueError):
    """The body is JSON but not a call event DialNexa documents; the message says why."""


_EVENT_NAMES: dict[str, EventKind] = {
    "call_initiated": EventKind.CALL_INITIATED,
    "call.started": EventKind.CALL_INITIATED,
    "call_started": EventKind.CALL_INITIATED,
    "call_ended": EventKind.CALL_ENDED,
    "call.ended": EventKind.CALL_ENDED,
    "call.completed": EventKind.CALL_ENDED,
    "call.failed": EventKind.CALL_ENDED,
    "call.no_answer": EventKind.CALL_ENDED,
    "call_analyzed": EventKind.CALL_ANALYZED,
    "call.analysis_ready": EventKind.CALL_ANALYZED,
    "call.transcript_ready": EventKind.CALL_ENDED,
    "end-of-call-report": EventKind.CALL_ANALYZED,
    "transfer_completed": EventKind.TRANSFER_COMPLETED,
}
_HANGUP_EVENTS = {"call.failed", "call.no_answer"}
# A phone number is read from the start of its field only: no real number needs more characters.
_PHONE_SCAN = 64
MAX_DURATION_SECONDS = 7 * 24 * 3600
VERIFICATION_NAMES = frozenset({"verification", "ping", "test", "webhook.test"})

_ANALYSIS_KEYS = ("post_call_analysis", "analysis", "extracted_data", "custom_analysis_data", "structuredData")
_MISSING = {"", "unknown", "n/a", "na", "none", "null", "-"}
# Lower-casing never shortens a text, so a longer one is no placeholder: a transcript is not copied
# twice to learn that.
_MISSING_LONGEST = max(map(len, _MISSING))
# No field DialNexa documents nests more than a few levels; anything deeper than this under the
# analysis or metadata cannot be read by triage and is dropped (and the drop recorded), so no walk
# over a delivery can ever exhaust the stack.
MAX_NESTING = 32
TOO_DEEP = f"nested deeper than {MAX_NESTING} levels"
_EPOCH = re2.compile(r"\d{9,14}(?:\.\d+)?")


@dataclass(slots=True)
class Turn:
    # A plain dataclass, not a model: a long transcript has tens of thousands of turns, and each
    # model instance would cost several times as much to build.
    role: str
    text: str


class CallEvent(BaseModel):
    """One DialNexa delivery, normalised. Text fields here are raw: triage redacts them."""

    event: EventKind
    event_name: str
    call_id: str
    agent_id: str | None = None
    direction: str | None = None
    status: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    hangup_reason: str | None = None
    initiated_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    summary: str | None = None
    transcript: list[Turn] = Field(default_factory=list)
    transcript_url: str | None = None
    recording_url: str | None = None
    sentiment: str | None = None
    analysis: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    transfer_destination: str | None = None
    # What could not be read and was left out, e.g. {"analysis.debug_tree": "nested deeper than 32 levels"}.
    dropped: dict[str, str] = Field(default_factory=dict)

    @property
    def caller_number(self) -> str | None:
        return self.to_number if self.direction == "outbound" else self.from_number

    def transcript_text(self) -> str:
        return "\n".join(f"{turn.role}: {turn.text}" for turn in self.transcript)


class Ignored(BaseModel):
    """A delivery that needs a 200 and nothing else: a verification ping or an event we don't use."""

    reason: str
    event_name: str | None = None


def is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        text = value.strip()
        return len(text) <= _MISSING_LONGEST and text.lower() in _MISSING
    return isinstance(value, list | dict) and not value


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if not is_missing(value):
            return value
    return None


def _text(value: object) -> str | None:
    return None if is_missing(value) else _present_text(value)


def _first_text(mapping: dict[str, Any], *keys: str) -> str | None:
    """`_text(_first(mapping, *keys))`: what `_first` found is not missing, so it is not looked at again."""
    value = _first(mapping, *keys)
    return None if value is None else _present_text(value)


def _present_text(value: object) -> str | None:
    if isinstance(value, str):
        return _encodable(value).strip()
    if isinstance(value, int | Decimal | float):
        return str(value)
    return None


def normalise_phone(value: object) -> str | None:
    """DialNexa sends digits without '+'; store E.164 or nothing."""
    raw = _text(value)
    if raw is None:
        return None
    digits = "".join(char for char in raw[:_PHONE_SCAN] if char.isdecimal())
    if not 7 <= len(digits) <= 15:
        return None
    return _e164(digits)


# Parsing is most of the cost of a number, and the same few recur: the line a call came in on is in
# every delivery, a caller's number in each event of their call. Keys are at most 15 digits.
@lru_cache(maxsize=4096)
def _e164(digits: str) -> str | None:
    try:
        number = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def parse_timestamp(value: object) -> datetime | None:
    """ISO 8601 strings or epoch seconds/milliseconds, always returned timezone-aware in UTC."""
    if is_missing(value) or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = _encodable(value)
    if isinstance(value, str) and _EPOCH.fullmatch(value.strip()):
        value = Decimal(value.strip())
    if isinstance(value, int | float | Decimal):
        seconds = Decimal(str(value))
        if not seconds.is_finite():  # JSON's NaN and Infinity parse; they are no moment
            return None
        if seconds > Decimal(10) ** 11:  # epoch milliseconds, as Retell and some DialNexa routes send
            seconds /= 1000
        try:
            return datetime.fromtimestamp(float(seconds), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    return None


def _duration(call: dict[str, Any]) -> int | None:
    value = _first(call, "duration_in_seconds", "duration_seconds", "duration")
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = Decimal(str(value))
    except ArithmeticError:
        return None
    # NaN, Infinity and absurd lengths are no duration, and would not fit the column either.
    if not seconds.is_finite() or seconds > MAX_DURATION_SECONDS:
        return None
    return max(0, int(seconds))


# A speaker label: a letter, then up to 30 word characters, spaces, dots or hyphens (`Role: text`).
_ROLE_LIMIT = 31
MAX_TURNS = 10_000
_ROLE_PUNCTUATION = str.maketrans("", "", "_ .-")


def _speaker(line: str) -> tuple[str, str] | None:
    """`Agent: hello` as (role, text), by hand with the meaning of
    `^\\s*([A-Za-z][\\w .-]{0,30}?)\\s*:\\s*(.*)$`; None for a continuation line."""
    colon = line.find(":")
    if colon == -1:
        return None
    role = line[:colon].strip()
    if not 1 <= len(role) <= _ROLE_LIMIT or not (role[0].isascii() and role[0].isalpha()):
        return None
    # Most speakers ("Agent", "User") are one word, which the punctuation need not be taken out of.
    rest = role[1:]
    if not rest.isalnum():
        rest = rest.translate(_ROLE_PUNCTUATION)
        if rest and not rest.isalnum():
            return None
    return role, line[colon + 1 :].strip()


def parse_transcript(value: object) -> list[Turn]:
    """A string of `Role: text` lines, a list of turns, or a `{role: text}` object."""
    if is_missing(value):
        return []
    if isinstance(value, str):
        return _transcript_lines(_encodable(value))
    turns: list[Turn] = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                role = _first_text(item, "role", "speaker", "name") or "unknown"
                text = _first_text(item, "text", "message", "content", "words")
                if text:
                    turns.append(Turn(role=role, text=text))
            elif isinstance(item, str) and item.strip():
                turns.append(Turn(role="unknown", text=_encodable(item).strip()))
    elif isinstance(value, dict):
        for role, text in value.items():
            if isinstance(text, str) and text.strip():
                turns.append(Turn(role=_encodable(str(role)), text=_encodable(text).strip()))
            elif isinstance(text, list):
                turns.extend(
                    Turn(role=_encodable(str(role)), text=_encodable(t).strip())
                    for t in text
                    if isinstance(t, str) and t.strip()
                )
    return turns


def _transcript_lines(value: str) -> list[Turn]:
    # Each turn's lines are collected and joined once: appending to the turn's text line by line would
    # copy the whole turn again for every continuation line.
    turns: list[tuple[str, list[str]]] = []
    lines = value.splitlines()
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        speaker = _speaker(line)
        if speaker is not None and len(turns) >= MAX_TURNS:
            # No call has this many turns; the rest is kept as text of the last one, so it is still read
            # (and redacted) without building an object per line.
            turns[-1][1].extend(rest.strip() for rest in lines[index:])
            break
        if speaker is not None:
            turns.append((speaker[0], [speaker[1]]))
        elif turns:
            turns[-1][1].append(line.strip())
        else:
            turns.append(("unknown", [line.strip()]))
    return [Turn(role, parts[0] if len(parts) == 1 else " ".join(filter(None, parts))) for role, parts in turns]


def _encodable(text: str) -> str:
    """JSON may carry a lone surrogate ("\\ud800"), which no database, Slack or UTF-8 regex engine takes."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _too_deep(value: object) -> bool:
    """Whether a JSON value nests deeper than MAX_NESTING; iterative, so depth itself cannot hurt."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children: Any
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= MAX_NESTING:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _readable(value: object) -> object:
    """A copy with every string encodable; only called on values _too_deep has cleared."""
    if isinstance(value, str):
        return _encodable(value)
    if isinstance(value, dict):
        return {_encodable(str(key)): _readable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_readable(item) for item in value]
    return value


def _readable_fields(fields: dict[str, Any], where: str, dropped: dict[str, str]) -> dict[str, Any]:
    """The fields triage can read; anything nested too deep is left out and named in `dropped`."""
    kept: dict[str, Any] = {}
    for key, value in fields.items():
        name = _encodable(str(key))
        if _too_deep(value):
            dropped[f"{where}.{name}"] = TOO_DEEP
        else:
            kept[name] = _readable(value)
    return kept


def _analysis(call: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for source in (envelope, call, call.get("call_analysis") or {}):
        if not isinstance(source, dict):
            continue
        for key in _ANALYSIS_KEYS:
            value = source.get(key)
            if isinstance(value, dict):
                nested = value.get("structuredData") or value.get("custom_analysis_data")
                flat = {k: v for k, v in value.items() if not isinstance(v, dict)}
                for part in (flat, nested if isinstance(nested, dict) else {}):
                    merged.update({k: v for k, v in part.items() if not is_missing(v)})
    return merged


def _split_envelope(body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """Find the event name and the call object in any of the documented envelopes."""
    if isinstance(body.get("message"), dict) and "type" in body["message"]:  # Vapi-style
        message = body["message"]
        call = message.get("call") if isinstance(message.get("call"), dict) else None
        if call is not None:
            call = {**message, **call}
            call.pop("call", None)
            # Vapi keeps the transcript and recording under `artifact` and the caller under `customer`.
            raw_artifact, raw_customer = message.get("artifact"), call.get("customer")
            artifact: dict[str, Any] = raw_artifact if isinstance(raw_artifact, dict) else {}
            customer: dict[str, Any] = raw_customer if isinstance(raw_customer, dict) else {}
            for key, value in (("transcript", artifact.get("transcript") or artifact.get("messages")),
                               ("recording_url", artifact.get("recordingUrl") or artifact.get("recording_url")),
                               ("from_number", customer.get("number"))):
                if value and not call.get(key):
                    call[key] = value
        return _text(message.get("type")), call
    name = _text(body.get("event_type")) or _text(body.get("event")) or _text(body.get("type"))
    payload = body.get("payload")
    if isinstance(payload, dict):
        if isinstance(payload.get("call"), dict):
            return name, {**payload["call"], "_envelope": payload}
        if _first(payload, "id", "call_id", "session_id"):
            return name, payload
    if isinstance(body.get("call"), dict):
        return name, body["call"]
    if isinstance(body.get("data"), dict) and _first(body["data"], "call_id", "session_id"):
        return name, body["data"]
    if _first(body, "call_id", "session_id") or (name and _first(body, "id")):
        return name, body
    return name, None


CALL_DETAILS_URL = "https://api.dialnexa.com/v1/call-logs/{call_id}/details"


def call_details_url(call_id: str) -> str:
    """DialNexa's full record of a call (transcript, recording, analysis), behind a DialNexa API key."""
    return CALL_DETAILS_URL.format(call_id=urllib.parse.quote(call_id, safe=""))


def parse_event(body: object) -> CallEvent | Ignored:
    """Normalise a decoded JSON body; raises NotACallEvent for anything that is not a call event."""
    if not isinstance(body, dict):
        raise NotACallEvent("body must be a JSON object")
    name, call = _split_envelope(body)
    lowered = name.lower() if name else None
    if lowered in VERIFICATION_NAMES or (call is None and "message" in body and "timestamp" in body):
        return Ignored(reason="verification", event_name=name)
    if lowered is not None and lowered not in _EVENT_NAMES:
        return Ignored(reason="event type not used by finance-desk", event_name=name)
    if call is None:
        raise NotACallEvent("no call object: expected payload.call, call, or call fields at the top level")
    envelope = call.pop("_envelope", {}) if isinstance(call.get("_envelope"), dict) else {}
    # A call-log record has both: `id` is the log's own ID, `call_id` the call's (dialnexa.md §1.3).
    call_id = _first_text(call, "call_id", "id", "session_id")
    if call_id is None:
        raise NotACallEvent("the call has no id (id, call_id or session_id)")
    if len(call_id) > 200:
        raise NotACallEvent("the call id is longer than 200 characters")
    status = _first_text(call, "status", "call_status")
    dropped: dict[str, str] = {}
    analysis = _readable_fields(_analysis(call, {**body, **envelope}), "analysis", dropped)
    if lowered is None:
        kind = EventKind.CALL_ENDED if status or call.get("transcript") else EventKind.CALL_INITIATED
    else:
        kind = _EVENT_NAMES[lowered]
        if lowered in _HANGUP_EVENTS:
            status = "hangup"
    if kind is EventKind.CALL_ENDED and analysis:
        kind = EventKind.CALL_ANALYZED
    transfer = envelope.get("call_transfer") or call.get("call_transfer") or body.get("call_transfer")
    summary = _first_text(call, "summary", "call_summary") or _text(analysis.get("summary"))
    metadata = _first(call, "metadata", "retell_llm_dynamic_variables")
    return CallEvent(
        event=kind,
        event_name=name or "flat",
        call_id=call_id,
        agent_id=_text(call.get("agent_id")),
        direction=(_first_text(call, "direction", "call_direction") or "").lower() or None,
        status=status.lower() if status else None,
        from_number=normalise_phone(_first(call, "from_number", "phone_number", "from", "customer_number")),
        to_number=normalise_phone(_first(call, "to_number", "to")),
        hangup_reason=_first_text(call, "hangup_reason", "disconnection_reason", "end_reason", "endedReason"),
        # A bare `timestamp` is when the event happened: the start for a start event, else the end.
        initiated_at=parse_timestamp(_first(call, "initiated_at", "started_at", "start_timestamp")
                                     or (call.get("timestamp") if kind is EventKind.CALL_INITIATED else None)),
        ended_at=parse_timestamp(_first(call, "ended_at", "end_timestamp")
                                 or (call.get("timestamp") if kind is not EventKind.CALL_INITIATED else None)),
        duration_seconds=_duration(call),
        summary=summary,
        transcript=parse_transcript(_first(call, "transcript_object", "transcript", "messages")),
        transcript_url=_first_text(call, "transcript_url", "public_log_url", "log_url"),
        recording_url=_first_text(call, "recording_url", "recordingUrl"),
        sentiment=_first_text(call, "sentiment", "user_sentiment"),
        analysis=analysis,
        metadata=_readable_fields(metadata, "metadata", dropped) if isinstance(metadata, dict) else {},
        transfer_destination=_text(transfer.get("destination")) if isinstance(transfer, dict) else None,
        dropped=dropped,
    )
