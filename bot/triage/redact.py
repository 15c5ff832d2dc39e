"""Suppression of payment and tax identifiers before text is stored, posted or logged.

Callers read card numbers, bank details and tax IDs to a voice agent, so they reach us as digits
("4242 4242 4242 4242"), as words ("four two four two, double four ...") or as a mix. Everything is
reduced to *runs* of digits (digit groups and spoken digit words joined by separators) and each run is
judged by its checksum (Luhn, ABA, mod-97), its shape (ddd-dd-dddd) or a nearby keyword ("routing",
"cvv", "vat"). Values never leave this module: a case only learns which kinds were suppressed.

The rules lean towards suppressing: a false positive costs a readable number, a false negative puts a
card number in Slack and in the database. Ordinary numbers are protected by requiring either a checksum
or a keyword, never by guessing that a number "looks harmless".

Text is judged as a person reads it: it is normalised first (NFKC, every decimal digit in ASCII, invisible
characters dropped, one kind of space), and the redacted text is that normalised form. Every pattern here
runs on RE2, which matches in time linear in its input, and the Python around it does bounded work per
match or per digit group, so one hostile delivery cannot hold the interpreter for long. Patterns run on
an ASCII *projection* of the text (same length, non-ASCII letters shown as "_", dashes as "-", currency
signs as "$", other symbols as "~"), so RE2's ASCII classes mean what Python's Unicode ones did and
positions map one to one.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from heapq import merge
from itertools import accumulate, combinations, compress, count
from operator import and_, attrgetter, itemgetter, not_, or_, sub
from typing import Any
from urllib.parse import unquote_plus

import re2

__all__ = [
    "Redacted",
    "SuppressedKind",
    "card_number_in",
    "normalise",
    "redact",
    "redact_url",
    "redact_value",
]


class SuppressedKind(StrEnum):
    CARD_NUMBER = "card_number"
    CARD_SECURITY_CODE = "card_security_code"
    CARD_EXPIRY = "card_expiry"
    IBAN = "iban"
    BANK_ACCOUNT = "bank_account"  # routing numbers and account numbers
    TAX_ID = "tax_id"  # SSN, ITIN, EIN, VAT IDs


@dataclass(frozen=True)
class Redacted:
    text: str
    kinds: frozenset[SuppressedKind]


_EMPTY: frozenset[SuppressedKind] = frozenset()
_ONLY = {kind: frozenset({kind}) for kind in SuppressedKind}  # one set per kind, not one per value found

# Keyword windows, in characters between the end of the keyword and the start of the value. Spoken
# answers pad the gap ("the security code is, um, ..."), so the windows are wider than written text needs.
_W_CARD = 32  # cvv / expiry keyword -> value
_W_BANK = 40  # bank and tax keyword -> value
_W_AFTER = 20  # value -> keyword ("021000021 is my routing number")
_W_REF = 12  # "invoice #" -> its number
_MAX_TAIL_GAP = 16  # card -> cvv/expiry said straight after it
# A card (19), expiry (6), security code (4) and a padded phone number or two, with room to spare.
_MAX_CARD_RUN_DIGITS = 96


def _re(pattern: str) -> Any:
    return re2.compile(pattern)


# google-re2's Python wrapper builds a Match object per match and, for str input, re-encodes the text
# on every search; on text dense with numbers that, not the matching, was most of the cost. These helpers
# call the compiled RE2 object it wraps (`_regexp.Match`, the same call its finditer makes) on bytes.
_UNANCHORED = re2._Anchor.UNANCHORED
_WHOLE = re2._Anchor.ANCHOR_BOTH


def _matches_from(
    pattern: Any, data: bytes, fits: Callable[[bytes, list[tuple[int, int]]], bool]
) -> Iterator[list[tuple[int, int]]]:
    """Matches that `fits` accepts; after a rejected one the search goes on from the next character.

    This is what a lookaround does inside the engine: "5 / 04/27" first offers "5 / 04", which the
    "/" after it rules out, and the real expiry starts inside that rejected match. A restart re-reads only
    what the rejected match covered, and the patterns it is used with cannot nest long rejected matches.
    """
    regexp, pos, end = pattern._regexp, 0, len(data)
    while pos < end:
        spans: list[tuple[int, int]] = regexp.Match(_UNANCHORED, data, pos, end)
        if spans[0][0] < 0:
            return
        if fits(data, spans):
            yield spans
            pos = spans[0][1]
        else:
            pos = spans[0][0] + 1


def _fullmatch(pattern: Any, data: bytes) -> bool:
    spans: list[tuple[int, int]] = pattern._regexp.Match(_WHOLE, data, 0, len(data))
    return spans[0][0] >= 0


def _search(pattern: Any, data: bytes) -> list[tuple[int, int]] | None:
    spans: list[tuple[int, int]] = pattern._regexp.Match(_UNANCHORED, data, 0, len(data))
    return spans if spans[0][0] >= 0 else None


def _matches(pattern: Any, data: bytes) -> Iterator[list[tuple[int, int]]]:
    """The spans (whole match, then each group; (-1, -1) if unset) of every match, left to right.

    re2's own finditer loop, without its Match objects. No pattern used with it matches empty.
    """
    regexp, pos, end = pattern._regexp, 0, len(data)
    while True:
        spans: list[tuple[int, int]] = regexp.Match(_UNANCHORED, data, pos, end)
        if spans[0][0] < 0:
            return
        yield spans
        pos = spans[0][1]


# --- normalisation and projection ---------------------------------------------------------------------
class _NormaliseTable(dict[int, str | None]):
    """str.translate table filled lazily: each code point is classified once per process."""

    def __missing__(self, code: int) -> str | None:
        ch = chr(code)
        category = unicodedata.category(ch)
        out: str | None = ch
        if category == "Cf":
            out = None  # zero-width and other invisible characters would split a number unseen
        elif category == "Zs":
            out = " "
        elif category in ("Zl", "Zp"):
            out = "\n"
        elif category == "Nd":
            out = str(unicodedata.decimal(ch))
        self[code] = out
        return out


_NORMALISE = _NormaliseTable()


def normalise(text: str) -> str:
    """What a person reads: NFKC, every decimal digit in ASCII, invisible characters gone, one kind of space.

    Full-width and Arabic-Indic digits, zero-width characters, soft hyphens and narrow no-break spaces
    can then no longer hide a number from redaction. Plain ASCII text is returned as it is.
    """
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKC", text)
    return text if text.isascii() else text.translate(_NORMALISE)


class _ProjectTable(dict[int, int]):
    def __missing__(self, code: int) -> int:
        ch = chr(code)
        if code < 128:
            out = code
        elif ch.isalnum():
            out = ord("_")  # a word character that no keyword, number word or country code contains
        elif ch in "‘’ʼ′":
            out = ord("'")
        elif ch in "‐‑‒–−":
            out = ord("-")
        elif ch in "—―":
            out = ord(";")  # a pause, not a joiner: em dashes join only loosely
        elif unicodedata.category(ch) == "Sc":
            out = ord("$")
        elif ch.isspace():
            out = ord(" ")
        else:
            out = ord("~")
        self[code] = out
        return out


_PROJECT = _ProjectTable()


def _project(text: str) -> bytes:
    if text.isascii():
        return text.encode("ascii")
    return text.translate(_PROJECT).encode("ascii")


_WORD = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_DIGIT = frozenset(b"0123456789")
_GLUE = frozenset(b".,:/")  # between two digits: one amount, time, date or ID, not two groups
_GLUE_GAPS = frozenset({b".", b",", b":", b"/"})
_GLUED_BEFORE = _WORD | frozenset(b"$+")  # see _glued_edge


def _at(proj: bytes, i: int) -> int:
    return proj[i] if 0 <= i < len(proj) else 32


# --- spoken digits ------------------------------------------------------------------------------------
_UNITS = {
    "zero": "0", "oh": "0", "o": "0", "nought": "0", "naught": "0",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
_TEENS = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
}
_TENS = {
    "twenty": "2", "thirty": "3", "forty": "4", "fourty": "4", "fifty": "5",
    "sixty": "6", "seventy": "7", "eighty": "8", "ninety": "9",
}
_MULTIPLIERS = {"double": 2, "triple": 3}


def _alternation(words: dict[str, str] | dict[str, int]) -> str:
    # Longest first so that "fourteen" is never read as "four".
    return "|".join(sorted(words, key=len, reverse=True))


# Everything this module removes contains a digit or a spoken number word; text with neither (most
# analysis values, most sentences) is returned without running the scanner at all.
_MAYBE_NUMBER = _re(
    r"(?i)[0-9]|\b(?:" + "|".join(sorted({*_UNITS, *_TEENS, *_TENS, *_MULTIPLIERS}, key=len, reverse=True))
    + r")\b"
)
_NONZERO = {word: digit for word, digit in _UNITS.items() if digit != "0"}
# A spoken word must stand alone: "o" in "o'clock" or "oh" in "ch_3ohps" is not a digit. The characters
# before and after the word are part of the match (RE2 has no lookarounds), so a word that runs on
# ("o" in "order", "four" in "fourth") is no match at all: English text has one in every few words, and a
# search that stops at each of them only to be refused cost more than the rest of the scan. When a
# number word after "twenty" or "double" runs on, the shorter reading ("twenty") is the match.
_SPOKEN = _re(
    r"(?i)(?:^|[^0-9A-Za-z_'])(?:"
    rf"(?P<mult>{_alternation(_MULTIPLIERS)})[\s-]+(?P<mu>{_alternation(_UNITS)})"
    rf"|(?P<tens>{_alternation(_TENS)})(?:[\s-]+(?P<tu>{_alternation(_NONZERO)}))?"
    rf"|(?P<teen>{_alternation(_TEENS)})"
    rf"|(?P<unit>{_alternation(_UNITS)}))"
    r"(?P<after>[^0-9A-Za-z_']|$)"
)
_G_MULT, _G_MU, _G_TENS, _G_TU, _G_TEEN, _G_UNIT, _G_AFTER = (
    _SPOKEN.groupindex[name] for name in ("mult", "mu", "tens", "tu", "teen", "unit", "after")
)

# Written digit groups and what joins them. Any short run of spaces and punctuation is a separator, as
# speech-to-text writes pauses ("4242. 4242."), French grouping writes spaces and payment forms write
# dots; how strongly it joins is decided per gap (see _strict and _cards_in_chain).
# A chain is digit groups joined by gaps of one to four of these characters: what
# `[0-9]+(?:[<these>]{1,4}[0-9]+)*` would match, found by `_Groups` with bytes operations over the
# whole text instead of one search per number.
_CHAIN_SEP = _re(r"[\s.,;:/\\|'~*_()\[\]{}#\"!?-]")
_CHAIN_SEP_BYTES = bytes(b for b in range(128) if _fullmatch(_CHAIN_SEP, bytes([b])))
_MAX_CHAIN_GAP = 4
_STRICT_GAPS = frozenset({b" ", b"-", b" -", b"- ", b" - "})

# Between two groups of one number. Digit groups join on a single space or dash (how cards and account
# numbers are written); looser punctuation only joins where a checksum and a brand agree (cards) or a
# keyword asks (bank and tax IDs). Once words are involved, speech rhythm rules: commas, full stops,
# "and", fillers.
_LOOSE_SEP = _re(r"(?i)(?:[\s,.;~-]|and|slash|uh+|um+|uhm|erm?|ah+|hmm+)+")
_MAX_LOOSE_GAP = 24

# Hyphenated identifiers with a non-number word in them ("INV-2026-00017", "COVID-19") are one token;
# their digit groups must not be read as a dashed number.
_HYPHEN_CHAIN = _re(r"[0-9A-Za-z_]+(?:-[0-9A-Za-z_]+)+")
# A part holding a letter or "_" next to a hyphen: some hyphenated identifier may have a word in it.
_WORDY_HYPHEN = _re(r"[A-Za-z_][0-9A-Za-z_]*-[0-9A-Za-z_]|[0-9A-Za-z_]-[0-9A-Za-z_]*[A-Za-z_]")
_NUMBER_WORDS = frozenset({*_UNITS, *_TEENS, *_TENS, *_MULTIPLIERS, "and"})
_ID_LABELS = frozenset({"ssn", "itin", "ein", "fein", "tin", "taxid", "tax", "vat", "iban", "aba", "rtn", "routing",
                        "acct", "account", "sortcode", "bsb", "cvv", "cvc", "exp", "expiry"})
# Markers we wrote ourselves: redacting an already-redacted line must not redact the marker.
_MARKER = _re(r"\[(?:card ending [0-9]{4}|redacted [a-z_]+)\]")

# --- keywords -----------------------------------------------------------------------------------------
_KEYWORDS: dict[str, str] = {
    "cvv": (
        r"cvv2?|cvc2?|cvn2?|csc|security\s+code|card\s+(?:security\s+|verification\s+)?code"
        r"|verification\s+(?:value|number)|(?:digits|numbers|code)\s+on\s+the\s+back"
        r"|back\s+of\s+(?:the|your|my)\s+card"
    ),
    # Bare "code" only counts once a card or expiry has just been read ("exp 1228 code 123").
    "code": r"code",
    "expiry": (
        r"exp(?:iry|iration|iring|ired|ires|ire)?\.?|valid\s+(?:thru|through|until|till)"
        r"|good\s+(?:thru|through)|mm\s*/\s*yy"
    ),
    "routing": r"routing|aba|rtn|transit\s+number",
    "sort": r"sort\s*code|bsb",
    "account": (
        r"(?:bank|checking|chequing|savings|current|deposit)\s+account"
        r"|account\s*(?:numbers?|nums?|nos?\.?|\#)|acct|a/c|acc\s*no"
    ),
    # Bare "account" names a customer account far more often than a bank account; it only counts
    # right after a routing number or sort code.
    "account_weak": r"account",
    "iban": r"iban",
    "taxid": r"tax\s*(?:identification|id|number|no|\#|reference)|taxpayer\s+id|tin",
    "ssn": (
        r"ssns?|social\s+security|social|itin|f?ein|employer\s+(?:identification|id)"
        r"|taxpayer\s+identification"
    ),
    "vat": r"vat|v\.a\.t\.?|tva|iva|mwst|ust-?id(?:nr)?|btw",
    "tax": r"tax(?:es)?",
    # A number right after its own label is that reference, whatever card or bank keyword came before:
    # "the security code was wrong so invoice 1042" keeps 1042.
    "ref": (
        r"(?:invoice|inv|order|payment|pmt|ref|reference|ticket|case|receipt|confirmation|transaction"
        r"|booking|claim)s?(?:\s*(?:numbers?|nos?\.?|num|ids?|\#))?"
    ),
}
# The keyword must end at a word boundary: the character after it is part of the match (RE2 has no
# lookahead), the character before it is checked in Python.
_KEYWORD = _re(
    "(?i)(?:" + "|".join(f"(?P<{name}>{pattern})" for name, pattern in _KEYWORDS.items())
    + ")(?:[^0-9A-Za-z_]|$)"
)
_KEYWORD_NAMES = {_KEYWORD.groupindex[name]: name for name in _KEYWORDS}

# --- written shapes -----------------------------------------------------------------------------------
# IBAN lengths from the SWIFT registry (plus the French overseas territories that use FR's format).
# Knowing the exact length is what lets an IBAN be cut out of running text without eating the next word.
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
    "GF": 27, "GP": 27, "MQ": 27, "RE": 27, "PF": 27, "TF": 27, "YT": 27, "NC": 27, "PM": 27, "WF": 27,
    "BL": 27, "MF": 27, "AX": 18,
}
_IBAN_HEAD = _re(r"([A-Za-z]{2})([ -]?)([0-9]{2})")
_IBAN_SEPS = frozenset(b" -.,/:;~")
# A country code said or typed apart from the digits that follow it ("DE 89 3704 ...", "D E eight nine").
# Searched in a short slice that starts with one character of context (a space at the start of text).
_IBAN_CC_BEFORE = _re(r"[^A-Za-z0-9]([A-Z])\.?[ -]?([A-Z])\.?[ :-]*$")

# A VAT ID's first chunk holds a digit; without that every English word starting "at", "be", "it"
# would be a candidate. The character before the country code is part of the match: checked afterwards,
# a rejected "AT GB123..." inside "VAT GB123..." would hide the real one behind it.
_VAT = _re(
    r"(?i)(?:^|[^A-Za-z0-9])(?P<cc>ATU|CHE|AT|BE|BG|CY|CZ|DE|DK|EE|EL|GR|ES|FI|FR|GB|HR|HU|IE|IT|LT|LU|LV|MT"
    r"|NL|NO|PL|PT|RO|SE|SI|SK|XI|EU)(?P<sep>[ .-]?)"
    r"(?P<body>[0-9A-Z]*[0-9][0-9A-Z]*(?:[ .-][0-9A-Z]*[0-9][0-9A-Z]*)*)"
)

_UNIT = r"(?:one|two|three|four|five|six|seven|eight|nine)"
# "expires April 2027", "exp. dec 28", "valid thru December twenty twenty eight": a month name and a year.
_MONTH_EXPIRY = _re(
    r"(?i)(?P<v>(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?,?\s+(?:of\s+)?"
    r"(?:(?:20)?[0-9]{2}"
    rf"|twenty[\s-]+(?:twenty|thirty)(?:[\s-]+{_UNIT})?"
    rf"|two\s+thousand(?:\s+and)?(?:\s+(?:twenty|thirty))?(?:[\s-]+{_UNIT})?"
    rf"|(?:oh|zero)[\s-]+{_UNIT}|(?:twenty|thirty)(?:[\s-]+{_UNIT})?))(?:[^0-9A-Za-z_]|$)"
)

# Month, slash, year; the year is taken whole and its length checked in Python.
_SLASH_EXPIRY = _re(r"(?:0?[1-9]|1[0-2])\s?/\s?([0-9]+)")

def _at_word_start(proj: bytes, spans: list[tuple[int, int]]) -> bool:
    start = spans[0][0]
    return start == 0 or proj[start - 1] not in _WORD  # not "tin" in "Austin"


def _slash_fits(proj: bytes, spans: list[tuple[int, int]]) -> bool:
    (start, end), (year_start, _) = spans
    before = _at(proj, start - 1)
    if before in _WORD or before in b"/.-":
        return False
    year = end - year_start
    if not (year == 2 or (year == 4 and proj[year_start : year_start + 2] == b"20")):
        return False
    after = _at(proj, end)
    return not (after in _WORD or after == 47 or (after in b".,-" and _at(proj, end + 1) in _DIGIT))


# What may sit between a card number and a security code or expiry read straight after it.
_TAIL_GAP = _re(r"(?i)(?:[\s,;:.()/~-]|and|then|uh+|um+|(?:0?[1-9]|1[0-2])/(?:20)?[0-9]{2})*")

# Card brands by prefix and length (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay). Written as a
# table rather than a pattern: it runs once per Luhn-valid window, and long runs have many windows.
_BRANDS: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({13, 16, 19})),
    (51, 55, frozenset({16})),
    (2221, 2720, frozenset({16})),
    (34, 34, frozenset({15})),
    (37, 37, frozenset({15})),
    (6011, 6011, frozenset(range(16, 20))),
    (644, 649, frozenset(range(16, 20))),
    (65, 65, frozenset(range(16, 20))),
    (3528, 3589, frozenset(range(16, 20))),
    (300, 305, frozenset(range(14, 20))),
    (36, 36, frozenset(range(14, 20))),
    (38, 39, frozenset(range(14, 20))),
    (62, 62, frozenset(range(16, 20))),
)


# --- data ---------------------------------------------------------------------------------------------
# A token is one digit group or spoken number: (start, end, digits, spoken). A plain tuple, because a
# long text has hundreds of thousands of them and a tuple costs a fraction of an object to build.
_Tok = tuple[int, int, str, bool]


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    kinds: frozenset[SuppressedKind]
    last4: str = ""  # only for card numbers


class _Run:
    # Not a dataclass: start and end are read many times per run, so they are kept, not looked up.
    __slots__ = ("end", "seps", "start", "toks")

    def __init__(self, toks: list[_Tok], seps: list[bytes]) -> None:
        self.toks = toks
        self.seps = seps  # seps[i] sits between toks[i] and toks[i + 1]
        self.start = toks[0][0]
        self.end = toks[-1][1]

    @property
    def digits(self) -> str:
        return "".join([t[2] for t in self.toks])


@dataclass(frozen=True, slots=True)
class _SlashExpiry:
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Found:
    """A value found on a whole chain before runs are built; it still sets the flow for what follows."""

    span: _Span
    cardish: bool
    bank: bool

    @property
    def start(self) -> int:
        return self.span.start


# Every category _keyword_kind asks about: with none of them near, a value cannot be a bank or tax ID.
_BANK_NAMES = frozenset({"routing", "sort", "account", "account_weak", "iban", "ssn", "taxid", "vat"})


_NO_POSITIONS: list[int] = []


class _Keywords:
    """Keyword positions per category, for "is there one just before / just after this value"."""

    def __init__(self, proj: bytes) -> None:
        # Only categories that occur get a list: most texts have none or one, and redact runs per field.
        self._starts: dict[str, list[int]] = {}
        self._ends: dict[str, list[int]] = {}
        # The same positions for the bank and tax categories together, so most numbers (far from any of
        # them) are cleared with two bisections instead of one per category.
        self._bank_starts: list[int] = []
        self._bank_ends: list[int] = []
        for spans in _matches_from(_KEYWORD, proj, _at_word_start):
            # Exactly one category's group is set, and unset groups are (-1, -1): the largest is it.
            s, e = found = max(spans[1:])
            name = _KEYWORD_NAMES[spans.index(found, 1)]
            self._starts.setdefault(name, []).append(s)
            self._ends.setdefault(name, []).append(e)
            if name in _BANK_NAMES:
                self._bank_starts.append(s)
                self._bank_ends.append(e)

    def has(self, name: str) -> bool:
        return name in self._ends

    def plain(self) -> bool:
        """No keyword that can name a value: none for a bank or tax ID, a security code or an expiry."""
        return not self._bank_ends and "cvv" not in self._ends and "expiry" not in self._ends

    def bank_near(self, start: int, end: int, after: bool) -> bool:
        """Whether any bank or tax keyword is near enough for `near` to hold for one of them."""
        ends = self._bank_ends
        i = bisect_right(ends, start) - 1
        if i >= 0 and start - ends[i] <= _W_BANK:
            return True
        if not after:
            return False
        starts = self._bank_starts
        i = bisect_left(starts, end)
        return i < len(starts) and starts[i] - end <= _W_AFTER

    def last_end_before(self, name: str, pos: int, window: int) -> int | None:
        ends = self._ends.get(name)
        if ends is None:
            return None
        i = bisect_right(ends, pos) - 1
        if i >= 0 and pos - ends[i] <= window:
            return ends[i]
        return None

    def near(self, name: str, start: int, end: int, after: bool = True) -> bool:
        if self.last_end_before(name, start, _W_BANK) is not None:
            return True
        if not after:
            return False
        starts = self._starts.get(name, _NO_POSITIONS)
        i = bisect_left(starts, end)
        return i < len(starts) and starts[i] - end <= _W_AFTER

    def near_any_of(self, names: tuple[str, ...]) -> Callable[[int, int], bool]:
        """`any_near(names, start, end)` for many values: the categories' positions merged once, so each
        value costs two bisections. The nearest keyword of any of them decides, as it does in any_near."""
        ends = sorted(e for name in names for e in self._ends.get(name, _NO_POSITIONS))
        starts = sorted(s for name in names for s in self._starts.get(name, _NO_POSITIONS))

        def near(start: int, end: int) -> bool:
            i = bisect_right(ends, start) - 1
            if i >= 0 and start - ends[i] <= _W_BANK:
                return True
            j = bisect_left(starts, end)
            return j < len(starts) and starts[j] - end <= _W_AFTER

        return near

    def any_near(self, names: tuple[str, ...], start: int, end: int, after: bool = True) -> bool:
        # Absent categories are skipped before a call: this is asked for run after run.
        return any(name in self._ends and self.near(name, start, end, after) for name in names)


@dataclass(slots=True)
class _Flow:
    """What the previous number-like item was, so a CVV read after a card is caught without a keyword."""

    last_end: int = -1
    cardish: bool = False
    bank: bool = False  # the previous item was a routing number, sort code or account number


# --- checksums ----------------------------------------------------------------------------------------
_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_ok(digits: str) -> bool:
    total = 0
    double = False
    for ch in reversed(digits):
        v = ord(ch) - 48
        total += _LUHN_DOUBLE[v] if double else v
        double = not double
    return total % 10 == 0


def _aba_ok(digits: str) -> bool:
    if len(digits) != 9:
        return False
    weights = (3, 7, 1, 3, 7, 1, 3, 7, 1)
    return sum(w * (ord(c) - 48) for w, c in zip(weights, digits, strict=True)) % 10 == 0


def _mod97(chars: str) -> int:
    remainder = 0
    for ch in chars:
        value = int(ch, 36)
        remainder = (remainder * (100 if value > 9 else 10) + value) % 97
    return remainder


def _valid_expiry(digits: str) -> bool:
    n = len(digits)
    if n == 3:  # "four twenty seven": M YY
        return digits[0] != "0"
    if n == 4:
        return 1 <= int(digits[:2]) <= 12
    if n == 5:  # M YYYY
        return digits[0] != "0" and digits[1:3] == "20"
    if n == 6:
        return 1 <= int(digits[:2]) <= 12 and digits[2:4] == "20"
    return False


def _brand_lengths(prefix: int) -> frozenset[int]:
    lengths: set[int] = set()
    for low, high, allowed in _BRANDS:
        width = len(str(low))
        if low <= prefix // 10 ** (4 - width) <= high:
            lengths |= allowed
    return frozenset(lengths)


# Card lengths each four-digit prefix may have: one lookup per candidate number.
_BRAND_LENGTHS = [_brand_lengths(prefix) for prefix in range(10_000)]
# The same, keyed by the four digits as written, for the prefixes some brand has.
_PLUS_FOUR = (4).__add__
_BRAND_BY_PREFIX = {b"%04d" % prefix: lengths for prefix, lengths in enumerate(_BRAND_LENGTHS) if lengths}


def _branded(number: str) -> bool:
    return len(number) in _BRAND_LENGTHS[int(number[:4])]


_VALUE = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED = bytes.maketrans(b"0123456789", bytes(_LUHN_DOUBLE))


class _Luhn:
    """Luhn sums of any slice of one digit string in constant time, from two prefix sums.

    In a window ending at offset b, the digits at offsets of the other parity than b - 1 are doubled;
    one prefix sum per parity of b turns each window's check into one subtraction, so a run's windows
    cost what its digits cost, not 13-19 times that.
    """

    def __init__(self, digits: str) -> None:
        raw = digits.encode("ascii")
        plain, doubled = raw.translate(_VALUE), raw.translate(_DOUBLED)
        odd_doubled, even_doubled = bytearray(plain), bytearray(plain)
        odd_doubled[1::2] = doubled[1::2]
        even_doubled[0::2] = doubled[0::2]
        # Window ending at b: b - 1 even (b odd) doubles odd offsets, b - 1 odd (b even) even ones.
        self.sums = ([0, *accumulate(even_doubled)], [0, *accumulate(odd_doubled)])  # by b's parity


# --- tokens, chains and runs --------------------------------------------------------------------------
def _spoken_tokens(proj: bytes) -> list[_Tok]:
    toks: list[_Tok] = []
    append = toks.append
    # _matches inlined, and a lone unit word (most spoken digits) read first with one lookup: a text
    # can hold a hundred thousand of them.
    regexp, pos, size = _SPOKEN._regexp, 0, len(proj)
    unit_digits = _UNIT_DIGITS
    while True:
        spans: list[tuple[int, int]] = regexp.Match(_UNANCHORED, proj, pos, size)
        if spans[0][0] < 0:
            return toks
        # The word ends where the character after it starts; that character may begin the next match.
        end = pos = spans[_G_AFTER][0]
        mult, mu, tens, tu, teen, unit = spans[_G_MULT : _G_UNIT + 1]
        if unit[0] >= 0:
            append((unit[0], end, unit_digits[proj[unit[0] : end].lower()], True))
        elif mult[0] >= 0:
            append((mult[0], end, _UNITS[_word(proj, mu)] * _MULTIPLIERS[_word(proj, mult)], True))
        elif tens[0] >= 0:
            unit_digit = _UNITS[_word(proj, tu)] if tu[0] >= 0 else "0"
            append((tens[0], end, _TENS[_word(proj, tens)] + unit_digit, True))
        else:
            append((teen[0], end, _TEENS[_word(proj, teen)], True))


def _word(proj: bytes, span: tuple[int, int]) -> str:
    return _SPOKEN_WORDS[proj[span[0] : span[1]].lower()]


_SPOKEN_WORDS = {word.encode("ascii"): word for word in (*_UNITS, *_TEENS, *_TENS, *_MULTIPLIERS)}
_UNIT_DIGITS = {word.encode("ascii"): digit for word, digit in _UNITS.items()}


class _Chain:
    """Digit groups joined by short runs of spaces and punctuation, as they stand in the text."""

    __slots__ = ("ends", "seps", "starts")

    def __init__(self, starts: list[int], ends: list[int], seps: list[bytes]) -> None:
        self.starts, self.ends = starts, ends  # group k spans starts[k]:ends[k]
        self.seps = seps  # seps[k] sits between group k and group k + 1

    @property
    def groups(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends, strict=True))


class _Groups:
    """Every digit group of a text, the gaps between them, and the chains as ranges of group indexes.

    A long text has hundreds of thousands of groups: they are found and located by translation, split
    and running sums, and a chain is a (first, last) pair, so that no list or object is built per chain
    until a chain needs a closer look (`chain`).
    """

    __slots__ = ("chains", "ends", "gaps", "loose", "starts")

    def __init__(self, proj: bytes) -> None:
        self.chains: list[tuple[int, int]] = []
        if not proj.translate(None, _NOT_DIGITS):
            self.gaps, self.starts, self.ends, self.loose = [], [], [], [0]
            return
        parts = proj.translate(_DIGITS_ONLY).split()
        pieces = list(filter(None, proj.translate(_DIGITS_MARKED).split(b"\x80")))  # gaps, and the text around
        lead = 0 if proj[0] in _DIGIT else len(pieces[0])
        gaps = pieces[(1 if lead else 0) : (1 if lead else 0) + len(parts) - 1]  # gaps[k]: after group k
        widths = [0] * (2 * len(parts) - 1)
        widths[0::2] = map(len, parts)
        widths[1::2] = map(len, gaps)
        bounds = list(accumulate(widths, initial=lead))
        self.starts, self.ends = bounds[0::2], bounds[1::2]
        self.gaps = gaps
        # A gap ends a chain when it is too long or holds anything but separator characters. A text
        # repeats few distinct gaps, so each is judged once and the rest is one lookup per gap.
        judged = {gap: len(gap) > _MAX_CHAIN_GAP or bool(gap.translate(None, _CHAIN_SEP_BYTES)) for gap in set(gaps)}
        breaks = list(compress(count(), map(judged.__getitem__, gaps)))
        self.chains = list(zip([0, *map(_PLUS_ONE, breaks)], [*breaks, len(parts) - 1], strict=True))
        # loose[k]: how many of the first k gaps are not strict, so a chain is strict in one subtraction.
        self.loose = [0, *accumulate(map(not_, map(_STRICT_GAPS.__contains__, gaps)))]

    def chain(self, first: int, last: int) -> _Chain:
        return _Chain(self.starts[first : last + 1], self.ends[first : last + 1], self.gaps[first:last])

    def strict(self, first: int, last: int) -> bool:
        return self.loose[last] == self.loose[first]

    def nine_digits(self, chain: tuple[int, int]) -> bool:
        """Whether a chain holds 9 digits or more.

        Without a keyword, spoken digits or a written IBAN, nothing shorter can be removed: the smallest
        values found by shape alone (SSN 3-2-4, EIN 2-7) have nine digits and cards thirteen, and a run
        of written digits never reaches past the chain its groups stand in (it joins only on strict
        gaps, which are chain gaps too).
        """
        first, last = chain
        if self.ends[last] - self.starts[first] < 9:
            return False
        return sum(self.ends[first : last + 1]) - sum(self.starts[first : last + 1]) >= 9

    def trim(self, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The chains without the groups already taken (by an IBAN, say), split where a group was removed.

        Chains and taken spans are both sorted: one sweep pairs each chain with the spans that reach
        into it, and a bisection per span finds the groups it covers.
        """
        if not taken:
            return self.chains
        starts, ends = self.starts, self.ends
        out: list[tuple[int, int]] = []
        k, n = 0, len(taken)
        for chain in self.chains:
            first, last = chain
            chain_start, chain_end = starts[first], ends[last]
            while k < n and taken[k][1] <= chain_start:
                k += 1
            if k == n or taken[k][0] >= chain_end:
                out.append(chain)
                continue
            kept = first  # groups before this index are emitted or removed
            while k < n and taken[k][0] < chain_end:
                span_start, span_end = taken[k]
                hit = bisect_right(ends, span_start, first, last + 1)  # the first group ending after it starts
                stop = bisect_left(starts, span_end, first, last + 1)  # the first group starting after it ends
                if hit < stop:
                    if hit > kept:
                        out.append((kept, hit - 1))
                    kept = max(kept, stop)
                if span_end > chain_end:
                    break  # it reaches into the next chain too
                k += 1
            if kept <= last:
                out.append((kept, last))
        return out


_PLUS_ONE = (1).__add__


_DIGITS_ONLY = bytes(b if b in _DIGIT else 32 for b in range(256))
_DIGITS_MARKED = bytes(0x80 if b in _DIGIT else b for b in range(256))  # 0x80 is never in the projection
_NOT_DIGITS = bytes(b for b in range(256) if b not in _DIGIT)


def _written_tokens(text: str, proj: bytes, digit_groups: _Groups, chains: list[tuple[int, int]]) -> list[_Tok]:
    """Digit groups that stand alone: not glued by "." "," ":" "/" to other digits, letters, "$" or "+".

    A group glued that way is part of an amount, a time, a date or an ID ("$1,249.00", "10:30",
    "INV2026"); only the chain pass may still read it as part of a card or, after a keyword, a bank or
    tax ID.
    """
    toks: list[_Tok] = []
    append = toks.append
    size = len(proj)
    all_starts, all_ends, all_gaps = digit_groups.starts, digit_groups.ends, digit_groups.gaps
    for first, last in chains:
        if first == last:  # most numbers stand alone: _glued_edge on both sides, inlined
            start, end = all_starts[first], all_ends[first]
            before = proj[start - 1] if start else 32
            if before in _GLUED_BEFORE or (before in _GLUE and start > 1 and proj[start - 2] in _DIGIT):
                continue
            after = proj[end] if end < size else 32
            if after in _WORD or (after in _GLUE and end + 1 < size and proj[end + 1] in _DIGIT):
                continue
            append((start, end, text[start:end], False))
            continue
        # glued[k]: whether group k is glued to the one before it (to what precedes the chain, for k = 0);
        # inside the chain a one-character "." "," ":" or "/" glues.
        glued = [
            _glued_edge(proj, all_starts[first], -1),
            *map(_GLUE_GAPS.__contains__, all_gaps[first:last]),
            _glued_edge(proj, all_ends[last], 0),
        ]
        for k in compress(count(first), map(not_, map(or_, glued[:-1], glued[1:]))):
            start, end = all_starts[k], all_ends[k]
            append((start, end, text[start:end], False))
    return toks


def _barriers(proj: bytes) -> list[tuple[int, int]]:
    spans = [m[0] for m in _matches(_MARKER, proj)] if b"[" in proj else []
    if b"-" not in proj or _search(_WORDY_HYPHEN, proj) is None:
        return spans  # only a chain with a letter in it can shield anything ("2026-11-22" cannot)
    for (start, end), *_ in _matches(_HYPHEN_CHAIN, proj):
        if _at(proj, start - 1) == 45 or _at(proj, end) == 45:  # a dangling "-" on either side
            continue
        if start > 0 and proj[start - 1] in _WORD:
            continue
        if not proj[start:end].translate(None, b"0123456789-"):
            continue  # digits only ("12-3456789"): nothing to shield, the number is the run pass's
        parts = proj[start:end].decode("ascii").split("-")
        digits = sum(len(p) for p in parts if p.isdigit())
        words = [p for p in parts if not p.isdigit() and p.lower() not in _NUMBER_WORDS]
        # A card glued to a label ("ref-4242424242424242") is still a card: only short IDs are shielded.
        # A shielded group can still be part of a card ("Visa-4111 1111 1111 1111"): the chain pass
        # reads across barriers, with a brand and a checksum.
        # A label that names a bank or tax ID ("SSN-123-45-6789", "EIN-12-3456789") shields nothing.
        if 0 < digits < 13 and words and not any(word.lower() in _ID_LABELS for word in words):
            spans.append((start, end))
    return spans


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _outside(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether [start, end) avoids every span; spans must be sorted and non-overlapping (see _merge)."""
    i = bisect_right(spans, (start, 1 << 62)) - 1
    if i >= 0 and spans[i][1] > start:
        return False
    return i + 1 >= len(spans) or spans[i + 1][0] >= end


def _free(toks: list[_Tok], spans: list[tuple[int, int]]) -> list[_Tok]:
    """The tokens (sorted by start) that overlap none of the spans (sorted, merged), in one sweep."""
    if not spans:
        return toks
    out: list[_Tok] = []
    k, n = 0, len(spans)
    for tok in toks:
        while k < n and spans[k][1] <= tok[0]:
            k += 1
        if k == n or spans[k][0] >= tok[1]:
            out.append(tok)
    return out


def _loose(gap: bytes) -> bool:
    if not gap.translate(None, b" \t\n\r,.;~-"):
        return True  # punctuation and spaces only: no need to ask the regex
    return _fullmatch(_LOOSE_SEP, gap)


def _runs(proj: bytes, toks: list[_Tok], any_spoken: bool = True) -> Iterator[_Run]:
    """Tokens joined by loose separators; written-only runs are then cut wherever a gap is not strict.

    Runs are made as they are judged, not all first: a long text has tens of thousands, and objects
    that die young cost the garbage collector far less than ones that outlive a generation.
    """
    if not any_spoken:
        yield from _written_runs(proj, toks)
        return
    out: list[_Run] = []
    run_toks: list[_Tok] = []
    run_seps: list[bytes] = []
    spoken = False
    prev_end = 0
    for tok in toks:
        if run_toks and tok[0] - prev_end <= _MAX_LOOSE_GAP:
            gap = proj[prev_end : tok[0]]
            if gap in _STRICT_GAPS or _loose(gap):
                run_toks.append(tok)
                run_seps.append(gap)
                spoken = spoken or tok[3]
                prev_end = tok[1]
                continue
        if run_toks:
            _close_run(out, run_toks, run_seps, spoken)
            yield from out
            out.clear()
        run_toks, run_seps, spoken, prev_end = [tok], [], tok[3], tok[1]
    if run_toks:
        _close_run(out, run_toks, run_seps, spoken)
        yield from out


def _written_runs(proj: bytes, toks: list[_Tok]) -> Iterator[_Run]:
    """What _runs gives when no token is spoken: every run is cut at its loose gaps, so only strict gaps
    join, and neither the loose separator pattern nor the cutting is needed. The gaps and the cuts are
    found by maps over all tokens at once."""
    if not toks:
        return
    gaps = list(map(proj.__getitem__, map(slice, map(_SECOND, toks[:-1]), map(_FIRST, toks[1:]))))
    cuts = list(compress(count(), map(not_, map(_STRICT_GAPS.__contains__, gaps))))
    first = 0
    for last in [*cuts, len(toks) - 1]:
        # _worth_a_run, inlined
        if last - first >= 2 or len(toks[first][2]) + (len(toks[last][2]) if last > first else 0) > 2:
            yield _Run(toks[first : last + 1], gaps[first:last])
        first = last + 1


def _close_run(out: list[_Run], toks: list[_Tok], seps: list[bytes], spoken: bool) -> None:
    # Once words are involved, speech rhythm joins the run; digits alone only join on strict gaps.
    if spoken or all(map(_STRICT_GAPS.__contains__, seps)):
        if _worth_a_run(toks, 0, len(toks) - 1):
            out.append(_Run(toks, seps))
        return
    first = 0
    for k, sep in enumerate(seps):
        if sep not in _STRICT_GAPS:
            if _worth_a_run(toks, first, k):
                out.append(_Run(toks[first : k + 1], seps[first:k]))
            first = k + 1
    if _worth_a_run(toks, first, len(toks) - 1):
        out.append(_Run(toks[first:], seps[first:]))


def _worth_a_run(toks: list[_Tok], first: int, last: int) -> bool:
    # Fewer than three digits is nothing this module removes, and such a run leaves the flow as it was.
    if last - first >= 2:
        return True
    return len(toks[first][2]) + (len(toks[last][2]) if last > first else 0) > 2


_START = attrgetter("start")
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_DASHES = (b"-", b" -", b"- ", b" - ")


def _date_digits(a: str, b: str, c: str) -> bool:
    if (len(a), len(b), len(c)) == (4, 2, 2):
        year, month, day = a, int(b), int(c)
    elif len(a) <= 2 and len(b) <= 2 and len(c) == 4:
        year, month, day = c, int(a), int(b)
        if month > 12:
            month, day = day, month
    else:
        return False
    return year[:2] in ("19", "20") and 1 <= month <= 12 and 1 <= day <= 31


def _date_at(run: _Run, i: int) -> bool:
    if i + 2 >= len(run.toks) or run.seps[i] not in _DASHES or run.seps[i + 1] not in _DASHES:
        return False
    a, b, c = run.toks[i : i + 3]
    if a[3] or b[3] or c[3]:
        return False
    return _date_digits(a[2], b[2], c[2])


def _is_date(run: _Run) -> bool:
    return len(run.toks) == 3 and _date_at(run, 0)


# --- classification -----------------------------------------------------------------------------------
def _best_windows(candidates: dict[int, list[tuple[int, int]]]) -> list[tuple[int, int]]:
    """The set of non-overlapping windows with the highest total score (a dynamic programme).

    `candidates` maps a start to its (end, score) windows. Only starts with a candidate are visited
    (between two of them the best total does not change, and a long chain has few candidate starts);
    a bisection finds where the best total after a window is kept.
    Ties go to leaving a start unused (so to later windows), then to the first candidate listed.
    """
    starts = sorted(candidates)
    size = len(starts)
    best = [0] * (size + 1)  # best[x]: the best total from starts[x] on
    choice: list[int | None] = [None] * size
    for x in range(size - 1, -1, -1):
        value, pick = best[x + 1], None
        for j, score in candidates[starts[x]]:
            total = score + best[bisect_left(starts, j + 1, x + 1)]
            if total > value:
                value, pick = total, j
        best[x], choice[x] = value, pick
    windows: list[tuple[int, int]] = []
    next_free = 0
    for start, end in zip(starts, choice, strict=True):
        if end is not None and start >= next_free:
            windows.append((start, end))
            next_free = end + 1
    return windows


def _crosses_date(dates: set[int], i: int, j: int) -> bool:
    # A window may swallow a dashed date whole but not start or end inside one: "2026-11-22 5512345..."
    # is a date and a number, and "11-22 5512345..." a coincidence. Windows span at most 19 tokens, so
    # looking up the few date starts that could touch one keeps this linear in the run.
    return any(d in dates and not (i <= d and j >= d + 2) for d in range(i - 2, j + 1))


def _crosses_sorted(date_starts: list[int], i: int, j: int) -> bool:
    """_crosses_date for a sorted list: a long chain can hold thousands of dates, a window few of them."""
    lo, hi = bisect_left(date_starts, i - 2), bisect_right(date_starts, j)
    return any(not (i <= d and j >= d + 2) for d in date_starts[lo:hi])


def _card_windows(run: _Run, digits: str) -> list[tuple[int, int]]:
    """Non-overlapping token windows that are Luhn-valid 13-19 digit card numbers.

    A run can hold more than the card ("oh, four two ..." or a CVV read straight after), so every
    token-aligned window is tried and the set covering the most digits wins; ties go to windows that
    look like a real brand, then to the later window, because speakers pad the front ("oh", "uh, one").
    """
    if len(digits) < 13:
        return []
    toks = run.toks
    m = len(toks)
    if len(digits) > _MAX_CARD_RUN_DIGITS:
        # Nobody reads a card, its expiry and its code in one breath as more than this many digits: a
        # longer unbroken run is a blob to suppress whole, not a few hundred thousand windows to score.
        return [(0, m - 1)]
    # Every date has a four-digit year at one end; looking for those first keeps long runs cheap.
    years = [i for i, t in enumerate(toks) if len(t[2]) == 4]
    dates = {i for y in years for i in (y, y - 2) if i >= 0 and _date_at(run, i)}
    offsets = [0, *accumulate(len(t[2]) for t in toks)]
    spoken_digits = [0, *accumulate(len(t[2]) if t[3] else 0 for t in toks)]
    even_end, odd_end = _Luhn(digits).sums
    candidates: dict[int, list[tuple[int, int]]] = {}
    phones: list[int] | None = None
    for i in range(m):
        a = offsets[i]
        # Only windows ending 13-19 digits after this start can be cards; jump straight to them.
        for j in range(max(i, bisect_left(offsets, a + 13) - 1), bisect_right(offsets, a + 19) - 1):
            b = offsets[j + 1]
            sums = odd_end if b & 1 else even_end  # the Luhn check, inlined: this loop is the hot one
            if (sums[b] - sums[a]) % 10:
                continue
            length = b - a
            number = digits[a:b]
            if _looks_like_epoch_ms(toks, i, j, number):
                continue
            if dates and _crosses_date(dates, i, j):
                continue
            # A stray number word next to a written number ("call 12137771234, twenty minutes") is not
            # a card read half aloud; someone switching to words says at least a group of them.
            spoken = spoken_digits[j + 1] - spoken_digits[i]
            if 0 < spoken < 4:
                continue
            if phones is None:
                phones = _run_phones(run)
            if phones and bisect_left(phones, i - 2) < bisect_right(phones, j):
                continue  # takes in a phone number, or part of one: "201-468-2855 459-468-0000"
            score = length * 100 + (10 if _branded(number) else 0)
            candidates.setdefault(i, []).append((j, score))
    return _best_windows(candidates)


def _looks_like_epoch_ms(toks: list[_Tok], i: int, j: int, number: str) -> bool:
    # Millisecond timestamps (13 digits, 1000000000000-1999999999999) fill logs and webhook bodies;
    # no card brand issues 13-digit numbers starting with 1.
    return i == j and not toks[i][3] and len(number) == 13 and number[0] == "1"


def _tail_kinds(digits: str) -> frozenset[SuppressedKind]:
    n = len(digits)
    if n in (4, 6) and _valid_expiry(digits):
        return _ONLY[SuppressedKind.CARD_EXPIRY]
    if n in (3, 4):
        return _ONLY[SuppressedKind.CARD_SECURITY_CODE]
    return frozenset({SuppressedKind.CARD_EXPIRY, SuppressedKind.CARD_SECURITY_CODE})


_BANKISH = ("routing", "sort")


def _keyword_kind(
    kw: _Keywords, start: int, end: int, digits: str, after_bank: bool, after: bool = True
) -> SuppressedKind | None:
    """The kind a keyword gives the value; `after` allows the keyword to follow it ("... is my SSN")."""
    if not kw.bank_near(start, end, after):
        return None
    n = len(digits)
    if n == 9 and kw.near("routing", start, end, after) and _aba_ok(digits):
        return SuppressedKind.BANK_ACCOUNT
    if n == 6 and kw.near("sort", start, end, after):
        return SuppressedKind.BANK_ACCOUNT
    if 6 <= n <= 17 and kw.near("account", start, end, after):
        return SuppressedKind.BANK_ACCOUNT
    if (
        6 <= n <= 17
        and kw.near("account_weak", start, end, after)
        and (after_bank or any(kw.last_end_before(name, start, 2 * _W_BANK) is not None for name in _BANKISH))
    ):
        return SuppressedKind.BANK_ACCOUNT
    # Routing and account read in one breath: a valid routing number at either end of the run.
    if (
        15 <= n <= 26
        and kw.any_near(("routing", "account"), start, end, after)
        and (_aba_ok(digits[:9]) or _aba_ok(digits[-9:]))
    ):
        return SuppressedKind.BANK_ACCOUNT
    if 10 <= n <= 34 and kw.near("iban", start, end, after):
        return SuppressedKind.IBAN
    if n == 9 and kw.near("ssn", start, end, after):
        return SuppressedKind.TAX_ID
    if 8 <= n <= 12 and kw.any_near(("taxid", "vat"), start, end, after):
        return SuppressedKind.TAX_ID
    return None


_MAX_SPLIT_READINGS = 12
# Up to this many "twenty one"s in a run, every combination of them is read (at most 7 readings); beyond
# it, each one alone and then the first n together (at most 23), so the readings per run stay bounded.
_ALL_SPLITS_UP_TO = 3


def _split_readings(run: _Run) -> Iterator[_Run]:
    """The run as the speaker may also have meant it: "twenty one" said for 2, 0, 1 rather than 21, so a
    spoken card or ID is not kept because one reading of it has a digit too few. Each token keeps its
    place in the text; readings with fewer such splits come first ("fifty one ... twenty one" is read
    with only the second split before both)."""
    pairs = _split_pairs(run)
    if len(pairs) <= _ALL_SPLITS_UP_TO:
        chosen = [c for size in range(1, len(pairs) + 1) for c in combinations(pairs, size)]
    else:
        chosen = [(i,) for i in pairs] + [tuple(pairs[:size]) for size in range(2, len(pairs) + 1)]
    for split in chosen:
        toks = list(run.toks)
        for i in split:
            start, end, value, spoken = toks[i]
            toks[i] = (start, end, value[0] + "0" + value[1], spoken)
        yield _Run(toks, run.seps)


def _taken(run: _Run, windows: list[tuple[int, int]]) -> tuple[int, int]:
    """How much of the run the windows take: tokens, then digits ("oh" read as a zero is a token too)."""
    toks = run.toks
    return sum(j - i + 1 for i, j in windows), sum(len(t[2]) for i, j in windows for t in toks[i : j + 1])


def _split_pairs(run: _Run) -> list[int]:
    """The tokens `_split_readings` may read one digit longer: a spoken "twenty one" (at most 12)."""
    pairs = [i for i, t in enumerate(run.toks) if t[3] and len(t[2]) == 2 and t[2][0] in "23456789" and t[2][1] != "0"]
    return pairs[:_MAX_SPLIT_READINGS]


def _readings(run: _Run, digits: str) -> Iterator[str]:
    yield digits
    for other in _split_readings(run):
        yield other.digits


def _shape_kind(run: _Run) -> SuppressedKind | None:
    if len(run.toks) not in (2, 3) or any(t[3] for t in run.toks):
        return None
    lengths = tuple(len(t[2]) for t in run.toks)
    if lengths == (3, 2, 4) and all(s.strip() in (b"", b"-") for s in run.seps):
        return SuppressedKind.TAX_ID  # SSN, and ITIN (9xx-7x-xxxx) which shares the shape
    if lengths == (2, 7) and run.seps[0].strip() == b"-":
        return SuppressedKind.TAX_ID  # EIN
    return None


# --- chains: what only punctuation separates ----------------------------------------------------------
_MAX_CHAIN_KEYWORD_DIGITS = 34  # the longest bank or tax ID (an IBAN body)


_DATE_SEPS = frozenset({b"-", b"/", b"."})


def _chain_dates(proj: bytes, chain: _Chain) -> set[int]:
    """Group indexes where a date (2026-11-22, 11/22/2026, 22.11.2026) starts."""
    starts, ends, seps = chain.starts, chain.ends, chain.seps
    dates: set[int] = set()
    # Only where two date separators follow each other can a date start: found without a loop per group.
    stripped = list(map(bytes.strip, seps))
    dated = list(map(_DATE_SEPS.__contains__, stripped))
    for i in compress(count(), map(and_, dated, dated[1:])):
        a, b = stripped[i], stripped[i + 1]
        if a != b:
            continue
        lengths = list(map(sub, ends[i : i + 3], starts[i : i + 3]))
        if lengths != [4, 2, 2] and not (lengths[0] <= 2 and lengths[1] <= 2 and lengths[2] == 4):
            continue
        parts = [proj[s:e].decode("ascii") for s, e in zip(starts[i : i + 3], ends[i : i + 3], strict=True)]
        if _date_digits(*parts):
            dates.add(i)
    return dates


def _cards_in_chain(proj: bytes, chain: _Chain, blocked: list[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """Card numbers whose groups are joined by any punctuation, glued to a label, or split by a barrier.

    Everything here needs more than a checksum, or lists of invoice numbers and amounts would turn into
    cards: the number must be Luhn-valid AND fit a card brand's prefix and length, and every part of it
    but the last, as set off by anything other than a single space or dash, must hold at least three
    digits ("4242. 4242." yes, "49.99, 59.00" no). Windows the run pass reads anyway (single spaces and
    dashes between free-standing groups) come back unclaimed: left to it, they still tell that the chain
    holds a card.
    """
    starts, ends, seps = chain.starts, chain.ends, chain.seps
    m = len(starts)
    sizes = list(map(sub, ends, starts))
    offsets = [0, *accumulate(sizes)]
    total = offsets[-1]
    if total < 13:
        return []
    raw = proj[starts[0] : ends[-1]].translate(None, _NOT_DIGITS)  # separators hold no digits
    digits = raw.decode("ascii")
    even_end, odd_end = _Luhn(digits).sums
    strict = list(map(_STRICT_GAPS.__contains__, seps))
    fenced = _overlapping(starts, ends, blocked)
    dates: set[int] | None = None
    date_starts: list[int] = []
    phones: list[int] | None = None
    candidates: dict[int, list[tuple[int, int]]] = {}
    claimed: dict[tuple[int, int], bool] = {}
    # Every window must fit a brand, and its first four digits say which lengths can: only groups that
    # start such a prefix, with 13 digits still to come, can start a window.
    firsts = offsets[: bisect_right(offsets, total - 13)]
    prefixes = map(raw.__getitem__, map(slice, firsts, map(_PLUS_FOUR, firsts)))
    ends_at = set(offsets)
    for i in compress(count(), map(_BRAND_BY_PREFIX.__contains__, prefixes)):
        a = offsets[i]
        lengths = _BRAND_BY_PREFIX[raw[a : a + 4]]
        for length in lengths:
            b = a + length
            sums = odd_end if b & 1 else even_end
            if b in ends_at and (sums[b] - sums[a]) % 10 == 0:
                break
        else:
            continue  # no group ends a brand's length away with a valid checksum: no window starts here
        segment = sizes[i]  # digits since the last loose separator
        needs_brand = fenced[i] or _glued_edge(proj, starts[i], -1)
        for j in range(i, m):
            if j > i:
                if strict[j - 1]:
                    segment += sizes[j]
                elif segment < 3:
                    break  # a part of fewer than three digits: an amount's cents, a list of small numbers
                else:
                    segment = sizes[j]
                    needs_brand = True
                needs_brand = needs_brand or fenced[j]
            b = offsets[j + 1]
            length = b - a
            if length > 19:
                break
            if length not in lengths:
                continue
            sums = odd_end if b & 1 else even_end  # the Luhn check, inlined as in _card_windows
            if (sums[b] - sums[a]) % 10:
                continue
            if dates is None:
                dates = _chain_dates(proj, chain)
                date_starts = sorted(dates)
            if dates and _crosses_sorted(date_starts, i, j):
                continue
            if phones is None:
                phones = _chain_phones(proj, chain)
            if phones and bisect_left(phones, i - 2) < bisect_right(phones, j):
                continue  # takes in a phone number, or part of one: "(201) 468-2855, (459) 468-0000"
            claimed[(i, j)] = needs_brand or _glued_edge(proj, ends[j], 0)
            # At equal length a window written as cards are written wins: the run pass reads it the same.
            candidates.setdefault(i, []).append((j, 10 * length + (0 if claimed[(i, j)] else 1)))
    return [(i, j, claimed[(i, j)]) for i, j in _best_windows(candidates)]


_PHONE_AREA_GAPS = frozenset({b") ", b")", b")-", b") -"})


def _chain_phones(proj: bytes, chain: _Chain) -> list[int]:
    """Group indexes (ascending) where a North American phone number written as one starts: "(201)
    468-2855" or "201-468-2855", 3, 3 and 4 digits, not joined by a dash to more digits. No card is
    written in that shape; a list of such numbers must not be read across as a card."""
    starts, ends, seps = chain.starts, chain.ends, chain.seps
    found: list[int] = []
    for k in range(len(starts) - 2):
        if ends[k] - starts[k] != 3 or ends[k + 1] - starts[k + 1] != 3 or ends[k + 2] - starts[k + 2] != 4:
            continue
        if seps[k + 1] != b"-" or (k + 2 < len(seps) and seps[k + 2].startswith(b"-")):
            continue
        dashed = seps[k] == b"-" and (k == 0 or not seps[k - 1].endswith(b"-"))
        parenthesised = seps[k] in _PHONE_AREA_GAPS and _at(proj, starts[k] - 1) == 40  # "("
        if dashed or parenthesised:
            found.append(k)
    return found


def _run_phones(run: _Run) -> list[int]:
    """_chain_phones for a run: written "201-468-2855" (a run holds no parentheses)."""
    toks, seps = run.toks, run.seps
    found: list[int] = []
    for k in range(len(toks) - 2):
        if any(t[3] for t in toks[k : k + 3]) or [len(t[2]) for t in toks[k : k + 3]] != [3, 3, 4]:
            continue
        if seps[k] != b"-" or seps[k + 1] != b"-" or (k > 0 and seps[k - 1] == b"-"):
            continue
        if k + 2 < len(seps) and seps[k + 2] == b"-":
            continue
        found.append(k)
    return found


def _overlapping(starts: list[int], ends: list[int], spans: list[tuple[int, int]]) -> list[bool]:
    """For each group (sorted), whether it overlaps any of the spans (sorted, merged), in one sweep."""
    if not spans or _outside(spans, starts[0], ends[-1]):
        return [False] * len(starts)
    out: list[bool] = []
    k, n = 0, len(spans)
    for start, end in zip(starts, ends, strict=True):
        while k < n and spans[k][1] <= start:
            k += 1
        out.append(k < n and spans[k][0] < end)
    return out


def _glued_edge(proj: bytes, pos: int, side: int) -> bool:
    """Whether a digit group's edge at `pos` is glued to what is beside it (side -1: before, 0: after).

    Letters glue on either side ("INV2026", "4242abc"), "$" and "+" before ("$1249", "+1213..."), and
    "." "," ":" "/" followed by a digit ("1,249", "10:30").
    """
    ch = _at(proj, pos + side)
    if ch in _WORD or (side and ch in (36, 43)):
        return True
    return ch in _GLUE and _at(proj, pos + side + (-1 if side else 1)) in _DIGIT


def _amount_or_date(proj: bytes, chain: _Chain) -> bool:
    """A chain that reads as money, a date or a time is not a bank or tax ID, whatever keyword is near."""
    groups, seps = chain.groups, chain.seps
    start, end = groups[0][0], groups[-1][1]
    if 36 in (_at(proj, start - 1), _at(proj, start - 2), _at(proj, end), _at(proj, end + 1)):
        return True  # "$1,249.00", "$ 1 249", "1.249,00 €"
    sizes = [e - s for s, e in groups]
    for k, sep in enumerate(seps):
        if sep == b":" or (sep == b"/" and sizes[k] <= 2 and sizes[k + 1] <= 2):
            return True  # a time, or a month and year
    if _amount_shape(sizes, seps):
        return True
    return _money_after(proj, end) or bool(_chain_dates(proj, chain))


def _amount_shape(sizes: list[int], seps: list[bytes]) -> bool:
    """ "1249.00", "1,249.00", "12.345,67": thousands in threes, then cents, glued by "." or ","."""
    if not seps or any(sep not in (b".", b",") for sep in seps) or sizes[-1] != 2:
        return False
    return len(seps) == 1 or (sizes[0] <= 3 and all(size == 3 for size in sizes[1:-1]))


_CURRENCY_WORDS = (b"usd", b"eur", b"gbp", b"cad", b"aud", b"dollar", b"euro", b"pound", b"buck")


def _money_after(proj: bytes, end: int) -> bool:
    """Whether a currency follows the number ("123 dollars", "1249 USD"): then it is an amount."""
    return proj[end : end + 10].lstrip().lower().startswith(_CURRENCY_WORDS)


# --- the redactor -------------------------------------------------------------------------------------
class _Redactor:
    def __init__(self, text: str, proj: bytes) -> None:
        self.text = text
        self.proj = proj
        self.kw = _Keywords(self.proj)
        # Without these keywords only a card just before makes a short number a security code or expiry.
        self.card_words = self.kw.has("cvv") or self.kw.has("expiry")
        self.spans: list[_Span] = []
        self.flow = _Flow()

    def run(self) -> None:
        proj = self.proj
        self._written_shapes()
        digit_groups = _Groups(proj)
        spoken = _spoken_tokens(proj)
        nothing_to_name = not self.spans and not spoken and self.kw.plain()
        if nothing_to_name and not any(map(digit_groups.nine_digits, digit_groups.chains)):
            return
        taken = _merge([(s.start, s.end) for s in self.spans])
        chains = digit_groups.trim(taken)
        barriers = _barriers(proj)
        found = self._chain_finds(digit_groups, chains, _merge(barriers))
        slashes = self._slashes(_merge([*taken, *((f.span.start, f.span.end) for f in found)]))
        # What the chain pass found stays open to the run pass: where the two read a number differently
        # ("4242 4242 4242 4242-123. 021000021") the union of both is suppressed, never the difference.
        blocked = _merge([*taken, *barriers, *((s.start, s.end) for s in slashes)])
        toks = [*_written_tokens(self.text, proj, digit_groups, chains), *spoken]
        toks.sort()
        toks = _free(toks, blocked)
        # Runs come in order of their start; at equal starts a run goes first, then slashes, then chain finds.
        others: list[_SlashExpiry | _Found] = sorted([*slashes, *found], key=_START)
        items = merge(_runs(proj, toks, any_spoken=bool(spoken)), others, key=_START)
        flow = self.flow
        for item in items:
            if isinstance(item, _Run):
                if item.end > flow.last_end:  # else inside a number the chain pass already took: the
                    self._run(item)  # flow must not be reset
            elif isinstance(item, _SlashExpiry):
                self._slash_expiry(item)
            else:
                self.spans.append(item.span)
                self._settle(item.span.end, cardish=item.cardish, bank=item.bank)

    def _slashes(self, taken: list[tuple[int, int]]) -> list[_SlashExpiry]:
        proj = self.proj
        out: list[_SlashExpiry] = []
        if b"/" not in proj:
            return out
        for (start, end), _ in _matches_from(_SLASH_EXPIRY, proj, _slash_fits):
            if _outside(taken, start, end):
                out.append(_SlashExpiry(start, end))
        return out

    def _chain_finds(
        self, digit_groups: _Groups, chains: list[tuple[int, int]], blocked: list[tuple[int, int]]
    ) -> list[_Found]:
        found: list[_Found] = []
        flow_bank = False
        starts, ends = digit_groups.starts, digit_groups.ends
        for first, last in chains:
            if first == last and ends[first] - starts[first] < 13:
                continue  # too short for a card, and a lone group is the run pass's to judge
            start, end = starts[first], ends[last]
            strict = digit_groups.strict(first, last)
            clean = strict and not _glued_edge(self.proj, start, -1) and not _glued_edge(self.proj, end, 0)
            if clean and _outside(blocked, start, end):
                continue  # single spaces and dashes between free-standing groups: the run pass reads it
            chain = digit_groups.chain(first, last)
            # Fewer than 13 characters from first to last digit cannot hold a card (most amounts).
            windows = _cards_in_chain(self.proj, chain, blocked) if end - start >= 13 else []
            for i, j, claimed in windows:
                if not claimed:
                    continue  # the run pass reads it, and reads what follows it
                number = "".join(map(self.text.__getitem__, map(slice, chain.starts[i : j + 1], chain.ends[i : j + 1])))
                span = _Span(chain.starts[i], chain.ends[j], _ONLY[SuppressedKind.CARD_NUMBER], number[-4:])
                found.append(_Found(span, cardish=True, bank=False))
            if windows or strict:
                continue
            kind = self._chain_keyword_kind(chain, flow_bank)
            if kind is not None:
                span = _Span(start, end, _ONLY[kind])
                flow_bank = kind is SuppressedKind.BANK_ACCOUNT
                found.append(_Found(span, cardish=False, bank=flow_bank))
        return found

    def _chain_keyword_kind(self, chain: _Chain, after_bank: bool) -> SuppressedKind | None:
        """"SSN 123.45.6789", "routing 021.000.021": a keyword names a value whatever its punctuation."""
        groups = chain.groups
        start, end = groups[0][0], groups[-1][1]
        if not self.kw.bank_near(start, end, after=False):
            return None
        if sum(e - s for s, e in groups) > _MAX_CHAIN_KEYWORD_DIGITS or _amount_or_date(self.proj, chain):
            return None
        if self._labelled_reference(start):
            return None
        digits = "".join(self.text[s:e] for s, e in groups)
        # Only a keyword before the value: after it, a loose chain is as likely the end of a list.
        return _keyword_kind(self.kw, start, end, digits, after_bank, after=False)

    def _labelled_reference(self, start: int) -> bool:
        """Whether the value right after `start` is labelled as an invoice, order, payment, ... reference."""
        at = self.kw.last_end_before("ref", start, _W_REF)
        if at is None:
            return False
        return not self.proj[at:start].translate(None, b" \t#:.-")

    # IBANs and VAT IDs carry letters, so they are found on the raw text before digit runs are built.
    def _written_shapes(self) -> None:
        proj = self.proj
        taken_to = -1
        for m in _matches(_IBAN_HEAD, proj):
            start = m[0][0]
            if start < taken_to:
                continue
            if start > 0 and (proj[start - 1] in _WORD and proj[start - 1] != 95):
                continue
            end = self._iban_end(m)
            if end is not None:
                self.spans.append(_Span(start, end, _ONLY[SuppressedKind.IBAN]))
                taken_to = end
        if self.kw.has("vat") or self.kw.has("tax") or self.kw.has("taxid"):
            self._vat_ids()
        if self.kw.has("expiry"):
            self._month_expiries()

    def _vat_ids(self) -> None:
        proj = self.proj
        taken = _merge([(s.start, s.end) for s in self.spans])
        near = self.kw.near_any_of(("vat", "tax", "taxid"))
        for (_, match_end), cc_span, sep, body in _matches(_VAT, proj):
            start = cc_span[0]
            if not _outside(taken, start, match_end):
                continue
            if sep[1] > sep[0] and not proj[cc_span[0] : cc_span[1]].isupper():
                continue  # "at 1249 2026" is English, "AT 12345678" may be a VAT ID
            end = _vat_end(proj, body[0], body[1])
            if end is not None and near(start, end):
                self.spans.append(_Span(start, end, _ONLY[SuppressedKind.TAX_ID]))

    def _month_expiries(self) -> None:
        proj = self.proj
        taken = _merge([(s.start, s.end) for s in self.spans])
        for _, (start, end) in _matches(_MONTH_EXPIRY, proj):
            if start > 0 and proj[start - 1] in _WORD:
                continue
            keyword = self.kw.last_end_before("expiry", start, _W_CARD)
            if keyword is not None and _outside(taken, start, end):
                self.spans.append(_Span(start, end, _ONLY[SuppressedKind.CARD_EXPIRY]))

    def _iban_end(self, m: list[tuple[int, int]]) -> int | None:
        proj = self.proj
        (_, pos), cc_span, sep, check = m
        cc_raw = proj[cc_span[0] : cc_span[1]].decode("ascii")
        cc = cc_raw.upper()
        length = _IBAN_LENGTHS.get(cc)
        if length is None or (sep[1] > sep[0] and not cc_raw.isupper()):
            return None
        need, size = length - 4, len(proj)
        body: list[str] = []
        while need and pos < size:
            ch = proj[pos]
            if ch in _WORD and ch != 95:
                body.append(chr(ch))
                need -= 1
                pos += 1
                continue
            gap = pos
            while gap < size and gap - pos < 3 and proj[gap] in _IBAN_SEPS:
                gap += 1
            if gap == pos or gap >= size or proj[gap] not in _WORD or proj[gap] == 95:
                break
            # Printed IBANs break every 4 characters; anywhere else only a break between digits is
            # believable ("37040044 0532013000"), otherwise the next words would be read as letters.
            if len(body) % 4 and not (proj[pos - 1] in _DIGIT and proj[gap] in _DIGIT):
                break
            pos = gap
        if need or (pos < size and proj[pos] in _WORD and proj[pos] != 95):
            return None
        if _mod97("".join(body).upper() + cc + proj[check[0] : check[1]].decode("ascii")) != 1:
            return None
        return pos

    def _slash_expiry(self, item: _SlashExpiry) -> None:
        flow = self.flow
        keyword = self.kw.last_end_before("expiry", item.start, _W_CARD) is not None
        keyword = keyword and not self._labelled_reference(item.start)
        chained = flow.cardish and self._tight_gap(flow.last_end, item.start)
        if keyword or chained:
            self.spans.append(_Span(item.start, item.end, _ONLY[SuppressedKind.CARD_EXPIRY]))
        self._settle(item.end, cardish=keyword or chained)

    def _tight_gap(self, start: int, end: int) -> bool:
        return 0 <= end - start <= _MAX_TAIL_GAP and _fullmatch(_TAIL_GAP, self.proj[start:end])

    def _run(self, run: _Run) -> None:
        toks = run.toks
        digits = run.digits
        if len(digits) < 3:
            return  # too short for anything this module removes
        iban = self._spoken_iban(run) if len(digits) >= 13 else None
        if iban is not None:
            start, used = iban
            self.spans.append(_Span(start, toks[used - 1][1], _ONLY[SuppressedKind.IBAN]))
            self._settle(toks[used - 1][1])
            if used < len(toks):
                self._run(_Run(toks[used:], run.seps[used:]))
            return
        if (
            # A bank or tax ID is six digits or more in some reading: "one twenty one 0 0" is 12100 or
            # 120100 (a reading is one digit longer per split; all of them split is the longest).
            (len(digits) >= 6 or len(digits) + len(_split_pairs(run)) >= 6)
            and self.kw.bank_near(run.start, run.end, after=True)
            and not _is_date(run)
            and not self._labelled_reference(run.start)
        ):
            flow = self.flow
            after_bank = flow.bank and run.start - flow.last_end <= _W_BANK
            kind = None
            for reading in _readings(run, digits):
                kind = _keyword_kind(self.kw, run.start, run.end, reading, after_bank)
                if kind is not None:
                    break
            if kind is not None:
                self._add(run.start, run.end, kind)
                self._settle(run.end, bank=kind is SuppressedKind.BANK_ACCOUNT)
                return
        # The calls below are skipped where they cannot answer: most runs in a long text are none of these.
        windows = _card_windows(run, digits) if len(digits) >= 13 else []
        best = (run, windows) if windows else None
        most = _taken(run, windows)
        if len(digits) >= 12 and most[0] < len(toks):  # a "twenty one" read as 2, 0, 1 adds a digit
            # The reading whose cards take in the most of what was said: a shorter card that one reading
            # happens to make valid, with the rest left over in the clear or as a "security code", is
            # the wrong one ("six twenty one 1 8 0000…" is 6201 18…, not 6211 8… from the 8 on). A run
            # fully taken is read no other way: the readings are only tried for what is left over.
            for other in _split_readings(run):
                windows = _card_windows(other, other.digits)
                taken = _taken(other, windows)
                if taken > most:
                    best, most = (other, windows), taken
        if best is not None:
            self._cards(*best)
            return
        if self.flow.cardish or self.card_words:
            detail = self._card_detail_kind(run, digits)
            if detail is not None:
                self.spans.append(_Span(run.start, run.end, detail))
                self._settle(run.end, cardish=True)
                return
        shape = _shape_kind(run) if len(digits) == 9 else None  # both shapes have nine digits
        if shape is not None:
            self._add(run.start, run.end, shape)
        self._settle(run.end)

    def _spoken_iban(self, run: _Run) -> tuple[int, int] | None:
        """An IBAN whose country code stands apart from its digits: returns (span start, tokens used)."""
        lo = run.start - 9
        window = self.proj[max(0, lo) : run.start]
        if lo <= 0:  # the start of the text stands for the character before it
            window = b" " + window
        before = _search(_IBAN_CC_BEFORE, window)
        if before is None:
            return None
        (_, _), (first, _), (second, _) = before
        cc = chr(window[first]) + chr(window[second])
        length = _IBAN_LENGTHS.get(cc)
        if length is None:
            return None
        need, total = length - 2, 0
        for used, tok in enumerate(run.toks, start=1):
            total += len(tok[2])
            if total == need:
                digits = "".join(t[2] for t in run.toks[:used])
                if _mod97(digits[2:] + cc + digits[:2]) == 1:
                    return run.start - len(window) + first, used
                return None
            if total > need:
                return None
        return None

    def _cards(self, run: _Run, windows: list[tuple[int, int]]) -> None:
        toks = run.toks
        covered_to = -1
        for n, (i, j) in enumerate(windows):
            number = "".join(t[2] for t in toks[i : j + 1])
            self.spans.append(
                _Span(toks[i][0], toks[j][1], _ONLY[SuppressedKind.CARD_NUMBER], number[-4:])
            )
            covered_to = j
            # Whatever follows a card in the same breath, up to the next card, is its expiry and/or CVV.
            stop = windows[n + 1][0] if n + 1 < len(windows) else len(toks)
            if stop > j + 1 and stop - j - 1 <= 8:
                tail = "".join(t[2] for t in toks[j + 1 : stop])
                if 3 <= len(tail) <= 8:
                    self.spans.append(_Span(toks[j + 1][0], toks[stop - 1][1], _tail_kinds(tail)))
                    covered_to = stop - 1
        self._settle(run.end, cardish=covered_to == len(toks) - 1)

    def _card_detail_kind(self, run: _Run, digits: str) -> frozenset[SuppressedKind] | None:
        flow, n = self.flow, len(digits)
        if n > 8:
            return None
        # A keyword answers the first number after it; "cvv 123 and order 4567" keeps the order number.
        cvv_at = self.kw.last_end_before("cvv", run.start, _W_CARD)
        if flow.cardish:
            weak = self.kw.last_end_before("code", run.start, _W_CARD)
            if weak is not None and (cvv_at is None or weak > cvv_at):
                cvv_at = weak
        exp_at = self.kw.last_end_before("expiry", run.start, _W_CARD)
        if cvv_at is None and exp_at is None and not flow.cardish:
            return None  # most numbers: no card keyword and no card just before
        if self._labelled_reference(run.start) or _money_after(self.proj, run.end):
            return None  # "the security code was wrong so invoice 1042", "... so I paid 123 dollars"
        cvv_ok = cvv_at is not None and cvv_at >= flow.last_end and 3 <= n <= 4
        exp_ok = exp_at is not None and exp_at >= flow.last_end and _valid_expiry(digits)
        if cvv_ok and exp_ok:
            # "expiry and cvv: 0427, 123": the nearer keyword names the value.
            assert cvv_at is not None and exp_at is not None
            cvv_ok = cvv_at >= exp_at
            exp_ok = not cvv_ok
        if cvv_ok:
            return _ONLY[SuppressedKind.CARD_SECURITY_CODE]
        if exp_ok:
            return _ONLY[SuppressedKind.CARD_EXPIRY]
        if flow.cardish and self._tight_gap(flow.last_end, run.start):
            return _tail_kinds(digits)
        return None

    def _settle(self, end: int, *, cardish: bool = False, bank: bool = False) -> None:
        self.flow.last_end, self.flow.cardish, self.flow.bank = end, cardish, bank

    def _add(self, start: int, end: int, kind: SuppressedKind) -> None:
        self.spans.append(_Span(start, end, _ONLY[kind]))

    def result(self) -> Redacted:
        if not self.spans:
            return Redacted(self.text, _EMPTY)
        spans = sorted(self.spans, key=lambda s: (s.start, -s.end))
        merged: list[_Span] = []
        for span in spans:
            if merged and span.start < merged[-1].end:
                # Overlaps should not happen; if they do, suppress the union rather than leak either part.
                last = merged[-1]
                merged[-1] = _Span(last.start, max(last.end, span.end), last.kinds | span.kinds, last.last4)
            else:
                merged.append(span)
        parts: list[str] = []
        pos = 0
        kinds: set[SuppressedKind] = set()
        for span in merged:
            parts.append(self.text[pos : span.start])
            parts.append(_marker(span))
            kinds |= span.kinds
            pos = span.end
        parts.append(self.text[pos:])
        return Redacted("".join(parts), frozenset(kinds))


def _vat_end(proj: bytes, body_start: int, body_end: int) -> int | None:
    """End of the longest prefix of the body's chunks that fits a VAT ID (a year or quantity may follow).

    Chunks are never empty and one separator apart, so twelve characters of chunks lie within the
    first 24 of the body; a chunk cut at 40 is already past the limit, however long the body is. Both
    the length and the digit count only grow chunk by chunk, so the longest prefix within twelve
    characters is the only one to check.
    """
    window = proj[body_start : min(body_end, body_start + 40)]
    chunks = window.translate(_VAT_SEPS).split(b" ")
    lengths = list(accumulate(map(len, chunks)))
    last = bisect_right(lengths, 12) - 1
    if last < 0 or lengths[last] < 8:
        return None
    if len(b"".join(chunks[: last + 1]).translate(None, _LETTERS)) < 7:
        return None
    return body_start + lengths[last] + last  # one separator after each chunk before the last


_VAT_SEPS = bytes.maketrans(b".-", b"  ")
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_MARKERS: dict[frozenset[SuppressedKind], str] = {}


def _marker(span: _Span) -> str:
    if SuppressedKind.CARD_NUMBER in span.kinds and span.last4 and len(span.kinds) == 1:
        return f"[card ending {span.last4}]"
    marker = _MARKERS.get(span.kinds)
    if marker is None:  # at most one per set of kinds, so the cache stays small
        marker = _MARKERS[span.kinds] = " ".join(
            f"[redacted {kind.value}]" for kind in SuppressedKind if kind in span.kinds
        )
    return marker


# --- public API ---------------------------------------------------------------------------------------
def redact(text: str) -> Redacted:
    """Replace card numbers, security codes, expiries, IBANs, bank and tax IDs with markers.

    A card becomes ``[card ending 4242]``; everything else ``[redacted <kind>]``. The returned text is
    the normalised form (see `normalise`); the returned kinds say what was suppressed, never the values.
    """
    text = normalise(text)
    proj = _project(text)
    if not text or _search(_MAYBE_NUMBER, proj) is None:
        return Redacted(text, _EMPTY)
    redactor = _Redactor(text, proj)
    redactor.run()
    return redactor.result()


def _walk(value: object, kinds: set[SuppressedKind]) -> object:
    if isinstance(value, str):
        redacted = redact(value)
        kinds |= redacted.kinds
        # Unchanged strings keep their identity (and str subclasses such as enums keep their type).
        return value if redacted.text == value else redacted.text
    if isinstance(value, dict):
        return {key: _walk(item, kinds) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, kinds) for item in value]
    if isinstance(value, tuple):
        return tuple(_walk(item, kinds) for item in value)
    if isinstance(value, set | frozenset):
        return type(value)(_walk(item, kinds) for item in value)
    return value


def redact_value(value: object) -> tuple[object, frozenset[SuppressedKind]]:
    """Recursively redact strings inside dicts/lists (keys kept); non-strings returned unchanged."""
    kinds: set[SuppressedKind] = set()
    return _walk(value, kinds), frozenset(kinds)


def card_number_in(value: str) -> bool:
    """Whether an amount-like value is really a card number: 13-19 Luhn-valid digits once separators and a
    trailing decimal fraction (".00", ",00") are set aside."""
    text = normalise(value).strip()
    if len(text) >= 3 and text[-3] in ".," and text[-2:].isdigit():
        text = text[:-3]
    elif len(text) >= 2 and text[-2] in ".," and text[-1].isdigit():
        text = text[:-2]
    digits = text.translate(_KEEP_DIGITS)
    return 13 <= len(digits) <= 19 and _luhn_ok(digits)


class _KeepDigits(dict[int, str | None]):
    def __missing__(self, code: int) -> str | None:
        out = chr(code) if 48 <= code <= 57 else None
        self[code] = out
        return out


_KEEP_DIGITS = _KeepDigits()

# Characters that separate the parts of a URL; each becomes a space so "/4242/4242/..." reads as groups.
_URL_SEPARATORS = str.maketrans({ch: " " for ch in "/-_=&.?#:;,+@!$'()*[]~|"})
_LONG_DIGITS = _re(r"[0-9]+")


def redact_url(url: str) -> tuple[str | None, frozenset[SuppressedKind]]:
    """The URL unchanged, or None with what it carried when any part of it holds a sensitive value.

    A link cannot be cut safely (a shortened path may still name the resource), so a link carrying a
    card number, bank detail or tax ID anywhere (path, query, fragment, userinfo, percent-encoded or
    not) is dropped whole. Any 13-19 digit Luhn-valid number counts as a card here, IDs included.
    """
    decoded = normalise(url)
    for _ in range(3):  # a doubly encoded link decodes one layer per pass
        step = normalise(unquote_plus(decoded))
        if step == decoded:
            break
        decoded = step
    kinds = set(redact(decoded).kinds) | set(redact(decoded.translate(_URL_SEPARATORS)).kinds)
    if any(13 <= len(m.group()) <= 19 and _luhn_ok(m.group().decode()) for m in _LONG_DIGITS.finditer(
        decoded.encode()
    )):
        kinds.add(SuppressedKind.CARD_NUMBER)
    return (None, frozenset(kinds)) if kinds else (url, _EMPTY)
