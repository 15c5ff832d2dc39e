"""Benchmarks for finance-desk. They print figures and never assert timings.

- `python -m bench.ingest`: signed DialNexa deliveries against the real webhook, beside a floor app.
- `python -m bench.cards`: a burst of cases drained to the Slack stand-in at a per-channel rate.

This module holds what both share: realistic delivery bodies built from `bot/samples/*.json` and
latency statistics.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "bot" / "samples"
EXAMPLE_POLICY = ROOT / "policy.example.toml"

# Placeholder written into each rendered template, replaced by a unique call id per delivery.
_CALL_ID_TOKEN = "@@BENCH_CALL_ID@@"
TRANSCRIPT_BYTES = 3000

# Neutral small talk that pads transcripts to a realistic length without changing what the call is about.
_FILLER = [
    ("agent", "Let me pull that up for you, it will take a moment while the system loads."),
    ("user", "Sure, no problem, I can wait. I have the email from last month open here as well."),
    ("agent", "Thanks for your patience. Can you confirm the name on the account for me please?"),
    ("user", "Yes, it is the same name as before, nothing has changed on our side since we signed up."),
    ("agent", "Perfect, I can see the account now. I will add a note so the team has the full context."),
    ("user", "Great. Will someone get back to me by email or by phone, and roughly when should I expect it?"),
]


def _filler_turns(min_chars: int) -> list[tuple[str, str]]:
    turns: list[tuple[str, str]] = []
    size = 0
    while size < min_chars:
        role, text = _FILLER[len(turns) % len(_FILLER)]
        turns.append((role, text))
        size += len(role) + len(text) + 3
    return turns


def _call_id_of(sample: dict[str, Any]) -> str | None:
    call = sample.get("payload", {}).get("call") if isinstance(sample.get("payload"), dict) else None
    if isinstance(call, dict) and isinstance(call.get("id"), str):
        return str(call["id"])
    if isinstance(sample.get("call_id"), str):
        return str(sample["call_id"])
    return None


def pad_transcript(container: dict[str, Any], target: int) -> None:
    transcript = container.get("transcript")
    if isinstance(transcript, str):
        turns = _filler_turns(target - len(transcript))
        lines = [f"{'Agent' if role == 'agent' else 'User'}: {text}" for role, text in turns]
        container["transcript"] = "\n".join([transcript, *lines])
    elif isinstance(transcript, list):
        size = len(json.dumps(transcript))
        transcript.extend({"role": role, "text": text} for role, text in _filler_turns(target - size))
    elif isinstance(transcript, dict) and transcript:
        # {"Agent": "...", "User": "..."}: lengthen the last speaker's text.
        last = list(transcript)[-1]
        extra = " ".join(text for _, text in _filler_turns(target - len(json.dumps(transcript))))
        transcript[last] = f"{transcript[last]} {extra}"


def _template(path: Path) -> str:
    sample = json.loads(path.read_text(encoding="utf-8"))
    original = _call_id_of(sample)
    if original is None:
        raise ValueError(f"{path.name}: no call id found")
    call = sample["payload"]["call"] if "payload" in sample else sample
    pad_transcript(call, TRANSCRIPT_BYTES)
    # Replace every mention (call id, recording URL) so each delivery looks like a distinct call.
    return json.dumps(sample, separators=(",", ":")).replace(original, _CALL_ID_TOKEN)


def sample_paths(*, billing_only: bool = False) -> list[Path]:
    paths = sorted(SAMPLES.glob("*.json"))
    if billing_only:
        paths = [p for p in paths if "not_billing" not in p.name]
    return paths


@dataclass(frozen=True)
class Delivery:
    call_id: str
    body: bytes
    sample: str


class Deliveries:
    """An endless, deterministic stream of distinct deliveries cycling through the samples."""

    def __init__(self, *, billing_only: bool = False, prefix: str | None = None) -> None:
        paths = sample_paths(billing_only=billing_only)
        self.templates = [(p.stem, _template(p)) for p in paths]
        self.prefix = prefix or f"call_bench_{uuid.uuid4().hex[:8]}"
        self.count = 0

    def next(self) -> Delivery:
        name, template = self.templates[self.count % len(self.templates)]
        call_id = f"{self.prefix}_{self.count:07d}"
        self.count += 1
        return Delivery(call_id=call_id, body=template.replace(_CALL_ID_TOKEN, call_id).encode(), sample=name)

    def __iter__(self) -> Iterator[Delivery]:
        while True:
            yield self.next()

    def mean_size(self) -> float:
        return sum(len(t) for _, t in self.templates) / len(self.templates)


def sign(body: bytes, secret: bytes) -> dict[str, str]:
    """DialNexa's documented scheme, written here independently of the app's verifier."""
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-DialNexa-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100); 0.0 when empty."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return float(ordered[int(rank) - 1])


def summarize_ms(values_seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max (and mean) in milliseconds."""
    ordered = sorted(values_seconds)
    mean = sum(ordered) / len(ordered) if ordered else 0.0
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 2),
        "p90_ms": round(percentile(ordered, 90) * 1000, 2),
        "p99_ms": round(percentile(ordered, 99) * 1000, 2),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 2),
        "mean_ms": round(mean * 1000, 2),
    }
