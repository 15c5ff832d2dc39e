"""MoonClerk lookups for matching and `/finance lookup`: paging, a short TTL cache, single-flight loads.

MoonClerk has no search: finding a customer by email, phone or name means reading the customer list,
page by page (`count`/`offset`, no total; a short page is the last one). One scan is cached for
`ttl` seconds and shared by every thread, and concurrent requests for the same thing wait for the one
load in flight instead of each calling MoonClerk, so a burst of calls costs one scan.

Errors are never cached; a `NotFound` is (as "no such record") for the same short TTL.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC
from typing import Final, Literal, TypeVar

from bot.lookup.matching import CallerFacts, customer_phones, name_score, name_words, normalise_email
from providers.base import NotFound
from providers.dialnexa import normalise_phone
from providers.moonclerk import MAX_PAGE_SIZE, Customer, MoonClerkClient, Payment
from providers.stripe import is_customer_id

DEFAULT_TTL: Final = 60.0
DEFAULT_MAX_CUSTOMERS: Final = 10_000
DEFAULT_MAX_PAYMENTS: Final = 1_000  # per customer, read to find the latest ones
RECENT_PAYMENTS: Final = 5
MAX_RESULTS: Final = 5
MAX_ID: Final = 10**15
_SWEEP_AT: Final = 2_000

T = TypeVar("T")


@dataclass(frozen=True)
class CustomerScan:
    customers: tuple[Customer, ...]
    complete: bool  # False when the scan stopped at max_customers


class MoonClerkLookup:
    """Cached, thread-safe reads over one MoonClerkClient."""

    def __init__(
        self, client: MoonClerkClient, *, ttl: float = DEFAULT_TTL, page_size: int = MAX_PAGE_SIZE,
        max_customers: int = DEFAULT_MAX_CUSTOMERS, recent_payments: int = RECENT_PAYMENTS,
        max_payments: int = DEFAULT_MAX_PAYMENTS, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.client = client
        self.ttl = ttl
        self.page_size = page_size
        self.max_customers = max_customers
        self.recent = recent_payments
        self.max_payments = max(max_payments, recent_payments)
        self.clock = clock
        self._lock = threading.Lock()
        self._values: dict[Hashable, tuple[float, object]] = {}
        self._loading: dict[Hashable, threading.Lock] = {}

    # -- cache -------------------------------------------------------------------------------------
    def _get(self, key: Hashable) -> tuple[bool, object]:
        entry = self._values.get(key)
        if entry is not None and entry[0] > self.clock():
            return True, entry[1]
        return False, None

    def _cached(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            hit, value = self._get(key)
            if hit:
                return value  # type: ignore[return-value]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one load per key at a time; the others wait and then read its result
            with self._lock:
                hit, value = self._get(key)
                if hit:
                    return value  # type: ignore[return-value]
            loaded = load()
            with self._lock:
                now = self.clock()
                if len(self._values) >= _SWEEP_AT:
                    self._values = {k: v for k, v in self._values.items() if v[0] > now}
                self._values[key] = (now + self.ttl, loaded)
                self._loading.pop(key, None)
            return loaded

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    # -- reads -------------------------------------------------------------------------------------
    def customers(self) -> CustomerScan:
        """Every customer (up to max_customers), read through all of MoonClerk's pages."""
        def load() -> CustomerScan:
            rows = list(itertools.islice(self.client.list_customers(page_size=self.page_size), self.max_customers + 1))
            complete = len(rows) <= self.max_customers
            return CustomerScan(tuple(rows[: self.max_customers]), complete)

        return self._cached("customers", load)

    def customer(self, customer_id: int) -> Customer | None:
        def load() -> Customer | None:
            try:
                return self.client.get_customer(customer_id)
            except NotFound:
                return None

        return self._cached(("customer", customer_id), load)

    def fresh_customer(self, customer_id: int) -> Customer | None:
        """Read the customer straight from MoonClerk (never the cache), and cache what it says.

        The confirmation before anything is acted on: a directory row or a cached scan may be stale."""
        try:
            customer: Customer | None = self.client.get_customer(customer_id)
        except NotFound:
            customer = None
        with self._lock:
            self._values[("customer", customer_id)] = (self.clock() + self.ttl, customer)
        return customer

    def payment(self, payment_id: int) -> Payment | None:
        def load() -> Payment | None:
            try:
                return self.client.get_payment(payment_id)
            except NotFound:
                return None

        return self._cached(("payment", payment_id), load)

    def recent_payments(self, customer_id: int) -> tuple[Payment, ...]:
        """The customer's latest payments, newest first.

        MoonClerk documents no sort order for lists (providers.md §1.3), so the customer's payments are
        read (up to max_payments, page by page) and sorted by date here rather than trusting the first page.
        """
        def load() -> tuple[Payment, ...]:
            if self.recent <= 0:
                return ()
            pages = self.client.list_payments(customer_id=customer_id, page_size=self.page_size)
            payments = sorted(itertools.islice(pages, self.max_payments), key=_newest_first)
            return tuple(payments[: self.recent])

        return self._cached(("payments", customer_id), load)


def _newest_first(payment: Payment) -> tuple[int, float, int]:
    # Undated payments sort last; equal dates fall back to the higher (later) ID.
    when = payment.date
    if when is None:
        return (1, 0.0, -payment.id)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (0, -when.timestamp(), -payment.id)


_SHARED: weakref.WeakKeyDictionary[MoonClerkClient, MoonClerkLookup] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def lookup_for(moonclerk: MoonClerkClient | MoonClerkLookup) -> MoonClerkLookup:
    """The process-wide cached lookup for a client, so matching and /finance share one cache."""
    if isinstance(moonclerk, MoonClerkLookup):
        return moonclerk
    with _SHARED_LOCK:
        lookup = _SHARED.get(moonclerk)
        if lookup is None:
            lookup = _SHARED[moonclerk] = MoonClerkLookup(moonclerk)
        return lookup


# ---------------------------------------------------------------------------------------------------
# Candidates for matching


@dataclass(frozen=True)
class Found:
    customer: Customer
    payments: tuple[Payment, ...] = ()  # payments the call named that belong to this customer


def candidates_for(lookup: MoonClerkLookup, facts: CallerFacts) -> tuple[list[Found], bool]:
    """Customers worth scoring for these facts, and whether the search covered every customer.

    Direct hits (a stated customer or payment ID) are read on their own; the customer list is scanned
    only when the call gives something to compare it with (email, phone, name, custom ID, reference).
    """
    found: dict[int, Found] = {}
    if facts.customer_id is not None:
        customer = lookup.customer(facts.customer_id)
        if customer is not None:
            found[customer.id] = Found(customer)
    if facts.payment_id is not None:
        payment = lookup.payment(facts.payment_id)
        if payment is not None and payment.customer_id is not None:
            customer = found[payment.customer_id].customer if payment.customer_id in found else \
                lookup.customer(payment.customer_id)
            if customer is not None:
                found[customer.id] = Found(customer, (payment,))
    complete = True
    if facts.email or facts.phone or facts.name or facts.custom_id or facts.customer_reference:
        scan = lookup.customers()
        complete = scan.complete
        for customer in scan.customers:
            found.setdefault(customer.id, Found(customer))
    return list(found.values()), complete


# ---------------------------------------------------------------------------------------------------
# /finance lookup terms

TermKind = Literal["email", "phone", "name", "id", "customer_id", "payment_id", "stripe_customer"]

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{5,24}")
_NAME = re.compile(r"[^\W\d_](?:[^\W\d_]|[ '’.,-]){1,99}")
_NUMBER = re.compile(r"[0-9]{1,16}")
_TYPED_ID = re.compile(r"(customer|cust|payment|pay)\s*[:#]?\s*([0-9]{1,16})", re.IGNORECASE)


class BadTerm(ValueError):
    """A lookup term that is not a valid email, phone, name or ID; str() is safe to show."""


@dataclass(frozen=True)
class LookupTerm:
    kind: TermKind
    value: str

    @property
    def number(self) -> int:
        return int(self.value)

    @property
    def noun(self) -> str:
        return {"email": "email", "phone": "phone", "name": "name", "id": "ID", "customer_id": "customer ID",
                "payment_id": "payment ID", "stripe_customer": "Stripe customer"}[self.kind]


def _positive_id(digits: str) -> str:
    number = int(digits)
    if not 0 < number < MAX_ID:
        raise BadTerm("IDs are positive whole numbers.")
    return str(number)


def _unescaped(term: str) -> str:
    """The command escapes what it is given (manifest `should_escape: true`, so that `/finance delegate`
    receives user IDs): an email arrives as `<mailto:a@b.co|a@b.co>`, a phone number as `<tel:…|…>`.
    The label is what the person typed."""
    if term.startswith("<") and term.endswith(">") and term[1:].split(":", 1)[0] in {"mailto", "tel"}:
        term = term[1:-1].split("|", 1)[-1]
    return term.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_term(text: str) -> LookupTerm:
    """Validate what follows `/finance lookup`; raises BadTerm with a reason safe to show."""
    term = _unescaped(" ".join(text.split()))
    if not term:
        raise BadTerm("Say what to look up: an email, a phone number (+country code), a name, or an ID.")
    if len(term) > 254:
        raise BadTerm("That is too long to be an email, phone number, name or ID.")
    typed = _TYPED_ID.fullmatch(term)
    if typed:
        kind: TermKind = "payment_id" if typed.group(1).lower().startswith("pay") else "customer_id"
        return LookupTerm(kind, _positive_id(typed.group(2)))
    if is_customer_id(term):  # `cus_…`: MoonClerk customers referencing it, and the Stripe customer itself
        return LookupTerm("stripe_customer", term)
    if term.lower().startswith("phone:"):
        term = term[6:].strip()
        if not term.startswith("+"):
            term = "+" + term
    if "@" in term:
        if not _EMAIL.fullmatch(term):
            raise BadTerm("That is not a valid email address.")
        return LookupTerm("email", term.lower())
    if term.startswith("+"):
        phone = normalise_phone(term) if _PHONE.fullmatch(term) else None
        if phone is None:
            raise BadTerm("That is not a valid phone number; write it in E.164 form, e.g. +15551234567.")
        return LookupTerm("phone", phone)
    if term.startswith("#"):
        term = term[1:]
    if _NUMBER.fullmatch(term):
        return LookupTerm("id", _positive_id(term))
    if any(char.isdigit() for char in term):
        raise BadTerm("Names have no digits; write phone numbers with their + country code and IDs as numbers.")
    if not _NAME.fullmatch(term):
        raise BadTerm("A name is 2–100 letters, spaces, apostrophes, hyphens or full stops.")
    return LookupTerm("name", term)


@dataclass(frozen=True)
class LookupHits:
    customers: tuple[Customer, ...]
    # Payments named by ID that belong to no customer (one-off checkouts), shown on their own.
    payments: tuple[Payment, ...] = ()
    complete: bool = True
    more: int = 0  # further matches not shown


def find(lookup: MoonClerkLookup, term: LookupTerm) -> LookupHits:
    """The customers (best first, at most MAX_RESULTS) that a lookup term points at."""
    if term.kind in {"id", "customer_id", "payment_id"}:
        customers: dict[int, Customer] = {}
        orphans: list[Payment] = []
        if term.kind in {"id", "customer_id"}:
            customer = lookup.customer(term.number)
            if customer is not None:
                customers[customer.id] = customer
        if term.kind in {"id", "payment_id"}:
            payment = lookup.payment(term.number)
            if payment is not None:
                owner = lookup.customer(payment.customer_id) if payment.customer_id else None
                if owner is not None:
                    customers.setdefault(owner.id, owner)
                else:
                    orphans.append(payment)
        return LookupHits(tuple(customers.values()), tuple(orphans))
    scan = lookup.customers()
    scored: list[tuple[float, Customer]] = []
    for customer in scan.customers:
        score = term_score(term, customer)
        if score > 0:
            scored.append((score, customer))
    scored.sort(key=lambda pair: (-pair[0], pair[1].id))
    shown = tuple(customer for _, customer in scored[:MAX_RESULTS])
    return LookupHits(shown, (), scan.complete, max(0, len(scored) - MAX_RESULTS))


def term_score(term: LookupTerm, customer: Customer) -> float:
    if term.kind == "email":
        return 1.0 if normalise_email(customer.email) == term.value else 0.0
    if term.kind == "phone":
        return 1.0 if term.value in customer_phones(customer) else 0.0
    if term.kind == "stripe_customer":
        return 1.0 if (customer.customer_reference or "").strip() == term.value else 0.0
    return name_term_score(term.value, customer.name)


def name_term_score(wanted: str, name: str | None) -> float:
    """How well a name typed after `/finance lookup` fits a customer's name (any provider's); 0: not at all."""
    score, _ = name_score(wanted, name)
    if score:
        return score
    # A search for one word ("Wood") finds every customer with that word in their name.
    words = name_words(wanted)
    return 0.3 if words and set(words) <= set(name_words(name)) else 0.0
