"""Signed DialNexa deliveries of a chosen size, benign or built to hit triage's worst cases.

Each adversarial kind repeats a shape that a backtracking pattern or a quadratic scan chokes on
(issue 10): digit groups behind every separator people and speech-to-text write, a date repeated,
`$1` and junk, `a@a.a@`, a VAT keyword followed by endless digits, spoken digits, a speaker line
followed by thousands of continuation lines, deep (but legal) JSON, and thousands of analysis keys.
The text goes where triage reads it: the transcript (most of it), the summary and a free-text
analysis field. Every body is valid JSON of a real envelope with a unique call id, so the app
verifies, parses and triages it in full.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from bench import SAMPLES, pad_transcript

BENIGN = "benign"
MAX_BODY_BYTES = 1024 * 1024
# Room for the envelope and JSON escaping under the webhook's 1 MiB limit.
ONE_MIB_BODY = MAX_BODY_BYTES - 4096
DEEP_LEVELS = 600  # legal JSON (Python's parser allows ~990 here), but deeper than any real analysis


def _separated_digits(rng: random.Random, size: int) -> str:
    separators = [" ", ". ", ", ", "  ", "-", " . ", ".", ",", " - ", "\u202f", "/", " , "]
    parts: list[str] = []
    length = 0
    while length < size:
        part = str(rng.randrange(1, 10 ** rng.randint(1, 4))) + rng.choice(separators)
        parts.append(part)
        length += len(part)
    return "".join(parts)


def _dollar_junk(rng: random.Random, size: int) -> str:
    junk = ["1", "0", ",", ".", " ", "$", "00", ",000", ".5", "k", "USD"]
    parts: list[str] = []
    length = 0
    while length < size:
        part = "$1" + "".join(rng.choice(junk) for _ in range(rng.randint(1, 12)))
        parts.append(part)
        length += len(part)
    return "".join(parts)


def _repeat(unit: str) -> Callable[[random.Random, int], str]:
    def build(_: random.Random, size: int) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    return build


def _continuation_lines(_: random.Random, size: int) -> str:
    # One speaker line, then lines without a speaker: each continues the same turn.
    line = "and the amount was 42 dollars on invoice 1042 I think\n"
    return "User: hello\n" + line * (size // len(line))


TEXT_KINDS: dict[str, Callable[[random.Random, int], str]] = {
    "digits": _separated_digits,
    "dates": _repeat("2026-11-22 "),
    "dollar": _dollar_junk,
    "emails": _repeat("a@a.a@"),
    "vat": _repeat("VAT DE 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 "),
    "spoken": _repeat("four two four two "),
    "lines": _continuation_lines,
}
STRUCTURE_KINDS = ("deep", "keys")
ADVERSARIAL_KINDS: tuple[str, ...] = (*TEXT_KINDS, *STRUCTURE_KINDS)
KINDS: tuple[str, ...] = (BENIGN, *ADVERSARIAL_KINDS)


def _base(call_id: str) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((SAMPLES / "01_refund.json").read_text(encoding="utf-8"))
    call: dict[str, Any] = sample["payload"]["call"]
    call["id"] = call_id
    call["recording_url"] = f"https://recordings.dialnexa.com/{call_id}.mp3"
    return sample


def _call(body: dict[str, Any]) -> dict[str, Any]:
    call: dict[str, Any] = body["payload"]["call"]
    return call


def _fill_text(body: dict[str, Any], text: str) -> None:
    call = _call(body)
    eighth = len(text) // 8
    if text.startswith("User: "):
        call["transcript"] = text
    else:
        call["transcript"] = "Agent: How can I help?\nUser: " + text[: 6 * eighth]
        call["summary"] = text[6 * eighth : 7 * eighth]
        call["post_call_analysis"]["refund_reason"] = text[7 * eighth :]


def _fill_structure(body: dict[str, Any], kind: str, size: int) -> None:
    analysis = _call(body)["post_call_analysis"]
    if kind == "deep":
        one: Any = "4242 4242 4242 4242"
        for _ in range(DEEP_LEVELS):
            one = [one]
        copies = max(1, size // (2 * DEEP_LEVELS + 25))
        analysis["x_vendor_trace"] = [one] * copies
        return
    count = max(1, size // 48)
    analysis.update({f"x_note_{i:06d}": f"ref {i} on 2026-11-22, ${i}.00" for i in range(count)})


def _dumps(body: dict[str, Any]) -> bytes:
    # ensure_ascii=False: a narrow no-break space must count as its UTF-8 bytes, not a 6-byte escape.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _build(kind: str, call_id: str, room: int, seed: int) -> bytes:
    body = _base(call_id)
    if kind == BENIGN:
        pad_transcript(_call(body), len(_call(body)["transcript"]) + room)
    elif kind in TEXT_KINDS:
        _fill_text(body, TEXT_KINDS[kind](random.Random(seed), room))
    else:
        _fill_structure(body, kind, room)
    return _dumps(body)


def body_for(kind: str, size: int, call_id: str, seed: int = 0) -> bytes:
    """One delivery of about `size` bytes (never over `size`, nor over the 1 MiB limit, past 4 KB)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    size = min(size, MAX_BODY_BYTES)
    overhead = len(_dumps(_base(call_id)))
    room = max(size - overhead, 64)
    raw = _build(kind, call_id, room, seed)
    if len(raw) > size:
        # Escapes (newlines) and multi-byte separators make the JSON longer than its text: scale once.
        raw = _build(kind, call_id, max(int(room * (size - overhead) / (len(raw) - overhead)) - 64, 64), seed)
    return raw
