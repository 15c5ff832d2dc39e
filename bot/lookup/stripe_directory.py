"""Stripe's customers in the customer directory, and the Stripe-only customers of `/finance lookup`.

MoonClerk charges on the merchant's Stripe account, so most Stripe customers are some MoonClerk
customer's `customer_reference`. Some are not (created in the Stripe Dashboard, by another app, or
their MoonClerk record is gone): a lookup by email, phone or name would never find them through
MoonClerk. So Stripe's customer list is copied into `directory_customers` too, with provider "stripe",
the `cus_…` ID as `external_id`, and only what identifies a customer (name folded, email lower-cased,
phone in E.164; never payment details).

**Sync.** The same `DirectorySyncer` as MoonClerk's (lease, pacing, resume, the end-of-pass delete,
`directory_sync` row "stripe"), reading through `StripeSource`: Stripe's list is newest first and paged
with a cursor (`starting_after` = the last customer read, `limit` 100). The saved cursor is an integer
(`directory_sync.next_offset`), so it holds the directory row ID of that last customer; a restart
reads the row's `cus_…` ID and goes on after it. If that customer has been deleted meanwhile (the row
is gone, or Stripe refuses the cursor), the pass goes back to the start: rows already seen are seen
again, nothing is lost. A 429 (`StripeError` code "rate_limit") is retried after 1, 2, 4, 8, 16 s
(the SDK does not retry it); after that the run stops, the error is recorded and the next run resumes
from the same cursor after the syncer's backoff. Customers created during a pass land before its
cursor and are picked up by the next pass (15 minutes) or at once when read directly (a `cus_…` lookup).

**Lookup.** `StripeLookup.start` probes the directory's Stripe rows (an email, phone or name term; a
`cus_…` term is always read directly, in the directory or not) and starts one direct `get_customer`
read per candidate at once, so Stripe answers while MoonClerk is being read. `StripeLookup.finish`
keeps the Stripe customers no MoonClerk customer in the answer references, drops (and removes from
the directory) any Stripe says is deleted or missing, and writes the rest through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from sqlalchemy import Engine, select
from sqlmodel import Session

from bot.config import Settings
from bot.lookup.customers import MAX_RESULTS, LookupTerm, name_term_score
from bot.lookup.directory import (
    DEFAULT_PACE,
    NAME_SEARCH_LIMIT,
    STRONG_LIMIT,
    CursorLost,
    DirectorySyncer,
    SourcePage,
    forget,
    is_ready,
    normalised_row,
    probe_rows,
    sharing_a_name,
    write_rows,
)
from bot.lookup.matching import name_words
from providers.base import NotFound, ProviderError
from providers.dialnexa import normalise_phone
from providers.stripe import Customer, StripeClient, StripeError
from storage.directory import DirectoryCustomer

log = logging.getLogger(__name__)

STRIPE: Final = "stripe"
PAGE_SIZE: Final = 100  # Stripe's largest page
RATE_LIMIT_RETRIES: Final = 5
RATE_LIMIT_PAUSE: Final = 1.0  # seconds, doubling: 31 s in all, well inside the 60 s lease
MAX_ID: Final = 64  # directory_customers.external_id; real `cus_…` IDs are about 18 characters
CANDIDATES: Final = 2 * MAX_RESULTS  # read directly: some may turn out to be a shown MoonClerk customer's

_T = DirectoryCustomer.__table__  # type: ignore[attr-defined]
# Side by side: five candidates cost one round trip, not five.
_READS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stripe-directory-read")


# ---------------------------------------------------------------------------------------------------
# Reading Stripe


def list_customers(client: StripeClient, *, starting_after: str | None = None,
                   limit: int = PAGE_SIZE) -> tuple[list[Customer], bool]:
    """One page of Stripe's customer list (newest first): (customers, has_more)."""
    return client.list_customers(starting_after=starting_after, limit=max(1, min(limit, PAGE_SIZE)))


def stripe_row(customer: Customer) -> dict[str, Any]:
    """The directory row of a Stripe customer: its ID, name, email and phone, normalised."""
    phone = normalise_phone(customer.phone) if customer.phone else None
    return normalised_row(STRIPE, customer.id, name=customer.name, email=customer.email,
                          phones=[phone] if phone else [])


def _storable(customer: Customer) -> bool:
    if len(customer.id) <= MAX_ID:
        return True
    log.warning("Stripe customer ID of %d characters is longer than the directory holds; skipped", len(customer.id))
    return False


class StripeSource:
    """Stripe's customer list for `DirectorySyncer` (see the module docstring for the cursor)."""

    provider: str = STRIPE
    label: str = "Stripe"

    def __init__(self, client: StripeClient, *, rate_limit_retries: int = RATE_LIMIT_RETRIES,
                 rate_limit_pause: float = RATE_LIMIT_PAUSE, owns_client: bool = False) -> None:
        self.client = client
        self.rate_limit_retries, self.rate_limit_pause = rate_limit_retries, rate_limit_pause
        self.owns_client = owns_client

    def read_page(self, engine: Engine, cursor: int, page_size: int, wait: Callable[[float], bool]) -> SourcePage:
        after = self._cursor_customer(engine, cursor) if cursor else None
        pause = self.rate_limit_pause
        for attempt in range(self.rate_limit_retries + 1):
            try:
                customers, has_more = list_customers(self.client, starting_after=after, limit=page_size)
                break
            except NotFound:
                if after is None:
                    raise
                # Stripe no longer lists the cursor's customer: it was deleted since the last page.
                forget(engine, after, STRIPE)
                raise CursorLost(f"Stripe no longer has the cursor's customer {after}") from None
            except StripeError as exc:
                if exc.code != "rate_limit" or attempt == self.rate_limit_retries or wait(pause):
                    raise
                log.info("directory sync: Stripe rate-limited the customer list; again in %.1f s", pause)
                pause *= 2
        live = [customer for customer in customers if not customer.deleted and _storable(customer)]
        gone = tuple(customer.id for customer in customers if customer.deleted and len(customer.id) <= MAX_ID)
        if has_more and not live:
            # Nothing to move the cursor to; Stripe never lists deleted customers, so this is not its list.
            raise StripeError("Stripe sent a customer page with nothing to continue from.", code="unreadable")
        return SourcePage([stripe_row(customer) for customer in live], not has_more, gone)

    def next_cursor(self, session: Session, cursor: int, page: SourcePage) -> int:
        last = page.rows[-1]["external_id"]
        row_id = session.execute(select(_T.c.id).where(_T.c.provider == STRIPE, _T.c.external_id == last)).scalar()
        assert row_id is not None, "the page was stored in this transaction"
        return int(row_id)

    def close(self) -> None:
        if self.owns_client:
            self.client.close()

    @staticmethod
    def _cursor_customer(engine: Engine, cursor: int) -> str:
        with Session(engine) as session:
            found = session.execute(select(_T.c.external_id).where(_T.c.provider == STRIPE, _T.c.id == cursor)).scalar()
        if found is None:
            raise CursorLost("the cursor's customer was removed from the directory")
        return str(found)


def stripe_syncers(engine: Engine, settings: Settings, *, pace: float = DEFAULT_PACE) -> list[DirectorySyncer]:
    """The Stripe directory sync when STRIPE_API_KEY is set (else none), for `sync_job(…, also=…)`.

    Its own client (the provider timeout, the SDK's retries of timeouts and 5xx), closed when the job stops."""
    if settings.stripe_api_key is None:
        return []
    client = StripeClient(settings.stripe_api_key.get_secret_value(), settings.stripe_api_url,
                          timeout=settings.provider_timeout_seconds)
    return [DirectorySyncer(engine, StripeSource(client, owns_client=True), page_size=PAGE_SIZE, pace=pace)]


# ---------------------------------------------------------------------------------------------------
# /finance lookup: Stripe-only customers


@runtime_checkable
class StripeCustomerReader(Protocol):
    """The one read a lookup needs (providers.stripe.StripeClient has it)."""

    def get_customer(self, customer_id: str) -> Customer: ...


def search(engine: Engine, term: LookupTerm, limit: int = CANDIDATES) -> tuple[list[str], int]:
    """Stripe customer IDs in the directory for a lookup term, best first: (at most `limit`, more)."""
    columns = (_T.c.external_id, _T.c.name)
    if term.kind == "stripe_customer":
        return [term.value], 0  # read directly, whether the directory has it yet or not
    if term.kind == "email":
        found = probe_rows(engine, [_T.c.email == term.value], STRONG_LIMIT, STRIPE, columns)
    elif term.kind == "phone":
        found = probe_rows(engine, [_T.c.phone == term.value], STRONG_LIMIT, STRIPE, columns)
    elif term.kind == "name":
        words = name_words(term.value)
        if not words:
            return [], 0
        found = probe_rows(engine, [_T.c.name_key == " ".join(sorted(words))], STRONG_LIMIT, STRIPE, columns)
        if len(found) < limit:
            seen = {row[0] for row in found}
            shared = probe_rows(engine, sharing_a_name(words), NAME_SEARCH_LIMIT, STRIPE, columns)
            found += [row for row in shared if row[0] not in seen]
    else:
        return [], 0  # MoonClerk's own numeric IDs
    scored = [(score, str(external_id)) for external_id, name in found
              if (score := 1.0 if term.kind != "name" else name_term_score(term.value, name)) > 0]
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return [external_id for _, external_id in scored[:limit]], max(0, len(scored) - limit)


@dataclass(frozen=True)
class StripeHits:
    customers: tuple[Customer, ...] = ()  # Stripe-only, each confirmed by a direct read just now
    more: int = 0  # further Stripe-only matches not shown
    unconfirmed: int = 0  # matches Stripe could not confirm in time (not shown)
    error: str | None = None  # why, in plain words (Stripe's text: escape before showing)
    complete: bool = True  # False before the Stripe directory's first full pass (name/email/phone may miss)


def _read(reader: StripeCustomerReader, customer_id: str) -> Customer | None:
    try:
        customer = reader.get_customer(customer_id)
    except NotFound:
        return None
    return None if customer.deleted else customer


@dataclass
class StripeLookup:
    """The Stripe half of one `/finance lookup`: `start` before MoonClerk is read, `finish` after."""

    engine: Engine
    reader: StripeCustomerReader
    term: LookupTerm
    candidates: list[str]
    more: int
    complete: bool
    reads: list[Future[Customer | None]]

    @classmethod
    def start(cls, engine: Engine, reader: StripeCustomerReader, term: LookupTerm) -> StripeLookup:
        candidates, more = search(engine, term)
        complete = term.kind not in {"email", "phone", "name"} or is_ready(engine, STRIPE)
        reads = [_READS.submit(_read, reader, customer_id) for customer_id in candidates]
        return cls(engine, reader, term, candidates, more, complete, reads)

    def finish(self, linked: set[str], timeout: float) -> StripeHits:
        """The Stripe customers no MoonClerk customer in the answer references (`linked`: their `cus_…`
        references), confirmed; waits at most `timeout` seconds for Stripe in all."""
        deadline = time.monotonic() + max(0.0, timeout)
        shown: list[Customer] = []
        unconfirmed, error = 0, None
        for customer_id, future in zip(self.candidates, self.reads, strict=True):
            if customer_id in linked:
                continue
            try:
                customer = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                unconfirmed, error = unconfirmed + 1, "Stripe did not answer in time"
                continue
            except ProviderError as exc:
                unconfirmed, error = unconfirmed + 1, str(exc)
                continue
            if customer is None:
                forget(self.engine, customer_id, STRIPE)  # deleted in Stripe since the last sync
            elif _storable(customer):
                shown.append(customer)
        if shown:
            write_rows(self.engine, [stripe_row(customer) for customer in shown], STRIPE)
        extra = max(0, len(shown) - MAX_RESULTS) + self.more
        return StripeHits(tuple(shown[:MAX_RESULTS]), extra, unconfirmed, error, self.complete)
