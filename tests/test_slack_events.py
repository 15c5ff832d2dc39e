"""POST /slack/events over real HTTP, signed exactly as Slack signs, with the Web API on a stand-in."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import Session, col, select

from bot.ingest import ingest
from bot.runtime import Runtime
from bot.slack.service import SlackService, start_slack
from bot.standins import SlackStandIn
from storage.models import AuditEvent, Case
from tests.conftest import LiveServer, make_settings
from tests.signing import dumps, slack_headers
from tests.waiting import until

SIGNING_SECRET = "slack-signing-secret-for-tests"
CHANNEL = "C0FINANCE"
SAMPLES = Path(__file__).resolve().parents[1] / "bot" / "samples"


class App:
    def __init__(self, runtime: Runtime, slack: SlackStandIn, server: LiveServer, service: SlackService) -> None:
        self.runtime, self.slack, self.server, self.service = runtime, slack, server, service

    def deliver(self, name: str) -> Case:
        payload = json.loads((SAMPLES / name).read_text())
        result = ingest(self.runtime.engine, payload, dumps(payload), self.runtime.policy, datetime.now(UTC))
        self.service.worker.wake()
        until(lambda: self.case(result.call_id or "").slack_ts, what="the card to be posted")
        return self.case(result.call_id or "")

    def case(self, call_id: str) -> Case:
        with Session(self.runtime.engine) as session:
            return session.exec(select(Case).where(Case.call_id == call_id)).one()

    def click(self, case: Case, action_id: str, user: str = "U0APPROVER1", *, secret: str = SIGNING_SECRET,
              value: str | None = None) -> httpx.Response:
        assert case.slack_ts is not None
        if value is None:
            self.card_is_current(case)  # a person clicks the card they see, once it has caught up
        message = self.slack.message(CHANNEL, case.slack_ts)
        button = next((e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                       if e["action_id"] == action_id), {"value": ""})
        payload = {
            "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0FIN"},
            "api_app_id": "A0", "token": "unused", "trigger_id": "1.2.3",
            "container": {"type": "message", "message_ts": case.slack_ts, "channel_id": CHANNEL},
            "team": {"id": "T0FIN", "domain": "finance"}, "channel": {"id": CHANNEL, "name": "finance"},
            "message": message, "response_url": self.slack.response_url(f"click-{action_id}"),
            "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "action_ts": str(time.time()),
                         "value": button["value"] if value is None else value}],
        }
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        return httpx.post(f"{self.server.url}/slack/events", content=body, headers=slack_headers(body, secret))

    def card_is_current(self, case: Case) -> None:
        """Wait until the card in Slack is the render of the case as it is now (its buttons' version)."""
        def current() -> bool | None:
            message = self.slack.message(CHANNEL, case.slack_ts or "")
            values = [e.get("value") for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
            drawn = {json.loads(v)["v"] for v in values if v and v.startswith("{")}
            return drawn == {self.case(case.call_id).card_version} or not values or None

        self.slack.wait_until(current, 10)


SYSTEM_ACTORS = ("dialnexa", "finance-desk")


@pytest.fixture
def app(runtime: Runtime, db_url: str) -> Iterator[App]:
    with SlackStandIn() as slack:
        runtime.settings = make_settings(
            db_url, slack_bot_token=SecretStr("xoxb-test"), slack_signing_secret=SecretStr(SIGNING_SECRET),
            finance_channel=CHANNEL, slack_api_url=f"{slack.url}/api/", slack_post_interval_seconds=0)
        service = start_slack(runtime, poll_seconds=0.05)
        server = LiveServer(runtime).start()
        try:
            yield App(runtime, slack, server, service)
        finally:
            server.stop()
            service.stop()


def test_assign_route_and_dismiss_update_the_card_and_its_thread(app: App) -> None:
    case = app.deliver("01_refund.json")
    assert app.click(case, "assign_self", user="U0APPROVER2").status_code == 200
    until(lambda: app.case(case.call_id).owner == "U0APPROVER2", 5)
    assert app.click(case, "route_review").status_code == 200
    until(lambda: app.case(case.call_id).state == "in_review", 5)
    assert app.click(case, "dismiss").status_code == 200
    until(lambda: app.case(case.call_id).state == "dismissed", 5)
    app.slack.wait_until(lambda: len(app.slack.thread(CHANNEL, case.slack_ts or "")) >= 4 or None, 10)
    replies = [m["text"] for m in app.slack.thread(CHANNEL, case.slack_ts or "")[1:]]
    assert replies == ["<@U0APPROVER2> took ownership of this case.",
                       "<@U0APPROVER1> sent this case to finance review.",
                       "<@U0APPROVER1> dismissed this case: no finance action needed."]
    app.slack.wait_until(lambda: "Dismissed" in json.dumps(app.slack.message(CHANNEL, case.slack_ts or "")) or None,
                         10)
    card = app.slack.message(CHANNEL, case.slack_ts or "")
    assert not [b for b in card["blocks"] if b["type"] == "actions"]  # a closed case offers no buttons
    with Session(app.runtime.engine) as session:
        actions = session.exec(select(AuditEvent.action).where(col(AuditEvent.actor).not_in(SYSTEM_ACTORS))).all()
    assert actions == ["case.assigned", "case.routed_to_review", "case.dismissed"]
    # A stale card's button on a closed case changes nothing and says why, only to the clicker.
    assert app.click(case, "assign_self", value=json.dumps({"case_id": case.id, "call_id": case.call_id, "v": 1})
                     ).status_code == 200
    responses = app.slack.wait_until(lambda: app.slack.responses_for("click-assign_self") or None, 5)
    assert "This card changed since it was shown to you" in responses[-1]["text"]
    assert "now dismissed" in responses[-1]["text"] and responses[-1]["response_type"] == "ephemeral"
    assert app.case(case.call_id).owner == "U0APPROVER2"


def test_only_finance_people_may_dismiss(app: App) -> None:
    case = app.deliver("01_refund.json")
    assert app.click(case, "dismiss", user="U0STRANGER").status_code == 200
    responses = app.slack.wait_until(lambda: app.slack.responses_for("click-dismiss") or None, 5)
    assert "only finance people" in responses[-1]["text"] and responses[-1]["response_type"] == "ephemeral"
    assert app.case(case.call_id).state == "new"
    with Session(app.runtime.engine) as session:
        refused = session.exec(select(AuditEvent).where(AuditEvent.action == "action.refused")).one()
    assert refused.actor == "U0STRANGER" and refused.detail == {"action": "dismiss"}
    # Nor take or route it: every control that changes a case is finance people's.
    app.click(case, "assign_self", user="U0STRANGER")
    responses = app.slack.wait_until(lambda: app.slack.responses_for("click-assign_self") or None, 5)
    assert "only finance people" in responses[-1]["text"]
    assert app.case(case.call_id).owner != "U0STRANGER"


def test_bad_signature_is_401_and_changes_nothing(app: App) -> None:
    case = app.deliver("01_refund.json")
    response = app.click(case, "dismiss", secret="not-the-signing-secret")
    assert response.status_code == 401
    assert app.case(case.call_id).state == "new"


def test_stale_timestamp_is_401(app: App) -> None:
    body = "payload=" + urllib.parse.quote(json.dumps({"type": "block_actions", "actions": []}))
    headers = slack_headers(body, SIGNING_SECRET, timestamp=int(time.time()) - 600)
    assert httpx.post(f"{app.server.url}/slack/events", content=body, headers=headers).status_code == 401


def test_oversize_slack_body_is_413(app: App) -> None:
    body = "payload=" + "x" * (1024 * 1024 + 10)
    response = httpx.post(f"{app.server.url}/slack/events", content=body, headers=slack_headers(body, SIGNING_SECRET))
    assert response.status_code == 413


def test_url_verification_challenge(app: App) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "x"})
    headers = {**slack_headers(body, SIGNING_SECRET), "Content-Type": "application/json"}
    response = httpx.post(f"{app.server.url}/slack/events", content=body, headers=headers)
    assert response.status_code == 200 and "abc123" in response.text


