"""The review channel's customer picker updating the case card, and the App Home tab, over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from blocks.actions import ActionId, ButtonValue, ControlId
from blocks.home import home_view
from bot import decisions
from bot.actions.authz import Directory
from bot.lookup.queries import home_data
from bot.lookup.review import match_case
from bot.policy import Policy
from bot.runtime import Runtime
from bot.slack.listeners.home import build_home, home_for
from bot.slack.outbox import enqueue_card
from bot.slack.service import action_context
from storage.db import session_scope
from storage.decisions import Delegation
from storage.models import AuditEvent, Case
from tests.blockkit import assert_valid_message, assert_valid_view
from tests.signing import slack_headers
from tests.slackapp import CHANNEL, SIGNING_SECRET, SlackApp
from tests.test_finance_command import APPROVER, make_case, start_app

PICK_ACTION = ControlId.REVIEW_PICK

REVIEW_CHANNEL = "C0REVIEW"
T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll `check` (the database is not something the stand-ins can signal)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def app(runtime: Runtime, db_url: str) -> Iterator[SlackApp]:
    application = start_app(runtime, db_url)
    application.runtime.settings.review_channel = REVIEW_CHANNEL
    yield application
    application.stop()


def posted_case(app: SlackApp, call_id: str, **fields: Any) -> Case:
    """A billing case whose card is in the finance channel."""
    case = make_case(app.runtime.engine, call_id, **fields)
    with session_scope(app.runtime.engine) as session:
        stored = session.get(Case, case.id)
        assert stored is not None
        enqueue_card(session, stored)
    app.service.worker.wake()
    return eventually(lambda: (c := app.case(call_id)).slack_ts and c)


def choose(app: SlackApp, message: dict[str, Any], value: str, user: str, name: str) -> httpx.Response:
    menu = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"])
    option = next(o for o in menu["options"] if o["value"] == value)
    return app._post({
        "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0FIN"},
        "api_app_id": "A0", "token": "unused", "trigger_id": f"trigger-{time.time()}",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": REVIEW_CHANNEL},
        "team": {"id": "T0FIN", "domain": "finance"}, "channel": {"id": REVIEW_CHANNEL, "name": "finance-review"},
        "message": message, "response_url": app.slack.response_url(name),
        "actions": [{"type": "static_select", "action_id": PICK_ACTION, "block_id": "pick",
                     "selected_option": option, "action_ts": str(time.time())}],
    })


def test_a_review_pick_updates_the_card(app: SlackApp) -> None:
    app.moonclerk.add_customer(id=700, name="Ryan Wood", email="other@example.com", custom_id="X1")
    case = posted_case(app, "call_who", customer_name="Ryan Wood", caller_phone="+12125550199")
    assert case.id is not None
    actions = action_context(app.runtime, None)
    assert actions.moonclerk is not None
    outcome = match_case(app.runtime.engine, actions.moonclerk, case.id, REVIEW_CHANNEL, datetime.now(UTC))
    assert outcome.status == "review"
    app.service.worker.wake()
    [message] = app.slack.wait_for_messages(REVIEW_CHANNEL, timeout=10)
    assert_valid_message({"text": message["text"], "blocks": message["blocks"]})
    assert "Ryan Wood" in json.dumps(message) and "Open the card" in json.dumps(message)

    # Someone who is not an approver is told so, and nothing changes.
    assert choose(app, message, f"{case.id}:523425", "U0STRANGER", "stranger").status_code == 200
    refusal = app.ephemeral_for("stranger")
    assert "only finance people" in refusal and app.case("call_who").match_status == "review"

    assert choose(app, message, f"{case.id}:523425", APPROVER, "pick").status_code == 200
    settled = app.slack.wait_until(lambda: app.slack.responses_for("pick") or None, 10)[-1]
    assert settled["replace_original"] is True and "matched this caller" in settled["text"]
    assert not any(b["type"] == "actions" for b in settled["blocks"])  # nothing left to pick
    assert_valid_message({"text": settled["text"], "blocks": settled["blocks"]})

    stored = app.case("call_who")
    assert (stored.match_status, stored.moonclerk_customer_id, stored.match_score) == ("matched", 523425, 1.0)
    card = eventually(lambda: "523425" in json.dumps(app.card(stored)) and app.card(stored))
    assert_valid_message({"text": card["text"], "blocks": card["blocks"]})
    eventually(lambda: any("matched this caller" in t for t in app.thread_texts(stored)))
    with Session(app.runtime.engine) as session:
        chosen = session.exec(select(AuditEvent).where(AuditEvent.action == "match.chosen")).one()
    assert (chosen.actor, chosen.detail) == (APPROVER, {"customer_id": 523425})



def test_picking_a_vip_customer_makes_the_card_a_vips(app: SlackApp) -> None:
    app.moonclerk.add_customer(id=700, name="Ryan Wood", email="other@example.com", custom_id="X1")
    case = posted_case(app, "call_vip_renewal", kind="failed_renewal", customer_name="Ryan Wood",
                       caller_phone="+12125550199", urgency="normal")
    assert case.id is not None and not case.is_vip
    assert "VIP" not in json.dumps(app.card(case))
    actions = action_context(app.runtime, None)
    assert actions.moonclerk is not None
    outcome = match_case(app.runtime.engine, actions.moonclerk, case.id, REVIEW_CHANNEL, datetime.now(UTC),
                         policy=app.runtime.policy)
    assert outcome.status == "review" and not app.case("call_vip_renewal").is_vip
    app.service.worker.wake()
    [message] = app.slack.wait_for_messages(REVIEW_CHANNEL, timeout=10)

    # 523425 is a VIP in the test policy: the pick reroutes the case as matching would have.
    assert choose(app, message, f"{case.id}:523425", APPROVER, "vip-pick").status_code == 200
    app.slack.wait_until(lambda: app.slack.responses_for("vip-pick") or None, 10)
    stored = app.case("call_vip_renewal")
    assert (stored.match_status, stored.moonclerk_customer_id) == ("matched", 523425)
    assert stored.is_vip and stored.urgency == "critical" and "VIP payment blocker" in stored.escalation_reasons
    card = eventually(lambda: "⭐ VIP" in json.dumps(app.card(stored), ensure_ascii=False) and app.card(stored))
    assert "Critical" in json.dumps(card["blocks"], ensure_ascii=False)
    assert_valid_message({"text": card["text"], "blocks": card["blocks"]})

def _event(app: SlackApp, user: str) -> httpx.Response:
    body = json.dumps({
        "token": "unused", "team_id": "T0FIN", "api_app_id": "A0", "type": "event_callback",
        "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()),
        "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home",
                  "event_ts": str(time.time())},
    })
    headers = {**slack_headers(body, SIGNING_SECRET), "Content-Type": "application/json"}
    return httpx.post(f"{app.server.url}/slack/events", content=body, headers=headers, timeout=10)


def seed_home(app: SlackApp) -> dict[str, Case]:
    engine, now = app.runtime.engine, datetime.now(UTC)
    card = {"slack_channel": CHANNEL, "slack_ts": "1700000000.000200"}
    return {
        "mine": make_case(engine, "call_mine", owner=APPROVER, **card),
        "mine_closed": make_case(engine, "call_mine_closed", owner=APPROVER, state="done"),
        "approve": make_case(engine, "call_approve", approval_required=True, amount=Decimal("100.00"),
                             currency="USD", approval_reason="the caller asked for a credit"),
        "senior": make_case(engine, "call_senior", approval_required=True, amount=Decimal("900.00"), currency="USD"),
        "overdue": make_case(engine, "call_overdue", follow_up_deadline=now - timedelta(hours=2), owner="U0OTHER"),
        "review": make_case(engine, "call_review", match_status="review"),
    }


def test_home_tab_is_published_on_app_home_opened(app: SlackApp) -> None:
    cases = seed_home(app)
    assert _event(app, APPROVER).status_code == 200
    view = app.slack.wait_until(lambda: app.slack.home_views.get(APPROVER), 10)
    published = {"type": view["type"], "blocks": view["blocks"]}
    assert_valid_view(published)
    text = json.dumps(published)
    for expected in ("My open cases (1)", "call_mine", "Awaiting your approval (1)", "call_approve",
                     "Overdue follow-ups (1)", "call_overdue", "1 case needs a person",
                     "https://slack.com/archives/C0FINANCE/p1700000000000200",
                     f"https://slack.com/app_redirect?channel={REVIEW_CHANNEL}"):
        assert expected in text, expected
    for absent in ("call_mine_closed", "call_senior"):  # closed; above the threshold for a non-senior
        assert absent not in text
    buttons = [b["accessory"] for b in view["blocks"] if "accessory" in b]
    assert all(button["action_id"].startswith("home_open") for button in buttons)
    # Approve and Deny on the case waiting for this approver, Resolve on their own open case: the card's IDs.
    decide = {b["block_id"]: [e["action_id"] for e in b["elements"]] for b in view["blocks"] if b["type"] == "actions"}
    assert decide == {f"home-approval-do-{cases['approve'].id}": ["approve", "deny"],
                      f"home-assigned-do-{cases['mine'].id}": ["resolve"]}
    # Slack sends block_actions even for a URL button: it is acknowledged.
    reply = app._post({"type": "block_actions", "user": {"id": APPROVER, "team_id": "T0FIN"}, "api_app_id": "A0",
                       "token": "unused", "trigger_id": "t", "team": {"id": "T0FIN"},
                       "container": {"type": "view", "view_id": view["id"]}, "view": view,
                       "actions": [{"type": "button", "action_id": buttons[0]["action_id"], "block_id": "b",
                                    "action_ts": str(time.time())}]})
    assert reply.status_code == 200

    assert _event(app, "U0SENIOR").status_code == 200
    senior = json.dumps(app.slack.wait_until(lambda: app.slack.home_views.get("U0SENIOR"), 10))
    assert "Awaiting your approval (2)" in senior and "call_senior" in senior


def test_home_for_someone_who_is_not_an_approver(app: SlackApp) -> None:
    cases = seed_home(app)
    actions = action_context(app.runtime, app.service.client)
    view = build_home(app.runtime, actions, "U0OTHER", datetime.now(UTC))
    assert_valid_view(view)
    text = json.dumps(view)
    assert "not a finance approver" in text and "call_approve" not in text
    assert "My open cases (1)" in text and cases["overdue"].call_id in text
    assert '"resolve"' not in text  # not a finance person: no Resolve to press


def test_a_crowded_home_stays_within_slack_limits(app: SlackApp) -> None:
    engine, now = app.runtime.engine, datetime.now(UTC)
    long_id = "call_" + "x" * 190
    for i in range(30):
        make_case(engine, f"{long_id[:-3]}{i:03d}", owner=APPROVER, approval_required=True,
                  follow_up_deadline=now - timedelta(minutes=i + 1), match_status="review",
                  slack_channel=CHANNEL, slack_ts=f"1700000000.{i:06d}", kind="refund")
    data = home_data(engine, APPROVER, now, is_approver=True, review_channel=REVIEW_CHANNEL)
    assert (data.assigned.total, data.awaiting.total, data.overdue.total, data.review_size) == (30, 30, 30, 30)
    view = home_view(data)
    assert_valid_view(view)
    assert "…and 22 more" in json.dumps(view, ensure_ascii=False)
    assert sum(b["type"] == "actions" for b in view["blocks"]) == 16  # 8 Resolve rows, 8 Approve/Deny rows
    ids = [b["accessory"]["action_id"] for b in view["blocks"] if "accessory" in b]
    assert len(ids) == len(set(ids))
    # Overdue follow-ups are listed longest overdue first.
    overdue = [c.follow_up_deadline for c in data.overdue.cases]
    assert overdue == sorted(overdue)  # type: ignore[type-var]


# -- who may decide what, on Home ------------------------------------------------------------------

SENIOR, SECOND, OWNER = "U0SENIOR", "U0APPROVER2", "U0OWNER"  # OWNER: finance, not an approver


def _dual(policy: Policy) -> Directory:
    """The test policy with two approvals needed above 200 USD (the single-approval threshold is 500)."""
    return Directory(policy.model_copy(update={"dual_approval_thresholds": {"USD": Decimal("200.00")}}), None)


def _listed(engine: Engine, directory: Directory, user: str, now: datetime) -> dict[str, list[str]]:
    """The call IDs in each actionable Home group, with the action IDs each row offers."""
    view = home_for(engine, directory, user, now)
    assert_valid_view(view)
    found: dict[str, list[str]] = {}
    for block in view["blocks"]:
        if block["type"] == "actions":
            group, case_id = block["block_id"].removeprefix("home-").split("-do-")
            parsed = [ButtonValue.parse(e["value"]) for e in block["elements"]]
            assert {str(value.case_id) for value in parsed} == {case_id}  # the block names its case
            values = {value.call_id for value in parsed}
            assert len(values) == 1
            found.setdefault(group, []).append(f"{values.pop()}:{'/'.join(e['action_id'] for e in block['elements'])}")
    return found


def test_home_offers_each_approver_only_what_they_may_decide_now(engine: Engine, policy: Policy) -> None:
    directory, now = _dual(policy), datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    usd = {"currency": "USD", "approval_required": True, "created_at": now - timedelta(hours=3)}
    dual = make_case(engine, "call_dual", amount=Decimal("300.00"), approvals_needed=2, **usd)
    big = make_case(engine, "call_big", amount=Decimal("900.00"), approvals_needed=2, senior_needed=True, **usd)
    single = make_case(engine, "call_single", amount=Decimal("100.00"), approvals_needed=1, **usd)
    make_case(engine, "call_denied", amount=Decimal("50.00"), state="denied", **usd)
    make_case(engine, "call_no_approval", amount=Decimal("20.00"), currency="USD")
    assert dual.id and big.id and single.id

    everyone = {"awaiting": ["call_dual:approve/deny", "call_big:approve/deny", "call_single:approve/deny"]}
    assert _listed(engine, directory, APPROVER, now).get("approval") == everyone["awaiting"]
    assert _listed(engine, directory, SENIOR, now).get("approval") == everyone["awaiting"]
    assert "approval" not in _listed(engine, directory, OWNER, now)  # finance, but no approver's authority

    # The first of two approvals: the approver who gave it is not asked again; the other still is.
    assert decisions.approve(engine, directory, dual.id, APPROVER, now).ok
    # A non-senior may give the first of the big case's two approvals (a slot stays for a senior)...
    assert decisions.approve(engine, directory, big.id, APPROVER, now).ok
    assert _listed(engine, directory, APPROVER, now)["approval"] == ["call_single:approve/deny"]
    # ...but then only a senior may give the second one.
    assert _listed(engine, directory, SECOND, now)["approval"] == ["call_dual:approve/deny",
                                                                    "call_single:approve/deny"]
    assert _listed(engine, directory, SENIOR, now)["approval"] == everyone["awaiting"]
    text = json.dumps(home_for(engine, directory, SECOND, now), ensure_ascii=False)
    assert "1 of 2 approvals" in text and "300.00" in text

    # Fully approved or denied: gone from everyone's Home.
    assert decisions.approve(engine, directory, big.id, SENIOR, now).ok
    assert decisions.deny(engine, directory, single.id, SECOND, "the invoice was already credited", now).ok
    assert _listed(engine, directory, SENIOR, now)["approval"] == ["call_dual:approve/deny"]
    assert "approval" not in _listed(engine, directory, APPROVER, now)


def test_a_delegate_sees_the_delegators_approvals_until_the_delegation_ends(engine: Engine, policy: Policy) -> None:
    directory, now = Directory(policy, None), datetime(2026, 12, 10, 15, 0, tzinfo=UTC)  # one approval needed
    big = make_case(engine, "call_senior_only", amount=Decimal("900.00"), currency="USD", approval_required=True,
                    approvals_needed=1, senior_needed=True, created_at=now)
    ends = datetime(2026, 12, 11, 5, 0, tzinfo=UTC)  # the end of 10 December in New York
    with session_scope(engine) as session:
        session.add(Delegation(delegator=SENIOR, delegate=OWNER, reason="away", starts_at=now - timedelta(hours=1),
                               ends_at=ends))
    # The owner is no approver; standing in for the senior, they act at senior level.
    assert _listed(engine, directory, OWNER, now).get("approval") == ["call_senior_only:approve/deny"]
    assert "approval" not in _listed(engine, directory, SECOND, now)  # a non-senior cannot complete it
    assert "approval" not in _listed(engine, directory, OWNER, ends)  # midnight in New York: over
    assert _listed(engine, directory, OWNER, ends - timedelta(microseconds=1)).get("approval")

    # Once the delegate approved on the senior's behalf, neither of them is asked again.
    assert big.id and decisions.approve(engine, directory, big.id, OWNER, now).ok
    assert "approval" not in _listed(engine, directory, SENIOR, now)
    assert "approval" not in _listed(engine, directory, OWNER, now)


def test_my_open_cases_offer_resolve_with_the_cards_version(engine: Engine, policy: Policy) -> None:
    now = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    mine = make_case(engine, "call_my_open", owner=OWNER, card_version=7, created_at=now)
    make_case(engine, "call_my_done", owner=OWNER, state="done", created_at=now)
    make_case(engine, "call_my_denied", owner=OWNER, state="denied", created_at=now)
    view = home_for(engine, _dual(policy), OWNER, now)
    [row] = [b for b in view["blocks"] if b["type"] == "actions"]
    [button] = row["elements"]
    assert button["action_id"] == ActionId.RESOLVE
    assert ButtonValue.parse(button["value"]) == ButtonValue(case_id=mine.id, call_id="call_my_open", v=7)
    assert "call_my_done" not in json.dumps(view) and "call_my_denied" not in json.dumps(view)


def test_a_follow_up_marked_done_is_no_longer_overdue(engine: Engine, policy: Policy) -> None:
    now = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    late = {"follow_up_deadline": now - timedelta(hours=2), "created_at": now - timedelta(days=1)}
    make_case(engine, "call_still_late", **late)
    make_case(engine, "call_followed_up", follow_up_done_at=now - timedelta(hours=1), **late)
    make_case(engine, "call_late_but_denied", state="denied", **late)
    text = json.dumps(home_for(engine, _dual(policy), APPROVER, now))
    assert "Overdue follow-ups (1)" in text and "call_still_late" in text
    assert "call_followed_up" not in text and "call_late_but_denied" not in text
