"""Customer matching: the documented scores, MoonClerk paging and caching, and match_case on the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from bot.lookup.customers import MoonClerkLookup, find, parse_term
from bot.lookup.matching import (
    MATCHED,
    REVIEW,
    CallerFacts,
    Scored,
    decide,
    name_score,
    score_customer,
)
from bot.lookup.review import MatchWorker, identity, mark_for_matching, match_case, match_pending, pick
from bot.policy import Policy
from bot.standins import MoonClerkStandIn
from bot.standins.moonclerk import customer_fixture
from providers.moonclerk import Customer, MoonClerkClient
from storage.db import session_scope
from storage.models import AuditEvent, Case, OutboxMessage
from tests.cases import load
from tests.cases import make_case as _make_case

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
REVIEW_CHANNEL = "C0REVIEW"
RYAN = Customer.model_validate(customer_fixture())  # id 523425, ryan@moonclerk.com, custom_id GHS430


def phone_field(number: str) -> dict[str, Any]:
    return {"phone": {"id": 1, "type": "phone", "response": number}}


# -- scoring (pure) ------------------------------------------------------------------------------

@pytest.mark.parametrize(("facts", "expected", "why"), [
    ({"email": "Ryan@MoonClerk.com "}, 0.9, "email matches"),
    ({"email": "ryan+billing@moonclerk.com"}, 0.8, "email matches apart from a +tag"),
    ({"customer_id": 523425}, 0.95, "MoonClerk customer ID stated on the call"),
    ({"account_id": "ghs430"}, 0.85, "account ID matches MoonClerk's custom ID"),
    ({"account_id": "cus_4SOZuEc4cxP5L7"}, 0.95, "customer reference stated on the call"),
    ({"name": "Ryan Wood"}, 0.6, "name matches"),
    ({"name": "Wood, Ryan"}, 0.55, "name matches (words in another order)"),
    ({"name": "R. Wood"}, 0.45, "initial and surname match"),
    ({"name": "Rian Wood"}, 0.4, "name spelt almost the same"),
    ({"name": "Ryan Wood", "email": "ryan@moonclerk.com"}, 0.96, "email matches"),
    # A stated ID contradicted by the email on file drops into review: 0.95 × 0.7.
    ({"customer_id": 523425, "email": "someone@else.example"}, 0.665, "but the email on file differs"),
    ({"name": "Jane Doe", "account_id": "GHS430"}, 0.722, "but the name on file differs"),
    ({"name": "Jane Doe"}, 0.0, None),
])
def test_documented_scores(facts: dict[str, Any], expected: float, why: str | None) -> None:
    base: dict[str, Any] = {"email": None, "phone": None, "name": None, "account_id": None, "customer_id": None,
                            "payment_id": None}
    scored = score_customer(CallerFacts.of(**{**base, **facts}), RYAN)
    assert scored.score == pytest.approx(expected, abs=0.001)
    assert 0.0 <= scored.score <= 1.0
    if why:
        assert why in scored.evidence


def test_phone_in_custom_fields_and_name_combine_to_a_match() -> None:
    customer = Customer.model_validate({**customer_fixture(), "custom_fields": phone_field("(212) 555-0199")})
    # "(212) 555-0199" has no country code, so it is not E.164 and never matches by accident.
    assert score_customer(CallerFacts.of(email=None, phone="+12125550199", name=None, account_id=None,
                                         customer_id=None, payment_id=None), customer).score == 0.0
    customer = Customer.model_validate({**customer_fixture(), "custom_fields": phone_field("+1 212 555 0199")})
    scored = score_customer(CallerFacts.of(email=None, phone="12125550199", name="Ryan Wood", account_id=None,
                                           customer_id=None, payment_id=None), customer)
    assert scored.score == pytest.approx(0.88)  # 1 - (1 - 0.7)(1 - 0.6)
    assert scored.score >= MATCHED


def test_names_ignore_case_accents_and_punctuation() -> None:
    assert name_score("ZOË  o'brien", "Zoe OBrien")[0] == 0.6
    assert name_score("", "Zoe") == (0.0, None)


def _scored(customer_id: int, score: float) -> Scored:
    return Scored(customer_id=customer_id, score=score, evidence=("x",))


@pytest.mark.parametrize(("scores", "status", "customer"), [
    ([0.9], "matched", 1),
    ([0.9, 0.6], "matched", 1),
    ([0.9, 0.87], "review", None),  # a tie at the top
    ([0.6, 0.6], "review", None),
    ([0.7], "review", None),
    ([0.45, 0.4], "unmatched", None),
    ([], "unmatched", None),
])
def test_decision_thresholds(scores: list[float], status: str, customer: int | None) -> None:
    result = decide(_scored(i, s) for i, s in enumerate(scores, start=1))
    assert (result.status, result.customer_id) == (status, customer)
    assert REVIEW == 0.5 and MATCHED == 0.85


# -- MoonClerk paging, caching, retries -----------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def moonclerk() -> Iterator[MoonClerkStandIn]:
    with MoonClerkStandIn(seed=False) as standin:
        yield standin


def client_for(standin: MoonClerkStandIn, max_attempts: int = 4) -> MoonClerkClient:
    return MoonClerkClient(standin.api_key, standin.url, sleep=lambda _s: None, max_attempts=max_attempts)


def add_people(standin: MoonClerkStandIn, count: int, **overrides: Any) -> list[dict[str, Any]]:
    return [standin.add_customer(id=100 + i, name=f"Person {chr(65 + i)}", email=f"p{i}@example.com",
                                 custom_id=f"C{i}", **overrides) for i in range(count)]


@pytest.mark.parametrize(("count", "offsets"), [(5, ["0", "2", "4"]), (4, ["0", "2", "4"]), (1, ["0"])])
def test_scan_pages_through_count_and_offset(moonclerk: MoonClerkStandIn, count: int, offsets: list[str]) -> None:
    add_people(moonclerk, count)
    lookup = MoonClerkLookup(client_for(moonclerk), page_size=2)
    scan = lookup.customers()
    assert [c.id for c in scan.customers] == [100 + i for i in range(count)] and scan.complete
    calls = moonclerk.calls("/customers")
    assert [c.query["offset"] for c in calls] == offsets
    assert {c.query["count"] for c in calls} == {"2"}
    # A customer on the last page is found.
    assert find(lookup, parse_term(f"p{count - 1}@example.com")).customers[0].id == 100 + count - 1


def test_scan_stops_at_max_customers(moonclerk: MoonClerkStandIn) -> None:
    add_people(moonclerk, 5)
    scan = MoonClerkLookup(client_for(moonclerk), page_size=2, max_customers=3).customers()
    assert len(scan.customers) == 3 and not scan.complete


def test_a_burst_shares_one_scan_until_the_ttl_ends(moonclerk: MoonClerkStandIn) -> None:
    add_people(moonclerk, 3)
    moonclerk.delay("/customers", 0.2)
    clock = Clock()
    lookup = MoonClerkLookup(client_for(moonclerk), ttl=30, clock=clock)
    threads = [threading.Thread(target=lookup.customers) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(moonclerk.calls("/customers")) == 1
    clock.now += 29
    lookup.customers()
    assert len(moonclerk.calls("/customers")) == 1
    clock.now += 2
    moonclerk.delay("/customers", None)
    lookup.customers()
    assert len(moonclerk.calls("/customers")) == 2


def test_a_429_is_retried_and_not_cached(moonclerk: MoonClerkStandIn) -> None:
    add_people(moonclerk, 3)
    moonclerk.fail_next("/customers", 429)
    lookup = MoonClerkLookup(client_for(moonclerk), page_size=2)
    assert len(lookup.customers().customers) == 3
    assert moonclerk.status_count(429, "/customers") == 1
    assert [c.query["offset"] for c in moonclerk.calls("/customers")] == ["0", "0", "2"]


def test_not_found_is_none_and_ids_are_read_directly(moonclerk: MoonClerkStandIn) -> None:
    moonclerk.add_customer(id=7, name="Seven")
    moonclerk.add_payment(id=70, customer_id=7)
    lookup = MoonClerkLookup(client_for(moonclerk))
    assert lookup.customer(8) is None
    hits = find(lookup, parse_term("70"))
    assert [c.id for c in hits.customers] == [7]
    assert not moonclerk.calls("/customers")  # no scan for an ID



def test_recent_payments_are_the_newest_even_when_moonclerk_lists_oldest_first() -> None:
    with MoonClerkStandIn(seed=False, payments_oldest_first=True) as standin:
        standin.add_customer(id=7, name="Seven")
        days = [3, 11, 1, 8, 5, 12, 9]  # stored out of order; January 2026
        for payment_id, day in enumerate(days, start=70):
            standin.add_payment(id=payment_id, customer_id=7, date=f"2026-01-{day:02d}T10:00:00Z")
        standin.add_payment(id=90, customer_id=8, date="2026-02-01T10:00:00Z")  # someone else's
        client = client_for(standin)
        # The stand-in really does answer oldest first, the order MoonClerk never promised not to use.
        listed = [p.date.day for p in client.list_payments(customer_id=7) if p.date is not None]
        assert listed == sorted(days)
        standin.clear_requests()
        lookup = MoonClerkLookup(client, page_size=2, recent_payments=5)
        recent = lookup.recent_payments(7)
        assert [p.date.day for p in recent if p.date is not None] == [12, 11, 9, 8, 5]
        assert {p.customer_id for p in recent} == {7}
        # Every page of the customer's payments was read (count/offset), none of anyone else's.
        calls = standin.calls("/payments")
        assert [c.query["offset"] for c in calls] == ["0", "2", "4", "6"]
        assert {c.query["customer_id"] for c in calls} == {"7"}
        assert lookup.recent_payments(7) == recent and len(standin.calls("/payments")) == 4  # cached


def test_recent_payments_stop_at_max_payments() -> None:
    with MoonClerkStandIn(seed=False) as standin:  # newest first, as in the docs' examples
        for payment_id, day in enumerate(range(1, 11), start=70):
            standin.add_payment(id=payment_id, customer_id=7, date=f"2026-01-{day:02d}T10:00:00Z")
        recent = MoonClerkLookup(client_for(standin), page_size=3, recent_payments=2,
                                 max_payments=4).recent_payments(7)
        assert [p.id for p in recent] == [79, 78]
        assert [c.query["offset"] for c in standin.calls("/payments")] == ["0", "3"]

# -- match_case on the database ------------------------------------------------------------------

def make_case(engine: Engine, call_id: str = "call_match", **fields: Any) -> int:
    return _make_case(engine, call_id, now=NOW, **fields)



def audit(engine: Engine, case_id: int) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent.action).where(AuditEvent.case_id == case_id)
                                 .order_by(col(AuditEvent.id))).all())


def outbox(engine: Engine, kind: str) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)).all())


@pytest.fixture
def seeded() -> Iterator[MoonClerkStandIn]:
    with MoonClerkStandIn() as standin:  # the documented customer 523425 (Ryan Wood)
        standin.add_customer(id=600, name="Ada Lovelace", email="ada@example.com", custom_id="ADA1")
        yield standin


def test_a_confident_match_sets_the_customer_once(engine: Engine, seeded: MoonClerkStandIn) -> None:
    case_id = make_case(engine, email="RYAN@moonclerk.com", customer_name="Ryan Wood")
    lookup = MoonClerkLookup(client_for(seeded), page_size=1)
    outcome = match_case(engine, lookup, case_id, REVIEW_CHANNEL, NOW)
    assert outcome.status == "matched" and outcome.changed
    case = load(engine, case_id)
    assert case.moonclerk_customer_id == 523425
    assert case.match_score == pytest.approx(0.96)
    assert "email matches" in case.match_evidence
    assert [c["customer_id"] for c in case.match_candidates] == [523425]
    assert "payment_method" not in str(case.match_candidates)
    assert audit(engine, case_id) == ["match.matched"]
    assert len(outbox(engine, "card")) == 1 and not outbox(engine, "message")
    # Idempotent: the same facts store nothing new and post nothing.
    again = match_case(engine, lookup, case_id, REVIEW_CHANNEL, NOW + timedelta(minutes=1))
    assert again.status == "matched" and not again.changed
    assert audit(engine, case_id) == ["match.matched"]


def test_an_ambiguous_match_goes_to_review_once(engine: Engine, seeded: MoonClerkStandIn) -> None:
    seeded.add_customer(id=700, name="Ryan Wood", email="other@example.com", custom_id="X1")
    case_id = make_case(engine, customer_name="ryan wood", caller_phone="+12125550199")
    lookup = MoonClerkLookup(client_for(seeded))
    assert match_case(engine, lookup, case_id, REVIEW_CHANNEL, NOW).status == "review"
    assert match_case(engine, lookup, case_id, REVIEW_CHANNEL, NOW).changed is False
    case = load(engine, case_id)
    assert case.moonclerk_customer_id is None and case.match_score == pytest.approx(0.6)
    assert "2 customers match about equally well" in case.match_evidence
    [message] = outbox(engine, "message")
    assert message.channel == REVIEW_CHANNEL and message.blocks is not None
    select_menu = next(e for b in message.blocks if b["type"] == "actions" for e in b["elements"])
    values = [o["value"] for o in select_menu["options"]]
    assert values == [f"{case_id}:700", f"{case_id}:523425", f"{case_id}:none"]  # equal scores: lower ID first
    assert len(seeded.calls("/customers")) == 1  # the second run used the cache


def test_no_review_channel_still_queues_for_review(engine: Engine, seeded: MoonClerkStandIn) -> None:
    case_id = make_case(engine, customer_name="Ryan Wood")
    assert match_case(engine, client_for(seeded), case_id, None, NOW).status == "review"
    assert not outbox(engine, "message")


def test_unmatched_and_nothing_to_go_on(engine: Engine, seeded: MoonClerkStandIn) -> None:
    stranger = make_case(engine, "call_stranger", email="nobody@nowhere.example", customer_name="Zed Zulu")
    blank = make_case(engine, "call_blank")
    lookup = MoonClerkLookup(client_for(seeded))
    assert match_case(engine, lookup, stranger, REVIEW_CHANNEL, NOW).status == "unmatched"
    seeded.clear_requests()
    assert match_case(engine, lookup, blank, REVIEW_CHANNEL, NOW).status == "unmatched"
    assert load(engine, blank).match_evidence == ["nothing on the call identifies a customer"]
    assert not seeded.requests  # nothing to search for: MoonClerk is not asked


def test_moonclerk_down_leaves_the_case_pending(engine: Engine, seeded: MoonClerkStandIn) -> None:
    case_id = make_case(engine, email="ryan@moonclerk.com")
    seeded.fail_next("/customers", 503, times=2)
    outcome = match_case(engine, client_for(seeded, max_attempts=2), case_id, REVIEW_CHANNEL, NOW)
    assert outcome.error and outcome.status == "pending"
    assert load(engine, case_id).match_status == "pending" and not audit(engine, case_id)


def test_a_written_customer_id_is_not_evidence_next_time(engine: Engine, seeded: MoonClerkStandIn) -> None:
    case_id = make_case(engine, email="ryan@moonclerk.com")
    lookup = MoonClerkLookup(client_for(seeded))
    match_case(engine, lookup, case_id, REVIEW_CHANNEL, NOW)
    with session_scope(engine) as session:  # a later delivery corrects the email
        case = session.get(Case, case_id)
        assert case is not None
        case.email = "ada@example.com"
        session.add(case)
    match_case(engine, lookup, case_id, REVIEW_CHANNEL, NOW)
    assert load(engine, case_id).moonclerk_customer_id == 600


def test_a_stated_id_is_kept_and_vip_routing_follows_the_match(
    engine: Engine, seeded: MoonClerkStandIn, policy: Policy,
) -> None:
    case_id = make_case(engine, kind="failed_renewal", email="ryan@moonclerk.com")
    assert not load(engine, case_id).is_vip
    match_case(engine, client_for(seeded), case_id, REVIEW_CHANNEL, NOW, policy=policy)
    case = load(engine, case_id)
    assert case.is_vip and case.moonclerk_customer_id == 523425  # 523425 is a VIP in the test policy
    stated = make_case(engine, "call_stated", moonclerk_customer_id=999, customer_name="Nobody Known")
    match_case(engine, client_for(seeded), stated, REVIEW_CHANNEL, NOW)
    assert load(engine, stated).moonclerk_customer_id == 999  # unmatched: what the call said stays


def test_match_pending_and_a_person_decision_is_final(engine: Engine, seeded: MoonClerkStandIn) -> None:
    seeded.add_customer(id=700, name="Ryan Wood", email="other@example.com")
    billing = make_case(engine, "call_b", customer_name="Ryan Wood")
    other = make_case(engine, "call_nb", is_billing=False, email="ryan@moonclerk.com")
    outcomes = match_pending(engine, client_for(seeded), REVIEW_CHANNEL, NOW)
    assert [(o.case_id, o.status) for o in outcomes] == [(billing, "review")]
    assert load(engine, other).match_status == "pending"

    refused = pick(engine, f"{billing}:700", "U0STRANGER", NOW, may_decide=lambda user: user == "U0APPROVER1")
    assert not refused.ok and load(engine, billing).match_status == "review"
    assert not pick(engine, f"{billing}:12345", "U0APPROVER1", NOW, may_decide=lambda _u: True).ok
    assert not pick(engine, "garbage", "U0APPROVER1", NOW, may_decide=lambda _u: True).ok
    assert pick(engine, f"{billing}:none", "U0APPROVER1", NOW, may_decide=lambda _u: True).ok
    case = load(engine, billing)
    assert (case.match_status, case.moonclerk_customer_id) == ("unmatched", None)
    # Matching leaves a person's decision alone, and new facts do not re-queue it.
    assert match_case(engine, client_for(seeded), billing, REVIEW_CHANNEL, NOW).skipped == "a person already decided"
    with session_scope(engine) as session:
        case = session.get(Case, billing)
        assert case is not None
        before = identity(case)
        case.email = "ryan@moonclerk.com"
        assert mark_for_matching(session, case, before) is False
    assert audit(engine, billing) == ["match.review", "match.rejected"]



def test_picking_a_vip_customer_in_review_reroutes_the_case(
    engine: Engine, seeded: MoonClerkStandIn, policy: Policy,
) -> None:
    seeded.add_customer(id=700, name="Ryan Wood", email="other@example.com", custom_id="X1")
    case_id = make_case(engine, "call_vip_pick", kind="failed_renewal", customer_name="Ryan Wood",
                        urgency="normal", owner="U0SOMEONE")
    assert match_case(engine, client_for(seeded), case_id, REVIEW_CHANNEL, NOW, policy=policy).status == "review"
    before = load(engine, case_id)
    assert not before.is_vip and before.urgency == "normal"

    # 523425 is a VIP in the test policy, and a failed renewal is a payment blocker for a VIP.
    assert pick(engine, f"{case_id}:523425", "U0APPROVER1", NOW, may_decide=lambda _u: True, policy=policy).ok
    chosen = load(engine, case_id)
    assert (chosen.match_status, chosen.moonclerk_customer_id) == ("matched", 523425)
    assert chosen.is_vip and chosen.urgency == "critical"
    assert "VIP payment blocker" in chosen.escalation_reasons
    assert chosen.owner == "U0SOMEONE"  # routing is refreshed; the owner a person set is not
    cards = [m for m in outbox(engine, "card") if m.case_id == case_id]
    assert cards  # the card is brought up to date in the same transaction
    # Becoming a VIP's blocker schedules its escalation page, once.
    from storage.reminders import Reminder

    with Session(engine) as session:
        pages = session.exec(select(Reminder.reason).where(Reminder.case_id == case_id,
                                                           Reminder.kind == "escalation")).all()
    assert pages.count("VIP payment blocker") == 1


def test_none_of_these_takes_vip_status_away_again(engine: Engine, seeded: MoonClerkStandIn, policy: Policy) -> None:
    case_id = make_case(engine, "call_vip_none", kind="failed_renewal", moonclerk_customer_id=523425,
                        is_vip=True, urgency="critical", match_status="review",
                        match_candidates=[{"customer_id": 523425, "score": 0.6}])
    assert pick(engine, f"{case_id}:none", "U0APPROVER1", NOW, may_decide=lambda _u: True, policy=policy).ok
    case = load(engine, case_id)
    assert (case.match_status, case.moonclerk_customer_id) == ("unmatched", None)
    assert not case.is_vip and case.urgency != "critical" and "VIP payment blocker" not in case.escalation_reasons

def test_the_match_worker_matches_pending_cases_in_the_background(engine: Engine, seeded: MoonClerkStandIn) -> None:
    case_id = make_case(engine, email="ada@example.com")
    matched = make_case(engine, "call_done_before", email="ryan@moonclerk.com")
    match_case(engine, client_for(seeded), matched, REVIEW_CHANNEL, NOW)
    with session_scope(engine) as session:  # a later delivery changes who called: queued again
        case = session.get(Case, matched)
        assert case is not None
        before = identity(case)
        case.email = "ada@example.com"
        assert mark_for_matching(session, case, before) is True and case.match_status == "pending"
    worker = MatchWorker(engine, client_for(seeded), REVIEW_CHANNEL, poll_seconds=0.05, clock=lambda: NOW).start()
    try:
        deadline = time.monotonic() + 10
        while {load(engine, i).moonclerk_customer_id for i in (case_id, matched)} != {600}:
            assert time.monotonic() < deadline, "the worker never matched the cases"
            time.sleep(0.02)
    finally:
        worker.stop()
    assert load(engine, case_id).match_status == "matched"
