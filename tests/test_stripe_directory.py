"""Stripe customers in the customer directory (bot.lookup.stripe_directory): the sync (from empty, resumed
from its cursor, refreshed, by one of two processes, through 429s) and `/finance lookup` showing the
Stripe-only customers, each confirmed by a direct read. Real HTTP to a module-scoped StripeStandIn."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, delete, select
from sqlmodel import Session, col

from bot.lookup import directory
from bot.lookup.customers import MoonClerkLookup, parse_term
from bot.lookup.directory import DirectorySyncer, freshness, is_ready, sync_job
from bot.lookup.queries import Lookup
from bot.lookup.stripe_directory import STRIPE, StripeSource, search, stripe_syncers
from bot.slack.listeners import commands
from bot.standins import MoonClerkStandIn
from bot.standins.stripe import API_KEY, StripeStandIn
from bot.stripe_status import StripeStatusService
from providers.moonclerk import MoonClerkClient
from providers.stripe import StripeClient
from storage.db import make_engine, session_scope
from storage.directory import DirectoryCustomer, DirectorySync
from storage.migrate import upgrade
from tests.conftest import make_settings, scratch_postgres
from tests.waiting import at_once, until

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LIST = "/v1/customers"
LINKED_EMAIL = "linked@example.com"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One migrated database per backend for the module (conftest's per-test one costs ~1 s each on
    PostgreSQL); `engine` empties the directory before each test."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('stripe-directory') / 'directory.db'}")
        upgrade(engine)
        yield engine
        engine.dispose()
        return
    with scratch_postgres() as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


@pytest.fixture
def engine(database: Engine) -> Engine:
    with session_scope(database) as session:
        session.execute(delete(DirectoryCustomer))
        session.execute(delete(DirectorySync))
    return database


@pytest.fixture(scope="module")
def stripe_standin() -> Iterator[StripeStandIn]:
    with StripeStandIn() as standin:
        yield standin


class Seeded:
    """The stand-in, with the customers this test made deleted again afterwards (it is shared)."""

    def __init__(self, standin: StripeStandIn) -> None:
        self.standin = standin
        self.made: list[str] = []

    def customer(self, **fields: Any) -> str:
        customer_id = str(self.standin.add_customer(**fields)["id"])
        self.made.append(customer_id)
        return customer_id

    def many(self, count: int, prefix: str = "c") -> list[str]:
        """`count` customers, oldest first (Stripe lists them newest first)."""
        return [self.customer(email=f"{prefix}{n}@example.com", name=f"Person {prefix}{n}",
                              created=NOW - timedelta(minutes=count - n)) for n in range(count)]

    def listed(self) -> list[str | None]:
        """The `starting_after` of every list request, in order."""
        return [call.query.get("starting_after") for call in self.standin.calls(LIST)]


@pytest.fixture
def stripe(stripe_standin: StripeStandIn) -> Iterator[Seeded]:
    stripe_standin.clear_requests()
    seeded = Seeded(stripe_standin)
    yield seeded
    stripe_standin.clear_faults()
    for customer_id in seeded.made:
        stripe_standin.delete_customer(customer_id)


@pytest.fixture(scope="module")
def client(stripe_standin: StripeStandIn) -> Iterator[StripeClient]:
    with StripeClient(API_KEY, stripe_standin.url, timeout=2.0, max_network_retries=0) as c:
        yield c


def syncer(engine: Engine, client: StripeClient, clock: Clock, owner: str = "p1", **kwargs: Any) -> DirectorySyncer:
    source = StripeSource(client, rate_limit_pause=0.001, rate_limit_retries=kwargs.pop("retries", 3))
    return DirectorySyncer(engine, source, owner=owner, page_size=10, pace=0, clock=clock, **kwargs)


def rows(engine: Engine) -> dict[str, DirectoryCustomer]:
    with Session(engine) as session:
        found = session.scalars(select(DirectoryCustomer).where(col(DirectoryCustomer.provider) == STRIPE))
        return {row.external_id: row for row in found}


# -- sync ------------------------------------------------------------------------------------------

def test_sync_from_empty_normalises_and_marks_fresh(engine: Engine, stripe: Seeded, client: StripeClient) -> None:
    made = stripe.many(24)
    zoe = stripe.customer(email=" Zoe.OBrien+Billing@Example.COM ", name="Zoë O'Brien", phone="+1 (415) 555-0100")
    stripe.standin.add_charge(customer=zoe, amount_minor=2500)  # its card is never copied
    assert not is_ready(engine, STRIPE)
    report = syncer(engine, client, Clock()).run()
    assert (report.pages, report.customers, report.finished) == (3, 25, True)
    newest_first = [zoe, *reversed(made)]
    assert stripe.listed() == [None, newest_first[9], newest_first[19]]  # Stripe's cursor, pages of 10
    assert {call.query.get("limit") for call in stripe.standin.calls(LIST)} == {"10"}
    found = rows(engine)
    assert set(found) == set(newest_first) and is_ready(engine, STRIPE)
    row = found[zoe]
    assert (row.email, row.email_base, row.phone) == ("zoe.obrien+billing@example.com", "zoe.obrien@example.com",
                                                      "+14155550100")
    assert (row.name, row.name_key, row.name_first, row.name_last) == ("Zoë O'Brien", "obrien zoe", "zoe", "obrien")
    assert row.reference is None and row.custom_id is None and row.status is None
    assert "4242" not in repr(list(found.values()))
    # MoonClerk's copy is a separate provider: untouched, still not ready.
    assert not is_ready(engine) and freshness(engine, NOW, provider=STRIPE)["customers"] == 25


def test_a_crash_mid_pass_resumes_from_the_saved_cursor(engine: Engine, stripe: Seeded, client: StripeClient) -> None:
    made = list(reversed(stripe.many(25)))  # newest first, as listed
    clock = Clock()
    crashed = syncer(engine, client, clock, owner="crashed")
    assert crashed.run(max_pages=2).pages == 2  # then the process dies holding the lease
    assert freshness(engine, NOW, provider=STRIPE)["syncing"]
    other = syncer(engine, client, clock, owner="other")
    assert other.run().skipped == "another process holds the lease"
    clock.now += directory.LEASE + timedelta(seconds=1)
    stripe.standin.clear_requests()
    report = other.run()
    assert report.finished and stripe.listed() == [made[19]] and len(rows(engine)) == 25


def test_a_cursor_whose_customer_was_deleted_goes_back_to_the_start(engine: Engine, stripe: Seeded,
                                                                    client: StripeClient) -> None:
    made = list(reversed(stripe.many(25)))
    clock = Clock()
    assert syncer(engine, client, clock, owner="crashed").run(max_pages=1).pages == 1
    stripe.standin.delete_customer(made[9])  # the cursor's customer, deleted in Stripe meanwhile
    clock.now += directory.LEASE + timedelta(seconds=1)
    stripe.standin.clear_requests()
    report = syncer(engine, client, clock, owner="other").run()
    assert report.finished
    # Stripe refused the cursor; the pass started over, and nothing was lost or kept that is gone.
    assert stripe.listed() == [made[9], None, made[10], made[20]]
    assert set(rows(engine)) == set(made) - {made[9]}


def test_a_rate_limit_is_waited_out_and_a_lasting_one_resumes_after_the_backoff(
        engine: Engine, stripe: Seeded, client: StripeClient) -> None:
    made = list(reversed(stripe.many(15)))
    clock = Clock()
    stripe.standin.fail_next(LIST, 429, times=2)
    report = syncer(engine, client, clock).run()
    assert report.finished and report.pages == 2 and stripe.standin.status_count(429) == 2
    # Stripe keeps refusing: the error is recorded, the cursor kept, and the next run waits the backoff.
    clock.now += directory.DEFAULT_REFRESH
    limited = syncer(engine, client, clock, retries=1)
    assert limited.run(max_pages=1).pages == 1
    stripe.standin.fail_next(LIST, 429, times=2)
    stripe.standin.clear_requests()
    failed = limited.run()
    assert failed.error and "rate-limiting" in failed.error and stripe.listed() == [made[9], made[9]]
    assert "rate-limiting" in freshness(engine, clock.now, provider=STRIPE)["last_error"]
    assert limited.run().skipped == "fresh"  # backing off
    clock.now += directory.DEFAULT_BACKOFF
    stripe.standin.clear_requests()
    assert limited.run().finished and stripe.listed() == [made[9]]
    assert "last_error" not in freshness(engine, clock.now, provider=STRIPE)


def test_a_refresh_picks_up_new_changed_and_deleted_customers(engine: Engine, stripe: Seeded,
                                                             client: StripeClient) -> None:
    made = stripe.many(12)
    clock = Clock()
    assert syncer(engine, client, clock).run().finished
    stripe.standin.add_customer(id=made[1], email="Changed@Example.com", name="Person c1", created=NOW)
    stripe.standin.delete_customer(made[2])
    new = stripe.customer(email="new@example.com", name="New Person")
    clock.now += directory.DEFAULT_REFRESH
    report = syncer(engine, client, clock).run()
    assert report.finished and report.deleted == 1
    found = rows(engine)
    assert found[made[1]].email == "changed@example.com" and made[2] not in found and new in found
    assert len(found) == 12


def test_two_syncers_one_does_the_work(engine: Engine, stripe: Seeded, client: StripeClient) -> None:
    stripe.many(25)
    stripe.standin.delay(LIST, 0.02)
    clock = Clock()
    reports = at_once(lambda owner: syncer(engine, client, clock, owner=owner).run(), ("a", "b"))
    worked = [r for r in reports.values() if r.pages]
    assert len(worked) == 1 and worked[0].finished
    assert [r.skipped for r in reports.values() if not r.pages] == ["another process holds the lease"]
    assert len(stripe.standin.calls(LIST)) == 3  # one pass, read once


def test_the_job_syncs_stripe_beside_moonclerk_when_stripe_is_configured(
        engine: Engine, stripe: Seeded, stripe_standin: StripeStandIn) -> None:
    stripe.many(3)
    assert stripe_syncers(engine, make_settings("sqlite://")) == []  # no STRIPE_API_KEY: no Stripe sync
    settings = make_settings("sqlite://", stripe_api_key=SecretStr(API_KEY), stripe_api_url=stripe_standin.url)
    with MoonClerkStandIn(seed=False) as moonclerk:
        moonclerk.add_generated(3)
        job = sync_job(engine, MoonClerkClient(moonclerk.api_key, moonclerk.url),
                       also=stripe_syncers(engine, settings, pace=0)).start()
        try:
            until(lambda: is_ready(engine) and is_ready(engine, STRIPE), 10, "both directories synced")
        finally:
            job.stop()
    assert len(rows(engine)) == 3


# -- /finance lookup ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moonclerk() -> Iterator[MoonClerkStandIn]:
    with MoonClerkStandIn(seed=False) as standin:
        standin.add_customer(id=700, name="Linked Person", email=LINKED_EMAIL, customer_reference="cus_Linked700")
        yield standin


@pytest.fixture
def finance(engine: Engine, moonclerk: MoonClerkStandIn, client: StripeClient) -> Iterator[commands.FinanceContext]:
    lookup = MoonClerkLookup(MoonClerkClient(moonclerk.api_key, moonclerk.url))
    assert DirectorySyncer(engine, MoonClerkClient(moonclerk.api_key, moonclerk.url), pace=0).run().finished
    with ThreadPoolExecutor(max_workers=4) as pool:
        status = StripeStatusService(engine, client, pool, clock=lambda: NOW, lookup_budget=2.0)
        yield commands.FinanceContext(engine=engine, lookup=lookup, is_finance=lambda _user: True,
                                      stripe_status=status)
        status.close()


def ask(ctx: commands.FinanceContext, term: str) -> dict[str, Any]:
    return commands.answer(ctx, Lookup(parse_term(term)), "U0APPROVER")


def shown_stripe(answer: dict[str, Any]) -> list[str]:
    """The Stripe-only customers in an answer, by their blocks' `cus_…` code spans."""
    return [block["text"]["text"].split("Stripe customer `", 1)[1].split("`", 1)[0] for block in answer["blocks"]
            if block.get("block_id", "").startswith("stripe-customer-")]


def confirmed(standin: StripeStandIn) -> set[str]:
    return {call.path.rsplit("/", 1)[1] for call in standin.requests if call.path.startswith(f"{LIST}/")}


def test_a_lookup_by_email_lists_stripe_only_customers_confirmed(
        engine: Engine, stripe: Seeded, client: StripeClient, finance: commands.FinanceContext) -> None:
    linked = stripe.customer(id="cus_Linked700", email=LINKED_EMAIL, name="Linked Person")
    duplicate = stripe.customer(email=LINKED_EMAIL.upper(), name="Linked Person")  # a second Stripe record
    only = stripe.customer(email="only@example.com", name="Only Stripe", phone="+14155550199")
    charge = stripe.standin.add_charge(customer=only, amount_minor=4200)["id"]
    assert syncer(engine, client, Clock()).run().finished
    stripe.standin.clear_requests()

    answer = ask(finance, "Only@Example.com")
    assert answer["text"].startswith("No MoonClerk customer matches email")
    assert "1 Stripe customer with no MoonClerk record does" in answer["text"]
    assert shown_stripe(answer) == [only] and only in confirmed(stripe.standin)
    assert charge in str(answer["blocks"])  # the Stripe line, from bot.stripe_status

    # The MoonClerk customer's own Stripe customer is not listed again; the duplicate is.
    both = ask(finance, LINKED_EMAIL)
    assert both["text"].startswith("1 MoonClerk customer for email") and "Also 1 Stripe customer" in both["text"]
    assert shown_stripe(both) == [duplicate] and linked not in shown_stripe(both)

    assert shown_stripe(ask(finance, "+14155550199")) == [only]
    assert shown_stripe(ask(finance, "only stripe")) == [only]


def test_a_lookup_by_stripe_customer_id(engine: Engine, stripe: Seeded, client: StripeClient,
                                        finance: commands.FinanceContext) -> None:
    linked = stripe.customer(id="cus_Linked700", email=LINKED_EMAIL, name="Linked Person")
    only = stripe.customer(email="only@example.com", name="Only Stripe")
    assert syncer(engine, client, Clock()).run().finished
    assert parse_term(only).kind == "stripe_customer"

    by_reference = ask(finance, linked)  # the MoonClerk customer referencing it; no Stripe-only entry
    assert by_reference["text"].startswith("1 MoonClerk customer for Stripe customer")
    assert not shown_stripe(by_reference)
    assert shown_stripe(ask(finance, only)) == [only]

    # Created in Stripe after the sync: not in the directory, found by the direct read and written through.
    late = stripe.customer(email="late@example.com", name="Late Comer")
    assert late not in rows(engine)
    assert shown_stripe(ask(finance, late)) == [late] and rows(engine)[late].email == "late@example.com"
    assert not shown_stripe(ask(finance, "cus_NoSuchCustomer1"))


def test_a_customer_deleted_in_stripe_after_the_sync_is_not_shown(
        engine: Engine, stripe: Seeded, client: StripeClient, finance: commands.FinanceContext) -> None:
    gone = stripe.customer(email="gone@example.com", name="Gone Soon")
    kept = stripe.customer(email="gone@example.com", name="Still Here")
    assert syncer(engine, client, Clock()).run().finished
    stripe.standin.delete_customer(gone)  # the directory still has its row
    answer = ask(finance, "gone@example.com")
    assert shown_stripe(answer) == [kept]
    assert gone in confirmed(stripe.standin) and gone not in rows(engine)  # the direct read removed it
    assert not shown_stripe(ask(finance, gone))


def test_stripe_not_answering_in_time_shows_nothing_unconfirmed(
        engine: Engine, stripe: Seeded, client: StripeClient, finance: commands.FinanceContext) -> None:
    only = stripe.customer(email="slow@example.com", name="Slow Stripe")
    assert syncer(engine, client, Clock()).run().finished
    assert finance.stripe_status is not None
    finance.stripe_status.lookup_budget = 0.1
    stripe.standin.delay(f"{LIST}/{only}", 0.5)
    answer = ask(finance, "slow@example.com")
    assert not shown_stripe(answer) and "could not be confirmed with Stripe" in str(answer["blocks"])
    assert only in rows(engine)  # not answering is not "deleted"


def test_search_probes_the_stripe_rows_only(engine: Engine, stripe: Seeded, client: StripeClient,
                                            moonclerk: MoonClerkStandIn) -> None:
    ann = stripe.customer(email="ann@example.com", name="Ann Wood", phone="+14155550111")
    ben = stripe.customer(email="ben@example.com", name="Ben Wood")
    assert syncer(engine, client, Clock()).run().finished
    assert DirectorySyncer(engine, MoonClerkClient(moonclerk.api_key, moonclerk.url), pace=0).run().finished
    assert search(engine, parse_term("ANN@example.com")) == ([ann], 0)
    assert search(engine, parse_term("+1 415 555 0111")) == ([ann], 0)
    assert search(engine, parse_term("wood, ann"))[0][0] == ann
    assert set(search(engine, parse_term("Wood"))[0]) == {ann, ben}
    assert search(engine, parse_term("Linked Person")) == ([], 0)  # MoonClerk's rows are not Stripe's
    assert search(engine, parse_term("700")) == ([], 0)
