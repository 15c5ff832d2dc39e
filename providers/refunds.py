"""What the card's refund action needs from the platform that holds the card payments.

Stripe is the one today (providers.stripe, behind MoonClerk); bot.actions.refunds is written against
this protocol, so another processor is one module implementing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol

from providers.base import Provider
from providers.stripe import Charge, Refund, is_charge_id, is_payment_intent_id


def is_charge_reference(text: str | None) -> bool:
    """A Stripe charge (`ch_`, `py_` for bank payments) or PaymentIntent (`pi_`) ID, as calls and
    MoonClerk's `charge_reference` carry them."""
    value = (text or "").strip()
    return is_charge_id(value) or is_payment_intent_id(value)


class RefundProvider(Provider, Protocol):
    def get_charge(self, charge_id: str) -> Charge: ...

    def list_charges(self, customer: str, *, limit: int = 100) -> list[Charge]: ...

    def create_refund(self, charge_id: str, amount: Decimal, currency: str, reason: str, *,
                      idempotency_key: str, metadata: Mapping[str, str]) -> Refund:
        """Refund `amount` of the charge. The same key always means the same refund: the provider
        returns the first answer again instead of refunding twice."""
        ...

    def find_refund(self, charge_id: str, call_id: str) -> list[Refund]:
        """The charge's refunds that finance-desk made for this DialNexa call (by their metadata)."""
        ...
