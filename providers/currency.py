"""ISO 4217 currency codes and minor-unit exponents, so amounts never pass through float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# Active ISO 4217 codes. Exponents default to 2; the exceptions are listed below.
ISO_4217 = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN
    BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS
    GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW
    KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD
    NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD
    SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES
    VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)

_EXPONENTS = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}

# Spoken or written names callers and analysis models use instead of the code.
_ALIASES = {
    "$": "USD", "US$": "USD", "DOLLAR": "USD", "DOLLARS": "USD", "USD$": "USD",
    "€": "EUR", "EURO": "EUR", "EUROS": "EUR",
    "£": "GBP", "POUND": "GBP", "POUNDS": "GBP", "STERLING": "GBP",
    "₹": "INR", "RUPEE": "INR", "RUPEES": "INR", "RS": "INR",
    "¥": "JPY", "YEN": "JPY",
    "C$": "CAD", "CA$": "CAD", "A$": "AUD", "AU$": "AUD",
}


def normalise_currency(value: object) -> str | None:
    """Return the ISO 4217 code for a code, symbol or common name, or None if unknown."""
    if not isinstance(value, str):
        return None
    token = value.strip().upper()
    if token in ISO_4217:
        return token
    return _ALIASES.get(token)


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def parse_amount(value: object) -> Decimal | None:
    """Parse an amount written as a string or int (thousands separators allowed) into a Decimal.

    Floats are accepted only because JSON analysis fields arrive as numbers; they are converted
    through their shortest repr so 49.99 stays 49.99 and never becomes 49.98999...
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip().replace(",", "").replace(" ", "")
        for symbol in ("$", "€", "£", "₹", "¥"):
            text = text.replace(symbol, "")
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
    else:
        return None
    if not number.is_finite():
        return None
    return number


def quantize(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-exponent(currency)))


def format_amount(amount: Decimal, currency: str) -> str:
    """Human form used on cards and notes: `1,249.00 USD`."""
    return f"{quantize(amount, currency):,} {currency}"
