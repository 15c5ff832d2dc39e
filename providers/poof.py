"""Poof API client (shared/reference/providers.md §2): fiat invoices, crypto payouts, transactions.

Every Poof endpoint is a POST with a JSON body and the raw key in `Authorization` (no Bearer).
Amounts travel as decimal strings in major units, never floats.

Poof documents no idempotency key, so the two money-moving calls are sent at most once: a timeout
or dropped connection after sending raises `OutcomeUnknown` ("unknown: check Poof") and nothing
is repeated. Only the transaction reads are retried.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from providers.base import DEFAULT_TIMEOUT, SECRET_KEYS, HttpClient, NotFound, ProviderError, ProviderResult
from providers.currency import exponent, normalise_currency

SIGNATURE_KEY: Final = "x-poof-signature"

# Documented `paid` values (providers.md §2.4) plus `no` / `processing`, seen when polling.
PAID_STATES: Final = frozenset(
    {"yes", "payout", "paid_partial", "transfer_out", "pending", "transfer_in", "hold", "no", "processing"}
)

FIAT_METHODS: Final = ("paypal", "cashapp", "venmo", "skrill", "credit card")

# Every spelling seen in Poof clients, mapped to the chain whose address rules apply. Poof's own
# canonical identifiers are undocumented (providers.md §4.4), so callers send what they chose.
KNOWN_CRYPTOS: Final[Mapping[str, str]] = {
    "bitcoin": "bitcoin", "btc": "bitcoin",
    "ethereum": "ethereum", "eth": "ethereum",
    "solana": "solana", "sol": "solana",
    "litecoin": "litecoin", "ltc": "litecoin",
    "dogecoin": "dogecoin", "doge": "dogecoin",
    "polygon": "polygon", "matic": "polygon",
    "bsc": "bsc", "bnb": "bsc",
    "avalanche": "avalanche", "avax": "avalanche",
}

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_EVM = re.compile(r"0x[0-9a-fA-F]{40}")


def _base58(prefixes: str, low: int, high: int) -> re.Pattern[str]:
    return re.compile(f"[{prefixes}][{_B58}]{{{low - 1},{high - 1}}}")


def _bech32(hrp: str, low: int, high: int) -> re.Pattern[str]:
    return re.compile(f"{hrp}1[{_BECH32}]{{{low - len(hrp) - 1},{high - len(hrp) - 1}}}")


# (chain label, accepted shapes, what a right address looks like, in plain words)
_ADDRESS_RULES: Final[Mapping[str, tuple[str, tuple[re.Pattern[str], ...], str]]] = {
    "bitcoin": ("Bitcoin", (_base58("13", 26, 35), _bech32("bc", 42, 62)),
                "starts with 1 or 3 (26–35 characters) or with bc1 (42–62 lowercase characters)"),
    "ethereum": ("Ethereum", (_EVM,), "is 0x followed by 40 hexadecimal characters"),
    "polygon": ("Polygon", (_EVM,), "is 0x followed by 40 hexadecimal characters"),
    "bsc": ("BNB Smart Chain", (_EVM,), "is 0x followed by 40 hexadecimal characters"),
    "avalanche": ("Avalanche C-Chain", (_EVM,), "is 0x followed by 40 hexadecimal characters"),
    "solana": ("Solana", (re.compile(f"[{_B58}]{{32,44}}"),), "is 32–44 base58 characters"),
    "litecoin": ("Litecoin", (_base58("LM", 26, 35), _bech32("ltc", 43, 63)),
                 "starts with L or M (26–35 characters) or with ltc1 (lowercase)"),
    "dogecoin": ("Dogecoin", (_base58("D", 25, 34),), "starts with D (25–34 characters)"),
}


def canonical_crypto(crypto: str) -> str | None:
    return KNOWN_CRYPTOS.get(crypto.strip().lower())


def address_problem(crypto: str, address: str) -> str | None:
    """Why `address` cannot be a wallet address on `crypto`'s chain, in plain words; None if it can.

    A shape check only (prefix, alphabet, length): it catches typos and wrong-chain pastes, not a
    mistyped character inside a well-formed address.
    """
    chain = canonical_crypto(crypto)
    if chain is None:
        return f"{crypto.strip() or 'That'} is not a cryptocurrency finance-desk can check addresses for"
    label, patterns, shape = _ADDRESS_RULES[chain]
    if not address:
        return f"Enter the recipient's {label} address"
    if address != address.strip() or any(c.isspace() for c in address):
        return f"A {label} address has no spaces; paste it again without them"
    if any(p.fullmatch(address) for p in patterns):
        return None
    return f"That does not look like a {label} address: a {label} address {shape}"


def verify_webhook_secret(body: Mapping[str, Any], secret: str) -> bool:
    """Poof's webhook "signature" is the shared secret itself, inside the body (providers.md §2.4)."""
    offered = body.get(SIGNATURE_KEY)
    if not isinstance(offered, str) or not offered or not secret:
        return False
    return hmac.compare_digest(offered.encode(), secret.encode())


def _decimal(value: object) -> object:
    # Poof's amounts are decimal strings; a float here would already have lost exactness.
    if isinstance(value, bool | float):
        raise ValueError("amount must be a decimal string")
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("amount is not a number") from None
        if not number.is_finite():
            raise ValueError("amount is not a finite number")
        return number
    return value


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


PoofAmount = Annotated[Decimal, BeforeValidator(_decimal)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]


class Transaction(BaseModel):
    """One Poof transaction (invoice, charge or payout), the shape its webhooks also use.

    Unknown fields are kept (Poof's full record shape is undocumented); the webhook secret never is.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    payment_id: OptionalText = None
    amount: PoofAmount
    currency: OptionalText = None
    paid: str
    payment_method: OptionalText = None
    email: OptionalText = None
    name: OptionalText = None
    date: OptionalText = None  # human-readable, e.g. "Dec 6, 05:23 AM 2022", not ISO 8601
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        record = {k: v for k, v in data.items() if str(k).lower() not in SECRET_KEYS}
        if not record.get("payment_id"):
            # Lists and payouts name the id `transaction`, `transaction_id` or `uuid` (providers.md §2.3).
            for key in ("transaction", "transaction_id", "uuid"):
                if record.get(key):
                    record["payment_id"] = str(record[key])
                    break
        if not isinstance(record.get("metadata"), Mapping):
            record["metadata"] = {}
        return record

    @property
    def is_paid(self) -> bool:
        return self.paid == "yes"

    @property
    def external_metadata(self) -> dict[str, Any]:
        """The metadata finance-desk sent; Poof returns it nested under `metadata.external`."""
        external = self.metadata.get("external")
        return dict(external) if isinstance(external, Mapping) else {}

    # providers.base.ProviderTransaction, for reconcile:
    @property
    def reference(self) -> str | None:
        return self.payment_id

    @property
    def method(self) -> str | None:
        return self.payment_method.lower() if self.payment_method else None

    @property
    def destination(self) -> str | None:
        """The wallet address (a payout's destination, a charge's deposit address): `metadata.address`."""
        for holder in (self.metadata, self.model_extra or {}):
            address = holder.get("address")
            if isinstance(address, str) and address.strip():
                return address.strip()
        return None

    @property
    def call_id(self) -> str | None:
        """The DialNexa call ID finance-desk sent in the invoice's metadata, if Poof echoes it."""
        for holder in (self.external_metadata, self.metadata):
            value = holder.get("dialnexa_call_id")
            if isinstance(value, str) and value:
                return value
        return None


def _refusal(body: Any) -> str | None:
    """An error Poof reported inside a 2xx answer (its error format is undocumented, §2.2)."""
    if isinstance(body, str):
        return body.strip() or None
    if isinstance(body, Mapping):
        for key in ("error", "message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


class PoofClient:
    """Poof client. Money-moving calls are sent once; reads are retried on 429/5xx and timeouts."""

    name: str = "poof"

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://www.poof.io",
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        *,
        max_attempts: int = 4,
    ) -> None:
        if not api_key:
            raise ValueError("a Poof API key is required")
        self._http = HttpClient(
            self.name,
            base_url,
            label="Poof",
            headers={"Authorization": api_key, "Content-Type": "application/json"},
            timeout=timeout,
            sleep=sleep,
            max_attempts=max_attempts,
            secrets=(api_key,),
        )

    def __repr__(self) -> str:
        return f"PoofClient(base_url={self._http.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PoofClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- money-moving (sent once)

    def create_fiat_invoice(
        self,
        amount: Decimal,
        currency: str,
        payment: str,
        *,
        redirect_url: str | None = None,
        success_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ProviderResult:
        """A payment link for `amount` in a fiat `currency`, payable by `payment` (e.g. "paypal")."""
        code = normalise_currency(currency)
        if code is None:
            raise self._invalid(f"{currency!r} is not an ISO 4217 currency code")
        method = payment.strip().lower() if isinstance(payment, str) else ""
        if not method:
            raise self._invalid("a payment method such as paypal is required")
        body: dict[str, Any] = {"amount": self._fiat_amount(amount, code), "payment": method, "currency": code}
        if redirect_url:
            body["redirect_url"] = redirect_url
        if success_url:
            body["success_url"] = success_url
        if metadata:
            body["metadata"] = dict(metadata)
        # Not retried: without an idempotency key a repeat could create a second payment link.
        answer = self._http.request("POST", "/api/v1/create_fiat_invoice", json=body, retry=False)
        link = answer.get("payment_link") if isinstance(answer, Mapping) else None
        if not isinstance(link, str) or not link:
            raise self._no_result(answer, "invoice", "payment link")
        payment_id = answer.get("payment_id")
        # Poof's documented answer has no id; when one is present it links the webhook to this invoice.
        reference = str(payment_id) if payment_id not in (None, "") else None
        return ProviderResult(provider=self.name, reference=reference, url=link, raw=self._http.scrub(dict(answer)))

    def send_payout(self, amount: Decimal, crypto: str, address: str) -> ProviderResult:
        """Send `amount` of `crypto` to `address`. Sent exactly once, whatever happens."""
        problem = address_problem(crypto, address) if isinstance(crypto, str) and isinstance(address, str) else (
            "a cryptocurrency and an address are required")
        if problem:
            raise self._invalid(problem)
        body = {"amount": _plain(self._positive(amount)), "crypto": crypto.strip().lower(), "address": address}
        # Never retried: Poof has no idempotency key, so a second request could pay twice.
        answer = self._http.request("POST", "/api/v2/payouts", json=body, retry=False)
        transaction_id = answer.get("transaction_id") if isinstance(answer, Mapping) else None
        if transaction_id in (None, ""):
            raise self._no_result(answer, "payout", "transaction id")
        return ProviderResult(provider=self.name, reference=str(transaction_id), url=None,
                              raw=self._http.scrub(dict(answer)))

    # ----------------------------------------------------------------- reads (retried)

    def get_transaction(self, transaction_id: str) -> Transaction:
        if not isinstance(transaction_id, str) or not transaction_id.strip():
            raise ValueError("transaction_id must be a non-empty string")
        answer = self._http.request("POST", "/api/v1/transaction", json={"transaction": transaction_id.strip()},
                                    retry=True)
        if not isinstance(answer, Mapping):
            raise self._http.error("Poof's answer was not a transaction record.", status=200)
        return self._transaction(answer)

    def list_transactions(self) -> list[Transaction]:
        answer = self._http.request("POST", "/api/v1/fetch_transactions", json={}, retry=True)
        if isinstance(answer, Mapping):
            # The list shape is undocumented; tolerate an envelope as well as a bare array.
            answer = answer.get("transactions", answer.get("data"))
        if not isinstance(answer, list):
            raise self._http.error("Poof's answer was not a list of transactions.", status=200)
        if not all(isinstance(item, Mapping) for item in answer):
            raise self._http.error("Poof's transaction list held something that is not a record.", status=200)
        return [self._transaction(item) for item in answer]

    # ----------------------------------------------------------------- plumbing

    def _transaction(self, record: Mapping[str, Any]) -> Transaction:
        if "paid" not in record and (refusal := _refusal(record)):
            if "not found" in refusal.lower():
                raise NotFound(f"Poof has no such transaction: {self._http.scrub(refusal)}", provider=self.name,
                               status=200)
            raise self._http.error(f"Poof refused the lookup: {refusal}", status=200)
        try:
            return Transaction.model_validate(record)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in error["loc"]) for error in exc.errors()})
            raise self._http.error(
                f"Poof sent a transaction finance-desk could not read (fields: {', '.join(fields)}).", status=200
            ) from None

    def _invalid(self, problem: str) -> ProviderError:
        # A ProviderError rather than ValueError so callers' one error path also records this refusal.
        return self._http.error(f"Not sent to Poof: {problem}.", retryable=False)

    def _no_result(self, answer: Any, what: str, missing: str) -> ProviderError:
        refusal = _refusal(answer)
        if refusal:
            return self._http.error(f"Poof refused the {what}: {refusal}.", status=200)
        return self._http.outcome_unknown(
            f"Poof's answer to the {what} had no {missing}: it may or may not have happened. Unknown: check Poof.",
            status=200,
        )

    def _positive(self, amount: Decimal) -> Decimal:
        if not isinstance(amount, Decimal):
            raise self._invalid("the amount must be an exact decimal, never a float")
        if not amount.is_finite() or amount <= 0:
            raise self._invalid("the amount must be above zero")
        return amount

    def _fiat_amount(self, amount: Decimal, currency: str) -> str:
        amount = self._positive(amount)
        step = Decimal(1).scaleb(-exponent(currency))
        try:
            exact = amount == amount.quantize(step)
        except InvalidOperation:
            exact = False
        if not exact:
            raise self._invalid(f"{currency} amounts have at most {exponent(currency)} decimal places")
        return _plain(amount.quantize(step))


def _plain(amount: Decimal) -> str:
    # Fixed-point text: str(Decimal("1E+2")) would put exponent notation on the wire.
    return format(amount, "f")
