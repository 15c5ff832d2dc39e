"""MoonClerk API client (shared/reference/providers.md §1): read-only, JSON, count/offset paging.

MoonClerk has no write API: no notes, refunds or cancellations (§1.6; the 2015 PATCH draft never
shipped). A "MoonClerk note" in finance-desk is therefore an operational summary that finance-desk
keeps against a *verified* MoonClerk record: the caller first confirms the record exists with
`get_customer` or `get_payment` (a `NotFound` means it does not), then records the note on its own
side, linking to `customer_url(customer)` so a human can act in the MoonClerk dashboard.

Money fields are integer minor units exactly as MoonClerk sends them; each model also offers exact
`Decimal` / `Money` views paired with the record's ISO 4217 currency. Card data is limited to
`type`, `last4`, `brand` (and `bank_name` for ACH): expiry dates are dropped on parsing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, TypeVar

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from providers.base import DEFAULT_TIMEOUT, HttpClient, Money
from providers.currency import normalise_currency

ACCEPT: Final = "application/vnd.moonclerk+json;version=1"
MAX_PAGE_SIZE: Final = 100
CUSTOMER_STATUSES: Final = frozenset({"active", "canceled", "expired", "past_due", "pending", "unpaid"})
PAYMENT_STATUSES: Final = frozenset({"successful", "refunded", "failed"})

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")

M = TypeVar("M", bound=BaseModel)


def _currency(value: object) -> object:
    if isinstance(value, str):
        return normalise_currency(value) or value.strip().upper()
    return value


# Stored as its ISO 4217 code when recognisable ("usd" -> "USD"), else upper-cased as sent.
CurrencyCode = Annotated[str, BeforeValidator(_currency)]


def _money(minor_units: int | None, currency: str | None) -> Money | None:
    if minor_units is None or currency is None:
        return None
    return Money.from_minor(minor_units, currency)


class _Model(BaseModel):
    # Unknown fields are dropped rather than kept: MoonClerk objects carry card and payer details,
    # and only what is modelled here should ever surface in finance-desk.
    model_config = ConfigDict(extra="ignore", frozen=True)


class PaymentMethod(_Model):
    """The card or bank account on file, reduced to what identifies it to a human."""

    type: str | None = None
    last4: str | None = None
    brand: str | None = None
    bank_name: str | None = None


class CustomField(_Model):
    id: int | None = None
    type: str | None = None
    response: Any = None


class Coupon(_Model):
    code: str | None = None
    duration: str | None = None
    amount_off: int | None = None
    currency: CurrencyCode | None = None
    percent_off: Decimal | None = None
    duration_in_months: int | None = None
    max_redemptions: int | None = None
    redeem_by: datetime | None = None

    @property
    def amount_off_money(self) -> Money | None:
        return _money(self.amount_off, self.currency)


class Discount(_Model):
    coupon: Coupon | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class Checkout(_Model):
    """Amounts at checkout, in minor units of the owning record's currency."""

    amount_due: int | None = None
    coupon_amount: int | None = None
    coupon_code: str | None = None
    date: datetime | None = None
    fee: int | None = None
    subtotal: int | None = None
    token: str | None = None
    total: int | None = None
    trial_period_days: int | None = None
    upfront_amount: int | None = None


class Plan(_Model):
    id: int | None = None
    plan_reference: str | None = None
    amount: int | None = None
    amount_description: str | None = None
    currency: CurrencyCode | None = None
    interval: str | None = None
    interval_count: int | None = None

    @property
    def money(self) -> Money | None:
        return _money(self.amount, self.currency)

    @property
    def amount_decimal(self) -> Decimal | None:
        money = self.money
        return money.amount if money else None


class Subscription(_Model):
    id: int | None = None
    subscription_reference: str | None = None
    status: str | None = None
    start: datetime | None = None
    first_payment_attempt: datetime | None = None
    next_payment_attempt: datetime | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    trial_start: datetime | None = None
    trial_end: datetime | None = None
    trial_period_days: int | None = None
    expires_at: datetime | None = None
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    plan: Plan | None = None


class _WithPaymentMethod(_Model):
    payment_method: PaymentMethod | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_payment_source(cls, data: Any) -> Any:
        # Before the 2023 docs refresh the card object was called `payment_source` (providers.md §1.5);
        # a null `payment_method` next to it must not hide it.
        if isinstance(data, Mapping) and data.get("payment_method") is None and data.get("payment_source"):
            return {**data, "payment_method": data["payment_source"]}
        return data


class Customer(_WithPaymentMethod):
    """A MoonClerk customer: the customer, its subscription and its plan in one object."""

    id: int
    account_balance: int | None = None
    name: str | None = None
    email: str | None = None
    custom_id: str | None = None
    customer_reference: str | None = None
    delinquent: bool | None = None
    management_url: str | None = None
    form_id: int | None = None
    discount: Discount | None = None
    custom_fields: dict[str, CustomField] = Field(default_factory=dict)
    checkout: Checkout | None = None
    subscription: Subscription | None = None

    @property
    def status(self) -> str | None:
        """The subscription status the `status` list filter matches."""
        return self.subscription.status if self.subscription else None

    @property
    def plan(self) -> Plan | None:
        return self.subscription.plan if self.subscription else None

    @property
    def currency(self) -> str | None:
        """A customer has no currency of its own; its plan's is the only one on record."""
        plan = self.plan
        return plan.currency if plan else None

    @property
    def account_balance_money(self) -> Money | None:
        return _money(self.account_balance, self.currency)


class Payment(_WithPaymentMethod):
    id: int
    date: datetime | None = None
    status: str | None = None
    currency: CurrencyCode
    amount: int
    fee: int | None = None
    amount_refunded: int | None = None
    amount_description: str | None = None
    name: str | None = None
    email: str | None = None
    form_id: int | None = None
    custom_id: str | None = None
    charge_reference: str | None = None
    invoice_reference: str | None = None
    customer_id: int | None = None
    customer_reference: str | None = None
    custom_fields: dict[str, CustomField] = Field(default_factory=dict)
    checkout: Checkout | None = None
    coupon: Coupon | None = None

    @property
    def money(self) -> Money:
        return Money.from_minor(self.amount, self.currency)

    @property
    def amount_decimal(self) -> Decimal:
        return self.money.amount

    @property
    def fee_decimal(self) -> Decimal | None:
        money = _money(self.fee, self.currency)
        return money.amount if money else None

    @property
    def amount_refunded_decimal(self) -> Decimal | None:
        money = _money(self.amount_refunded, self.currency)
        return money.amount if money else None


class Form(_Model):
    id: int
    title: str | None = None
    access_token: str | None = None
    currency: CurrencyCode | None = None
    payment_volume: int | None = None
    successful_checkout_count: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def payment_volume_money(self) -> Money | None:
        return _money(self.payment_volume, self.currency)


DayLike = date | str


def _day(name: str, value: DayLike | None) -> str | None:
    """MoonClerk's date filters take YYYY-MM-DD, read as a UTC day."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _DAY.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise ValueError(f"{name} must be a date (YYYY-MM-DD)")


def _record_id(name: str, value: object) -> int:
    # Only a positive int reaches the URL path, so no caller text can reshape the request.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive whole number")
    return value


def _status(value: str | None, allowed: frozenset[str], what: str) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        raise ValueError(f"{what} status must be one of {', '.join(sorted(allowed))}")
    return value


class MoonClerkClient:
    """Read-only MoonClerk client. Every call is a GET and is retried on 429/5xx."""

    name: str = "moonclerk"

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.moonclerk.com",
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        *,
        max_attempts: int = 4,
    ) -> None:
        if not api_key:
            raise ValueError("a MoonClerk API key is required")
        self._http = HttpClient(
            self.name,
            base_url,
            label="MoonClerk",
            headers={"Authorization": f"Token token={api_key}", "Accept": ACCEPT},
            timeout=timeout,
            sleep=sleep,
            max_attempts=max_attempts,
            secrets=(api_key,),
        )

    def __repr__(self) -> str:
        return f"MoonClerkClient(base_url={self._http.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MoonClerkClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- single records

    def get_customer(self, customer_id: int) -> Customer:
        return self._one(f"/customers/{_record_id('customer_id', customer_id)}", "customer", Customer)

    def get_payment(self, payment_id: int) -> Payment:
        return self._one(f"/payments/{_record_id('payment_id', payment_id)}", "payment", Payment)

    def get_form(self, form_id: int) -> Form:
        return self._one(f"/forms/{_record_id('form_id', form_id)}", "form", Form)

    @staticmethod
    def customer_url(customer: Customer) -> str | None:
        """Where a human manages this customer in MoonClerk."""
        return customer.management_url

    # ----------------------------------------------------------------- lists

    def list_customers(
        self,
        *,
        status: str | None = None,
        form_id: int | None = None,
        checkout_from: DayLike | None = None,
        checkout_to: DayLike | None = None,
        next_payment_from: DayLike | None = None,
        next_payment_to: DayLike | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[Customer]:
        filters = {
            "status": _status(status, CUSTOMER_STATUSES, "customer"),
            "form_id": None if form_id is None else _record_id("form_id", form_id),
            "checkout_from": _day("checkout_from", checkout_from),
            "checkout_to": _day("checkout_to", checkout_to),
            "next_payment_from": _day("next_payment_from", next_payment_from),
            "next_payment_to": _day("next_payment_to", next_payment_to),
        }
        return self._pages("/customers", "customers", Customer, filters, page_size)

    def customers_page(self, *, offset: int, page_size: int = MAX_PAGE_SIZE) -> list[Customer]:
        """One page of the customer list at `offset`: a sync that stops can resume where it was.
        A page shorter than `page_size` is the last one."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError("offset must be a whole number ≥ 0")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        body = self._http.request("GET", "/customers", params={"count": page_size, "offset": offset}, retry=True)
        rows = body.get("customers") if isinstance(body, Mapping) else None
        if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
            raise self._http.error("MoonClerk's answer had no customers list.", status=200)
        return [self._parse(Customer, row, "customers") for row in rows]

    def list_payments(
        self,
        *,
        status: str | None = None,
        form_id: int | None = None,
        customer_id: int | None = None,
        date_from: DayLike | None = None,
        date_to: DayLike | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[Payment]:
        filters = {
            "status": _status(status, PAYMENT_STATUSES, "payment"),
            "form_id": None if form_id is None else _record_id("form_id", form_id),
            "customer_id": None if customer_id is None else _record_id("customer_id", customer_id),
            "date_from": _day("date_from", date_from),
            "date_to": _day("date_to", date_to),
        }
        return self._pages("/payments", "payments", Payment, filters, page_size)

    def list_forms(self, *, page_size: int = MAX_PAGE_SIZE) -> Iterator[Form]:
        return self._pages("/forms", "forms", Form, {}, page_size)

    # ----------------------------------------------------------------- plumbing

    def _one(self, path: str, key: str, model: type[M]) -> M:
        body = self._http.request("GET", path, retry=True)
        row = body.get(key) if isinstance(body, Mapping) else None
        if not isinstance(row, Mapping):
            raise self._http.error(f"MoonClerk's answer had no {key} object.", status=200)
        return self._parse(model, row, key)

    def _pages(
        self, path: str, key: str, model: type[M], filters: Mapping[str, str | int | None], page_size: int
    ) -> Iterator[M]:
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        # Validated eagerly above; the generator below only runs (and sends requests) when iterated.
        return self._iterate(path, key, model, dict(filters), page_size)

    def _iterate(
        self, path: str, key: str, model: type[M], filters: dict[str, str | int | None], page_size: int
    ) -> Iterator[M]:
        offset = 0
        while True:
            body = self._http.request("GET", path, params={**filters, "count": page_size, "offset": offset},
                                      retry=True)
            rows = body.get(key) if isinstance(body, Mapping) else None
            if not isinstance(rows, list):
                raise self._http.error(f"MoonClerk's answer had no {key} list.", status=200)
            for row in rows:
                if not isinstance(row, Mapping):
                    raise self._http.error(f"MoonClerk's {key} list held something that is not a record.",
                                           status=200)
                yield self._parse(model, row, key)
            # The envelope has no total or has_more (providers.md §1.3): a short page is the last one.
            if len(rows) < page_size:
                return
            offset += page_size

    def _parse(self, model: type[M], row: Mapping[str, Any], key: str) -> M:
        try:
            return model.model_validate(row)
        except ValidationError as exc:
            # Only field locations: the values may be payer details.
            fields = sorted({".".join(str(p) for p in error["loc"]) for error in exc.errors()})
            raise self._http.error(
                f"MoonClerk sent a {key.rstrip('s')} record finance-desk could not read (fields: {', '.join(fields)}).",
                status=200,
            ) from None
