"""What a person's click or command did, told back to them: the answer every domain function returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str  # shown to the person who clicked, ephemerally
