"""Linear-time pattern matching over outside text.

Every pattern run on caller, transcript, analysis or provider text is compiled by google-re2, whose
automaton never backtracks. re2's Python wrapper re-encodes a `str` on every call and maps offsets
back char by char, so a text is encoded to UTF-8 once (`Text`) and every pattern searches the bytes:
`search(text, pos)` then costs the scan from `pos`, not a copy of the whole text. re2 has no
lookarounds; callers emulate them by matching the rejected form as its own alternative, by matching
the neighbouring character itself, or by checking it in Python. re2's `\\d`, `\\s` and `\\b` are ASCII:
the texts triage reads are normalised first (NFKC, ASCII digits), which is what makes that enough.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import re2

# The redactor's markers ("[card ending 4242]") and anything else in square brackets up to this long.
BRACKET_LIMIT = 80


def compile(pattern: str, *, ignore_case: bool = False) -> Any:
    return re2.compile(("(?i)" if ignore_case else "") + pattern)


class Text:
    """One outside text and its UTF-8 form; offsets in matches are byte offsets into `data`."""

    __slots__ = ("_folded", "data", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        # A JSON string may hold a lone surrogate, which UTF-8 cannot encode: it becomes "?".
        self.data: bytes = text.encode("utf-8", "replace")
        self._folded: str | None = None

    def mentions(self, *words: str) -> bool:
        """Whether any of the (lower-case) words occurs in the text, in any letter case: a C-speed
        substring test that rules a pattern out before a search when it cannot match without one.

        The text is case-folded, not lower-cased: re2's `(?i)` also matches the Kelvin sign for "k" and
        the long s for "s", which fold to those letters but do not lower-case to them.
        """
        folded = self._folded
        if folded is None:
            folded = self._folded = self.text.casefold()
        return any(map(folded.__contains__, words))

    def __len__(self) -> int:
        return len(self.data)

    def slice(self, start: int, end: int) -> str:
        return self.data[start:end].decode("utf-8", "replace")

    def char_at(self, byte_offset: int) -> str:
        """The character starting at a byte offset ("" at the end)."""
        return self.data[byte_offset : byte_offset + 4].decode("utf-8", "replace")[:1]


def search(pattern: Any, text: Text, pos: int = 0) -> Any:
    return pattern.search(text.data, pos)


def finditer(pattern: Any, text: Text) -> Iterator[Any]:
    return pattern.finditer(text.data)  # type: ignore[no-any-return]


def group(found: Any, index: int | str = 1) -> str | None:
    raw = found.group(_index(found.re, index) if isinstance(index, str) else index)
    return None if raw is None else raw.decode("utf-8", "replace")


def start(found: Any, name: str) -> int:
    """re2's Match.start takes only group numbers."""
    return int(found.start(_index(found.re, name)))


def end(found: Any, name: str) -> int:
    return int(found.end(_index(found.re, name)))


@lru_cache(maxsize=256)
def _index(pattern: Any, name: str) -> int:
    # re2 rebuilds (and decodes) its whole table of names on every lookup by name.
    return int(pattern.groupindex[name])


def replace_brackets(text: str, replacement: str | Callable[[str], str], limit: int = BRACKET_LIMIT) -> str:
    """Every `\\[[^\\[\\]\\n]{0,limit}\\]` in the text replaced, left to right.

    Written by hand: a body of a hundred thousand "[a]" costs one C-speed split and a few string
    operations per bracket, not a trip through re2's Python wrapper per match.
    """
    if "[" not in text:
        return text
    pieces = text.split("[")
    out = [pieces[0]]
    append = out.append
    fixed = replacement if isinstance(replacement, str) else None
    for piece in pieces[1:]:
        close = piece.find("]", 0, limit + 1) if piece else -1
        if close == -1 or piece.find("\n", 0, close) != -1:
            append("[")
            append(piece)
            continue
        append(fixed if fixed is not None else replacement("[" + piece[: close + 1]))  # type: ignore[operator]
        append(piece[close + 1 :])
    return "".join(out)


def is_word(char: str) -> bool:
    return char.isalnum() or char == "_"
