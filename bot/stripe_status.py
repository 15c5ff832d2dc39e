"""What Stripe says of a case's customer, for the card and `/finance lookup` (issue 13, "Status where
finance looks"): the charge (status, refunded amount, dispute state), the subscription's status and the
latest invoice (status and hosted link).

Nothing here runs before an ack or holds a database lock across a network call. The card is posted
first; `refresh_later` asks Stripe on a worker thread, stores the answer on the case
(`Case.stripe_status`) and queues the card again only when what it shows changed (a queued card bumps
`card_version`, which turns clicks on the previous render into "this card changed"). `/finance lookup`
waits a short budget for the answer (`status_for_lookup`) and otherwise says Stripe did not answer in
time; the fetch carries on and lands in the cache for the next look.

Stripe failing is never an error here: every `ProviderError` (and anything unexpected) becomes
`{"unavailable": "<plain words>", "fetched_at": …}`, which the card shows as "Stripe unavailable (…)".
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Engine, or_
from sqlmodel import Session, col, select

from bot.slack.outbox import enqueue_card
from providers.base import NotFound, ProviderError
from providers.refunds import is_charge_reference
from providers.stripe import Charge, Dispute, Invoice, Subscription, is_customer_id, is_dispute_id
from storage.db import session_scope
from storage.models import Case, utcnow

log = logging.getLogger(__name__)

DEFAULT_TTL: Final = 60.0
# A failure is kept briefly: long enough that a burst of refreshes does not hammer a struggling Stripe,
# short enough that the card recovers soon after Stripe does.
DEFAULT_FAILURE_TTL: Final = 10.0
LOOKUP_BUDGET: Final = 0.8
MAX_REASON: Final = 300
# Subscriptions in these states are over; a live one is shown in preference when the customer has both.
_ENDED: Final = frozenset({"canceled", "incomplete_expired"})
TIMED_OUT: Final = "Stripe did not answer in time"

# (Stripe customer, charge, dispute): what one status is about.
Key = tuple[str | None, str | None, str | None]


class StatusSource(Protocol):
    """The reads a status needs (providers.stripe.StripeClient has them all)."""

    def get_charge(self, charge_id: str) -> Charge: ...

    def list_charges(self, customer: str, *, limit: int = 100) -> list[Charge]: ...

    def list_subscriptions(self, customer: str, *, limit: int = 10) -> list[Subscription]: ...

    def list_invoices(self, customer: str, *, limit: int = 10) -> list[Invoice]: ...

    def get_dispute(self, dispute_id: str) -> Dispute: ...


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ChargeStatus(_Model):
    id: str
    status: str
    amount: Decimal
    amount_refunded: Decimal
    currency: str
    disputed: bool
    dispute_status: str | None = None


class SubscriptionStatus(_Model):
    id: str
    status: str


class InvoiceStatus(_Model):
    id: str
    number: str | None = None
    status: str | None = None
    hosted_invoice_url: str | None = None
    amount_due: Decimal
    currency: str


class StripeStatus(_Model):
    """One look at Stripe. Stored as JSON (`to_json`): amounts as decimal strings, `fetched_at` ISO UTC.

    `unavailable` set means Stripe could not be asked (the rest is empty). `missing` names what Stripe
    says does not exist ("charge ch_…", "customer cus_…"): a wrong ID on the call is not an outage."""

    fetched_at: datetime
    charge: ChargeStatus | None = None
    subscription: SubscriptionStatus | None = None
    latest_invoice: InvoiceStatus | None = None
    missing: tuple[str, ...] = ()
    unavailable: str | None = None

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {
            "fetched_at": self.fetched_at.isoformat()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> StripeStatus | None:
        """A stored status, or None when there is none or it cannot be read (an older shape)."""
        if not isinstance(data, Mapping) or not data:
            return None
        try:
            return cls.model_validate(dict(data))
        except ValidationError:
            return None


def _shown(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the card renders from a stored status: everything but when it was fetched."""
    if not isinstance(data, Mapping) or not data:
        return None
    return {key: value for key, value in data.items() if key != "fetched_at"}


def same_shown(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    return _shown(old) == _shown(new)


def unavailable(reason: str, now: datetime) -> StripeStatus:
    text = " ".join(str(reason).split()) or "no reason given"
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 1] + "…"
    return StripeStatus(fetched_at=now, unavailable=text)


# ---------------------------------------------------------------------------------------------------
# One look at Stripe


def _charge(charge: Charge, dispute_status: str | None) -> ChargeStatus:
    return ChargeStatus(id=charge.id, status=charge.status, amount=charge.amount,
                        amount_refunded=charge.amount_refunded, currency=charge.currency, disputed=charge.disputed,
                        dispute_status=dispute_status if charge.disputed else None)


def _subscription(subscriptions: Sequence[Subscription]) -> SubscriptionStatus | None:
    if not subscriptions:
        return None
    live = [s for s in subscriptions if s.status not in _ENDED]
    chosen = (live or list(subscriptions))[0]  # Stripe lists newest first
    return SubscriptionStatus(id=chosen.id, status=chosen.status)


def _invoice(invoices: Sequence[Invoice]) -> InvoiceStatus | None:
    # A draft is not yet an invoice anyone can see or pay; the newest finalised one is "the latest".
    finalised = [i for i in invoices if i.status != "draft"]
    if not finalised:
        return None
    chosen = finalised[0]
    return InvoiceStatus(id=chosen.id, number=chosen.number, status=chosen.status,
                         hosted_invoice_url=chosen.hosted_invoice_url, amount_due=chosen.amount_due,
                         currency=chosen.currency)


def fetch_status(
    client: StatusSource, customer_id: str | None, charge_id: str | None, *, dispute_id: str | None = None,
    now: datetime | None = None,
) -> StripeStatus | None:
    """Ask Stripe once for each part; None when there is nothing to ask about. Never raises.

    `charge_id` (`ch_`/`py_`/`pi_`) is the charge shown; without one, the customer's newest charge.
    The subscription and latest invoice are the customer's. Each call is bounded by the client's own
    timeout and retries (give the status client a short timeout and few retries).
    """
    customer = customer_id.strip() if isinstance(customer_id, str) and is_customer_id(customer_id.strip()) else None
    charge_ref = charge_id.strip() if isinstance(charge_id, str) and is_charge_reference(charge_id) else None
    dispute = dispute_id.strip() if isinstance(dispute_id, str) and is_dispute_id(dispute_id.strip()) else None
    if customer is None and charge_ref is None:
        return None
    missing: list[str] = []
    try:
        charge: Charge | None = None
        if charge_ref is not None:
            try:
                charge = client.get_charge(charge_ref)
            except NotFound:
                missing.append(f"charge {charge_ref}")
        elif customer is not None:
            try:
                newest = client.list_charges(customer, limit=1)
            except NotFound:
                newest = []
                missing.append(f"customer {customer}")
            charge = newest[0] if newest else None
        dispute_status = None
        if charge is not None and charge.disputed and dispute is not None:
            try:
                found = client.get_dispute(dispute)
            except NotFound:
                found = None
            if found is not None and found.charge in (charge.id, charge.payment_intent):
                dispute_status = found.status
        subscription = invoice = None
        if customer is not None and f"customer {customer}" not in missing:
            try:
                subscription = _subscription(client.list_subscriptions(customer, limit=10))
                invoice = _invoice(client.list_invoices(customer, limit=5))
            except NotFound:
                missing.append(f"customer {customer}")
    except ProviderError as exc:
        return unavailable(exc.message, now or utcnow())
    except Exception as exc:  # a bug or an SDK surprise must not break a card or an answer
        log.warning("Stripe status failed unexpectedly: %s", exc.__class__.__name__)
        return unavailable("finance-desk could not read Stripe's answer", now or utcnow())
    return StripeStatus(fetched_at=now or utcnow(), charge=_charge(charge, dispute_status) if charge else None,
                        subscription=subscription, latest_invoice=invoice, missing=tuple(missing))


# ---------------------------------------------------------------------------------------------------
# The cache


class StatusCache:
    """A small thread-safe TTL cache of statuses keyed by (customer, charge, dispute).

    Callers asking for the same key while a fetch is under way share that fetch, so a burst of cards
    for one customer is one set of Stripe calls. `fresh=True` (after a refund or a webhook) skips what is
    cached and in flight: their answer may predate the change. A newer fetch's answer is never replaced
    by an older one that finishes later.
    """

    def __init__(
        self, ttl: float = DEFAULT_TTL, *, failure_ttl: float = DEFAULT_FAILURE_TTL,
        clock: Callable[[], datetime] = utcnow, max_entries: int = 2048, executor: Executor | None = None,
        workers: int = 4,
    ) -> None:
        if ttl <= 0 or failure_ttl < 0:
            raise ValueError("ttl must be above 0 and failure_ttl 0 or more")
        self.ttl = timedelta(seconds=ttl)
        self.failure_ttl = timedelta(seconds=min(failure_ttl, ttl))
        self.clock = clock
        self.max_entries = max_entries
        self._lock = threading.Lock()
        # key -> (generation, expires_at, status)
        self._entries: dict[Key, tuple[int, datetime, StripeStatus | None]] = {}
        self._inflight: dict[Key, tuple[int, Future[StripeStatus | None]]] = {}
        self._generation = itertools.count(1)
        self._executor = executor
        self._own_executor: ThreadPoolExecutor | None = None
        self._workers = workers
        self._closed = False

    def close(self) -> None:
        """Stop this cache's own fetch threads (an executor passed in is the caller's to close)."""
        with self._lock:
            own, self._own_executor = self._own_executor, None
            self._closed = True
        if own is not None:
            own.shutdown(wait=False, cancel_futures=True)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def cached(self, customer_id: str | None, charge_id: str | None, dispute_id: str | None = None,
               ) -> StripeStatus | None:
        """The fresh cached status for this key, if any (no fetch)."""
        key = (customer_id, charge_id, dispute_id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[1] > self.clock():
                return entry[2]
        return None

    def get_or_fetch(self, client: StatusSource, customer_id: str | None, charge_id: str | None,
                     dispute_id: str | None = None, *, fresh: bool = False) -> StripeStatus | None:
        """The cached status, or one fetched now on this thread (or the in-flight one, awaited)."""
        future, run = self._claim(client, (customer_id, charge_id, dispute_id), fresh)
        if run is not None:
            run()
        return future.result()

    def fetch_async(self, client: StatusSource, customer_id: str | None, charge_id: str | None,
                    dispute_id: str | None = None, *, fresh: bool = False) -> Future[StripeStatus | None]:
        """A future of the status: already done when cached, else fetched on this cache's threads."""
        future, run = self._claim(client, (customer_id, charge_id, dispute_id), fresh)
        if run is not None:
            try:
                self._pool().submit(run)
            except RuntimeError:  # closed or shutting down: answer here rather than leave the future unset
                run()
        return future

    def _pool(self) -> Executor:
        if self._executor is not None:
            return self._executor
        with self._lock:
            if self._closed:
                raise RuntimeError("the Stripe status cache is closed")
            if self._own_executor is None:
                self._own_executor = ThreadPoolExecutor(max_workers=self._workers,
                                                        thread_name_prefix="stripe-status")
            return self._own_executor

    def _claim(self, client: StatusSource, key: Key, fresh: bool,
               ) -> tuple[Future[StripeStatus | None], Callable[[], None] | None]:
        with self._lock:
            now = self.clock()
            if not fresh:
                entry = self._entries.get(key)
                if entry is not None and entry[1] > now:
                    done: Future[StripeStatus | None] = Future()
                    done.set_result(entry[2])
                    return done, None
                running = self._inflight.get(key)
                if running is not None:
                    return running[1], None
            generation = next(self._generation)
            future: Future[StripeStatus | None] = Future()
            self._inflight[key] = (generation, future)

        def run() -> None:
            try:
                status = fetch_status(client, key[0], key[1], dispute_id=key[2], now=self.clock())
            except BaseException as exc:  # fetch_status never raises; a thread must still never leave waiters hanging
                status = unavailable("finance-desk could not read Stripe's answer", self.clock())
                log.warning("Stripe status fetch failed: %s", exc.__class__.__name__)
            self._store(key, generation, status)
            future.set_result(status)

        return future, run

    def _store(self, key: Key, generation: int, status: StripeStatus | None) -> None:
        with self._lock:
            running = self._inflight.get(key)
            if running is not None and running[0] == generation:
                del self._inflight[key]
            entry = self._entries.get(key)
            if entry is not None and entry[0] > generation:
                return  # a later fetch already answered
            ttl = self.ttl if status is None or status.available else self.failure_ttl
            if ttl <= timedelta(0):
                self._entries.pop(key, None)
                return
            self._entries[key] = (generation, self.clock() + ttl, status)
            self._entries[key] = self._entries.pop(key)  # newest last: eviction takes the oldest first
            if len(self._entries) > self.max_entries:
                now = self.clock()
                for old in [k for k, e in self._entries.items() if e[1] <= now]:
                    del self._entries[old]
                while len(self._entries) > self.max_entries:
                    del self._entries[next(iter(self._entries))]


# ---------------------------------------------------------------------------------------------------
# Cases


def case_key(case: Case, customer: str | None = None) -> Key | None:
    """What a case's status is about: its Stripe customer (or `customer`, e.g. the matched MoonClerk
    customer's reference), its charge (`stripe_charge_id`, else a `ch_`/`py_`/`pi_` payment ID named on
    the call) and its dispute. None when the case names neither a Stripe customer nor a charge."""
    stripe_customer = case.stripe_customer_id or customer
    stripe_customer = stripe_customer.strip() if stripe_customer and is_customer_id(stripe_customer.strip()) else None
    charge = next((value.strip() for value in (case.stripe_charge_id, case.payment_id)
                   if value and is_charge_reference(value)), None)
    if stripe_customer is None and charge is None:
        return None
    dispute = case.stripe_dispute_id if case.stripe_dispute_id and is_dispute_id(case.stripe_dispute_id) else None
    return stripe_customer, charge, dispute


def _with_case_dispute(status: StripeStatus, case: Case) -> StripeStatus:
    """The dispute state the webhooks recorded, when Stripe's charge says disputed but no dispute was read."""
    charge = status.charge
    if charge is None or not charge.disputed or charge.dispute_status or not case.stripe_dispute_status:
        return status
    charge = charge.model_copy(update={"dispute_status": case.stripe_dispute_status})
    return status.model_copy(update={"charge": charge})


def refresh_case(
    engine: Engine, client: StatusSource, cache: StatusCache, case_id: int, now: datetime, *,
    resolve_customer: Callable[[Case], str | None] | None = None, fresh: bool = False,
) -> bool:
    """Fetch the case's Stripe status, store it, and queue the card when what it shows changed.

    `resolve_customer` finds the Stripe customer of a matched caller when the case has no
    `stripe_customer_id` yet (e.g. the MoonClerk customer's `customer_reference`); it may call out, so
    it runs here, outside any transaction, and its failure counts as "no customer". `fresh` skips the
    cache (after a refund or a webhook). Returns whether the card was queued. No lock is held while
    Stripe is asked; an answer for IDs the case no longer has, or older than the stored one, is dropped.
    """
    with Session(engine) as session:
        case = session.get(Case, case_id)
    if case is None:
        return False
    resolved: str | None = None
    if not case.stripe_customer_id and resolve_customer is not None:
        try:
            resolved = resolve_customer(case)
        except Exception as exc:  # MoonClerk down: show what the case itself names
            log.info("case %s: Stripe customer not resolved: %s", case_id, exc.__class__.__name__)
    key = case_key(case, resolved)
    if key is None:
        # Nothing to ask about (any more): nothing shown.
        return case.stripe_status is not None and _store(engine, case_id, None, None, resolved, now)
    status = cache.get_or_fetch(client, *key, fresh=fresh)
    if status is not None:
        status = _with_case_dispute(status, case)
    if same_shown(case.stripe_status, status.to_json() if status else None):
        return False
    return _store(engine, case_id, key, status, resolved, now)


def _store(engine: Engine, case_id: int, key: Key | None, status: StripeStatus | None, resolved: str | None,
           now: datetime) -> bool:
    new = status.to_json() if status is not None else None
    with session_scope(engine) as session:
        case = session.get(Case, case_id, with_for_update=True, populate_existing=True)
        if case is None or case_key(case, resolved) != key:
            return False  # the case changed while Stripe was asked: that change queues its own refresh
        stored = StripeStatus.from_json(case.stripe_status)
        if status is not None and stored is not None and stored.fetched_at > status.fetched_at:
            return False
        if same_shown(case.stripe_status, new):
            return False
        case.stripe_status = new
        session.add(case)
        enqueue_card(session, case, now, same_buttons=True)
        return True


def refresh_later(
    executor: Executor, engine: Engine, client: StatusSource | None, cache: StatusCache, case_id: int,
    clock: Callable[[], datetime] = utcnow, *, resolve_customer: Callable[[Case], str | None] | None = None,
    fresh: bool = False,
) -> Future[bool] | None:
    """`refresh_case` on `executor`, so the caller (a listener after its ack, a webhook, a worker) never
    waits for Stripe. None when Stripe is not configured. Errors are logged, never raised."""
    if client is None:
        return None

    def run() -> bool:
        try:
            return refresh_case(engine, client, cache, case_id, clock(), resolve_customer=resolve_customer,
                                fresh=fresh)
        except Exception:
            log.exception("refreshing the Stripe status of case %s failed", case_id)
            return False

    try:
        return executor.submit(run)
    except RuntimeError:  # the executor is shutting down: the next refresh will catch up
        log.info("Stripe status refresh of case %s skipped: shutting down", case_id)
        return None


def stripe_ids(obj: Mapping[str, Any]) -> set[str]:
    """The IDs a Stripe object (a webhook's `data.object`) names that a case may hold: its own ID, its
    charge, PaymentIntent and customer (plain or expanded)."""
    found: set[str] = set()
    for key in ("id", "charge", "payment_intent", "customer"):
        value = obj.get(key)
        if isinstance(value, Mapping):
            value = value.get("id")
        if isinstance(value, str) and 0 < len(value) <= 100:
            found.add(value)
    return found


def cases_naming(engine: Engine, ids: Iterable[str], *, limit: int = 20) -> list[int]:
    """Cases whose Stripe charge, customer or dispute (or the charge named as their payment) is one of
    `ids`, newest first."""
    wanted = sorted({i for i in ids if isinstance(i, str) and i})
    if not wanted:
        return []
    with Session(engine) as session:
        rows = session.exec(select(Case.id).where(or_(
            col(Case.stripe_charge_id).in_(wanted), col(Case.stripe_dispute_id).in_(wanted),
            col(Case.stripe_customer_id).in_(wanted), col(Case.payment_id).in_(wanted),
        )).order_by(col(Case.id).desc()).limit(limit)).all()
    return [row for row in rows if row is not None]


@dataclass
class StripeStatusService:
    """Everything the callers need in one place (held by ActionContext): refresh a case's card after a
    match, a refund or a webhook without waiting, and the lookup's statuses within their budget."""

    engine: Engine
    client: StatusSource
    executor: Executor
    cache: StatusCache = field(default_factory=StatusCache)
    clock: Callable[[], datetime] = utcnow
    # The matched caller's Stripe customer when the case has none stored (e.g. MoonClerk's customer_reference).
    resolve_customer: Callable[[Case], str | None] | None = None
    lookup_budget: float = LOOKUP_BUDGET

    def refresh_later(self, case_id: int, *, fresh: bool = False) -> Future[bool] | None:
        return refresh_later(self.executor, self.engine, self.client, self.cache, case_id, self.clock,
                             resolve_customer=self.resolve_customer, fresh=fresh)

    def refresh_for_object_later(self, obj: Mapping[str, Any]) -> Future[int] | None:
        """After a Stripe webhook: every case naming the object's IDs, asked afresh (the cache predates
        the change). Returns a future of how many cards were queued."""
        ids = stripe_ids(obj)
        if not ids:
            return None

        def run() -> int:
            queued = 0
            try:
                for case_id in cases_naming(self.engine, ids):
                    queued += refresh_case(self.engine, self.client, self.cache, case_id, self.clock(),
                                           resolve_customer=self.resolve_customer, fresh=True)
            except Exception:
                log.exception("refreshing the Stripe status after a webhook failed")
            return queued

        try:
            return self.executor.submit(run)
        except RuntimeError:
            return None

    def prefetch(self, customer_references: Sequence[str | None]) -> None:
        """Start the lookup's fetches now, so they run while MoonClerk is read; `for_lookup` collects them."""
        for reference in customer_references:
            ref = reference.strip() if isinstance(reference, str) else None
            if ref and is_customer_id(ref):
                self.cache.fetch_async(self.client, ref, None)

    def for_lookup(self, customer_references: Sequence[str | None]) -> list[dict[str, Any] | None]:
        """For `/finance lookup`: each customer's status as blocks.lookup.CustomerResult.stripe_status."""
        statuses = statuses_for_lookup(self.client, self.cache, customer_references, self.lookup_budget)
        return [status.to_json() if status is not None else None for status in statuses]

    def close(self) -> None:
        self.cache.close()


# ---------------------------------------------------------------------------------------------------
# /finance lookup


def status_for_lookup(client: StatusSource | None, cache: StatusCache, customer_reference: str | None,
                      timeout_s: float = LOOKUP_BUDGET) -> StripeStatus | None:
    """The Stripe status of a MoonClerk customer's Stripe customer, waiting at most `timeout_s`.

    None when Stripe is not configured or the reference is not a Stripe customer ID (nothing shown).
    Past the budget: "Stripe did not answer in time"; the fetch finishes in the background and is cached.
    """
    return statuses_for_lookup(client, cache, [customer_reference], timeout_s)[0]


def statuses_for_lookup(client: StatusSource | None, cache: StatusCache,
                        customer_references: Sequence[str | None], timeout_s: float = LOOKUP_BUDGET,
                        ) -> list[StripeStatus | None]:
    """`status_for_lookup` for several customers at once, all within one shared budget."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    futures: list[Future[StripeStatus | None] | None] = []
    for reference in customer_references:
        ref = reference.strip() if isinstance(reference, str) else None
        if client is None or not ref or not is_customer_id(ref):
            futures.append(None)
        else:
            futures.append(cache.fetch_async(client, ref, None))
    statuses: list[StripeStatus | None] = []
    for future in futures:
        if future is None:
            statuses.append(None)
            continue
        try:
            statuses.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
        except FutureTimeout:
            statuses.append(unavailable(TIMED_OUT, cache.clock()))
    return statuses
