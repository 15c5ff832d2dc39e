"""The customer directory: sync MoonClerk's customers into the database, normalise them, query them.

MoonClerk has no search (providers.md §1.3): the only way to find a customer by email, phone or name
is to read its whole list. So a sync job copies the list into `directory_customers` (storage.directory)
and lookups and matching probe its indexes instead, in milliseconds at 100,000 customers.

**Sync.** `DirectorySyncer.run()` holds a lease in `directory_sync` (one process syncs a provider at a
time, across replicas), and reads the list page by page through the provider's `DirectorySource`
(MoonClerk: `count`/`offset`, pages of 100; Stripe: bot.lookup.stripe_directory), pausing
`pace` seconds between pages. Each page is upserted and the cursor saved in one transaction, so a
restart resumes where the last process stopped. A 429 is retried after its Retry-After by the client;
when MoonClerk still fails the run stops, the error is recorded (`/healthz` shows it) and the next run
resumes at the same offset after `backoff` seconds. A pass that reaches the short last page deletes the
rows it did not see (customers deleted in MoonClerk) and marks the directory fresh; the next pass
starts `refresh` after that one started (MoonClerk has no "changed since", so a refresh is a full pass).

**Write-through.** Whatever reads a customer directly (a stated ID, a webhook, a confirmation) writes
it through with `write_through`; a direct read that finds nothing deletes the row (`forget`).

**Query, then confirm.** Candidates come from index probes only (email without its +tag, phone, custom
ID, `cus_…` reference, the sorted name words; for names also the people sharing a first or last name,
at most WEAK_LIMIT). Whoever acts on a row first reads that customer once more straight from MoonClerk
(`confirm_customer`), so a stale row never sends anything anywhere. Until the first complete pass the
old list scan (bot.lookup.customers) is used instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from bot.lookup.customers import (
    MAX_RESULTS,
    Found,
    LookupHits,
    LookupTerm,
    MoonClerkLookup,
    candidates_for,
    find,
    term_score,
)
from bot.lookup.matching import CallerFacts, customer_phones, name_words, normalise_email, untagged
from bot.polling import new_worker_id
from providers.base import ProviderError
from providers.moonclerk import MAX_PAGE_SIZE, Customer, MoonClerkClient, Payment
from storage.db import session_scope
from storage.directory import DirectoryCustomer, DirectorySync

log = logging.getLogger(__name__)

MOONCLERK: Final = "moonclerk"
LEASE: Final = timedelta(seconds=60)
DEFAULT_PACE: Final = 0.1  # seconds between pages: MoonClerk publishes no rate limit, so be polite
DEFAULT_REFRESH: Final = timedelta(minutes=15)
DEFAULT_BACKOFF: Final = timedelta(seconds=60)
STRONG_LIMIT: Final = 200  # rows sharing an email, phone, custom ID, reference or whole name
WEAK_LIMIT: Final = 50  # rows sharing only a first or last name (scores below REVIEW on their own)
NAME_SEARCH_LIMIT: Final = 100

_T = DirectoryCustomer.__table__  # type: ignore[attr-defined]
_S = DirectorySync.__table__  # type: ignore[attr-defined]
_COLUMNS = (_T.c.external_id, _T.c.name, _T.c.email, _T.c.custom_id, _T.c.reference, _T.c.phone, _T.c.status)
# Direct reads for one answer run side by side: five customers cost one round trip, not five.
_READS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="directory-read")


# ---------------------------------------------------------------------------------------------------
# Normalisation


def row_of(customer: Customer, provider: str = MOONCLERK) -> dict[str, Any]:
    """The directory row for a MoonClerk customer: identifying fields only, normalised for the indexes."""
    return normalised_row(provider, str(customer.id), name=customer.name, email=customer.email,
                          phones=customer_phones(customer), custom_id=customer.custom_id,
                          reference=customer.customer_reference, status=customer.status)


def normalised_row(provider: str, external_id: str, *, name: str | None, email: str | None,
                   phones: Iterable[str] = (), custom_id: str | None = None, reference: str | None = None,
                   status: str | None = None) -> dict[str, Any]:
    """Any provider's directory row: name folded, email lower-cased, phones already in E.164."""
    words = name_words(name)
    address = normalise_email(email)
    numbers = sorted(phones)
    custom = (custom_id or "").strip()[:100] or None
    return {
        "provider": provider, "external_id": external_id, "name": (name or "")[:200] or None,
        "name_key": " ".join(sorted(words))[:200] or None,
        "name_first": words[0][:100] if words else None, "name_last": words[-1][:100] if words else None,
        "email": address[:254] if address else None, "email_base": untagged(address)[:254] if address else None,
        "phone": numbers[0] if numbers else None, "custom_id": custom,
        "custom_id_key": custom.casefold() if custom else None,
        "reference": (reference or "")[:64] or None, "status": (status or "")[:20] or None,
    }


_COMPARED: Final = ("name", "email", "custom_id", "reference", "phone", "status")


@dataclass(frozen=True)
class Entry:
    """A directory row as a Customer to score, with its phone already in E.164 (no parse per case)."""

    customer: Customer
    phones: frozenset[str]
    stored: tuple[Any, ...]  # the row's _COMPARED values: a confirmation that changes nothing writes nothing


def _entry(row: Any) -> Entry:
    external_id, name, email, custom_id, reference, phone, status = row
    data: dict[str, Any] = {"id": int(external_id), "name": name, "email": email, "custom_id": custom_id,
                            "customer_reference": reference}
    if status:
        data["subscription"] = {"status": status}
    return Entry(Customer.model_validate(data), frozenset({phone}) if phone else frozenset(),
                 (name, email, custom_id, reference, phone, status))


# ---------------------------------------------------------------------------------------------------
# Writes


def _upsert(session: Session, rows: Sequence[dict[str, Any]], pass_no: int, now: datetime) -> None:
    if not rows:
        return
    values = [{**row, "seen_pass": pass_no, "synced_at": now} for row in rows]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_T).values(values)
    changed = {key: statement.excluded[key] for key in values[0] if key not in {"provider", "external_id"}}
    session.execute(statement.on_conflict_do_update(index_elements=["provider", "external_id"], set_=changed))


def _current_pass(session: Session, provider: str) -> int:
    return int(session.execute(select(_S.c.pass_no).where(_S.c.provider == provider)).scalar() or 0)


def write_through(engine: Engine, customers: Iterable[Customer], now: datetime | None = None,
                  provider: str = MOONCLERK) -> None:
    """Store customers just read directly from the provider (a stated ID, a webhook, a confirmation)."""
    write_rows(engine, [row_of(customer, provider) for customer in customers], provider, now)


def write_rows(engine: Engine, rows: Sequence[dict[str, Any]], provider: str, now: datetime | None = None) -> None:
    """`write_through` for rows already normalised (any provider): counted as seen by the current pass."""
    if not rows:
        return
    with session_scope(engine) as session:
        _upsert(session, rows, _current_pass(session, provider), now or datetime.now(UTC))


def forget(engine: Engine, customer_id: int | str, provider: str = MOONCLERK) -> None:
    """A direct read found no such customer: it must not be matched or shown again."""
    with session_scope(engine) as session:
        session.execute(delete(_T).where(_T.c.provider == provider, _T.c.external_id == str(customer_id)))


# ---------------------------------------------------------------------------------------------------
# Sync


@dataclass(frozen=True)
class SyncReport:
    pages: int = 0
    customers: int = 0  # rows written this run
    finished: bool = False  # a pass completed in this run
    deleted: int = 0
    skipped: str | None = None  # why no page was read
    error: str | None = None


def _rows(result: Any) -> int:
    """How many rows an UPDATE or DELETE touched."""
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class SourcePage:
    """One page of a provider's customer list, as directory rows."""

    rows: list[dict[str, Any]]
    last: bool  # the pass is complete after this page
    gone: tuple[str, ...] = ()  # external IDs the page says were deleted


class CursorLost(Exception):
    """The saved cursor no longer points anywhere (its customer was deleted): the pass goes back to the
    start of the list. Rows already seen are simply seen again; nothing is deleted early."""


class DirectorySource(Protocol):
    """How one provider's customer list is read. The cursor is the integer `directory_sync.next_offset`:
    0 is the start of the list; what a later value means is the source's business (MoonClerk: an offset;
    Stripe: the directory row of the last customer read, whose ID is Stripe's `starting_after`)."""

    provider: str
    label: str  # for logs and errors: "MoonClerk", "Stripe"

    def read_page(self, engine: Engine, cursor: int, page_size: int, wait: Callable[[float], bool]) -> SourcePage:
        """Read the page at `cursor` (no transaction held meanwhile). `wait(seconds)` pauses and returns
        True when the syncer is stopping. Raises ProviderError, or CursorLost."""
        ...

    def next_cursor(self, session: Session, cursor: int, page: SourcePage) -> int:
        """Where the pass goes on after `page`, inside the transaction that just stored it."""
        ...

    def close(self) -> None:
        """Release what the source owns (not a client it was lent)."""
        ...


class MoonClerkSource:
    """MoonClerk's list: `count`/`offset`; the envelope has no total, so a short page is the last one.
    A 429 is retried by the client after its Retry-After."""

    provider: str = MOONCLERK
    label: str = "MoonClerk"

    def __init__(self, client: MoonClerkClient) -> None:
        self.client = client

    def read_page(self, engine: Engine, cursor: int, page_size: int, wait: Callable[[float], bool]) -> SourcePage:
        page = list(self.client.customers_page(offset=cursor, page_size=page_size))
        return SourcePage([row_of(customer, self.provider) for customer in page], len(page) < page_size)

    def next_cursor(self, session: Session, cursor: int, page: SourcePage) -> int:
        return cursor + len(page.rows)

    def close(self) -> None:
        pass  # the client is shared with matching and the lookups


def _ensure_row(engine: Engine, provider: str) -> None:
    with session_scope(engine) as session:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        session.execute(insert(_S).values(provider=provider, pass_no=0, customers=0)
                        .on_conflict_do_nothing(index_elements=["provider"]))


class DirectorySyncer:
    """Copies one provider's customer list into the directory; any number of processes may run one."""

    def __init__(self, engine: Engine, client: MoonClerkClient | DirectorySource, *, owner: str | None = None,
                 page_size: int = MAX_PAGE_SIZE, pace: float = DEFAULT_PACE, refresh: timedelta = DEFAULT_REFRESH,
                 backoff: timedelta = DEFAULT_BACKOFF, lease: timedelta = LEASE,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), provider: str | None = None) -> None:
        """`client`: a MoonClerkClient, or any provider's DirectorySource (its `provider` names the rows)."""
        self.source: DirectorySource = MoonClerkSource(client) if isinstance(client, MoonClerkClient) else client
        self.engine, self.provider = engine, provider or self.source.provider
        self.owner = owner or new_worker_id()
        self.page_size, self.pace, self.refresh, self.backoff, self.lease = page_size, pace, refresh, backoff, lease
        self.clock = clock
        self.stopping = threading.Event()
        self._ensured = False

    def _claim(self, now: datetime) -> bool:
        if not self._ensured:
            _ensure_row(self.engine, self.provider)
            self._ensured = True
        with session_scope(self.engine) as session:
            claimed = session.execute(
                update(_S).where(_S.c.provider == self.provider,
                                 or_(_S.c.lease_owner.is_(None), _S.c.lease_owner == self.owner,
                                     _S.c.lease_until < now))
                .values(lease_owner=self.owner, lease_until=now + self.lease))
            return _rows(claimed) > 0

    def release(self) -> None:
        with session_scope(self.engine) as session:
            session.execute(update(_S).where(_S.c.provider == self.provider, _S.c.lease_owner == self.owner)
                            .values(lease_owner=None, lease_until=None))

    def _state(self) -> Any:
        with Session(self.engine) as session:
            return session.execute(select(_S).where(_S.c.provider == self.provider)).one()

    def due(self, now: datetime) -> bool:
        """Is there anything to do: a pass under way, or the last one older than `refresh`?"""
        state = self._state()
        if state.next_offset is not None:
            return not (state.last_error_at and now - state.last_error_at < self.backoff)
        return state.last_full_at is None or now - state.last_full_at >= self.refresh

    def run(self, max_pages: int | None = None) -> SyncReport:
        """Sync while there is work (and at most `max_pages` pages); returns what this run did."""
        now = self.clock()
        if not self._claim(now):
            return SyncReport(skipped="another process holds the lease")
        pages = written = deleted = 0
        finished = False
        try:
            if not self.due(now):
                return SyncReport(skipped="fresh")
            while not self.stopping.is_set() and (max_pages is None or pages < max_pages):
                state = self._state()
                if state.next_offset is None:
                    if finished or not self.due(self.clock()):
                        break
                    if not self._start_pass():
                        return SyncReport(pages, written, finished, deleted, skipped="lease lost")
                    continue
                try:
                    page = self.source.read_page(self.engine, state.next_offset, self.page_size, self.stopping.wait)
                except CursorLost as exc:
                    log.warning("directory sync: %s cursor lost (%s); the pass goes on from the start",
                                self.source.label, exc)
                    if not self._rewind(state.pass_no, state.next_offset):
                        return SyncReport(pages, written, finished, deleted, skipped="lease lost")
                    continue
                except ProviderError as exc:
                    self._record_error(str(exc))
                    log.warning("directory sync: %s failed at cursor %s: %s", self.source.label, state.next_offset,
                                exc)
                    return SyncReport(pages, written, finished, deleted, error=str(exc))
                pages += 1
                outcome = self._store_page(state.pass_no, state.next_offset, page)
                if outcome is None:
                    return SyncReport(pages, written, finished, deleted, skipped="lease lost")
                written += len(page.rows)
                if outcome >= 0:
                    finished, deleted = True, deleted + outcome
                elif self.pace:
                    self.stopping.wait(self.pace)
            return SyncReport(pages, written, finished, deleted)
        finally:
            if finished or self.stopping.is_set():
                self.release()

    def _start_pass(self) -> bool:
        now = self.clock()
        with session_scope(self.engine) as session:
            started = session.execute(
                update(_S).where(_S.c.provider == self.provider, _S.c.lease_owner == self.owner)
                .values(pass_no=_S.c.pass_no + 1, pass_started_at=now, next_offset=0, lease_until=now + self.lease))
            return _rows(started) > 0

    def _rewind(self, pass_no: int, offset: int) -> bool:
        with session_scope(self.engine) as session:
            moved = session.execute(
                update(_S).where(_S.c.provider == self.provider, _S.c.lease_owner == self.owner,
                                 _S.c.pass_no == pass_no, _S.c.next_offset == offset).values(next_offset=0))
            return _rows(moved) > 0

    def _store_page(self, pass_no: int, offset: int, page: SourcePage) -> int | None:
        """Upsert one page and move the cursor, in one transaction, only while holding the lease.

        Returns None when the lease was lost, -1 when the pass goes on, else how many rows the finished
        pass deleted (customers the provider no longer has)."""
        now = self.clock()
        last = page.last
        with session_scope(self.engine) as session:
            # The cursor moves below, once the page is stored (Stripe's is a row of this page); this
            # update is the lease check, and takes the sync row's lock first.
            moved = session.execute(
                update(_S).where(_S.c.provider == self.provider, _S.c.lease_owner == self.owner,
                                 _S.c.pass_no == pass_no, _S.c.next_offset == offset)
                .values(next_offset=None if last else offset, last_page_at=now,
                        lease_until=now + self.lease, last_error=None, last_error_at=None))
            if not _rows(moved):
                session.rollback()
                return None
            _upsert(session, page.rows, pass_no, now)
            removed = 0
            if page.gone:
                removed = _rows(session.execute(delete(_T).where(_T.c.provider == self.provider,
                                                                 _T.c.external_id.in_(page.gone))))
            if not last:
                session.execute(update(_S).where(_S.c.provider == self.provider).values(
                    next_offset=self.source.next_cursor(session, offset, page)))
                return -1
            gone = session.execute(delete(_T).where(_T.c.provider == self.provider, _T.c.seen_pass < pass_no))
            total = session.execute(select(func.count()).select_from(_T).where(_T.c.provider == self.provider))
            started = session.execute(select(_S.c.pass_started_at).where(_S.c.provider == self.provider)).scalar()
            session.execute(update(_S).where(_S.c.provider == self.provider).values(
                last_full_at=started, customers=int(total.scalar() or 0),
                last_full_seconds=(now - started).total_seconds() if started else None))
            return _rows(gone) + removed

    def _record_error(self, message: str) -> None:
        with session_scope(self.engine) as session:
            session.execute(update(_S).where(_S.c.provider == self.provider)
                            .values(last_error=message[:500], last_error_at=self.clock()))


class DirectorySyncJob:
    """The sync under APScheduler in `serve`, `socket` and `worker`: a run every `interval` seconds
    (the first at start); a run does nothing unless a pass is under way or the copy is older than
    `refresh`, and nothing at all in a process without the lease. Each provider's syncer has its own
    timer, so a slow MoonClerk pass never holds up Stripe's."""

    def __init__(self, syncer: DirectorySyncer, *more: DirectorySyncer, interval: float = 30.0) -> None:
        self.syncer, self.syncers, self.interval = syncer, (syncer, *more), interval
        self._scheduler: Any = None

    def start(self) -> DirectorySyncJob:
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
        for syncer in self.syncers:
            scheduler.add_job(self._run, "interval", args=(syncer,), seconds=self.interval,
                              id=f"directory-sync-{syncer.provider}", next_run_time=datetime.now(UTC))
        scheduler.start()
        self._scheduler = scheduler
        return self

    @staticmethod
    def _run(syncer: DirectorySyncer) -> None:
        try:
            report = syncer.run()
            if report.pages:
                log.info("directory sync (%s): %s", syncer.provider, report)
        except Exception:  # a database hiccup must not stop the timer; the next run resumes
            log.exception("directory sync (%s) failed; the next run resumes where it stopped", syncer.provider)

    def stop(self) -> None:
        for syncer in self.syncers:
            syncer.stopping.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        for syncer in self.syncers:
            try:
                syncer.release()  # another replica may carry on at once, from the saved cursor
            except Exception:
                log.warning("could not release the %s directory sync lease; it expires by itself", syncer.provider)
            syncer.source.close()


# ---------------------------------------------------------------------------------------------------
# Freshness


STALE_MARGIN: Final = timedelta(minutes=5)


def stale_after(last_pass_seconds: float | None, refresh: timedelta = DEFAULT_REFRESH) -> timedelta:
    """The age past which the directory is stale: no process has kept it current.

    The age counts from the start of the last complete pass; the next pass starts `refresh` after it
    and takes about as long as the last one, so a healthy directory reaches `refresh` + one pass.
    Twice the last pass allows for a slower MoonClerk (429s, retries), and a margin for the timer."""
    return refresh + 2 * timedelta(seconds=last_pass_seconds or 0) + STALE_MARGIN


def freshness(engine: Engine, now: datetime | None = None, provider: str = MOONCLERK) -> dict[str, Any]:
    """How fresh the directory is, for /healthz and `finance-desk check`."""
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        state = session.execute(select(_S).where(_S.c.provider == provider)).first()
    if state is None or state.last_full_at is None:
        body: dict[str, Any] = {"ready": False, "customers": 0}
    else:
        age = now - state.last_full_at
        body = {"ready": True, "customers": state.customers, "last_full_sync": state.last_full_at.isoformat(),
                "age_seconds": int(age.total_seconds()), "stale": age > stale_after(state.last_full_seconds)}
        if state.last_full_seconds is not None:
            body["last_pass_seconds"] = round(state.last_full_seconds, 1)
    if state is not None and state.next_offset is not None:
        body["syncing"] = {"offset": state.next_offset,
                           "started": state.pass_started_at.isoformat() if state.pass_started_at else None}
    if state is not None and state.last_error:
        body["last_error"] = state.last_error
        if state.last_error_at is not None:
            body["last_error_at"] = state.last_error_at.isoformat()
    return body


def is_ready(engine: Engine, provider: str = MOONCLERK) -> bool:
    """True once a complete pass has run: before that the directory would miss customers."""
    with Session(engine) as session:
        return session.execute(select(_S.c.last_full_at).where(_S.c.provider == provider)).scalar() is not None


# ---------------------------------------------------------------------------------------------------
# Queries


def probe_rows(engine: Engine, conditions: Sequence[Any], limit: int, provider: str,
               columns: Sequence[Any]) -> list[tuple[Any, ...]]:
    """`columns` of the provider's rows meeting any of `conditions`, by row ID, at most `limit`: one
    indexed query per condition.

    Not one query with OR: SQLite then searches by `provider` alone, reading every row of the provider
    (25 ms a match at 100,000 customers); each condition on its own uses its own index.
    """
    found: dict[Any, tuple[Any, ...]] = {}
    with engine.connect() as connection:
        for where in conditions:
            for key, *row in connection.execute(select(_T.c.id, *columns).where(_T.c.provider == provider, where)
                                                .order_by(_T.c.id).limit(limit)).all():
                found.setdefault(key, tuple(row))
    return [found[key] for key in sorted(found)[:limit]]


def _probe(engine: Engine, conditions: list[Any], limit: int, provider: str = MOONCLERK) -> list[Entry]:
    return [_entry(row) for row in probe_rows(engine, conditions, limit, provider, _COLUMNS)]


_NAME_WORDS_PROBED: Final = 4


def sharing_a_name(words: list[str]) -> list[Any]:
    # Equalities, not IN: with IN, SQLite searches by provider alone (see _probe). A few words only: a
    # name of hundreds of words must not become hundreds of queries.
    probed = list(dict.fromkeys(words))[:_NAME_WORDS_PROBED]
    return [column == word for word in probed for column in (_T.c.name_last, _T.c.name_first)]


def candidate_entries(engine: Engine, facts: CallerFacts) -> list[Entry]:
    """Directory rows worth scoring for these facts: index probes only, never a scan."""
    strong: list[Any] = []
    if facts.email:
        strong.append(_T.c.email_base == untagged(facts.email))
    if facts.phone:
        strong.append(_T.c.phone == facts.phone)
    if facts.custom_id:
        strong.append(_T.c.custom_id_key == facts.custom_id.strip().casefold())
    if facts.customer_reference:
        strong.append(_T.c.reference == facts.customer_reference)
    words = name_words(facts.name)
    if words:
        strong.append(_T.c.name_key == " ".join(sorted(words)))
    entries = _probe(engine, strong, STRONG_LIMIT) if strong else []
    if words and not entries:
        # Partial names, initials and near spellings score at most 0.45 alone (below REVIEW): they never
        # decide a match, only fill the "closest customers" of an unmatched case, so they are looked
        # for only when nothing stronger was found, and a bounded sample of them is enough.
        entries = _probe(engine, sharing_a_name(words), WEAK_LIMIT)
    return entries


def confirm_customer(engine: Engine | None, lookup: MoonClerkLookup, customer_id: int,
                     stored: tuple[Any, ...] | None = None) -> Customer | None:
    """One direct MoonClerk read, written through (or the row deleted when MoonClerk has no such
    customer). `stored` is the row as the directory has it: when nothing changed nothing is written."""
    customer = lookup.fresh_customer(customer_id)
    if engine is not None:
        if customer is None:
            forget(engine, customer_id)
        elif stored is None or tuple(row_of(customer)[key] for key in _COMPARED) != stored:
            write_through(engine, [customer])
    return customer


@dataclass(frozen=True)
class Candidates:
    found: list[Found]
    phones: dict[int, frozenset[str]]  # precomputed phones of directory rows, by customer ID
    stored: dict[int, tuple[Any, ...]]  # directory rows as stored, by customer ID
    confirmed: set[int]  # customers read directly from MoonClerk in this run
    complete: bool


def candidates(engine: Engine | None, lookup: MoonClerkLookup, facts: CallerFacts) -> Candidates:
    """Customers worth scoring: stated IDs read directly (and written through), the rest from the
    directory's indexes, or from the list scan until the directory's first complete pass."""
    if engine is None or not is_ready(engine):
        found, complete = candidates_for(lookup, facts)
        return Candidates(found, {}, {}, set(), complete)
    by_id: dict[int, Found] = {}
    confirmed: set[int] = set()
    if facts.customer_id is not None:
        customer = confirm_customer(engine, lookup, facts.customer_id)
        if customer is not None:
            by_id[customer.id] = Found(customer)
            confirmed.add(customer.id)
    if facts.payment_id is not None:
        payment = lookup.payment(facts.payment_id)
        if payment is not None and payment.customer_id is not None:
            owner = by_id[payment.customer_id].customer if payment.customer_id in by_id else \
                confirm_customer(engine, lookup, payment.customer_id)
            if owner is not None:
                by_id[owner.id] = Found(owner, (payment,))
                confirmed.add(owner.id)
    phones: dict[int, frozenset[str]] = {}
    stored: dict[int, tuple[Any, ...]] = {}
    if facts.email or facts.phone or facts.name or facts.custom_id or facts.customer_reference:
        for entry in candidate_entries(engine, facts):
            if entry.customer.id not in by_id:
                by_id[entry.customer.id] = Found(entry.customer)
                phones[entry.customer.id], stored[entry.customer.id] = entry.phones, entry.stored
    return Candidates(list(by_id.values()), phones, stored, confirmed, True)


# ---------------------------------------------------------------------------------------------------
# /finance lookup


def _payments(lookup: MoonClerkLookup, customer_id: int) -> tuple[Payment, ...] | None:
    try:
        return lookup.recent_payments(customer_id)  # cached: the answer reads them from there
    except ProviderError:
        return None  # the answer reads them again and shows the error


def search(engine: Engine, term: LookupTerm) -> tuple[list[Customer], int]:
    """Directory customers for an email, phone or name term, best first: (at most MAX_RESULTS, more)."""
    if term.kind == "email":
        entries = _probe(engine, [_T.c.email == term.value], STRONG_LIMIT)
    elif term.kind == "phone":
        entries = _probe(engine, [_T.c.phone == term.value], STRONG_LIMIT)
    elif term.kind == "stripe_customer":  # the MoonClerk customers whose Stripe customer this is
        entries = _probe(engine, [_T.c.reference == term.value], STRONG_LIMIT)
    else:
        words = name_words(term.value)
        entries = _probe(engine, [_T.c.name_key == " ".join(sorted(words))], STRONG_LIMIT) if words else []
        if words and len(entries) < MAX_RESULTS:
            # Then people sharing a first or last name ("Wood" finds every Wood), a bounded sample.
            seen = {entry.customer.id for entry in entries}
            shared = _probe(engine, sharing_a_name(words), NAME_SEARCH_LIMIT)
            entries += [entry for entry in shared if entry.customer.id not in seen]
    scored = [(score, entry.customer) for entry in entries
              if (score := 1.0 if term.kind != "name" else term_score(term, entry.customer)) > 0]
    scored.sort(key=lambda pair: (-pair[0], pair[1].id))
    return [customer for _, customer in scored[:MAX_RESULTS]], max(0, len(scored) - MAX_RESULTS)


def find_customers(engine: Engine, lookup: MoonClerkLookup, term: LookupTerm) -> LookupHits:
    """`/finance lookup`: the directory's answer, each customer confirmed by a direct MoonClerk read
    (all at once, with their latest payments) so nothing stale is shown; IDs are read directly."""
    if term.kind in {"id", "customer_id", "payment_id"} or not is_ready(engine):
        hits = find(lookup, term)
        write_through(engine, hits.customers)
        return hits
    shown, more = search(engine, term)
    started = time.monotonic()
    # The confirming read and the latest payments of every customer shown, all side by side.
    payments = [_READS.submit(_payments, lookup, customer.id) for customer in shown]
    results = list(_READS.map(lambda customer: lookup.fresh_customer(customer.id), shown))
    for future in payments:
        future.result()
    log.debug("directory lookup: %d direct reads in %.3fs", len(shown), time.monotonic() - started)
    confirmed: list[Customer] = []
    for listed, fresh in zip(shown, results, strict=True):
        if fresh is None:
            forget(engine, listed.id)  # deleted in MoonClerk since the last sync
        else:
            confirmed.append(fresh)
    write_through(engine, confirmed)
    return LookupHits(tuple(confirmed), (), True, more)


def sync_job(engine: Engine, client: MoonClerkClient, also: Sequence[DirectorySyncer] = ()) -> DirectorySyncJob:
    """The directory sync for a running process (`serve`, `socket`, `worker`); call `.start()`. `also`:
    other providers' syncers (bot.lookup.stripe_directory.stripe_syncers) run beside MoonClerk's."""
    return DirectorySyncJob(DirectorySyncer(engine, client), *also)
