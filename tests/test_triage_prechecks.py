"""Cheap checks that let triage skip a search must never skip one that would have matched."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.triage import extract
from providers.dialnexa import _speaker, is_missing


@pytest.mark.parametrize(
    ("pattern", "words"),
    [(extract._CALLBACK, extract._CALLBACK_WORDS), (extract._FOLLOW_UP_CUE, extract._FOLLOW_UP_WORDS)],
    ids=["callback", "follow_up_cue"],
)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_match_holds_one_of_its_words(pattern: Any, words: tuple[str, ...], data: st.DataObject) -> None:
    # Python's `re` reads these patterns as re2 does and generates from them, case variants included.
    found = data.draw(st.from_regex(re.compile(pattern.pattern), fullmatch=True))
    assert any(word in found.casefold() for word in words), found


def _blank_masks_by_translate(text: str) -> str:
    """The str.translate form _blank_masks had: the reference it must agree with."""
    flagged = text.translate(str.maketrans({**dict.fromkeys("*xX•#", "\x00"), "\x00": "\x01"}))
    pos = flagged.find("\x00" * 4)
    out: list[str] = []
    done = 0
    while pos != -1:
        end = pos + 4
        while end < len(flagged) and flagged[end] == "\x00":
            end += 1
        if end < len(text) and (text[end] == "-" or text[end] in " \t\n\r\f\v"):
            end += 1
        digits = 0
        while digits < 4 and end < len(text) and "0" <= text[end] <= "9":
            end += 1
            digits += 1
        out += [text[done:pos], " … "]
        done = end
        pos = flagged.find("\x00" * 4, end)
    return "".join(out) + text[done:] if out else text


def test_blank_masks_reads_any_text_as_str_translate_did() -> None:
    rng = random.Random(7)
    alphabet = "*xX•#\x00\x01?- \n1234a€é…\ud800"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert extract._blank_masks(text) == _blank_masks_by_translate(text), repr(text)


@pytest.mark.parametrize(
    "role", ["Agent", "User", "A", "Dr. Who", "front-desk_2", "Ag ent", "Ag€nt", "Agent!", "A.", "ß", "Ag²"]
)
def test_speaker_one_word_shortcut_agrees(role: str) -> None:
    rest = role[1:].translate(str.maketrans("", "", "_ .-"))
    ok = role[0].isascii() and role[0].isalpha() and (not rest or rest.isalnum())
    assert (_speaker(f"{role}: hi") is not None) is ok


@pytest.mark.parametrize(
    "text", ["", " ", "unknown", " UNKNOWN ", "N/A", "null", "-", "un\u212anown", "İ", "unknowns", " none" * 20]
)
def test_is_missing_by_length_agrees(text: str) -> None:
    assert is_missing(text) is (text.strip().lower() in {"", "unknown", "n/a", "na", "none", "null", "-"})
