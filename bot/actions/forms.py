"""Validation of the money modals: every edit checked, errors shown in the modal next to the field."""

from __future__ import annotations

import re
from decimal import Decimal

from blocks.modals import CRYPTOS, FIAT_METHODS, REFUND_REASONS
from bot.actions.refunds import RefundRequest
from bot.actions.runner import InvoiceRequest, PayoutRequest
from providers.currency import exponent, normalise_currency, parse_amount
from providers.poof import address_problem
from providers.refunds import is_charge_reference

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_AMOUNT = Decimal("100000000")
# Ether has 18 decimals, the most of the cryptocurrencies offered.
MAX_CRYPTO_DECIMALS = 18

Values = dict[str, str | list[str] | None]


def _decimal(values: Values, key: str, errors: dict[str, str], *, example: str, places: int | None,
             places_error: str) -> Decimal | None:
    """A positive, plausible decimal from field `key` with at most `places` decimals; else an error."""
    raw = values.get(key)
    amount = parse_amount(raw) if isinstance(raw, str) else None
    if amount is None:
        errors[key] = f"Enter an amount such as {example}"
    elif amount <= 0:
        errors[key] = "The amount must be above zero"
    elif amount > MAX_AMOUNT:
        errors[key] = "That amount is implausibly large; check it"
    elif places is not None and -amount.as_tuple().exponent > places:  # type: ignore[operator]
        errors[key] = places_error
    else:
        return amount
    return None


def _amount(values: Values, currency: str | None, errors: dict[str, str]) -> Decimal | None:
    places = exponent(currency) if currency else None
    return _decimal(values, "amount", errors, example="149.00", places=places,
                    places_error=f"{currency} has at most {places} decimal places")


def _currency(values: Values, errors: dict[str, str]) -> str | None:
    raw = values.get("currency")
    currency = normalise_currency(raw) if isinstance(raw, str) else None
    if currency is None:
        errors["currency"] = "Enter an ISO 4217 currency code such as USD or EUR"
    return currency


def parse_invoice(values: Values) -> InvoiceRequest | dict[str, str]:
    errors: dict[str, str] = {}
    currency = _currency(values, errors)
    amount = _amount(values, currency, errors)
    method = values.get("method")
    if method not in FIAT_METHODS:
        errors["method"] = "Choose a payment method"
    send_to = values.get("send_to")
    if isinstance(send_to, str) and send_to.strip() and not _EMAIL.match(send_to.strip()):
        errors["send_to"] = "Enter an email address"
    if errors:
        return errors
    assert amount is not None and currency is not None and isinstance(method, str)
    override = values.get("override")
    return InvoiceRequest(amount=amount, currency=currency, method=method,
                          send_to=send_to.strip() if isinstance(send_to, str) and send_to.strip() else None,
                          override_recipient=isinstance(override, list) and "override" in override)


def parse_payout(values: Values) -> PayoutRequest | dict[str, str]:
    errors: dict[str, str] = {}
    currency = _currency(values, errors)
    amount = _amount(values, currency, errors)
    crypto = values.get("crypto")
    if crypto not in CRYPTOS:
        errors["crypto"] = "Choose a cryptocurrency"
    crypto_amount = _crypto_amount(values, errors)
    address = values.get("address")
    if not isinstance(address, str) or not address.strip():
        errors["address"] = "Enter the recipient's wallet address"
    elif isinstance(crypto, str):
        problem = address_problem(crypto, address.strip())
        if problem:
            errors["address"] = problem
    if errors:
        return errors
    assert amount is not None and currency is not None and crypto_amount is not None
    assert isinstance(crypto, str) and isinstance(address, str)
    override, identity = values.get("override"), values.get("override_identity")
    return PayoutRequest(amount=amount, currency=currency, crypto=crypto, crypto_amount=crypto_amount,
                         address=address.strip(),
                         override_recipient=isinstance(override, list) and "override" in override,
                         override_identity=isinstance(identity, list) and "override" in identity)


def _crypto_amount(values: Values, errors: dict[str, str]) -> Decimal | None:
    return _decimal(values, "crypto_amount", errors, example="0.85", places=MAX_CRYPTO_DECIMALS,
                    places_error=f"At most {MAX_CRYPTO_DECIMALS} decimal places")


# Stripe's smallest currency unit is at most 3 decimals; the charge's own currency is checked on submit.
MAX_REFUND_DECIMALS = 3


def parse_refund(values: Values) -> RefundRequest | dict[str, str]:
    errors: dict[str, str] = {}
    charge = values.get("charge")
    if not isinstance(charge, str) or not is_charge_reference(charge):
        errors["charge"] = "Choose the charge to refund"
    amount = _decimal(values, "amount", errors, example="49.00", places=MAX_REFUND_DECIMALS,
                      places_error=f"At most {MAX_REFUND_DECIMALS} decimal places")
    reason = values.get("reason")
    if reason not in REFUND_REASONS:
        errors["reason"] = "Choose a reason"
    if errors:
        return errors
    assert isinstance(charge, str) and amount is not None and isinstance(reason, str)
    return RefundRequest(charge=charge, amount=amount, reason=reason)
