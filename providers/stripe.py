"""Stripe client on the official SDK (shared/reference/stripe.md): refunds, charges, disputes, invoices, webhooks.

Why the SDK rather than `HttpClient`: Stripe honours an `Idempotency-Key`, and the SDK fixes the key
before its retry loop, so a timeout, a dropped connection or a 5xx on `POST /v1/refunds` is retried
with the same key and Stripe replays the first answer instead of refunding twice (stripe.md §6). Only
when the SDK's last retry still could not be read does the caller get `OutcomeUnknown`, and then looks
the refund up by its metadata (`find_refund`).

Everything crossing this module's interface is finance-desk's own types: amounts as Decimal with an
upper-case ISO 4217 currency, times as aware UTC datetimes, errors from the providers.base family with
plain-words messages that never hold the API key.
"""

from __future__ import annotations

import json
import logging
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit

import stripe

from providers.base import (
    _NOT_SENT,
    DEFAULT_TIMEOUT,
    Money,
    NotFound,
    OutcomeUnknown,
    ProviderError,
    _observe,
    scrub_text,
)
from providers.currency import exponent, normalise_currency

log = logging.getLogger(__name__)

T = TypeVar("T")

STRIPE_API_VERSION: Final = "2026-10-28.endive"
DEFAULT_API_URL: Final = "https://api.stripe.com"
REFUND_REASONS: Final = ("duplicate", "fraudulent", "requested_by_customer")
REFUND_STATUSES: Final = ("pending", "succeeded", "failed", "requires_action", "canceled")
# The metadata key Reconcile looks a refund up by (issue 13: "Reconcile finds the refund ... by its metadata").
CALL_ID_KEY: Final = "dialnexa_call_id"
WEBHOOK_TOLERANCE: Final = 300
# Stripe events nest about eight levels deep; anything far deeper is not an event.
MAX_EVENT_DEPTH: Final = 64
# Stripe's documented limits (stripe.md §3, §6).
MAX_IDEMPOTENCY_KEY: Final = 255
MAX_METADATA_KEYS: Final = 50
MAX_METADATA_KEY_LENGTH: Final = 40
MAX_METADATA_VALUE_LENGTH: Final = 500

_ID_CHARS = frozenset(string.ascii_letters + string.digits)


def _has_id_shape(text: object, prefixes: Iterable[str]) -> bool:
    # No regex: IDs often come from call transcripts (outside text), and this is all a pattern would do.
    if not isinstance(text, str):
        return False
    for prefix in prefixes:
        if text.startswith(prefix + "_"):
            rest = text[len(prefix) + 1 :]
            return 1 <= len(rest) <= 250 and all(c in _ID_CHARS for c in rest)
    return False


def is_charge_id(text: object) -> bool:
    """`ch_…`, or `py_…` for some non-card payments (stripe.md §8.3, §12)."""
    return _has_id_shape(text, ("ch", "py"))


def is_payment_intent_id(text: object) -> bool:
    return _has_id_shape(text, ("pi",))


def is_refund_id(text: object) -> bool:
    return _has_id_shape(text, ("re", "pyr"))


def is_dispute_id(text: object) -> bool:
    return _has_id_shape(text, ("dp", "du"))


def is_invoice_id(text: object) -> bool:
    return _has_id_shape(text, ("in",))


def is_subscription_id(text: object) -> bool:
    return _has_id_shape(text, ("sub",))


def is_customer_id(text: object) -> bool:
    return _has_id_shape(text, ("cus",))


# ----------------------------------------------------------------------------------------------- objects


class StripeObjectError(ValueError):
    """A Stripe object finance-desk cannot read (a field missing or of the wrong type)."""


def _field(obj: Mapping[str, Any], key: str, kind: type[T] | tuple[type, ...], what: str) -> T:
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise StripeObjectError(f"the {what} from Stripe has no readable {key}")
    return value  # type: ignore[return-value]


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _ref(value: Any) -> str | None:
    """An expandable field: an ID string, or the expanded object's ID."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping):
        found = value.get("id")
        return found if isinstance(found, str) and found else None
    return None


def _when(seconds: Any) -> datetime | None:
    if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0:
        return datetime.fromtimestamp(seconds, UTC)
    return None


def _created(obj: Mapping[str, Any], what: str) -> datetime:
    when = _when(obj.get("created"))
    if when is None:
        raise StripeObjectError(f"the {what} from Stripe has no readable created time")
    return when


def _currency(obj: Mapping[str, Any], what: str) -> str:
    code = normalise_currency(obj.get("currency"))
    if code is None:
        raise StripeObjectError(f"the {what} from Stripe has no ISO 4217 currency")
    return code


def _money(obj: Mapping[str, Any], key: str, currency: str, what: str, *, default: int | None = None) -> Decimal:
    value = obj.get(key, default)
    if value is None and default is not None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool):
        raise StripeObjectError(f"the {what} from Stripe has no readable {key}")
    return Money.from_minor(value, currency).amount


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


@dataclass(frozen=True)
class Charge:
    id: str
    amount: Decimal
    currency: str
    amount_refunded: Decimal
    created: datetime
    status: str  # succeeded | pending | failed
    refunded: bool
    disputed: bool
    customer: str | None
    payment_intent: str | None
    brand: str | None  # card only; nothing else of the card is kept
    last4: str | None
    receipt_url: str | None

    @property
    def refundable(self) -> Decimal:
        return max(self.amount - self.amount_refunded, Decimal(0))

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Charge:
        currency = _currency(obj, "charge")
        details = obj.get("payment_method_details")
        card = details.get("card") if isinstance(details, Mapping) else None
        card = card if isinstance(card, Mapping) else {}
        return cls(
            id=_field(obj, "id", str, "charge"),
            amount=_money(obj, "amount", currency, "charge"),
            currency=currency,
            amount_refunded=_money(obj, "amount_refunded", currency, "charge", default=0),
            created=_created(obj, "charge"),
            status=_field(obj, "status", str, "charge"),
            refunded=obj.get("refunded") is True,
            disputed=obj.get("disputed") is True,
            customer=_ref(obj.get("customer")),
            payment_intent=_ref(obj.get("payment_intent")),
            brand=_opt_str(card, "brand"),
            last4=_opt_str(card, "last4"),
            receipt_url=_opt_str(obj, "receipt_url"),
        )


@dataclass(frozen=True)
class Refund:
    id: str
    charge: str | None
    amount: Decimal
    currency: str
    status: str  # pending | succeeded | failed | requires_action | canceled
    failure_reason: str | None
    reason: str | None
    metadata: dict[str, str]
    created: datetime
    payment_intent: str | None = None

    @property
    def call_id(self) -> str | None:
        return self.metadata.get(CALL_ID_KEY) or None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Refund:
        currency = _currency(obj, "refund")
        return cls(
            id=_field(obj, "id", str, "refund"),
            charge=_ref(obj.get("charge")),
            amount=_money(obj, "amount", currency, "refund"),
            currency=currency,
            # Stripe documents no enum here (stripe.md §8.1); a missing status is still "pending".
            status=_opt_str(obj, "status") or "pending",
            failure_reason=_opt_str(obj, "failure_reason"),
            reason=_opt_str(obj, "reason"),
            metadata=_str_map(obj.get("metadata")),
            created=_created(obj, "refund"),
            payment_intent=_ref(obj.get("payment_intent")),
        )


@dataclass(frozen=True)
class Dispute:
    id: str
    charge: str
    amount: Decimal
    currency: str
    reason: str | None
    status: str
    due_by: datetime | None  # evidence_details.due_by (None when 0/absent: the bank allows no response)
    is_charge_refundable: bool
    created: datetime
    payment_intent: str | None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Dispute:
        currency = _currency(obj, "dispute")
        charge = _ref(obj.get("charge"))
        if charge is None:
            raise StripeObjectError("the dispute from Stripe names no charge")
        evidence = obj.get("evidence_details")
        return cls(
            id=_field(obj, "id", str, "dispute"),
            charge=charge,
            amount=_money(obj, "amount", currency, "dispute"),
            currency=currency,
            reason=_opt_str(obj, "reason"),
            status=_field(obj, "status", str, "dispute"),
            due_by=_when(evidence.get("due_by")) if isinstance(evidence, Mapping) else None,
            is_charge_refundable=obj.get("is_charge_refundable") is True,
            created=_created(obj, "dispute"),
            payment_intent=_ref(obj.get("payment_intent")),
        )


@dataclass(frozen=True)
class Invoice:
    id: str
    status: str | None
    customer: str | None
    number: str | None
    amount_due: Decimal
    amount_paid: Decimal
    currency: str
    hosted_invoice_url: str | None
    subscription: str | None  # parent.subscription_details.subscription
    attempt_count: int
    created: datetime
    collection_method: str | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Invoice:
        currency = _currency(obj, "invoice")
        subscription = None
        parent = obj.get("parent")
        if isinstance(parent, Mapping):
            details = parent.get("subscription_details")
            if isinstance(details, Mapping):
                subscription = _ref(details.get("subscription"))
        if subscription is None:
            subscription = _ref(obj.get("subscription"))  # API versions before 2025 kept it at the top
        attempts = obj.get("attempt_count")
        return cls(
            id=_field(obj, "id", str, "invoice"),
            status=_opt_str(obj, "status"),
            customer=_ref(obj.get("customer")),
            number=_opt_str(obj, "number"),
            amount_due=_money(obj, "amount_due", currency, "invoice", default=0),
            amount_paid=_money(obj, "amount_paid", currency, "invoice", default=0),
            currency=currency,
            hosted_invoice_url=_opt_str(obj, "hosted_invoice_url"),
            subscription=subscription,
            attempt_count=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0,
            created=_created(obj, "invoice"),
            collection_method=_opt_str(obj, "collection_method"),
        )


@dataclass(frozen=True)
class Subscription:
    id: str
    status: str
    customer: str | None
    latest_invoice: str | None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Subscription:
        return cls(
            id=_field(obj, "id", str, "subscription"),
            status=_field(obj, "status", str, "subscription"),
            customer=_ref(obj.get("customer")),
            latest_invoice=_ref(obj.get("latest_invoice")),
        )


@dataclass(frozen=True)
class Customer:
    id: str
    email: str | None
    name: str | None
    phone: str | None
    deleted: bool

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Customer:
        return cls(
            id=_field(obj, "id", str, "customer"),
            email=_opt_str(obj, "email"),
            name=_opt_str(obj, "name"),
            phone=_opt_str(obj, "phone"),
            deleted=obj.get("deleted") is True,
        )


@dataclass(frozen=True)
class Event:
    """A verified webhook event."""

    id: str
    type: str
    created: datetime
    api_version: str | None
    object: dict[str, Any]  # data.object as decoded JSON (non-integer numbers as Decimal)
    object_id: str | None  # data.object.id
    previous_attributes: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None  # request.idempotency_key: set when our own call caused the event


# ----------------------------------------------------------------------------------------------- webhooks


class InvalidEvent(Exception):
    """The one exception verify_event raises: bad or missing signature, stale timestamp, malformed body.

    str() is safe to return to the sender (no secrets, no body echo); `code` says which:
    `invalid_signature`, `malformed_json` or `malformed_event`."""

    def __init__(self, message: str, code: str = "malformed_event") -> None:
        super().__init__(message)
        self.code = code


def _signature_timestamp(header: str) -> int:
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            value = value.strip()
            # Digits only: int() would also take "+1_0", and twelve digits reach the year 33658.
            if not value or len(value) > 12 or not all(c in string.digits for c in value):
                raise InvalidEvent("the Stripe-Signature timestamp is not a number", "invalid_signature")
            return int(value)
    raise InvalidEvent("the Stripe-Signature header has no timestamp", "invalid_signature")


def _too_deep(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def parse_event(payload: bytes | str) -> Event:
    """An event body (already verified) as an Event; InvalidEvent when it is not one."""
    try:
        body = json.loads(payload, parse_float=Decimal)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise InvalidEvent("the body is not valid JSON", "malformed_json") from None
    if not isinstance(body, dict):
        raise InvalidEvent("the body is not a JSON object")
    if _too_deep(body, MAX_EVENT_DEPTH):
        raise InvalidEvent("the body is nested too deeply", "malformed_json")
    if body.get("object", "event") != "event":
        raise InvalidEvent("the body is not a Stripe event")
    event_id, kind, created = body.get("id"), body.get("type"), body.get("created")
    if not isinstance(event_id, str) or not event_id or not isinstance(kind, str) or not kind:
        raise InvalidEvent("the event has no id or type")
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        raise InvalidEvent("the event has no created time")
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise InvalidEvent("the event has no data.object")
    previous = data.get("previous_attributes") if isinstance(data, dict) else None
    request = body.get("request")
    key = request.get("idempotency_key") if isinstance(request, dict) else None
    api_version = body.get("api_version")
    object_id = obj.get("id")
    return Event(
        id=event_id,
        type=kind,
        created=datetime.fromtimestamp(created, UTC),
        api_version=api_version if isinstance(api_version, str) else None,
        object=obj,
        object_id=object_id if isinstance(object_id, str) else None,
        previous_attributes=previous if isinstance(previous, dict) else {},
        idempotency_key=key if isinstance(key, str) and key else None,
    )


def verify_event(
    payload: bytes,
    signature_header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = WEBHOOK_TOLERANCE,
    now: datetime | None = None,
) -> Event:
    """Check a webhook's `Stripe-Signature` as Stripe documents it and decode the event.

    Every secret is tried (rotation: Stripe signs with old and new while both are live). The HMAC is
    the SDK's own (`stripe.WebhookSignature`, constant-time compare). Unlike the SDK, a timestamp more
    than `tolerance` seconds in the future is refused too, so a captured delivery cannot be replayed
    later by a sender whose clock runs ahead.
    """
    usable = [s for s in secrets if isinstance(s, str) and s.strip()]
    if not usable:
        raise InvalidEvent("no webhook signing secret is configured", "invalid_signature")
    if not signature_header or not signature_header.strip():
        raise InvalidEvent("the Stripe-Signature header is missing", "invalid_signature")
    if len(signature_header) > 4096:
        raise InvalidEvent("the Stripe-Signature header is too long", "invalid_signature")
    timestamp = _signature_timestamp(signature_header)
    try:
        text = bytes(payload).decode("utf-8")
    except (UnicodeDecodeError, TypeError):
        raise InvalidEvent("the body is not UTF-8 text", "malformed_json") from None
    for secret in usable:
        try:
            stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance=None)
        except stripe.SignatureVerificationError:
            continue
        break
    else:
        raise InvalidEvent("the Stripe-Signature does not match the body", "invalid_signature")
    current = (now or datetime.now(UTC)).timestamp()
    if timestamp < current - tolerance:
        raise InvalidEvent(f"the Stripe-Signature timestamp is more than {tolerance} s old", "invalid_signature")
    if timestamp > current + tolerance:
        raise InvalidEvent(f"the Stripe-Signature timestamp is more than {tolerance} s in the future",
                           "invalid_signature")
    return parse_event(text)


def sign_payload(payload: bytes, secret: str, timestamp: int, *, extra_secrets: Sequence[str] = ()) -> str:
    """The `Stripe-Signature` header Stripe would send: `t=…,v1=…` (one `v1` per secret, as during rotation)."""
    text = payload.decode("utf-8")
    header: str = stripe.WebhookSignature.generate_signature_header(text, secret, timestamp=timestamp)
    for extra in extra_secrets:
        other: str = stripe.WebhookSignature.generate_signature_header(text, extra, timestamp=timestamp)
        header += "," + other.partition(",")[2]
    return header


# ----------------------------------------------------------------------------------------------- errors


class StripeError(ProviderError):
    """Stripe refused or failed a call. `.code` is Stripe's error code (e.g. "charge_already_refunded") or
    one of finance-desk's: "connection", "api_error", "authentication", "permission", "invalid_id",
    "invalid_request", "unreadable". `.message` is plain words; it may quote Stripe's own text, so callers
    escape it before it reaches Slack."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None,
        status: int | None = None,
        retryable: bool = False,
        param: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, provider="stripe", status=status, retryable=retryable)
        self.code = code
        self.param = param
        self.request_id = request_id

    def __repr__(self) -> str:
        return (
            f"StripeError(code={self.code!r}, status={self.status!r}, retryable={self.retryable!r}, "
            f"message={self.message!r})"
        )


# What finance reads for each refusal, and what applies next.
PLAIN_WORDS: Final[Mapping[str, str]] = {
    "charge_already_refunded": "the charge has already been fully refunded; nothing is left to refund",
    "amount_too_large": "the amount is more than what is still refundable on the charge",
    "amount_too_small": "the amount is below the smallest refund Stripe accepts",
    "charge_disputed": "the charge is disputed; it cannot be refunded while the dispute is open (handle the dispute)",
    "refund_disputed_payment": "the payment is disputed; Stripe does not allow refunding it (handle the dispute)",
    "charge_not_refundable": "Stripe says this charge cannot be refunded",
    "balance_insufficient": "the Stripe balance is too low to cover the refund; add funds in Stripe or try later",
    "charge_expired_for_capture": "the charge was never captured and has expired; there is nothing to refund",
    "idempotency_error": "a different request already used this idempotency key; nothing new was done",
    "idempotency_key_in_use": "the same request is still being processed by Stripe; check again shortly",
    "rate_limit": "Stripe is rate-limiting finance-desk; try again shortly",
    "lock_timeout": "Stripe was busy updating the same object; try again shortly",
    "authentication": "Stripe refused the API key (check STRIPE_API_KEY)",
    "permission": "the Stripe API key lacks a permission this needs (see README: Stripe key permissions)",
    "api_key_expired": "the Stripe API key has expired (replace STRIPE_API_KEY)",
    "livemode_mismatch": "the Stripe API key is for the other mode (test vs live) than this object",
    "parameter_unknown": "Stripe did not recognise a parameter finance-desk sent",
    "parameter_missing": "a parameter Stripe needs was missing",
    "resource_missing": "Stripe has no such object",
}


def plain_words(code: str | None) -> str | None:
    return PLAIN_WORDS.get(code) if code else None


# ----------------------------------------------------------------------------------------------- HTTP


def _metric_path(url: str) -> str:
    # /v1/refunds/re_123/cancel -> /v1/refunds/{id}/cancel: object IDs would make metric labels unbounded.
    parts = (urlsplit(url).path or "/").split("/")
    return "/".join("{id}" if i >= 3 and i % 2 == 1 and part else part for i, part in enumerate(parts))


class _ObservedHTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client with finance-desk's timeout, metrics per attempt, and a note of whether any
    attempt of the current call may have reached Stripe (for OutcomeUnknown vs "nothing was sent")."""

    def __init__(self, timeout: float, backoff_scale: float) -> None:
        super().__init__(timeout=timeout, allow_sync_methods=True)
        self._backoff_scale = backoff_scale
        self._local = threading.local()

    def begin(self) -> None:
        self._local.reached = False

    def reached(self) -> bool:
        return bool(getattr(self._local, "reached", False))

    def _get_request_args_kwargs(self, method: str, url: str, headers: Mapping[str, str], post_data: Any) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        # The SDK hands httpx the encoded form as `data=`, which httpx deprecates for raw text.
        data = kwargs.pop("data", None)
        if data:
            kwargs["content"] = data
        return args, kwargs

    # HTTPXClient's own signature differs from its base's; this one matches HTTPXClient, which it calls.
    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        started = time.perf_counter()
        verb, path = method.upper(), _metric_path(url)
        try:
            content, status, response_headers = super().request(method, url, headers, post_data)
        except stripe.APIConnectionError as exc:
            if not isinstance(exc.__cause__, _NOT_SENT):
                self._local.reached = True
            _observe("stripe", verb, path, "no_answer", started)
            raise
        self._local.reached = True
        outcome = ("ok" if 200 <= status < 300 else "ratelimited" if status == 429
                   else "server_error" if status >= 500 else "client_error")
        _observe("stripe", verb, path, outcome, started)
        return content, status, response_headers

    def _sleep_time_seconds(self, num_retries: int) -> float:
        return float(super()._sleep_time_seconds(num_retries)) * self._backoff_scale


# ----------------------------------------------------------------------------------------------- client


class StripeClient:
    """finance-desk's Stripe calls. Reads are retried by the SDK; the refund is retried with one key."""

    name: str = "stripe"

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_API_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_network_retries: int = 2,
        backoff_scale: float = 1.0,
    ) -> None:
        """`backoff_scale` shrinks the SDK's retry pauses (0.5 s doubling, at most 5 s); tests pass ~0.01."""
        if not api_key or not api_key.strip():
            raise ValueError("a Stripe API key is required")
        if max_network_retries < 0:
            raise ValueError("max_network_retries must be 0 or more")
        if not timeout > 0:  # the SDK's httpx client reads a timeout of 0 as "no timeout"
            raise ValueError("timeout must be above 0 seconds")
        self.base_url = base_url.rstrip("/")
        self.max_network_retries = max_network_retries
        self.timeout = timeout
        self._secrets = (api_key, api_key.strip())
        self._http = _ObservedHTTPXClient(timeout, backoff_scale)
        self._stripe = stripe.StripeClient(
            api_key,
            base_addresses={"api": self.base_url},
            stripe_version=STRIPE_API_VERSION,
            max_network_retries=max_network_retries,
            http_client=self._http,
        )

    def __repr__(self) -> str:
        return f"StripeClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> StripeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- reads

    def get_charge(self, charge_id: str) -> Charge:
        """A charge by `ch_`/`py_` ID; a `pi_` ID resolves to the PaymentIntent's latest charge."""
        charge_id = self._id(charge_id, "charge", is_charge_id, is_payment_intent_id)
        if is_payment_intent_id(charge_id):
            intent = self._call(f"payment {charge_id}", lambda: self._stripe.v1.payment_intents.retrieve(
                charge_id, params={"expand": ["latest_charge"]}))
            latest = intent.to_dict().get("latest_charge")
            if isinstance(latest, str):
                return self._read(f"charge {latest}", Charge.from_object,
                                  lambda: self._stripe.v1.charges.retrieve(latest))
            if not isinstance(latest, Mapping):
                raise NotFound(f"Stripe payment {charge_id} has no charge yet (it was never confirmed).",
                               provider=self.name)
            return self._convert(latest, Charge.from_object, "charge", write=False)
        return self._read(f"charge {charge_id}", Charge.from_object,
                          lambda: self._stripe.v1.charges.retrieve(charge_id))

    def list_charges(self, customer: str, *, limit: int = 100) -> list[Charge]:
        """The customer's charges, newest first, at most `limit`."""
        customer = self._id(customer, "customer", is_customer_id)
        return self._list(f"the charges of {customer}", Charge.from_object, limit,
                          lambda: self._stripe.v1.charges.list(params={"customer": customer, "limit": _page(limit)}))

    def list_refunds(self, charge_id: str) -> list[Refund]:
        """Every refund of the charge (all pages), newest first."""
        charge_id = self._id(charge_id, "charge", is_charge_id, is_payment_intent_id)
        key = "payment_intent" if is_payment_intent_id(charge_id) else "charge"
        return self._list(f"the refunds of {charge_id}", Refund.from_object, None,
                          lambda: self._stripe.v1.refunds.list(params=cast(Any, {key: charge_id, "limit": 100})))

    def find_refund(self, charge_id: str, call_id: str) -> list[Refund]:
        """The charge's refunds whose metadata `dialnexa_call_id` is `call_id` (Reconcile after OutcomeUnknown)."""
        if not call_id:
            raise ValueError("call_id is required")
        return [r for r in self.list_refunds(charge_id) if r.metadata.get(CALL_ID_KEY) == call_id]

    def get_refund(self, refund_id: str) -> Refund:
        refund_id = self._id(refund_id, "refund", is_refund_id)
        return self._read(f"refund {refund_id}", Refund.from_object,
                          lambda: self._stripe.v1.refunds.retrieve(refund_id))

    def get_dispute(self, dispute_id: str) -> Dispute:
        dispute_id = self._id(dispute_id, "dispute", is_dispute_id)
        return self._read(f"dispute {dispute_id}", Dispute.from_object,
                          lambda: self._stripe.v1.disputes.retrieve(dispute_id))

    def get_invoice(self, invoice_id: str) -> Invoice:
        invoice_id = self._id(invoice_id, "invoice", is_invoice_id)
        return self._read(f"invoice {invoice_id}", Invoice.from_object,
                          lambda: self._stripe.v1.invoices.retrieve(invoice_id))

    def get_subscription(self, subscription_id: str) -> Subscription:
        subscription_id = self._id(subscription_id, "subscription", is_subscription_id)
        return self._read(f"subscription {subscription_id}", Subscription.from_object,
                          lambda: self._stripe.v1.subscriptions.retrieve(subscription_id))

    def get_customer(self, customer_id: str) -> Customer:
        customer_id = self._id(customer_id, "customer", is_customer_id)
        return self._read(f"customer {customer_id}", Customer.from_object,
                          lambda: self._stripe.v1.customers.retrieve(customer_id))

    def list_customers(self, *, starting_after: str | None = None, limit: int = 100) -> tuple[list[Customer], bool]:
        """One page of the customer list, newest first: (customers, has_more)."""
        params: dict[str, Any] = {"limit": _page(limit)}
        if starting_after is not None:
            params["starting_after"] = self._id(starting_after, "customer", is_customer_id)
        what = "the customer list"
        page = self._call(what, lambda: self._stripe.v1.customers.list(params=cast(Any, params)))
        return [self._convert(i, Customer.from_object, what, write=False) for i in page.data], bool(page.has_more)

    def list_subscriptions(self, customer: str, *, limit: int = 10) -> list[Subscription]:
        """The customer's subscriptions in every status (canceled too), newest first, at most `limit`."""
        customer = self._id(customer, "customer", is_customer_id)
        return self._list(f"the subscriptions of {customer}", Subscription.from_object, limit,
                          lambda: self._stripe.v1.subscriptions.list(
                              params={"customer": customer, "status": "all", "limit": _page(limit)}))

    def list_invoices(self, customer: str, *, limit: int = 10) -> list[Invoice]:
        customer = self._id(customer, "customer", is_customer_id)
        return self._list(f"the invoices of {customer}", Invoice.from_object, limit,
                          lambda: self._stripe.v1.invoices.list(params={"customer": customer, "limit": _page(limit)}))

    def check(self) -> None:
        """One cheap authenticated read (`GET /v1/balance`); raises ProviderError when Stripe is unusable."""
        self._call("the balance", lambda: self._stripe.v1.balance.retrieve())

    # ----------------------------------------------------------------- the refund

    def create_refund(
        self,
        charge_id: str,
        amount: Decimal,
        currency: str,
        reason: str,
        *,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> Refund:
        """Refund `amount` of the charge (a `pi_` ID refunds the PaymentIntent's charge).

        The SDK retries timeouts, dropped connections, 409 and 5xx up to `max_network_retries` times with
        this same `Idempotency-Key`, so Stripe answers a retry with the first attempt's saved result. If
        no attempt could be read: `OutcomeUnknown` (look it up with `find_refund`). A refusal: StripeError.
        `currency` is only used to convert `amount` to minor units: Stripe refunds in the charge's currency.
        """
        charge_id = self._id(charge_id, "charge", is_charge_id, is_payment_intent_id)
        code = normalise_currency(currency)
        if code is None or code != currency.strip().upper():
            raise self._not_sent(f"{currency!r} is not an ISO 4217 currency code")
        minor = self._minor(amount, code)
        if reason not in REFUND_REASONS:
            raise self._not_sent(f"the reason must be one of {', '.join(REFUND_REASONS)}")
        key = idempotency_key if isinstance(idempotency_key, str) else ""
        if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
            raise self._not_sent(f"the idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")
        params: dict[str, Any] = {
            "payment_intent" if is_payment_intent_id(charge_id) else "charge": charge_id,
            "amount": minor,
            "reason": reason,
            "metadata": self._metadata(metadata),
        }
        what = f"the refund of {charge_id}"
        answer = self._call(what, lambda: self._stripe.v1.refunds.create(
            params=cast(Any, params), options={"idempotency_key": key}), write=True)
        refund = self._convert(answer, Refund.from_object, "refund", write=True)
        if refund.currency != code:
            log.warning("Stripe refund %s is in %s, the caller asked in %s", refund.id, refund.currency, code)
        return refund

    # ----------------------------------------------------------------- plumbing

    def _id(self, value: str, what: str, *checks: Callable[[object], bool]) -> str:
        text = value.strip() if isinstance(value, str) else ""
        if not any(check(text) for check in checks):
            raise StripeError(f"Not sent to Stripe: that is not a Stripe {what} ID.", code="invalid_id")
        return text

    def _not_sent(self, problem: str) -> StripeError:
        return StripeError(f"Not sent to Stripe: {problem}.", code="invalid_request")

    def _minor(self, amount: Decimal, currency: str) -> int:
        if not isinstance(amount, Decimal) or isinstance(amount, bool):
            raise self._not_sent("the amount must be an exact decimal, never a float")
        if not amount.is_finite() or amount <= 0:
            raise self._not_sent("the amount must be above zero")
        try:
            minor = amount.scaleb(exponent(currency))
            exact = minor == minor.to_integral_value()
        except InvalidOperation:
            exact = False
        if not exact:
            raise self._not_sent(f"{currency} amounts have at most {exponent(currency)} decimal places")
        return int(minor)

    def _metadata(self, metadata: Mapping[str, str]) -> dict[str, str]:
        if len(metadata) > MAX_METADATA_KEYS:
            raise self._not_sent(f"Stripe takes at most {MAX_METADATA_KEYS} metadata keys")
        clean: dict[str, str] = {}
        for key, value in metadata.items():
            if (not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY_LENGTH
                    or "[" in key or "]" in key):
                raise self._not_sent(f"metadata keys are 1 to {MAX_METADATA_KEY_LENGTH} characters without brackets")
            if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE_LENGTH:
                raise self._not_sent(f"metadata values are text of at most {MAX_METADATA_VALUE_LENGTH} characters")
            clean[key] = value
        return clean

    def _call(self, what: str, call: Callable[[], Any], *, write: bool = False) -> Any:
        self._http.begin()
        try:
            return call()
        except stripe.StripeError as exc:
            raise self._error(exc, what, write) from None

    def _read(self, what: str, convert: Callable[[Mapping[str, Any]], T], call: Callable[[], Any]) -> T:
        return self._convert(self._call(what, call), convert, what, write=False)

    def _list(self, what: str, convert: Callable[[Mapping[str, Any]], T], limit: int | None,
              call: Callable[[], Any]) -> list[T]:
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")

        def collect() -> list[Any]:
            found: list[Any] = []
            items: Iterator[Any] = iter(call().auto_paging_iter())
            for item in items:
                found.append(item)
                if limit is not None and len(found) >= limit:
                    break
            return found

        return [self._convert(item, convert, what, write=False) for item in self._call(what, collect)]

    def _convert(self, obj: Any, convert: Callable[[Mapping[str, Any]], T], what: str, *, write: bool) -> T:
        plain = obj.to_dict() if isinstance(obj, stripe.StripeObject) else obj
        try:
            if not isinstance(plain, Mapping):
                raise StripeObjectError(f"Stripe's answer for {what} was not an object")
            return convert(plain)
        except StripeObjectError as exc:
            if write:
                raise OutcomeUnknown(
                    f"Stripe answered {what} with something finance-desk could not read ({exc}): it may or may "
                    "not have been made. Unknown: check the charge's refunds in Stripe.", provider=self.name,
                ) from None
            raise StripeError(f"Stripe sent {what} in a form finance-desk could not read: {exc}.",
                              code="unreadable", retryable=False) from None

    def _error(self, exc: stripe.StripeError, what: str, write: bool) -> ProviderError:
        status = exc.http_status
        code = exc.code if isinstance(exc.code, str) and exc.code else None
        request_id = exc.request_id
        tries = f"{self.max_network_retries + 1} attempt{'s' if self.max_network_retries else ''}"

        def refused(default_code: str, text: str, *, retryable: bool = False) -> StripeError:
            error = getattr(exc, "error", None)
            param = getattr(error, "param", None)
            return StripeError(self._scrub(text), code=code or default_code, status=status, retryable=retryable,
                               param=param if isinstance(param, str) else None, request_id=request_id)

        if isinstance(exc, stripe.APIConnectionError):
            if write and self._http.reached():
                return OutcomeUnknown(
                    f"no answer from Stripe to {what} after {tries} with the same idempotency key: it may or may "
                    "not have been made. Unknown: check the charge's refunds in Stripe before trying again.",
                    provider=self.name,
                )
            if not self._http.reached():
                return refused("connection", f"could not connect to Stripe for {what}; nothing was sent. "
                               "Try again shortly.", retryable=True)
            return refused("connection", f"Stripe did not answer {what} after {tries}. Try again shortly.",
                           retryable=True)
        if isinstance(exc, stripe.RateLimitError):
            return refused("rate_limit", f"Stripe is rate-limiting finance-desk ({what}); nothing was done. "
                           "Try again shortly.", retryable=True)
        if isinstance(exc, stripe.AuthenticationError):
            return refused("authentication", f"Stripe refused the API key (HTTP {status}) for {what}. "
                           "Check STRIPE_API_KEY.")
        if isinstance(exc, stripe.PermissionError):
            return refused("permission", f"the Stripe API key lacks the permission {what} needs (HTTP {status}). "
                           "See the README's Stripe key permissions.")
        if isinstance(exc, stripe.IdempotencyError):
            return refused("idempotency_error", f"Stripe refused {what}: {PLAIN_WORDS['idempotency_error']}.")
        if isinstance(exc, stripe.InvalidRequestError) and (status == 404 or code == "resource_missing"):
            return NotFound(self._scrub(f"Stripe has no such record: {what} (HTTP {status or 404})."),
                            provider=self.name, status=status or 404)
        if isinstance(exc, stripe.InvalidRequestError | stripe.CardError):
            words = plain_words(code)
            if words is None:
                detail = self._detail(exc)
                words = f"Stripe says: {detail}" if detail else "Stripe gave no reason"
            return refused("invalid_request" if isinstance(exc, stripe.InvalidRequestError) else "card_error",
                           f"Stripe refused {what}: {words}.")
        # APIError: 5xx, 409 (the key still in use), or a body that was not Stripe's JSON.
        if write:
            return OutcomeUnknown(
                self._scrub(f"Stripe failed {what} (HTTP {status}) on all {tries} with the same idempotency key: "
                            "it may or may not have been made. Unknown: check the charge's refunds in Stripe "
                            "before trying again."),
                provider=self.name, status=status,
            )
        words = plain_words(code)
        return refused("api_error", f"Stripe had a server error on {what} (HTTP {status}) on all {tries}"
                       f"{': ' + words if words else ''}. Try again shortly.", retryable=True)

    def _detail(self, exc: stripe.StripeError) -> str | None:
        error = getattr(exc, "error", None)
        message = getattr(error, "message", None)
        if not isinstance(message, str) or not message.strip():
            return None
        text = " ".join(self._scrub(message).split())
        return text if len(text) <= 200 else text[:199] + "…"

    def _scrub(self, text: str) -> str:
        return scrub_text(text, self._secrets)


def _page(limit: int) -> int:
    return max(1, min(limit, 100))
