"""A local MoonClerk API (read-only, per providers.md §1) seeded from the documented fixtures.

Point the MoonClerk client's base URL at `standin.url`; paths hang off the root exactly as on
api.moonclerk.com. Error bodies use the Stripe-style `{"error": {"message": ...}}` shape, which
providers.md §1.2 labels a guess: clients must not depend on more than the status code.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Final

from bot.standins.base import Recorded, Reply, StandIn, json_reply

ACCEPT: Final = "application/vnd.moonclerk+json;version=1"
DEFAULT_API_KEY: Final = "mc_test_key"

# Copied verbatim from providers.md §1.10 (official docs samples with comment lines removed), kept
# as JSON text so they can be diffed against the reference.
_CUSTOMER_JSON = """\
{
  "id": 523425,
  "account_balance": 0,
  "name": "Ryan Wood",
  "email": "ryan@moonclerk.com",
  "payment_method": {
    "type": "card",
    "last4": "4242",
    "exp_month": 12,
    "exp_year": 2018,
    "brand": "Visa"
  },
  "custom_id": "GHS430",
  "customer_reference": "cus_4SOZuEc4cxP5L7",
  "discount": {
    "coupon": {
      "code": "10off",
      "duration": "once",
      "amount_off": 1000,
      "currency": "USD",
      "percent_off": null,
      "duration_in_months": null,
      "max_redemptions": null,
      "redeem_by": null
    },
    "starts_at": "2013-04-12T20:05:37Z",
    "ends_at": "2013-05-12T20:05:37Z"
  },
  "delinquent": false,
  "management_url": "https://app.moonclerk.com/manage/xyz1234567",
  "custom_fields": {
    "shirt_size": {
      "id": 23452,
      "type": "string",
      "response": "XL"
    },
    "shipping_address": {
      "id": 23453,
      "type": "address",
      "response": {
        "line1": "123 Main St.",
        "line2": "Ste. 153",
        "city": "Greenville",
        "state": "SC",
        "postal_code": "29651",
        "country": "United States"
      }
    }
  },
  "form_id": 101,
  "checkout": {
    "amount_due": 1700,
    "coupon_amount": 1000,
    "coupon_code": "10off",
    "date": "2014-07-23T13:44:12Z",
    "fee": 200,
    "subtotal": 1000,
    "token": "YUAf1PJDe1Uho7CnQ1BVPuCz",
    "total": 1700,
    "trial_period_days": null,
    "upfront_amount": 500
  },
  "subscription": {
    "id": 98,
    "subscription_reference": "sub_3oLgqlp4MgTZC3",
    "status": "active",
    "start": "2014-07-23T13:44:16Z",
    "first_payment_attempt": "2014-07-23T13:44:16Z",
    "next_payment_attempt": "2014-08-23T13:44:16Z",
    "current_period_start": "2014-07-23T13:44:16Z",
    "current_period_end": "2014-08-23T13:44:16Z",
    "trial_start": null,
    "trial_end": null,
    "trial_period_days": null,
    "expires_at": null,
    "canceled_at": null,
    "ended_at": null,
    "plan": {
      "id": 131,
      "plan_reference": "131",
      "amount": 1200,
      "amount_description": "Option A",
      "currency": "USD",
      "interval": "month",
      "interval_count": 1
    }
  }
}
"""

_PAYMENT_JSON = """\
{
  "id": 1348394,
  "date": "2014-04-08T18:57:26Z",
  "status": "successful",
  "currency": "USD",
  "amount": 1000,
  "fee": 59,
  "amount_refunded": 0,
  "amount_description": "Option A",
  "name": "Jim Customer",
  "email": "customer@example.com",
  "payment_method": {
    "type": "card",
    "last4": "4242",
    "brand": "Visa"
  },
  "charge_reference": "ch_3ohpsF8ra5rqjj",
  "customer_id": 53453,
  "customer_reference": "cus_4SOZuEc4cxP5L7",
  "invoice_reference": "in_1La8pLqS2UnhPZ",
  "custom_fields": {
    "shirt_size": {
      "id": 23452,
      "type": "string",
      "response": "XL"
    },
    "shipping_address": {
      "id": 23453,
      "type": "address",
      "response": {
        "line1": "123 Main St.",
        "line2": "Ste. 153",
        "city": "Greenville",
        "state": "SC",
        "postal_code": "29651",
        "country": "United States"
      }
    }
  },
  "form_id": 112,
  "custom_id": "GHS430",
  "checkout": {
    "amount_due": 1000,
    "coupon_amount": 1000,
    "coupon_code": "10off",
    "date": "2014-07-23T13:44:12Z",
    "fee": 59,
    "subtotal": 1000,
    "token": "YUAf1PJDe1Uho7CnQ1BVPuCz",
    "total": 1000,
    "trial_period_days": null,
    "upfront_amount": 0
  },
  "coupon": {
    "code": "10off",
    "duration": "once",
    "amount_off": 1000,
    "currency": "USD",
    "percent_off": null,
    "duration_in_months": null,
    "max_redemptions": null,
    "redeem_by": null
  }
}
"""

_FORM_JSON = """\
{
  "id": 234456,
  "title": "Monthly Subscription",
  "access_token": "1vqvyh3tco",
  "currency": "USD",
  "payment_volume": 7665,
  "successful_checkout_count": 6,
  "created_at": "2014-04-07T19:45:28Z",
  "updated_at": "2014-07-20T00:52:31Z"
}
"""

_CUSTOMER: Final[dict[str, Any]] = json.loads(_CUSTOMER_JSON)
_PAYMENT: Final[dict[str, Any]] = json.loads(_PAYMENT_JSON)
_FORM: Final[dict[str, Any]] = json.loads(_FORM_JSON)

CUSTOMER_STATUSES: Final = frozenset({"active", "canceled", "expired", "past_due", "pending", "unpaid"})
PAYMENT_STATUSES: Final = frozenset({"successful", "refunded", "failed"})


def customer_fixture() -> dict[str, Any]:
    """A fresh copy of the documented Customer object."""
    return copy.deepcopy(_CUSTOMER)


def payment_fixture() -> dict[str, Any]:
    """A fresh copy of the documented Payment object."""
    return copy.deepcopy(_PAYMENT)


def form_fixture() -> dict[str, Any]:
    """A fresh copy of the documented Form object."""
    return copy.deepcopy(_FORM)


def _merge(target: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    # Nested dicts merge so `subscription={"status": "past_due"}` keeps the plan; anything else replaces.
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def generated_suffix(n: int) -> str:
    """A third name word that makes generated names unique: "n" + n in base 26 letters."""
    letters = ""
    while True:
        n, rest = divmod(n, 26)
        letters = chr(97 + rest) + letters
        if n == 0:
            return "N" + letters


class _BadRequest(Exception):
    pass


def _error(status: int, message: str) -> Reply:
    return json_reply({"error": {"message": message}}, status=status)


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise _BadRequest(f"{name} must be {bound}")
    return value


def _day_param(query: Mapping[str, str], name: str) -> date | None:
    raw = query.get(name)
    if not raw:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise _BadRequest(f"{name} must be YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be YYYY-MM-DD") from None


def _utc_day(timestamp: Any) -> date | None:
    if not isinstance(timestamp, str):
        return None
    parsed = datetime.fromisoformat(timestamp)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).date()


def _dig(obj: Mapping[str, Any], *keys: str) -> Any:
    current: Any = obj
    for key in keys:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


class MoonClerkStandIn(StandIn):
    """MoonClerk API stand-in.

    Constructor arguments:
      api_key: the key expected in `Authorization: Token token=<key>`.
      seed: start with the documented Customer, Payment and Form fixtures (False starts empty,
        which suits paging tests that need an exact row count).
      payments_oldest_first: list payments oldest first instead of newest first. MoonClerk documents
        no sort order (providers.md §1.3), so callers must not depend on either.
      latency: seconds every request waits before it is answered (requests wait side by side, as
        they would on the real service), e.g. 0.1 for "100 ms per page".
    """

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, seed: bool = True, port: int = 0,
                 payments_oldest_first: bool = False, latency: float = 0.0) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.payments_oldest_first = payments_oldest_first
        self.latency = latency
        # The unfiltered customer list in ID order, kept between pages: sorting 100,000 rows for
        # every page would make the stand-in, not the client, the thing a benchmark measures.
        self._customer_order: list[dict[str, Any]] | None = None
        self._customers: dict[int, dict[str, Any]] = {}
        self._payments: dict[int, dict[str, Any]] = {}
        self._forms: dict[int, dict[str, Any]] = {}
        if seed:
            self._store(self._customers, customer_fixture())
            self._store(self._payments, payment_fixture())
            self._store(self._forms, form_fixture())

    # ----------------------------------------------------------------- seeding

    def add_customer(self, **overrides: Any) -> dict[str, Any]:
        """Store a copy of the Customer fixture with `overrides` applied; returns it.

        `id` auto-increments unless given. `status=` is shorthand for `subscription.status`, the
        field the `status` filter reads (Customer has no top-level status).
        """
        status = overrides.pop("status", None)
        customer = _merge(customer_fixture(), overrides)
        if status is not None:
            customer["subscription"]["status"] = status
        with self._lock:
            return self._store(self._customers, customer, auto_id="id" not in overrides)

    def add_generated(self, count: int, *, start_id: int = 1_000_000) -> list[int]:
        """Add `count` slim customers quickly (benchmarks): IDs from `start_id`; customer n is named
        from fixed first and last name lists, with email `c<n>@example.com`, custom ID `G<n>` and phone
        `+1 415 <n as 7 digits>` in a phone custom field."""
        firsts = ("Ada", "Ben", "Cleo", "Dev", "Eva", "Finn", "Gus", "Hana", "Ivan", "Jade", "Kai", "Lena",
                  "Milo", "Nia", "Omar", "Pia", "Quin", "Rosa", "Sam", "Tara")
        lasts = ("Abbott", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jensen",
                 "Khan", "Lopez", "Moreau", "Nakamura", "Okafor", "Patel", "Quinn", "Rossi", "Silva", "Tanaka")
        ids = []
        with self._lock:
            for n in range(count):
                customer_id = start_id + n
                first, last = firsts[n % len(firsts)], lasts[(n // len(firsts)) % len(lasts)]
                self._customers[customer_id] = {
                    "id": customer_id, "name": f"{first} {last} {generated_suffix(n)}",
                    "email": f"c{n}@example.com", "custom_id": f"G{n}", "customer_reference": f"cus_G{n}",
                    "custom_fields": {"phone": {"id": 1, "type": "phone", "response": f"+1415{n:07d}"}},
                    "subscription": {"id": customer_id, "status": "active"},
                }
                ids.append(customer_id)
            self._changed()
        return ids

    def update_customer(self, customer_id: int, **overrides: Any) -> dict[str, Any]:
        """Change a stored customer (nested dicts merge, as in add_customer); returns it."""
        with self._lock:
            customer = _merge(self._customers[customer_id], overrides)
            self._changed()
            return copy.deepcopy(customer)

    def delete_customer(self, customer_id: int) -> None:
        """Remove a customer, as if deleted in MoonClerk: its reads answer 404 from now on."""
        with self._lock:
            del self._customers[customer_id]
            self._changed()

    def _changed(self) -> None:
        self._customer_order = None
        super()._changed()

    def _serve_one(self, handler: Any) -> None:
        if self.latency:
            self._stopping.wait(self.latency)
        super()._serve_one(handler)

    def add_payment(self, **overrides: Any) -> dict[str, Any]:
        """Store a copy of the Payment fixture with `overrides` applied; returns it."""
        payment = _merge(payment_fixture(), overrides)
        with self._lock:
            return self._store(self._payments, payment, auto_id="id" not in overrides)

    def add_form(self, **overrides: Any) -> dict[str, Any]:
        """Store a copy of the Form fixture with `overrides` applied; returns it."""
        form = _merge(form_fixture(), overrides)
        with self._lock:
            return self._store(self._forms, form, auto_id="id" not in overrides)

    def _store(self, table: dict[int, dict[str, Any]], row: dict[str, Any], *, auto_id: bool = False) -> dict[str, Any]:
        if auto_id:
            row["id"] = max([row["id"] - 1, *table]) + 1
        row_id = int(row["id"])
        if row_id in table:
            raise ValueError(f"id {row_id} already exists")
        table[row_id] = row
        self._changed()
        return copy.deepcopy(row)

    @property
    def customers(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._customers.values()))

    @property
    def payments(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._payments.values()))

    @property
    def forms(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._forms.values()))

    # ----------------------------------------------------------------- HTTP

    def fault_body(self, status: int) -> Any:
        if status == 429:
            return {"error": {"message": "Too Many Requests"}}
        return {"error": {"message": "Internal Server Error"}}

    def handle(self, request: Recorded) -> Reply:
        if request.headers.get("authorization", "") != f"Token token={self.api_key}":
            return _error(401, "Invalid API key")
        accept = request.headers.get("accept", "").replace(" ", "").lower()
        if ACCEPT not in accept.split(","):
            return _error(406, "Not Acceptable: send Accept: " + ACCEPT)
        parts = [p for p in self.canonical_path(request.path).split("/") if p]
        routes: dict[str, tuple[dict[int, dict[str, Any]], str, Callable[..., list[dict[str, Any]]]]] = {
            "customers": (self._customers, "customer", self._filter_customers),
            "payments": (self._payments, "payment", self._filter_payments),
            "forms": (self._forms, "form", lambda rows, _query: rows),
        }
        if not parts or parts[0] not in routes or len(parts) > 2:
            return _error(404, "Not found")
        if request.method != "GET":
            # The API is read-only (providers.md §1.6): there is nothing to write to.
            return _error(405, "Method not allowed")
        table, singular, filter_rows = routes[parts[0]]
        if len(parts) == 2:
            row = table.get(int(parts[1])) if parts[1].isdigit() else None
            if row is None:
                return _error(404, "Not found")
            return json_reply({singular: copy.deepcopy(row)})
        try:
            count = _int_param(request.query, "count", 10, 1, 100)
            offset = _int_param(request.query, "offset", 0, 0, None)
            if parts[0] == "customers" and set(request.query) <= {"count", "offset"}:
                if self._customer_order is None:
                    self._customer_order = sorted(table.values(), key=lambda c: int(c["id"]))
                rows = self._customer_order
            else:
                rows = filter_rows(list(table.values()), request.query)
        except _BadRequest as exc:
            # Real MoonClerk's answer to a bad parameter is undocumented; a 400 flags client bugs.
            return _error(400, str(exc))
        return json_reply({parts[0]: copy.deepcopy(rows[offset : offset + count])})

    @staticmethod
    def _in_days(value: date | None, low: date | None, high: date | None) -> bool:
        if low is None and high is None:
            return True
        if value is None:
            return False
        return (low is None or value >= low) and (high is None or value <= high)

    def _filter_customers(self, rows: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
        status = query.get("status")
        form_id = _int_param(query, "form_id", -1, 0, None)
        checkout = (_day_param(query, "checkout_from"), _day_param(query, "checkout_to"))
        next_payment = (_day_param(query, "next_payment_from"), _day_param(query, "next_payment_to"))
        out = [
            c
            for c in rows
            if (not status or _dig(c, "subscription", "status") == status)
            and (form_id < 0 or c.get("form_id") == form_id)
            and self._in_days(_utc_day(_dig(c, "checkout", "date")), *checkout)
            and self._in_days(_utc_day(_dig(c, "subscription", "next_payment_attempt")), *next_payment)
        ]
        return sorted(out, key=lambda c: int(c["id"]))

    def _filter_payments(self, rows: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
        status = query.get("status")
        form_id = _int_param(query, "form_id", -1, 0, None)
        customer_id = _int_param(query, "customer_id", -1, 0, None)
        days = (_day_param(query, "date_from"), _day_param(query, "date_to"))
        out = [
            p
            for p in rows
            if (not status or p.get("status") == status)
            and (form_id < 0 or p.get("form_id") == form_id)
            and (customer_id < 0 or p.get("customer_id") == customer_id)
            and self._in_days(_utc_day(p.get("date")), *days)
        ]
        # The docs' examples list payments newest first; the order is otherwise undocumented.
        return sorted(out, key=lambda p: (str(p.get("date") or ""), int(p["id"])),
                      reverse=not self.payments_oldest_first)
