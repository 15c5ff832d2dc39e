"""The Stripe status line on the card and in `/finance lookup` answers. Pure.

It reads the JSON bot.stripe_status stores (`Case.stripe_status`): every value in it came from Stripe,
so each goes through blocks.format, IDs in code spans, the hosted invoice link only through `link`
(http(s) only, encoded). A stored value of the wrong type is skipped, never shown raw.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from blocks.format import code, inline, link, money, mrkdwn
from blocks.limits import truncate_mrkdwn

STATUS_BUDGET: Final = 700
REASON_BUDGET: Final = 200
ID_BUDGET: Final = 60
WORD_BUDGET: Final = 40
LINK_BUDGET: Final = 400
LINK_LABEL: Final = "open"
UNAVAILABLE: Final = "Stripe unavailable"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def _word(value: Any) -> str:
    """A Stripe status (`past_due`) as words ("past due"), inert."""
    text = _text(value)
    return inline(text.replace("_", " "), WORD_BUDGET) if text else "status unknown"


def _money(amount: Any, currency: Any) -> str | None:
    value = _decimal(amount)
    if value is None:
        return None
    return money(value, _text(currency), WORD_BUDGET)


def _charge(charge: Mapping[str, Any]) -> str:
    parts = []
    ident = _text(charge.get("id"))
    head = f"charge {code(ident, ID_BUDGET)}" if ident else "charge"
    amount = _money(charge.get("amount"), charge.get("currency"))
    parts.append(f"{head} {_word(charge.get('status'))}" + (f" ({amount})" if amount else ""))
    refunded = _decimal(charge.get("amount_refunded"))
    total = _decimal(charge.get("amount"))
    if refunded is not None and refunded > 0:
        shown = _money(refunded, charge.get("currency"))
        whole = total is not None and refunded >= total
        parts.append(f"{shown} refunded" + (" (in full)" if whole else ""))
    if charge.get("disputed") is True:
        state = _text(charge.get("dispute_status"))
        parts.append(f"disputed ({_word(state)})" if state else "disputed")
    return " · ".join(parts)


def _invoice(invoice: Mapping[str, Any]) -> str:
    number = _text(invoice.get("number")) or _text(invoice.get("id"))
    text = "latest invoice" + (f" {code(number, ID_BUDGET)}" if number else "") + f" {_word(invoice.get('status'))}"
    due = _money(invoice.get("amount_due"), invoice.get("currency"))
    if due:
        text += f", {due} due"
    url = _text(invoice.get("hosted_invoice_url"))
    made = link(url, LINK_LABEL) if url else None
    if made is not None and len(made) <= LINK_BUDGET:
        # A cut URL would be a broken link; a long or non-web one is simply not offered.
        text += f" {made}"
    return text


def stripe_status_text(status: Mapping[str, Any] | None) -> str | None:
    """"Stripe: charge `ch_…` succeeded (25.00 USD) · 10.00 USD refunded · disputed (needs response) ·
    subscription past due · latest invoice `INV-1` open, 20.00 USD due <url|open>", or
    "Stripe unavailable (…)"; None when there is no status (nothing to show)."""
    if not isinstance(status, Mapping) or not status:
        return None
    if "unavailable" in status:
        reason = _text(status.get("unavailable"))
        return UNAVAILABLE + (f" ({inline(reason, REASON_BUDGET)})" if reason else "")
    parts: list[str] = []
    charge = status.get("charge")
    if isinstance(charge, Mapping):
        parts.append(_charge(charge))
    subscription = status.get("subscription")
    if isinstance(subscription, Mapping):
        parts.append(f"subscription {_word(subscription.get('status'))}")
    invoice = status.get("latest_invoice")
    if isinstance(invoice, Mapping):
        parts.append(_invoice(invoice))
    missing = status.get("missing")
    if isinstance(missing, list | tuple):
        parts += [f"{inline(item, 80)} not found" for item in missing[:3] if _text(item)]
    if not parts:
        parts.append("no charge, subscription or invoice on record")
    return truncate_mrkdwn("Stripe: " + " · ".join(parts), STATUS_BUDGET)


def stripe_status_block(status: Mapping[str, Any] | None, block_id: str) -> dict[str, Any] | None:
    """The status as one context block (the card's), or None when there is nothing to show."""
    text = stripe_status_text(status)
    if text is None:
        return None
    return {"type": "context", "block_id": block_id, "elements": [mrkdwn(text)]}
