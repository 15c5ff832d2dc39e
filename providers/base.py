"""The small interface every payment provider client shares, and the HTTP plumbing under it.

A provider module (MoonClerk, Poof, a future Stripe) builds on `HttpClient`, raises only the
`ProviderError` family, and returns `ProviderResult` for actions. Callers therefore handle every
provider the same way:

- `OutcomeUnknown`: the request may have reached the provider and nobody knows whether it acted.
  Never retry blindly; look the action up at the provider first.
- `NotFound`: the record (or endpoint) does not exist.
- any other `ProviderError`: `.retryable` says whether trying again later is sensible.

Messages are plain words for finance staff and never contain API keys: every client registers its
secrets with `HttpClient`, which scrubs them from messages and from `ProviderResult.raw`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import httpx

from providers.currency import exponent, format_amount

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
# Body keys that carry credentials in some provider's payloads (Poof puts its webhook secret in the
# body), dropped from anything kept or shown.
SECRET_KEYS = frozenset({"x-poof-signature", "api_key", "apikey", "authorization", "refresh_token", "secret"})
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 4
# A provider asking us to wait longer than this is treated as down rather than held on a worker thread.
MAX_RETRY_AFTER = 60.0

# Errors raised before any byte of the request left this process: nothing can have happened.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol, httpx.ProxyError)

_jitter = random.SystemRandom()

# Told of every HTTP attempt: (provider, method, path, outcome, seconds). bot.metrics sets it; providers
# know nothing of bot, so the hook is all they expose.
CallObserver = Callable[[str, str, str, str, float], None]
_observer: CallObserver | None = None


def set_call_observer(observer: CallObserver | None) -> None:
    global _observer
    _observer = observer


def _observe(provider: str, method: str, path: str, outcome: str, started: float) -> None:
    if _observer is not None:
        try:
            _observer(provider, method, path, outcome, time.perf_counter() - started)
        except Exception:  # a metrics fault must never fail a money call
            log.exception("call observer failed")


class ProviderError(Exception):
    """A provider call that did not succeed; str() is a plain-words message with no secrets."""

    def __init__(self, message: str, *, provider: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, status={self.status!r}, "
            f"retryable={self.retryable!r}, message={self.message!r})"
        )


class OutcomeUnknown(ProviderError):
    """The request may or may not have taken effect (timeout or dropped connection after sending).

    Never retryable: repeating a money action whose first attempt may have worked could do it twice.
    """

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message, provider=provider, status=status, retryable=False)


class NotFound(ProviderError):
    def __init__(self, message: str, *, provider: str, status: int | None = 404) -> None:
        super().__init__(message, provider=provider, status=status, retryable=False)


@dataclass(frozen=True)
class ProviderResult:
    """What a provider action produced. `raw` is the response with secrets removed."""

    provider: str
    reference: str | None
    url: str | None
    raw: dict[str, Any] = field(default_factory=dict)
    # Where the provider keeps a status of its own for the action (a Stripe refund: pending, succeeded,
    # failed, requires_action, canceled); None means done. `error` is its failure reason in plain words.
    status: str | None = None
    error: str | None = None


@runtime_checkable
class Provider(Protocol):
    name: str

    def close(self) -> None: ...


# What finance-desk's money actions need from a payment platform. The action runner is written
# against these, not against Poof: another platform (the seeds pair these with Stripe) is one module
# implementing them, wired in bot.slack.service.action_context.


class ProviderTransaction(Protocol):
    """A transaction as reconcile reads it: identifiers first, never the amount alone."""

    @property
    def reference(self) -> str | None: ...

    @property
    def amount(self) -> Decimal: ...

    @property
    def method(self) -> str | None: ...

    @property
    def destination(self) -> str | None: ...

    @property
    def call_id(self) -> str | None: ...


class InvoiceProvider(Provider, Protocol):
    def create_fiat_invoice(self, amount: Decimal, currency: str, payment: str, *,
                            metadata: Mapping[str, Any] | None = None) -> ProviderResult:
        """A payment link for `amount` in `currency`. Sent once: never retried by the caller."""
        ...

    def list_transactions(self) -> Sequence[ProviderTransaction]: ...


class PayoutProvider(Provider, Protocol):
    def send_payout(self, amount: Decimal, crypto: str, address: str) -> ProviderResult:
        """Send `amount` of `crypto` to `address`, exactly once."""
        ...

    def list_transactions(self) -> Sequence[ProviderTransaction]: ...


@dataclass(frozen=True)
class Money:
    """An exact amount paired with its ISO 4217 currency."""

    amount: Decimal
    currency: str

    @classmethod
    def from_minor(cls, minor_units: int, currency: str) -> Money:
        """Integer minor units (cents, or whole yen for zero-decimal currencies) to an exact amount."""
        return cls(Decimal(minor_units).scaleb(-exponent(currency)), currency)

    def __str__(self) -> str:
        return format_amount(self.amount, self.currency)


def scrub(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a decoded JSON value without credential keys and with any secret text masked."""
    secrets = tuple(s for s in secrets if s)
    if isinstance(value, Mapping):
        return {str(k): scrub(v, secrets) for k, v in value.items() if str(k).lower() not in SECRET_KEYS}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        return scrub_text(value, secrets)
    return value


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _json_default(value: object) -> object:
    # Money goes on the wire as its exact decimal string, never through float.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")


def decode_json(content: bytes) -> Any:
    return json.loads(content, parse_float=Decimal)


def retry_after_seconds(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(Decimal(value))
    except ArithmeticError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now()).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def error_detail(response: httpx.Response, secrets: Iterable[str] = (), limit: int = 200) -> str | None:
    """A short human-readable reason from an error body, whatever its shape (JSON or text)."""
    try:
        body: Any = decode_json(response.content)
    except ValueError:
        body = response.content.decode("utf-8", errors="replace")
    text = _find_message(body)
    if not text:
        return None
    text = " ".join(scrub_text(text, secrets).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _find_message(body: Any) -> str | None:
    if isinstance(body, str):
        # An HTML error page says nothing useful in plain words.
        return None if body.lstrip().startswith("<") else body
    if isinstance(body, Mapping):
        for key in ("message", "error", "detail", "errors", "msg"):
            found = _find_message(body.get(key))
            if found:
                return found
    if isinstance(body, list) and body:
        return _find_message(body[0])
    return None


class HttpClient:
    """One provider's HTTP connection: base URL, default headers, timeouts, retries, error mapping.

    `retry=True` is for calls that are safe to repeat (reads). A call with `retry=False` is sent at
    most once: a timeout or dropped connection after sending becomes `OutcomeUnknown`.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        label: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        secrets: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.provider = provider
        self.label = label or provider
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._secrets = tuple(s for s in secrets if s)
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=dict(headers or {}),
            timeout=self._timeout,
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"HttpClient(provider={self.provider!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def scrub(self, value: Any) -> Any:
        return scrub(value, self._secrets)

    def error(self, message: str, *, status: int | None = None, retryable: bool = False) -> ProviderError:
        return ProviderError(scrub_text(message, self._secrets), provider=self.provider, status=status,
                             retryable=retryable)

    def outcome_unknown(self, message: str, *, status: int | None = None) -> OutcomeUnknown:
        return OutcomeUnknown(scrub_text(message, self._secrets), provider=self.provider, status=status)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | None] | None = None,
        json: Any = None,
        retry: bool,
    ) -> Any:
        """Send one call and return its decoded JSON body (Decimals for non-integers)."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        content = None
        headers = {}
        if json is not None:
            content = _dumps(json)
            headers["Content-Type"] = "application/json"
        attempts = self.max_attempts if retry else 1
        what = f"{self.label} {method.upper()} {path}"
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            started = time.perf_counter()
            try:
                response = self._http.request(method, path, params=query, content=content, headers=headers)
            except httpx.TransportError as exc:
                _observe(self.provider, method, path, "no_answer", started)
                if not last:
                    self._pause(attempt, None, what, type(exc).__name__)
                    continue
                raise self._transport_error(exc, retry) from None
            status = response.status_code
            _observe(self.provider, method, path, "ok" if 200 <= status < 300 else "ratelimited" if status == 429
                     else "server_error" if status >= 500 else "client_error", started)
            if 200 <= status < 300:
                return self._decode(response, retry)
            if status == 429 or status >= 500:
                if not last:
                    self._pause(attempt, response.headers.get("Retry-After"), what, f"HTTP {status}")
                    continue
                raise self._status_error(response, retry, attempts)
            raise self._status_error(response, retry, attempts)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    def _pause(self, attempt: int, retry_after: str | None, what: str, why: str) -> None:
        wait = retry_after_seconds(retry_after)
        if wait is None:
            ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            # Jitter spreads retries from several workers so they don't hit a recovering API together.
            wait = ceiling / 2 + _jitter.uniform(0, ceiling / 2)
        wait = min(wait, MAX_RETRY_AFTER)
        log.warning("%s failed (%s); retrying in %.1f s (attempt %d of %d)", what, why, wait, attempt + 1,
                    self.max_attempts)
        self._sleep(wait)

    def _seconds(self) -> str:
        read = self._timeout.read
        return f"{read:g} s" if read is not None else "the time allowed"

    def _transport_error(self, exc: httpx.TransportError, retry: bool) -> ProviderError:
        kind = type(exc).__name__
        if isinstance(exc, _NOT_SENT):
            return self.error(f"could not connect to {self.label} ({kind}); nothing was sent. Try again shortly.",
                              retryable=True)
        if retry:
            return self.error(f"{self.label} did not answer after {self.max_attempts} attempts ({kind}). "
                              "Try again shortly.", retryable=True)
        if isinstance(exc, httpx.TimeoutException):
            return self.outcome_unknown(
                f"no answer from {self.label} within {self._seconds()} ({kind}): the request may or may not "
                f"have taken effect. Unknown: check {self.label} before trying again."
            )
        return self.outcome_unknown(
            f"the connection to {self.label} dropped before it answered ({kind}): the request may or may not "
            f"have taken effect. Unknown: check {self.label} before trying again."
        )

    def _status_error(self, response: httpx.Response, retry: bool, attempts: int) -> ProviderError:
        status = response.status_code
        detail = error_detail(response, self._secrets)
        suffix = f": {detail}" if detail else ""
        if status == 404:
            return NotFound(scrub_text(f"{self.label} has no such record (HTTP 404){suffix}", self._secrets),
                            provider=self.provider)
        if status in (401, 403):
            return self.error(f"{self.label} refused the API credentials (HTTP {status}){suffix}. "
                              "Check the configured API key.", status=status)
        if status == 429 or status >= 500:
            what = "is rate-limiting finance-desk" if status == 429 else "had a server error"
            if retry:
                return self.error(f"{self.label} {what} (HTTP {status}) on all {attempts} attempts{suffix}. "
                                  "Try again later.", status=status, retryable=True)
            if status == 429:
                # A throttled request is refused before it is processed.
                return self.error(f"{self.label} {what} (HTTP 429){suffix}; nothing was done. Try again later.",
                                  status=status, retryable=True)
            # As with Stripe's 500s, a server error on a write leaves its effect indeterminate.
            return self.outcome_unknown(
                f"{self.label} {what} (HTTP {status}){suffix}: the request may or may not have taken effect. "
                f"Unknown: check {self.label} before trying again.",
                status=status,
            )
        return self.error(f"{self.label} rejected the request (HTTP {status}){suffix}.", status=status)

    def _decode(self, response: httpx.Response, retry: bool) -> Any:
        try:
            return decode_json(response.content)
        except ValueError:
            pass
        message = f"{self.label} answered HTTP {response.status_code} with a body that is not JSON"
        if retry:
            raise self.error(message + ". Try again shortly.", status=response.status_code, retryable=True)
        raise self.outcome_unknown(
            message + f": the request may or may not have taken effect. Unknown: check {self.label}.",
            status=response.status_code,
        )


def _dumps(body: Any) -> bytes:
    return json.dumps(body, default=_json_default, separators=(",", ":")).encode()
