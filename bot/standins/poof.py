"""A local Poof API (providers.md §2): fiat invoices, payouts, transactions and webhook payloads.

Every endpoint is POST with a JSON body and `Authorization: <raw key>`. Poof's error format is
undocumented (providers.md §2.2); this stand-in answers auth and validation failures with short
text bodies containing "invalid", which is what poofpy keys on, so clients must cope with non-JSON
error bodies.

Money is never a float here: request JSON is parsed with `parse_float=Decimal`, amounts are kept
as the decimal strings Poof uses, and Decimals are written back out as strings.
"""

from __future__ import annotations

import copy
import html
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlsplit

from bot.standins.base import Recorded, Reply, StandIn, json_reply, text_reply

DEFAULT_API_KEY: Final = "poof_test_key"

# Values of `paid` documented for webhooks and transaction lookups (providers.md §2.4), plus the
# `no` / `processing` states seen when polling.
PAID_STATES: Final = frozenset(
    {"yes", "payout", "paid_partial", "transfer_out", "pending", "transfer_in", "hold", "no", "processing"}
)

# Copied from providers.md §2.5 (official webhook-validation page, email placeholder substituted).
_WEBHOOK_FIXTURE_JSON = """\
{"amount": "0.20",
 "payment_method": "solana",
 "currency": "usd",
 "payment_id": "24675z8a",
 "name": "Robert Robertson",
 "email": "customer@example.com",
 "items": "Shoes",
 "quantities": "1",
 "date": "Dec 6, 05:23 AM 2022",
 "note": "custom-form: custom_input example",
 "paid": "yes",
 "metadata": {"external": {"your_dictionary": "will be listed in external"},
              "address": "5PEmyGfzdVuwGWVRcRAqZ9FyrNkxqSzNKGvk5Rtvh276", "due": "0.01413"},
 "street_address": {"address": "1234 Main Street",
                    "city": "San Francisco", "state": "CA", "zipcode": "95150",
                    "country": "United States"},
 "x-poof-signature": "0OgrjdRegx9OiF_H5EJm3w"}
"""


def webhook_fixture() -> dict[str, Any]:
    """A fresh copy of the documented webhook payload."""
    loaded: dict[str, Any] = json.loads(_WEBHOOK_FIXTURE_JSON)
    return loaded


def poof_date(moment: datetime) -> str:
    """Poof's human-readable timestamp, e.g. "Dec 6, 05:23 AM 2022" (not ISO 8601)."""
    return f"{moment:%b} {moment.day}, {moment:%I:%M %p %Y}"


class _Invalid(Exception):
    pass


def _amount(value: Any, *, allow_number: bool) -> Decimal:
    """Validate an amount; strings always, JSON numbers only where Poof's clients send numbers."""
    if isinstance(value, bool) or value is None:
        raise _Invalid("invalid amount")
    if isinstance(value, str):
        text = value.strip()
    elif allow_number and isinstance(value, int | Decimal):
        text = str(value)
    else:
        raise _Invalid("invalid amount")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise _Invalid("invalid amount") from None
    if not number.is_finite() or number <= 0:
        raise _Invalid("invalid amount")
    return number


def _required_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"invalid {key}")
    return value


class PoofStandIn(StandIn):
    """Poof API stand-in.

    Constructor arguments:
      api_key: the exact `Authorization` header value expected (no Bearer/Token prefix).
      balance: starting wallet balance for every crypto (a decimal string); payouts draw it down.
    """

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, balance: str = "1000", port: int = 0) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self._default_balance = Decimal(balance)
        self._balances: dict[str, Decimal] = {}
        self._transactions: dict[str, dict[str, Any]] = {}
        self._invoice_count = 0
        self._payout_count = 0
        self._seq = 0
        self._routes = {
            "/api/v1/create_fiat_invoice": self._create_fiat_invoice,
            "/api/v1/payouts": self._payout,
            "/api/v2/payouts": self._payout,
            "/api/v1/transaction": self._transaction,
            "/api/v1/fetch_transactions": self._fetch_transactions,
            "/api/v1/balance": self._balance,
            "/api/v2/balance": self._balance,
        }

    # ----------------------------------------------------------------- accessors and helpers

    @property
    def invoice_count(self) -> int:
        with self._lock:
            return self._invoice_count

    @property
    def payout_count(self) -> int:
        with self._lock:
            return self._payout_count

    @property
    def transactions(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._transactions.values()))

    def transaction(self, payment_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._get(payment_id))

    def balance(self, crypto: str) -> Decimal:
        with self._lock:
            return self._balances.get(crypto.lower(), self._default_balance)

    def set_paid(self, payment_id: str, paid: str) -> dict[str, Any]:
        """Move a transaction to any documented `paid` state (e.g. "paid_partial", "hold")."""
        if paid not in PAID_STATES:
            raise ValueError(f"unknown paid state {paid!r}; expected one of {sorted(PAID_STATES)}")
        with self._lock:
            record = self._get(payment_id)
            record["paid"] = paid
            self._changed()
            return copy.deepcopy(record)

    def mark_paid(self, payment_id: str) -> dict[str, Any]:
        """The customer completed checkout: `paid` becomes "yes"."""
        return self.set_paid(payment_id, "yes")

    def webhook_payload(self, payment_id: str, secret: str, **overrides: Any) -> dict[str, Any]:
        """The body Poof would POST to our webhook for this transaction, signed with `secret`.

        Poof's "signature" is the shared secret itself, carried in the body (providers.md §2.4).
        """
        payload = self.transaction(payment_id)
        payload.update(copy.deepcopy(overrides))
        payload["x-poof-signature"] = secret
        return payload

    def deliver_webhook(self, target_url: str, payment_id: str, secret: str, timeout: float = 5.0) -> int:
        """POST the webhook payload to `target_url` (e.g. the demo app) and return the HTTP status."""
        if urlsplit(target_url).scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {target_url!r}")
        body = json.dumps(self.webhook_payload(payment_id, secret), default=str).encode()
        request = urllib.request.Request(  # noqa: S310 -- scheme checked above
            target_url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def _get(self, payment_id: str) -> dict[str, Any]:
        record = self._transactions.get(payment_id)
        if record is None:
            raise KeyError(f"no Poof transaction {payment_id!r}")
        return record

    def _new_id(self) -> str:
        # Poof ids are short lowercase tokens such as "24675z8a"; the sequence keeps them unique.
        self._seq += 1
        return f"{self._seq:03x}{secrets.token_hex(3)[:5]}"

    def _record(self, payment_id: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "amount": "",
            "payment_method": "",
            "currency": "",
            "payment_id": payment_id,
            "name": "",
            "email": "",
            "items": "",
            "quantities": "",
            "date": poof_date(datetime.now(UTC)),
            "note": "",
            "paid": "no",
            "metadata": {"external": {}, "address": "", "due": ""},
            "street_address": {"address": "", "city": "", "state": "", "zipcode": "", "country": ""},
        }
        record.update(fields)
        self._transactions[payment_id] = record
        self._changed()
        return record

    # ----------------------------------------------------------------- HTTP

    def decode_json(self, body: bytes) -> Any:
        return json.loads(body, parse_float=Decimal)

    def fault_body(self, status: int) -> Any:
        return "too many requests" if status == 429 else "internal server error"

    def handle(self, request: Recorded) -> Reply:
        path = self.canonical_path(request.path)
        if path.startswith("/checkout/session/"):
            return self._checkout_page(path.removeprefix("/checkout/session/"))
        route = self._routes.get(path)
        if route is None:
            return text_reply("not found", status=404)
        if request.method != "POST":
            return text_reply("method not allowed", status=405)
        if request.headers.get("authorization") != self.api_key:
            return text_reply("invalid authorization", status=401)
        body = request.json if request.json is not None else ({} if not request.body.strip() else None)
        if not isinstance(body, dict):
            return text_reply("invalid request body", status=400)
        try:
            return route(body)
        except _Invalid as exc:
            return text_reply(str(exc), status=400)

    def _create_fiat_invoice(self, body: dict[str, Any]) -> Reply:
        amount = _amount(body.get("amount"), allow_number=False)
        payment = _required_str(body, "payment")
        currency = _required_str(body, "currency")
        payment_id = self._new_id()
        external = body.get("metadata")
        external = external if isinstance(external, dict) else {}
        default = body.get("default")
        default = default if isinstance(default, dict) else {}
        self._record(
            payment_id,
            amount=body["amount"].strip(),
            payment_method=payment,
            currency=currency,
            name=str(default.get("name", "")),
            email=str(default.get("email", "")),
            paid="no",
            metadata={"external": external, "address": "", "due": str(amount)},
        )
        self._invoice_count += 1
        return json_reply(
            {
                "amount": body["amount"],
                "payment": payment,
                "currency": currency,
                "payment_link": f"{self.url}/checkout/session/{payment_id}",
                # Stand-in assumption: Poof's documented response has no id, but the webhook and
                # transaction lookups key on payment_id, so we hand it back to link the two.
                "payment_id": payment_id,
            }
        )

    def _payout(self, body: dict[str, Any]) -> Reply:
        amount = _amount(body.get("amount"), allow_number=True)
        crypto = _required_str(body, "crypto").lower()
        address = _required_str(body, "address")
        balance = self._balances.get(crypto, self._default_balance)
        if amount > balance:
            # Undocumented upstream; a refusal here lets tests cover a payout that did not happen.
            return text_reply("invalid amount: insufficient balance", status=400)
        remaining = balance - amount
        self._balances[crypto] = remaining
        transaction_id = self._new_id()
        self._record(
            transaction_id,
            amount=str(amount),
            payment_method=crypto,
            currency=crypto,
            paid="payout",
            metadata={"external": {}, "address": address, "due": "0"},
        )
        self._payout_count += 1
        return json_reply(
            {
                "address": address,
                "amount": str(amount),
                "remaining_balance": str(remaining),
                "transaction_id": transaction_id,
            }
        )

    def _transaction(self, body: dict[str, Any]) -> Reply:
        record = self._transactions.get(str(body.get("transaction", "")))
        if record is None:
            return json_reply({"error": "transaction not found"}, status=404)
        return json_reply(copy.deepcopy(record))

    def _fetch_transactions(self, body: dict[str, Any]) -> Reply:
        # Client code reads `.transaction` on each listed item (providers.md §2.3), so each record
        # also carries its id under that key; the exact list shape is undocumented.
        return json_reply([{**copy.deepcopy(r), "transaction": r["payment_id"]} for r in self._transactions.values()])

    def _balance(self, body: dict[str, Any]) -> Reply:
        crypto = _required_str(body, "crypto").lower()
        return json_reply({"balance": str(self._balances.get(crypto, self._default_balance)), "crypto": crypto})

    def _checkout_page(self, payment_id: str) -> Reply:
        # Lets a human following a demo payment_link see where the link points.
        record = self._transactions.get(payment_id)
        if record is None:
            return text_reply("checkout session not found", status=404)
        page = (
            "<!doctype html><title>Poof stand-in checkout</title>"
            f"<p>Stand-in checkout for {html.escape(record['amount'])} {html.escape(record['currency'])} "
            f"via {html.escape(record['payment_method'])}: paid={html.escape(record['paid'])}</p>"
        )
        return text_reply(page, content_type="text/html; charset=utf-8")
