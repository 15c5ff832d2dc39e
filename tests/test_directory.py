"""The customer directory: sync (from empty, resumed, refreshed, by one of two processes), lookups and
matching through its indexes, confirmation by a direct read, and freshness."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from bot.lookup import directory
from bot.lookup.customers import MoonClerkLookup, parse_term
from bot.lookup.directory import DirectorySyncer, find_customers, freshness, is_ready
from bot.lookup.review import MatchWorker, match_case
from bot.standins import MoonClerkStandIn
from providers.moonclerk import MoonClerkClient
from storage.directory import DirectoryCustomer
from tests.cases import load
from tests.cases import make_case as _make_case
from tests.waiting import at_once

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
START = 1_000_000  # generated customers' first ID


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def client_for(standin: MoonClerkStandIn, max_attempts: int = 4) -> MoonClerkClient:
    return MoonClerkClient(standin.api_key, standin.url, sleep=lambda _s: None, max_attempts=max_attempts)


@pytest.fixture
def moonclerk() -> Iterator[MoonClerkStandIn]:
    with MoonClerkStandIn(seed=False) as standin:
        standin.add_generated(25, start_id=START)
        yield standin


def syncer(engine: Engine, standin: MoonClerkStandIn, clock: Clock, owner: str = "p1",
           **kwargs: Any) -> DirectorySyncer:
    return DirectorySyncer(engine, client_for(standin, kwargs.pop("max_attempts", 4)), owner=owner, page_size=10,
                           pace=0, clock=clock, **kwargs)


def rows(engine: Engine) -> dict[int, DirectoryCustomer]:
    with Session(engine) as session:
        return {int(row.external_id): row for row in session.scalars(select(DirectoryCustomer))}


def offsets(standin: MoonClerkStandIn) -> list[str]:
    return [call.query["offset"] for call in standin.calls("/customers")]


def make_case(engine: Engine, call_id: str, **fields: Any) -> int:
    return _make_case(engine, call_id, now=NOW, **fields)



# -- sync ------------------------------------------------------------------------------------------

def test_sync_from_empty_normalises_and_marks_fresh(engine: Engine, moonclerk: MoonClerkStandIn) -> None:
    moonclerk.update_customer(START + 3, email=" Mixed.Case+Tag@Example.COM ", name="Zoë O'Brien",
                              custom_fields={"phone": {"response": "+1 (415) 555-0100"}})
    clock = Clock()
    assert not is_ready(engine) and freshness(engine, NOW) == {"ready": False, "customers": 0}
    report = syncer(engine, moonclerk, clock).run()
    assert (report.pages, report.customers, report.finished) == (3, 25, True)
    assert offsets(moonclerk) == ["0", "10", "20"]
    found = rows(engine)
    assert len(found) == 25 and is_ready(engine)
    zoe = found[START + 3]
    assert (zoe.email, zoe.email_base) == ("mixed.case+tag@example.com", "mixed.case@example.com")
    assert (zoe.phone, zoe.name_key, zoe.name_first, zoe.name_last) == ("+14155550100", "obrien zoe", "zoe", "obrien")
    assert zoe.custom_id_key == "g3" and zoe.reference == "cus_G3" and zoe.status == "active"
    clock.now = NOW + timedelta(minutes=1)
    fresh = freshness(engine, clock.now)
    assert fresh["ready"] and fresh["customers"] == 25 and fresh["age_seconds"] == 60 and "syncing" not in fresh
    # Stale once no pass has started for the refresh interval plus twice the last pass plus a margin.
    assert not fresh["stale"] and fresh["last_pass_seconds"] == 0
    limit = directory.stale_after(0)
    assert limit == directory.DEFAULT_REFRESH + directory.STALE_MARGIN
    assert freshness(engine, NOW + limit + timedelta(seconds=1))["stale"]
    # Fresh: the next run reads nothing until the refresh interval has passed.
    moonclerk.clear_requests()
    assert syncer(engine, moonclerk, clock).run().skipped == "fresh" and not moonclerk.requests


def test_a_crash_mid_pass_resumes_where_it_stopped(engine: Engine, moonclerk: MoonClerkStandIn) -> None:
    clock = Clock()
    crashed = syncer(engine, moonclerk, clock, owner="crashed")
    assert crashed.run(max_pages=2).pages == 2  # then the process dies holding the lease
    assert freshness(engine, NOW)["syncing"]["offset"] == 20
    other = syncer(engine, moonclerk, clock, owner="other")
    assert other.run().skipped == "another process holds the lease"
    clock.now += directory.LEASE + timedelta(seconds=1)  # the lease runs out
    moonclerk.clear_requests()
    report = other.run()
    assert report.finished and offsets(moonclerk) == ["20"] and len(rows(engine)) == 25
    # A MoonClerk outage mid-pass is recorded, keeps the offset, and is retried after the backoff.
    clock.now += directory.DEFAULT_REFRESH
    moonclerk.fail_next("/customers", 429, headers={"Retry-After": "0"}, times=1)
    moonclerk.fail_next("/customers", 503, times=2)
    flaky = syncer(engine, moonclerk, clock, owner="other", max_attempts=2)
    failed = flaky.run()
    assert failed.error and "503" in failed.error and freshness(engine, clock.now)["last_error"]
    assert flaky.run().skipped == "fresh"  # backing off, not hammering MoonClerk
    clock.now += directory.DEFAULT_BACKOFF
    assert flaky.run().finished and "last_error" not in freshness(engine, clock.now)


def test_a_refresh_picks_up_changed_new_and_deleted_customers(engine: Engine, moonclerk: MoonClerkStandIn) -> None:
    clock = Clock()
    assert syncer(engine, moonclerk, clock).run().finished
    moonclerk.update_customer(START + 1, email="changed@example.com")
    moonclerk.delete_customer(START + 2)
    moonclerk.add_generated(10, start_id=START + 100)
    clock.now += directory.DEFAULT_REFRESH
    report = syncer(engine, moonclerk, clock).run()
    assert report.finished and report.deleted == 1
    found = rows(engine)
    assert found[START + 1].email == "changed@example.com"
    assert START + 2 not in found and START + 109 in found and len(found) == 34
    assert freshness(engine, clock.now)["customers"] == 34


def test_two_processes_one_does_the_work(engine: Engine, moonclerk: MoonClerkStandIn) -> None:
    moonclerk.latency = 0.02
    clock = Clock()
    reports = at_once(lambda owner: syncer(engine, moonclerk, clock, owner=owner).run(), ("a", "b"))
    worked = [r for r in reports.values() if r.pages]
    assert len(worked) == 1 and worked[0].finished
    assert [r.skipped for r in reports.values() if not r.pages] == ["another process holds the lease"]
    assert offsets(moonclerk) == ["0", "10", "20"]  # one pass, read once


# -- lookups and matching through the directory ------------------------------------------------------

@pytest.fixture
def synced(engine: Engine, moonclerk: MoonClerkStandIn) -> MoonClerkStandIn:
    moonclerk.add_customer(id=523425)  # the documented Ryan Wood, with his card (never copied)
    moonclerk.add_customer(id=700, name="Ryan Wood", email="other@example.com", custom_id="X1",
                           customer_reference="cus_Other")
    moonclerk.add_payment(id=9001, customer_id=700)
    assert syncer(engine, moonclerk, Clock()).run().finished
    moonclerk.clear_requests()
    return moonclerk


@pytest.mark.parametrize(("term", "expected"), [
    ("c7@example.com", [START + 7]),
    ("<mailto:C7@Example.com|C7@Example.com>", [START + 7]),
    ("+14150000007", [START + 7]),
    ("Ada Abbott Na", [START]),
    ("wood, ryan", [700, 523425]),
    ("Wood", [700, 523425]),
    ("customer:700", [700]),
    ("payment:9001", [700]),
    ("700", [700]),
    ("nobody@nowhere.example", []),
])
def test_lookup_by_every_kind_of_input(engine: Engine, synced: MoonClerkStandIn, term: str,
                                       expected: list[int]) -> None:
    lookup = MoonClerkLookup(client_for(synced))
    hits = find_customers(engine, lookup, parse_term(term))
    assert [c.id for c in hits.customers] == expected and hits.complete
    assert not synced.calls("/customers")  # never a scan of MoonClerk's list
    # Every customer shown was confirmed by one direct read.
    assert {int(r.path.rsplit("/", 1)[1]) for r in synced.requests if r.path.startswith("/customers/")} \
        >= set(expected)


def test_payment_details_never_reach_the_directory(engine: Engine, synced: MoonClerkStandIn) -> None:
    with Session(engine) as session:
        text = repr(session.scalars(select(DirectoryCustomer)).all())
    assert "4242" not in text and "Visa" not in text and "Greenville" not in text


def test_matching_uses_the_indexes_and_confirms_before_storing(engine: Engine, synced: MoonClerkStandIn) -> None:
    lookup = MoonClerkLookup(client_for(synced))
    case_id = make_case(engine, "call_dir", email="C9@example.com", customer_name="Jade Abbott Nj")
    outcome = match_case(engine, lookup, case_id, None, NOW)
    assert outcome.status == "matched" and load(engine, case_id).moonclerk_customer_id == START + 9
    assert not synced.calls("/customers") and len(synced.calls(f"/customers/{START + 9}")) == 1

    tie = make_case(engine, "call_tie", customer_name="Ryan Wood")
    assert match_case(engine, lookup, tie, None, NOW).status == "review"
    assert {c["customer_id"] for c in load(engine, tie).match_candidates} == {700, 523425}


def test_a_deleted_customer_is_no_longer_matched(engine: Engine, synced: MoonClerkStandIn) -> None:
    lookup = MoonClerkLookup(client_for(synced))
    synced.delete_customer(START + 4)  # the directory has not synced since: its row is stale
    case_id = make_case(engine, "call_gone", email="c4@example.com")
    outcome = match_case(engine, lookup, case_id, None, NOW)
    assert outcome.status == "unmatched" and load(engine, case_id).moonclerk_customer_id is None
    assert START + 4 not in rows(engine)  # the direct read's 404 removed the row
    assert not find_customers(engine, lookup, parse_term("c4@example.com")).customers


def test_a_changed_email_is_confirmed_before_a_match(engine: Engine, synced: MoonClerkStandIn) -> None:
    lookup = MoonClerkLookup(client_for(synced))
    synced.update_customer(START + 5, email="moved@example.com")  # stale row still says c5@
    case_id = make_case(engine, "call_moved", email="c5@example.com")
    assert match_case(engine, lookup, case_id, None, NOW).status != "matched"
    assert rows(engine)[START + 5].email == "moved@example.com"  # written through


def test_a_new_customer_with_a_stated_id_is_read_directly(engine: Engine, synced: MoonClerkStandIn) -> None:
    synced.add_customer(id=800, name="Brand New", email="new@example.com", custom_id="N1")  # after the sync
    lookup = MoonClerkLookup(client_for(synced))
    case_id = make_case(engine, "call_new", email="new@example.com", moonclerk_customer_id=800)
    assert match_case(engine, lookup, case_id, None, NOW).status == "matched"
    assert 800 in rows(engine)  # written through


def test_a_customer_beyond_the_first_10000_is_found(engine: Engine) -> None:
    with MoonClerkStandIn(seed=False) as standin:
        standin.add_generated(10_050, start_id=START)
        assert DirectorySyncer(engine, client_for(standin), pace=0).run().finished
        lookup = MoonClerkLookup(client_for(standin))
        assert [c.id for c in find_customers(engine, lookup, parse_term("c10040@example.com")).customers] \
            == [START + 10_040]
        case_id = make_case(engine, "call_far", email="c10045@example.com")
        assert match_case(engine, lookup, case_id, None, NOW).status == "matched"
        assert load(engine, case_id).moonclerk_customer_id == START + 10_045
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(DirectoryCustomer)).scalar() == 10_050


def test_a_stored_case_wakes_matching_at_once(engine: Engine, synced: MoonClerkStandIn) -> None:
    worker = MatchWorker(engine, client_for(synced), None, poll_seconds=60, clock=lambda: NOW).start()
    try:
        time.sleep(0.05)  # the first (empty) run is over: from here only wake() can start another
        case_id = make_case(engine, "call_wake", email="c1@example.com")
        started = time.monotonic()
        worker.wake()
        while load(engine, case_id).match_status == "pending":
            assert time.monotonic() - started < 5, "wake() did not start matching"
            time.sleep(0.01)
        assert time.monotonic() - started < 2
    finally:
        worker.stop()
    assert load(engine, case_id).moonclerk_customer_id == START + 1
