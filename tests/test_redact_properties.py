"""Redaction against what people and speech-to-text really write, and in time linear in the input.

The generators here split sensitive numbers into groups and join them with every separator seen in the
wild (full stops for pauses, commas, two spaces, the narrow no-break space of French grouping, zero-width
characters), in ASCII, full-width, Arabic-Indic and Devanagari digits, inside prose. Whatever comes out
must hold no readable chunk of the number. The last property doubles hostile inputs and checks that the
cost about doubles too: ratios, never absolute timings, so a slow or busy machine does not fail it.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.triage.redact import SuppressedKind, card_number_in, normalise, redact, redact_url
from tests.linear import BOUND, cost, doubling_ratio

K = SuppressedKind
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- scripts and separators ----------------------------------------------------------------------------
_ZERO = {"ascii": 0x30, "fullwidth": 0xFF10, "arabic-indic": 0x0660, "devanagari": 0x0966}


def in_script(digits: str, script: str) -> str:
    return "".join(chr(_ZERO[script] + int(d)) for d in digits)


# Every separator a card's groups were seen with; zero-width ones vanish and glue the groups back.
_SEPARATORS = (
    " ", ".", ",", "-", "/", "\u202f", "\u00a0", "\u2009", "\u200b", "\u2060", "\ufeff", "\u00ad", "  ",
    ". ", ", ", " - ", " / ", " . ", "\u202f\u200b",
)


def _joined(draw: st.DrawFn, groups: list[str], separators: tuple[str, ...] = _SEPARATORS) -> str:
    script = draw(st.sampled_from(sorted(_ZERO)))
    per_group = draw(st.booleans())  # a transcript may switch scripts mid-number
    out = ""
    for k, group in enumerate(groups):
        if k:
            out += draw(st.sampled_from(separators))
        out += in_script(group, draw(st.sampled_from(sorted(_ZERO))) if per_group else script)
    return out


def _split(draw: st.DrawFn, digits: str, min_size: int) -> list[str]:
    """Groups of at least `min_size` digits (the last may be shorter), as people group numbers."""
    groups: list[str] = []
    pos = 0
    while pos < len(digits):
        size = draw(st.integers(min_size, max(min_size, 6)))
        groups.append(digits[pos : pos + size])
        pos += size
    return groups


def digits_left(text: str) -> str:
    """Every ASCII digit still in the output, our own markers set aside."""
    for marker in ("[card ending ", "[redacted "):
        while marker in text:
            start = text.index(marker)
            text = text[:start] + " " + text[text.index("]", start) + 1 :]
    return "".join(ch for ch in text if "0" <= ch <= "9")


def assert_no_chunk(secret: str, left: str, size: int = 6) -> None:
    for i in range(len(secret) - size + 1):
        assert secret[i : i + size] not in left, (secret, left)


# --- generators ----------------------------------------------------------------------------------------
def luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch)
        if i % 2 == 0:
            v = v * 2 - 9 if v > 4 else v * 2
        total += v
    return body + str((10 - total % 10) % 10)


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    prefix, length = draw(
        st.sampled_from([("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
                         ("34", 15), ("37", 15)])
    )
    body = prefix + draw(st.text("0123456789", min_size=length - 1 - len(prefix), max_size=length - 1 - len(prefix)))
    return luhn_complete(body)


_PROSE_BEFORE = ("", "my card is ", "Card number: ", "User: sure, it's ", "charge ", "Visa-", "visa ", "(",
                 "the number is\n", "« ", "card:", "Mastercard ")
_PROSE_AFTER = ("", ".", " thanks", ", is that ok?", " and that's it", ")", " »", "\nAgent: thank you", "!")


@PROPERTY
@given(data=st.data(), card=card_numbers())
def test_cards_never_survive_any_separator_or_script(data: st.DataObject, card: str) -> None:
    shape = data.draw(st.sampled_from(("fours", "amex", "free")))
    if shape == "fours":
        groups = [card[i : i + 4] for i in range(0, len(card), 4)]
    elif shape == "amex":
        groups = [card[:4], card[4:10], card[10:]]
    else:
        groups = _split(data.draw, card, 3)
    shown = _joined(data.draw, groups)
    text = data.draw(st.sampled_from(_PROSE_BEFORE)) + shown + data.draw(st.sampled_from(_PROSE_AFTER))
    result = redact(text)
    assert K.CARD_NUMBER in result.kinds, (text, result.text)
    assert normalise(result.text) == result.text
    left = digits_left(result.text)
    assert card not in left
    assert_no_chunk(card[:-4], left)


@st.composite
def ibans(draw: st.DrawFn) -> str:
    formats = {"DE": "n" * 18, "GB": "a" * 4 + "n" * 14, "FR": "n" * 10 + "c" * 11 + "n" * 2, "NL": "a" * 4 + "n" * 10,
               "ES": "n" * 20, "BE": "n" * 12}
    charsets = {"n": "0123456789", "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "c": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
    country = draw(st.sampled_from(sorted(formats)))
    bban = "".join(draw(st.sampled_from(charsets[kind])) for kind in formats[country])
    check = 98 - int("".join(str(int(ch, 36)) for ch in bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


@PROPERTY
@given(data=st.data(), iban=ibans())
def test_ibans_never_survive_any_separator(data: st.DataObject, iban: str) -> None:
    groups = [iban[i : i + 4] for i in range(0, len(iban), 4)]
    seps = (" ", "-", ".", "  ", ". ", "\u202f", "\u00a0", "\u200b", "/", ", ")
    shown = groups[0]
    for group in groups[1:]:
        shown += data.draw(st.sampled_from(seps)) + group
    if data.draw(st.booleans()):
        shown = shown.translate({ord(d): chr(0xFF10 + int(d)) for d in "0123456789"})
    prefix = data.draw(st.sampled_from(("", "IBAN ", "my IBAN is ", "please refund to ", "IBAN: ")))
    text = prefix + shown + data.draw(st.sampled_from(_PROSE_AFTER))
    result = redact(text)
    assert K.IBAN in result.kinds, (text, result.text)
    compact = "".join(ch for ch in digits_left_keep_letters(result.text).upper() if ch.isalnum())
    assert not any(iban[i : i + 6] in compact for i in range(len(iban) - 5)), (text, result.text)


def digits_left_keep_letters(text: str) -> str:
    for marker in ("[card ending ", "[redacted "):
        while marker in text:
            start = text.index(marker)
            text = text[:start] + "|" + text[text.index("]", start) + 1 :]
    return text


@st.composite
def ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    return f"{area:03d}{draw(st.integers(1, 99)):02d}{draw(st.integers(1, 9999)):04d}"


@PROPERTY
@given(data=st.data(), ssn=ssns())
def test_ssns_after_their_keyword_never_survive_any_separator(data: st.DataObject, ssn: str) -> None:
    seps = (" ", ".", "-", ". ", " . ", "  ", "\u202f", "/", ", ")
    shown = ssn[:3] + data.draw(st.sampled_from(seps)) + ssn[3:5] + data.draw(st.sampled_from(seps)) + ssn[5:]
    keyword = data.draw(st.sampled_from(("SSN ", "SSN: ", "my social security number is ", "social is ",
                                         "ITIN ")))
    text = keyword + shown + data.draw(st.sampled_from(_PROSE_AFTER))
    result = redact(text)
    assert K.TAX_ID in result.kinds, (text, result.text)
    assert_no_chunk(ssn, digits_left(result.text), 4)


def aba_complete(body: str) -> str:
    total = sum(w * int(d) for w, d in zip((3, 7, 1, 3, 7, 1, 3, 7), body, strict=True))
    return body + str((10 - total % 10) % 10)


@PROPERTY
@given(data=st.data(), head=st.sampled_from(["01", "02", "03", "07", "11", "12", "21", "26", "32", "61", "67"]),
       rest=st.text("0123456789", min_size=6, max_size=6))
def test_routing_numbers_after_routing_never_survive(data: st.DataObject, head: str, rest: str) -> None:
    routing = aba_complete(head + rest)
    seps = (" ", ".", "-", ". ", "  ", "\u202f", "/", ", ", "\u200b")
    shown = routing[:3] + data.draw(st.sampled_from(seps)) + routing[3:6] + data.draw(st.sampled_from(seps))
    shown += routing[6:]
    keyword = data.draw(st.sampled_from(("routing ", "routing number: ", "my routing number is ", "ABA ")))
    text = keyword + shown + data.draw(st.sampled_from(_PROSE_AFTER))
    result = redact(text)
    assert K.BANK_ACCOUNT in result.kinds, (text, result.text)
    assert_no_chunk(routing, digits_left(result.text))


# --- what must come through -------------------------------------------------------------------------
@PROPERTY
@given(data=st.data(), number=st.integers(100, 99_999_999))
def test_a_reference_after_its_own_label_is_kept(data: st.DataObject, number: int) -> None:
    label = data.draw(st.sampled_from(("invoice", "invoice #", "order", "order no.", "payment", "ref", "ticket",
                                       "case #", "reference")))
    lead = data.draw(st.sampled_from((
        "the security code was wrong so ", "the card on file expires soon, please pay ", "cvv failed on ",
        "the expiry date was rejected for ", "my bank account was charged for ", "routing error on ",
    )))
    text = f"{lead}{label} {number} please"
    assert redact(text).text == text


@PROPERTY
@given(numbers=st.lists(st.integers(1000, 9999), min_size=2, max_size=8),
       sep=st.sampled_from((", ", ". ", ",", "; ", "  ", " / ")))
def test_lists_of_invoice_numbers_that_are_not_cards_are_kept(numbers: list[int], sep: str) -> None:
    joined = sep.join(str(n) for n in numbers)
    digits = joined.translate({ord(ch): None for ch in ", ./;"})
    card_like = any(
        luhn_complete(digits[i : j - 1]) == digits[i:j] and digits[i] in "23456"
        for i in range(len(digits)) for j in range(i + 13, min(len(digits), i + 19) + 1)
    )
    text = f"invoices {joined} are overdue"
    if not card_like:
        assert redact(text).text == text


@pytest.mark.parametrize(
    "text",
    ["amounts 49.99, 59.00, 45.50, 42.42", "$1,249.00 and $4,242.42", "on 22.11.2026 at 10:30",
     "2026-11-22, 2026-11-23, 2026-11-24", "invoices 1042, 1043, 1044, 1045 and 1046", "v1.2.3.4"],
)
def test_ordinary_punctuated_numbers_are_kept(text: str) -> None:
    assert redact(text).text == text


# --- helpers for the pipeline --------------------------------------------------------------------------
@PROPERTY
@given(data=st.data(), card=card_numbers())
def test_urls_carrying_a_card_are_dropped(data: st.DataObject, card: str) -> None:
    groups = [card[i : i + 4] for i in range(0, len(card), 4)]
    sep = data.draw(st.sampled_from(("/", "-", "_", "=", "&", ".", "%20", "+", "%2F", "")))
    where = data.draw(st.sampled_from(("path", "query", "fragment", "userinfo")))
    value = sep.join(groups)
    url = {
        "path": f"https://rec.example.com/calls/{value}/audio.mp3",
        "query": f"https://rec.example.com/r?id=abc&card={value}",
        "fragment": f"https://rec.example.com/r#{value}",
        "userinfo": f"https://{value}@rec.example.com/r",
    }[where]
    assert redact_url(url) == (None, frozenset({K.CARD_NUMBER})) or redact_url(url)[0] is None


@pytest.mark.parametrize(
    "url",
    [
        "https://rec.example.com/calls/123e4567-e89b-12d3-a456-426614174000.mp3",
        "https://rec.example.com/r/call_8f3a9c2e41?t=2026-11-22T10:30:00Z",
        "https://crm.example.com/contacts/8812",
    ],
)
def test_ordinary_urls_are_kept(url: str) -> None:
    assert redact_url(url) == (url, frozenset())


@pytest.mark.parametrize(
    "url",
    ["https://x.example.com/a?ssn=123-45-6789", "https://x.example.com/a?iban=DE89370400440532013000",
     "https://x.example.com/a?routing=021000021&account=12345678", "https://x.example.com/a?cvv=123"],
)
def test_urls_carrying_other_sensitive_values_are_dropped(url: str) -> None:
    link, kinds = redact_url(url)
    assert link is None and kinds


@pytest.mark.parametrize(
    ("value", "card"),
    [("4242424242424242.00", True), ("4242 4242 4242 4242,00", True), ("$4,242,424,242,424,242.00", True),
     ("１２４９.００", False), ("1249.00", False), ("59", False), ("4242424242424241.00", False)],
)
def test_card_number_in_amounts(value: str, card: bool) -> None:
    assert card_number_in(value) is card


def test_normalise_reads_as_a_person_does() -> None:
    assert normalise("４２\u200b４２\u202f٤٢٤٢\u00a0४२४२\u00ad1") == "4242 4242 42421"
    assert normalise("plain ascii") == "plain ascii"
    assert unicodedata.is_normalized("NFKC", normalise("ﬁ café ½"))


# --- linear time ---------------------------------------------------------------------------------------
# Units repeated into hostile inputs: long digit runs with every separator, repeated dates, "$" and
# junk, e-mail-like chains, VAT-like chunks, keywords followed by long gaps, spoken digits, mixes.
ADVERSARIAL = {
    "spaced digits": "1 ",
    "dashed digits": "1-",
    "dotted groups": "4242. ",
    "glued digits": "1.1.",
    "comma groups": "12, ",
    "slashes": "1/27 ",
    "dates": "2026-11-22 ",
    "dollar junk": "$1a2 ",
    "e-mail chain": "a@a.a@",
    "vat chunks": "VAT DE 1 ",
    "vat glued": "DE1 2 3 ",
    "keyword gap": "cvv " + " " * 60,
    "spoken digits": "four two ",
    "spoken pairs": "forty two double four ",
    "iban heads": "DE89 ",
    "month names": "expires may 27 ",
    "hyphen chains": "a-1-",
    "mix": "4242 four 2026-11-22 $1.00 DE89 cvv 123 routing 021000021 ",
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_doubling_a_hostile_input_about_doubles_its_cost(name: str) -> None:
    # 20 KB is large enough that a quadratic pass would show (it would cost about four times as much)
    # and small enough to keep the suite quick; the margin absorbs timer noise on a shared machine.
    assert doubling_ratio(redact, ADVERSARIAL[name], 20_000) < BOUND


if __name__ == "__main__":  # python -m tests.test_redact_properties [size]: a table of costs per input
    import sys

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for name, unit in ADVERSARIAL.items():
        text = unit * (size // len(unit))
        once, ratio = cost(redact, text), doubling_ratio(redact, unit, size, 1)
        print(f"{name:16s} {len(text) / 1000:7.0f} KB {once * 1000:8.1f} ms  x2: {ratio:.2f}")
