"""Suppression of payment and tax identifiers before text is stored, posted or logged.

Callers read card numbers, bank details and tax IDs to a voice agent, so they reach us as digits
("4242 4242 4242 4242"), as words ("four two four two, double four ...") or as a mix. Everything is
reduced to *runs* of digits (digit groups and spoken digit words joined by separators) and each run is
judged by its checksum (Luhn, ABA, mod-97), its shape (ddd-dd-dddd) or a nearby keyword ("routing",
"cvv", "vat"). Values never leave this module: a case only learns which kinds were suppressed.

The rules lean towards suppressing: a false positive costs a readable number, a false negative puts a
card number in Slack and in the database. Ordinary numbers are protected by requiring either a checksum
or a keyword, never by guessing that a number "looks harmless".
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Redacted", "SuppressedKind", "redact", "redact_value"]


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

# Keyword windows, in characters between the end of the keyword and the start of the value. Spoken
# answers pad the gap ("the security code is, um, ..."), so the windows are wider than written text needs.
_W_CARD = 32  # cvv / expiry keyword -> value
_W_BANK = 40  # bank and tax keyword -> value
_W_AFTER = 20  # value -> keyword ("021000021 is my routing number")
_MAX_TAIL_GAP = 16  # card -> cvv/expiry said straight after it

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
_MAYBE_NUMBER = re.compile(
    r"\d|\b(?:" + "|".join(sorted({*_UNITS, *_TEENS, *_TENS, *_MULTIPLIERS}, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_NONZERO = {word: digit for word, digit in _UNITS.items() if digit != "0"}
# A spoken word must stand alone: "o" in "o'clock" or "oh" in "ch_3ohps" is not a digit.
_WB = r"(?<![\w'’])"
_WE = r"(?![\w'’])"
_TOKEN = re.compile(
    rf"""
    {_WB}(?:
        (?P<mult>{_alternation(_MULTIPLIERS)})[\s-]+(?P<mu>{_alternation(_UNITS)})
      | (?P<tens>{_alternation(_TENS)})(?:[\s-]+(?P<tu>{_alternation(_NONZERO)}){_WE})?
      | (?P<teen>{_alternation(_TEENS)})
      | (?P<unit>{_alternation(_UNITS)})
    ){_WE}
    # A digit group glued to letters, a currency sign, a "+" (E.164), or to other digits by "." "," ":"
    # "/" is part of an ID, an amount, a phone number, a time or a date, never a separate group.
    | (?P<num>(?<![\w$€£¥+])(?<![0-9][.,:/])[0-9]+(?![\w])(?![.,:/][0-9]))
    """,
    re.IGNORECASE | re.VERBOSE,
)

# Between two groups of one number. Digit groups only join on a single space or dash (how cards and
# account numbers are written); anything looser would chain lists of invoice numbers into card-sized
# runs. Once words are involved, speech rhythm rules: commas, full stops, "and", fillers.
_STRICT_SEP = re.compile(r"[ \u00a0]|[ \u00a0]?[-–][ \u00a0]?")
_LOOSE_SEP = re.compile(
    r"(?:[\s,.;\-–—…]+|(?:and|slash|uh+|um+|uhm|erm?|ah+|hmm+)(?![\w]))+",
    re.IGNORECASE,
)
_MAX_LOOSE_GAP = 24

# Hyphenated identifiers with a non-number word in them ("INV-2026-00017", "COVID-19") are one token;
# their digit groups must not be read as a dashed number.
_HYPHEN_CHAIN = re.compile(r"(?<![\w-])\w+(?:-\w+)+(?![\w-])")
_NUMBER_WORDS = frozenset({*_UNITS, *_TEENS, *_TENS, *_MULTIPLIERS, "and"})

# Markers we wrote ourselves: redacting an already-redacted line must not redact the marker.
_MARKER = re.compile(r"\[(?:card ending [0-9]{4}|redacted [a-z_]+)\]")

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
        r"exp(?:iry|iration|ires|ire|ired|iring)?\.?|valid\s+(?:thru|through|until|till)"
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
    "taxid": r"tax\s*(?:id|identification|number|no|\#|reference)|taxpayer\s+id|tin",
    "ssn": (
        r"ssns?|social\s+security|social|itin|f?ein|employer\s+(?:identification|id)"
        r"|taxpayer\s+identification"
    ),
    "vat": r"vat|v\.a\.t\.?|tva|iva|mwst|ust-?id(?:nr)?|btw",
    "tax": r"tax(?:es)?",
}
# The leading class holds every keyword's first letter; it lets most positions fail before the
# alternation is tried (the keyword scan is the most expensive pass over a long transcript).
_KEYWORD = re.compile(
    r"(?<![\w])(?=[abcdefgimnrstuv])(?:"
    + "|".join(rf"(?P<{name}>{pattern})(?![\w])" for name, pattern in _KEYWORDS.items())
    + ")",
    re.IGNORECASE,
)

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
_IBAN_HEAD = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})([ -]?)([0-9]{2})")
# A country code said or typed apart from the digits that follow it ("DE 89 3704 ...", "D E eight nine").
_IBAN_CC_BEFORE = re.compile(r"(?<![A-Za-z0-9])([A-Z])\.?[ -]?([A-Z])\.?[ :-]*$")

_VAT = re.compile(
    r"(?<![A-Za-z0-9])(?P<cc>ATU|CHE|AT|BE|BG|CY|CZ|DE|DK|EE|EL|GR|ES|FI|FR|GB|HR|HU|IE|IT|LT|LU|LV|MT"
    r"|NL|NO|PL|PT|RO|SE|SI|SK|XI|EU)(?P<sep>[ .-]?)"
    r"(?P<body>[0-9A-Z]+(?:[ .-][0-9A-Z]*[0-9][0-9A-Z]*)*)(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_VAT_CHUNK = re.compile(r"[0-9A-Z]+", re.IGNORECASE)

_UNIT = r"(?:one|two|three|four|five|six|seven|eight|nine)"
# "expires April 2027", "exp. dec 28", "valid thru December twenty twenty eight": a month name and a year.
_MONTH_EXPIRY = re.compile(
    r"(?<![\w])(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?,?\s+(?:of\s+)?"
    r"(?:(?:20)?[0-9]{2}(?![0-9])"
    rf"|twenty[\s-]+(?:twenty|thirty)(?:[\s-]+{_UNIT})?"
    rf"|two\s+thousand(?:\s+and)?(?:\s+(?:twenty|thirty))?(?:[\s-]+{_UNIT})?"
    rf"|(?:oh|zero)[\s-]+{_UNIT}|(?:twenty|thirty)(?:[\s-]+{_UNIT})?)(?![\w])",
    re.IGNORECASE,
)

_SLASH_EXPIRY = re.compile(r"(?<![\w/.\-])(?:0?[1-9]|1[0-2])\s?/\s?(?:20)?[0-9]{2}(?![\w/]|[.,\-][0-9])")

# What may sit between a card number and a security code or expiry read straight after it.
_TAIL_GAP = re.compile(
    r"(?:[\s,;:.()/\-–—]+|(?:and|then|uh+|um+)(?![\w])|(?:0?[1-9]|1[0-2])/(?:20)?[0-9]{2}(?![0-9]))*",
    re.IGNORECASE,
)

_CARD_BRANDS = re.compile(
    r"""
      4(?:[0-9]{12}|[0-9]{15}|[0-9]{18})                                  # Visa
    | (?:5[1-5][0-9]{2}|222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}  # Mastercard
    | 3[47][0-9]{13}                                                     # Amex
    | (?:6011|64[4-9][0-9]|65[0-9]{2})[0-9]{12,15}                       # Discover
    | 35(?:2[89]|[3-8][0-9])[0-9]{12,15}                                 # JCB
    | 3(?:0[0-5]|[689][0-9])[0-9]{11,16}                                 # Diners
    | 62[0-9]{14,17}                                                     # UnionPay
    """,
    re.VERBOSE,
)


# --- data ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Tok:
    start: int
    end: int
    digits: str
    spoken: bool


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    kinds: frozenset[SuppressedKind]
    last4: str = ""  # only for card numbers


@dataclass(slots=True)
class _Run:
    toks: list[_Tok]
    seps: list[str]  # seps[i] sits between toks[i] and toks[i + 1]

    @property
    def start(self) -> int:
        return self.toks[0].start

    @property
    def end(self) -> int:
        return self.toks[-1].end

    @property
    def digits(self) -> str:
        return "".join(t.digits for t in self.toks)


@dataclass(frozen=True, slots=True)
class _SlashExpiry:
    start: int
    end: int


class _Keywords:
    """Keyword positions per category, for "is there one just before / just after this value"."""

    def __init__(self, text: str) -> None:
        self._starts: dict[str, list[int]] = {name: [] for name in _KEYWORDS}
        self._ends: dict[str, list[int]] = {name: [] for name in _KEYWORDS}
        for m in _KEYWORD.finditer(text):
            name = m.lastgroup
            if name is not None:
                self._starts[name].append(m.start())
                self._ends[name].append(m.end())

    def last_end_before(self, name: str, pos: int, window: int) -> int | None:
        ends = self._ends[name]
        i = bisect_right(ends, pos) - 1
        if i >= 0 and pos - ends[i] <= window:
            return ends[i]
        return None

    def near(self, name: str, start: int, end: int) -> bool:
        if self.last_end_before(name, start, _W_BANK) is not None:
            return True
        starts = self._starts[name]
        i = bisect_left(starts, end)
        return i < len(starts) and starts[i] - end <= _W_AFTER

    def any_near(self, names: tuple[str, ...], start: int, end: int) -> bool:
        return any(self.near(name, start, end) for name in names)


@dataclass(slots=True)
class _Flow:
    """What the previous number-like item was, so a CVV read after a card is caught without a keyword."""

    last_end: int = -1
    cardish: bool = False
    bank: bool = False  # the previous item was a routing number, sort code or account number


# --- checksums ----------------------------------------------------------------------------------------
def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        v = ord(ch) - 48
        if i & 1:
            v *= 2
            if v > 9:
                v -= 9
        total += v
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


# --- tokens and runs ----------------------------------------------------------------------------------
def _tok(m: re.Match[str]) -> _Tok:
    if (num := m.group("num")) is not None:
        return _Tok(m.start(), m.end(), num, False)
    if (mult := m.group("mult")) is not None:
        digits = _UNITS[m.group("mu").lower()] * _MULTIPLIERS[mult.lower()]
    elif (tens := m.group("tens")) is not None:
        unit = m.group("tu")
        digits = _TENS[tens.lower()] + (_UNITS[unit.lower()] if unit else "0")
    elif (teen := m.group("teen")) is not None:
        digits = _TEENS[teen.lower()]
    else:
        digits = _UNITS[m.group("unit").lower()]
    return _Tok(m.start(), m.end(), digits, True)


def _barriers(text: str) -> list[tuple[int, int]]:
    spans = [(m.start(), m.end()) for m in _MARKER.finditer(text)]
    for m in _HYPHEN_CHAIN.finditer(text):
        parts = m.group().split("-")
        digits = sum(len(p) for p in parts if p.isdigit())
        # A card glued to a label ("ref-4242424242424242") is still a card: only short IDs are shielded.
        if 0 < digits < 13 and any(not p.isdigit() and p.lower() not in _NUMBER_WORDS for p in parts):
            spans.append((m.start(), m.end()))
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


def _runs(text: str, toks: list[_Tok]) -> list[_Run]:
    loose: list[_Run] = []
    for tok in toks:
        if loose:
            prev = loose[-1].toks[-1]
            gap = text[prev.end : tok.start]
            if len(gap) <= _MAX_LOOSE_GAP and _LOOSE_SEP.fullmatch(gap):
                loose[-1].toks.append(tok)
                loose[-1].seps.append(gap)
                continue
        loose.append(_Run([tok], []))
    out: list[_Run] = []
    for run in loose:
        if any(t.spoken for t in run.toks):
            out.append(run)
            continue
        cur = _Run([run.toks[0]], [])
        for sep, tok in zip(run.seps, run.toks[1:], strict=True):
            if _STRICT_SEP.fullmatch(sep):
                cur.toks.append(tok)
                cur.seps.append(sep)
            else:
                out.append(cur)
                cur = _Run([tok], [])
        out.append(cur)
    return out


def _date_at(run: _Run, i: int) -> bool:
    if i + 2 >= len(run.toks):
        return False
    a, b, c = run.toks[i : i + 3]
    if a.spoken or b.spoken or c.spoken:
        return False
    if run.seps[i].strip() not in ("-", "–") or run.seps[i + 1].strip() not in ("-", "–"):
        return False
    if (len(a.digits), len(b.digits), len(c.digits)) == (4, 2, 2):
        year, month, day = a.digits, int(b.digits), int(c.digits)
    elif len(a.digits) <= 2 and len(b.digits) <= 2 and len(c.digits) == 4:
        year, month, day = c.digits, int(a.digits), int(b.digits)
        if month > 12:
            month, day = day, month
    else:
        return False
    return year[:2] in ("19", "20") and 1 <= month <= 12 and 1 <= day <= 31


def _is_date(run: _Run) -> bool:
    return len(run.toks) == 3 and _date_at(run, 0)


# --- classification -----------------------------------------------------------------------------------
def _card_windows(run: _Run) -> list[tuple[int, int]]:
    """Non-overlapping token windows that are Luhn-valid 13-19 digit card numbers.

    A run can hold more than the card ("oh, four two ..." or a CVV read straight after), so every
    token-aligned window is tried and the set covering the most digits wins; ties go to windows that
    look like a real brand, then to the later window, because speakers pad the front ("oh", "uh, one").
    """
    toks = run.toks
    m = len(toks)
    # A window may swallow a dashed date whole but not start or end inside one: "2026-11-22 5512345..."
    # is a date and a number, and "11-22 5512345..." a coincidence.
    dates = [i for i in range(m - 2) if _date_at(run, i)]
    digits = "".join(t.digits for t in toks)
    offsets = [0]
    for t in toks:
        offsets.append(offsets[-1] + len(t.digits))
    candidates: list[list[tuple[int, int]]] = [[] for _ in range(m)]
    for i in range(m):
        for j in range(i, m):
            length = offsets[j + 1] - offsets[i]
            if length > 19:
                break
            if length < 13:
                continue
            number = digits[offsets[i] : offsets[j + 1]]
            if not _luhn_ok(number) or _looks_like_epoch_ms(toks, i, j, number):
                continue
            if any(i <= d + 2 and j >= d and not (i <= d and j >= d + 2) for d in dates):
                continue
            # A stray number word next to a written number ("call 12137771234, twenty minutes") is not
            # a card read half aloud; someone switching to words says at least a group of them.
            spoken = sum(len(t.digits) for t in toks[i : j + 1] if t.spoken)
            if 0 < spoken < 4:
                continue
            score = length * 100 + (10 if _CARD_BRANDS.fullmatch(number) else 0)
            candidates[i].append((j, score))
    best = [0] * (m + 1)
    choice: list[int | None] = [None] * (m + 1)
    for k in range(m - 1, -1, -1):
        best[k], choice[k] = best[k + 1], None
        for j, score in candidates[k]:
            if score + best[j + 1] > best[k]:
                best[k], choice[k] = score + best[j + 1], j
    windows: list[tuple[int, int]] = []
    k = 0
    while k < m:
        end = choice[k]
        if end is None:
            k += 1
        else:
            windows.append((k, end))
            k = end + 1
    return windows


def _looks_like_epoch_ms(toks: list[_Tok], i: int, j: int, number: str) -> bool:
    # Millisecond timestamps (13 digits, 1000000000000-1999999999999) fill logs and webhook bodies;
    # no card brand issues 13-digit numbers starting with 1.
    return i == j and not toks[i].spoken and len(number) == 13 and number[0] == "1"


def _tail_kinds(digits: str) -> frozenset[SuppressedKind]:
    n = len(digits)
    if n in (4, 6) and _valid_expiry(digits):
        return frozenset({SuppressedKind.CARD_EXPIRY})
    if n in (3, 4):
        return frozenset({SuppressedKind.CARD_SECURITY_CODE})
    return frozenset({SuppressedKind.CARD_EXPIRY, SuppressedKind.CARD_SECURITY_CODE})


def _tight_gap(text: str, start: int, end: int) -> bool:
    return 0 <= end - start <= _MAX_TAIL_GAP and _TAIL_GAP.fullmatch(text, start, end) is not None


_BANKISH = ("routing", "sort")


def _keyword_kind(kw: _Keywords, run: _Run, digits: str, after_bank: bool) -> SuppressedKind | None:
    n, start, end = len(digits), run.start, run.end
    if kw.near("routing", start, end) and _aba_ok(digits):
        return SuppressedKind.BANK_ACCOUNT
    if n == 6 and kw.near("sort", start, end):
        return SuppressedKind.BANK_ACCOUNT
    if 6 <= n <= 17 and kw.near("account", start, end):
        return SuppressedKind.BANK_ACCOUNT
    if (
        6 <= n <= 17
        and kw.near("account_weak", start, end)
        and (after_bank or any(kw.last_end_before(name, start, 2 * _W_BANK) is not None for name in _BANKISH))
    ):
        return SuppressedKind.BANK_ACCOUNT
    # Routing and account read in one breath: a valid routing number at either end of the run.
    if (
        15 <= n <= 26
        and kw.any_near(("routing", "account"), start, end)
        and (_aba_ok(digits[:9]) or _aba_ok(digits[-9:]))
    ):
        return SuppressedKind.BANK_ACCOUNT
    if 10 <= n <= 34 and kw.near("iban", start, end):
        return SuppressedKind.IBAN
    if n == 9 and kw.near("ssn", start, end):
        return SuppressedKind.TAX_ID
    if 8 <= n <= 12 and kw.any_near(("taxid", "vat"), start, end):
        return SuppressedKind.TAX_ID
    return None


def _shape_kind(run: _Run) -> SuppressedKind | None:
    if any(t.spoken for t in run.toks):
        return None
    lengths = tuple(len(t.digits) for t in run.toks)
    if lengths == (3, 2, 4) and all(s.strip() in ("", "-", "–") for s in run.seps):
        return SuppressedKind.TAX_ID  # SSN, and ITIN (9xx-7x-xxxx) which shares the shape
    if lengths == (2, 7) and run.seps[0].strip() in ("-", "–"):
        return SuppressedKind.TAX_ID  # EIN
    return None


class _Redactor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.kw = _Keywords(text)
        self.spans: list[_Span] = []
        self.flow = _Flow()

    def run(self) -> None:
        text = self.text
        self._written_shapes()
        taken = _merge([(s.start, s.end) for s in self.spans])
        slashes = [
            _SlashExpiry(m.start(), m.end())
            for m in _SLASH_EXPIRY.finditer(text)
            if _outside(taken, m.start(), m.end())
        ]
        blocked = _merge([*taken, *_barriers(text), *((s.start, s.end) for s in slashes)])
        toks = [_tok(m) for m in _TOKEN.finditer(text)]
        toks = [t for t in toks if _outside(blocked, t.start, t.end)]
        items: list[_Run | _SlashExpiry] = [*_runs(text, toks), *slashes]
        items.sort(key=lambda item: item.start)
        for item in items:
            if isinstance(item, _SlashExpiry):
                self._slash_expiry(item)
            else:
                self._run(item)

    # IBANs and VAT IDs carry letters, so they are found on the raw text before digit runs are built.
    def _written_shapes(self) -> None:
        text = self.text
        taken_to = -1
        for m in _IBAN_HEAD.finditer(text):
            if m.start() < taken_to:
                continue
            end = self._iban_end(m)
            if end is not None:
                self.spans.append(_Span(m.start(), end, frozenset({SuppressedKind.IBAN})))
                taken_to = end
        taken = _merge([(s.start, s.end) for s in self.spans])
        for m in _VAT.finditer(text):
            if not _outside(taken, m.start(), m.end()):
                continue
            if m.group("sep") and not m.group("cc").isupper():
                continue  # "at 1249 2026" is English, "AT 12345678" may be a VAT ID
            end = self._vat_end(m)
            if end is not None and self.kw.any_near(("vat", "tax", "taxid"), m.start(), end):
                self.spans.append(_Span(m.start(), end, frozenset({SuppressedKind.TAX_ID})))
        taken = _merge([(s.start, s.end) for s in self.spans])
        for m in _MONTH_EXPIRY.finditer(text):
            keyword = self.kw.last_end_before("expiry", m.start(), _W_CARD)
            if keyword is not None and _outside(taken, m.start(), m.end()):
                self.spans.append(_Span(m.start(), m.end(), frozenset({SuppressedKind.CARD_EXPIRY})))

    def _iban_end(self, m: re.Match[str]) -> int | None:
        text = self.text
        cc_raw = m.group(1)
        cc = cc_raw.upper()
        length = _IBAN_LENGTHS.get(cc)
        if length is None or (m.group(2) and not cc_raw.isupper()):
            return None
        need, pos, size = length - 4, m.end(), len(text)
        body: list[str] = []
        while need and pos < size:
            ch = text[pos]
            if ch.isascii() and ch.isalnum():
                body.append(ch)
                need -= 1
                pos += 1
            elif ch in " -" and pos + 1 < size and text[pos + 1].isascii() and text[pos + 1].isalnum():
                # Printed IBANs break every 4 characters; anywhere else only a break between digits is
                # believable ("37040044 0532013000"), otherwise the next words would be read as letters.
                if len(body) % 4 and not (text[pos - 1].isdigit() and text[pos + 1].isdigit()):
                    break
                pos += 1
            else:
                break
        if need or (pos < size and text[pos].isalnum()):
            return None
        if _mod97("".join(body).upper() + cc + m.group(3)) != 1:
            return None
        return pos

    def _vat_end(self, m: re.Match[str]) -> int | None:
        body_start = m.start("body")
        chunks = list(_VAT_CHUNK.finditer(m.group("body")))
        # Trailing chunks may be a year or a quantity that happens to follow: the longest prefix of
        # chunks that fits a VAT ID wins.
        for k in range(len(chunks), 0, -1):
            compact = "".join(c.group() for c in chunks[:k])
            if 8 <= len(compact) <= 12 and sum(ch.isdigit() for ch in compact) >= 7:
                return body_start + chunks[k - 1].end()
        return None

    def _slash_expiry(self, item: _SlashExpiry) -> None:
        flow = self.flow
        keyword = self.kw.last_end_before("expiry", item.start, _W_CARD) is not None
        chained = flow.cardish and _tight_gap(self.text, flow.last_end, item.start)
        if keyword or chained:
            self.spans.append(_Span(item.start, item.end, frozenset({SuppressedKind.CARD_EXPIRY})))
        self._settle(item.end, cardish=keyword or chained)

    def _run(self, run: _Run) -> None:
        toks = run.toks
        iban = self._spoken_iban(run)
        if iban is not None:
            start, used = iban
            self.spans.append(_Span(start, toks[used - 1].end, frozenset({SuppressedKind.IBAN})))
            self._settle(toks[used - 1].end)
            if used < len(toks):
                self._run(_Run(toks[used:], run.seps[used:]))
            return
        digits = run.digits
        if not _is_date(run):
            flow = self.flow
            after_bank = flow.bank and run.start - flow.last_end <= _W_BANK
            kind = _keyword_kind(self.kw, run, digits, after_bank)
            if kind is not None:
                self._add(run.start, run.end, kind)
                self._settle(run.end, bank=kind is SuppressedKind.BANK_ACCOUNT)
                return
        windows = _card_windows(run)
        if windows:
            self._cards(run, windows)
            return
        if len(digits) < 3:
            return
        detail = self._card_detail_kind(run, digits)
        if detail is not None:
            self.spans.append(_Span(run.start, run.end, detail))
            self._settle(run.end, cardish=True)
            return
        shape = _shape_kind(run)
        if shape is not None:
            self._add(run.start, run.end, shape)
        self._settle(run.end)

    def _spoken_iban(self, run: _Run) -> tuple[int, int] | None:
        """An IBAN whose country code stands apart from its digits: returns (span start, tokens used)."""
        before = _IBAN_CC_BEFORE.search(self.text, max(0, run.start - 8), run.start)
        if before is None:
            return None
        cc = before.group(1) + before.group(2)
        length = _IBAN_LENGTHS.get(cc)
        if length is None:
            return None
        need, total = length - 2, 0
        for used, tok in enumerate(run.toks, start=1):
            total += len(tok.digits)
            if total == need:
                digits = "".join(t.digits for t in run.toks[:used])
                if _mod97(digits[2:] + cc + digits[:2]) == 1:
                    return before.start(), used
                return None
            if total > need:
                return None
        return None

    def _cards(self, run: _Run, windows: list[tuple[int, int]]) -> None:
        toks = run.toks
        covered_to = -1
        for n, (i, j) in enumerate(windows):
            number = "".join(t.digits for t in toks[i : j + 1])
            self.spans.append(
                _Span(toks[i].start, toks[j].end, frozenset({SuppressedKind.CARD_NUMBER}), number[-4:])
            )
            covered_to = j
            # Whatever follows a card in the same breath, up to the next card, is its expiry and/or CVV.
            stop = windows[n + 1][0] if n + 1 < len(windows) else len(toks)
            if stop > j + 1:
                tail = "".join(t.digits for t in toks[j + 1 : stop])
                if 3 <= len(tail) <= 8:
                    self.spans.append(_Span(toks[j + 1].start, toks[stop - 1].end, _tail_kinds(tail)))
                    covered_to = stop - 1
        self._settle(run.end, cardish=covered_to == len(toks) - 1)

    def _card_detail_kind(self, run: _Run, digits: str) -> frozenset[SuppressedKind] | None:
        flow, n = self.flow, len(digits)
        # A keyword answers the first number after it; "cvv 123 and order 4567" keeps the order number.
        cvv_at = self.kw.last_end_before("cvv", run.start, _W_CARD)
        if flow.cardish:
            weak = self.kw.last_end_before("code", run.start, _W_CARD)
            if weak is not None and (cvv_at is None or weak > cvv_at):
                cvv_at = weak
        exp_at = self.kw.last_end_before("expiry", run.start, _W_CARD)
        cvv_ok = cvv_at is not None and cvv_at >= flow.last_end and 3 <= n <= 4
        exp_ok = exp_at is not None and exp_at >= flow.last_end and _valid_expiry(digits)
        if cvv_ok and exp_ok:
            # "expiry and cvv: 0427, 123": the nearer keyword names the value.
            assert cvv_at is not None and exp_at is not None
            cvv_ok = cvv_at >= exp_at
            exp_ok = not cvv_ok
        if cvv_ok:
            return frozenset({SuppressedKind.CARD_SECURITY_CODE})
        if exp_ok:
            return frozenset({SuppressedKind.CARD_EXPIRY})
        if n <= 8 and flow.cardish and _tight_gap(self.text, flow.last_end, run.start):
            return _tail_kinds(digits)
        return None

    def _settle(self, end: int, *, cardish: bool = False, bank: bool = False) -> None:
        self.flow.last_end, self.flow.cardish, self.flow.bank = end, cardish, bank

    def _add(self, start: int, end: int, kind: SuppressedKind) -> None:
        self.spans.append(_Span(start, end, frozenset({kind})))

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


def _marker(span: _Span) -> str:
    markers: list[str] = []
    if SuppressedKind.CARD_NUMBER in span.kinds and span.last4 and len(span.kinds) == 1:
        return f"[card ending {span.last4}]"
    for kind in SuppressedKind:
        if kind in span.kinds:
            markers.append(f"[redacted {kind.value}]")
    return " ".join(markers)


# --- public API ---------------------------------------------------------------------------------------
def redact(text: str) -> Redacted:
    """Replace card numbers, security codes, expiries, IBANs, bank and tax IDs with markers.

    A card becomes ``[card ending 4242]``; everything else ``[redacted <kind>]``. The returned kinds
    say what was suppressed, never the values.
    """
    if not text or not _MAYBE_NUMBER.search(text):
        return Redacted(text, _EMPTY)
    redactor = _Redactor(text)
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
