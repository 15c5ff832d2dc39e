"""A running finance-desk (uvicorn on a free port) wired to local Slack, MoonClerk and Poof stand-ins,
driven with requests signed exactly as Slack signs them."""

from __future__ import annotations

import json
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlmodel import Session, select

from blocks.actions import ButtonValue
from bot.ingest import ingest
from bot.runtime import Runtime
from bot.slack.service import SlackService, start_slack
from bot.standins import MoonClerkStandIn, PoofStandIn, SlackStandIn
from bot.standins.stripe import StripeStandIn
from storage.models import Case
from tests.conftest import LiveServer, make_settings
from tests.signing import dumps, slack_headers
from tests.waiting import until

SIGNING_SECRET = "slack-signing-secret-for-tests"
POOF_WEBHOOK_SECRET = "poof-shared-secret-for-tests"
CHANNEL = "C0FINANCE"
SAMPLES = Path(__file__).resolve().parents[1] / "bot" / "samples"


class SlackApp:
    def __init__(self, runtime: Runtime, db_url: str, *, provider_timeout: float = 10.0,
                 stripe: StripeStandIn | None = None) -> None:
        self.slack = SlackStandIn(usergroups={"S0FINANCE": ["U0GROUPMEMBER"]}).start()
        self.moonclerk = MoonClerkStandIn().start()
        self.poof = PoofStandIn().start()
        # A Stripe stand-in the caller owns (shared across a module's tests), when the test needs one.
        self.stripe = stripe
        extra: dict[str, Any] = {}
        if stripe is not None:
            extra = {"stripe_api_key": SecretStr(stripe.api_key), "stripe_api_url": stripe.url}
        runtime.settings = make_settings(
            db_url, slack_bot_token=SecretStr("xoxb-test"), slack_signing_secret=SecretStr(SIGNING_SECRET),
            finance_channel=CHANNEL, slack_api_url=f"{self.slack.url}/api/", slack_post_interval_seconds=0,
            moonclerk_api_key=SecretStr(self.moonclerk.api_key), moonclerk_api_url=self.moonclerk.url,
            poof_api_key=SecretStr(self.poof.api_key), poof_api_url=self.poof.url,
            poof_webhook_secret=SecretStr(POOF_WEBHOOK_SECRET), provider_timeout_seconds=provider_timeout, **extra)
        self.runtime = runtime
        self.service: SlackService = start_slack(runtime, poll_seconds=0.05)
        self.server = LiveServer(runtime).start()

    def stop(self) -> None:
        self.server.stop()
        self.service.stop()
        for standin in (self.slack, self.moonclerk, self.poof):
            standin.stop()

    # -- cases -----------------------------------------------------------------------------------
    def deliver(self, payload: dict[str, Any] | str) -> Case:
        if isinstance(payload, str):
            payload = json.loads((SAMPLES / payload).read_text())
        result = ingest(self.runtime.engine, payload, dumps(payload), self.runtime.policy, datetime.now(UTC))
        self.service.worker.wake()
        return self.wait(result.call_id or "", lambda c: c.slack_ts is not None)

    def case(self, call_id: str) -> Case:
        with Session(self.runtime.engine) as session:
            return session.exec(select(Case).where(Case.call_id == call_id)).one()

    def wait(self, call_id: str, check: Any, timeout: float = 10) -> Case:
        def reached() -> Case | None:
            case = self.case(call_id)
            return case if check(case) else None

        return until(reached, timeout, f"case {call_id} reaching the expected state")

    def card(self, case: Case) -> dict[str, Any]:
        return self.slack.message(CHANNEL, case.slack_ts or "")

    def thread_texts(self, case: Case) -> list[str]:
        return [m["text"] for m in self.slack.thread(CHANNEL, case.slack_ts or "")[1:]]

    # -- requests as Slack sends them ------------------------------------------------------------
    def _post(self, payload: dict[str, Any], secret: str = SIGNING_SECRET) -> httpx.Response:
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        return httpx.post(f"{self.server.url}/slack/events", content=body, headers=slack_headers(body, secret),
                          timeout=10)

    def click(self, case: Case, action_id: str, user: str, *, block_id: str = "b",
              response_name: str | None = None, version: int | None = None) -> httpx.Response:
        """A click on the card as it is now (the case's current version), or as drawn at `version`."""
        assert case.id is not None
        current = self.case(case.call_id).card_version if version is None else version
        value = ButtonValue(case_id=case.id, call_id=case.call_id, v=current).dump()
        return self._post({
            "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0FIN"},
            "api_app_id": "A0", "token": "unused", "trigger_id": f"trigger-{user}-{time.time()}",
            "container": {"type": "message", "message_ts": case.slack_ts, "channel_id": CHANNEL},
            "team": {"id": "T0FIN", "domain": "finance"}, "channel": {"id": CHANNEL, "name": "finance"},
            "response_url": self.slack.response_url(response_name or f"{action_id}-{user}"),
            "actions": [{"action_id": action_id, "block_id": block_id, "type": "button", "value": value,
                         "action_ts": str(time.time())}],
        })

    def approve(self, case: Case, *users: str) -> Case:
        """Approve the case on its card, as each of `users` in turn, and wait until it is approved."""
        for user in users:
            assert self.click(case, "approve", user, response_name=f"approve-{user}").status_code == 200
        return self.wait(case.call_id, lambda c: c.approved_at is not None)

    def submit(self, view: dict[str, Any], user: str, values: dict[str, Any]) -> httpx.Response:
        state: dict[str, Any] = {}
        for block_id, value in values.items():
            if isinstance(value, list):
                state[block_id] = {"value": {"type": "checkboxes",
                                             "selected_options": [{"value": v} for v in value]}}
            elif block_id in {"method", "crypto", "charge", "reason"}:
                state[block_id] = {"value": {"type": "static_select", "selected_option": {"value": value}}}
            else:
                state[block_id] = {"value": {"type": "plain_text_input", "value": value}}
        submitted = {**view, "id": "V123", "state": {"values": state}}
        return self._post({"type": "view_submission", "user": {"id": user, "team_id": "T0FIN"},
                           "team": {"id": "T0FIN"}, "api_app_id": "A0", "token": "unused",
                           "trigger_id": "t", "view": submitted})

    def opened_view(self, index: int = -1) -> dict[str, Any]:
        calls = self.slack.wait_for("views.open")
        body = calls[index].json or calls[index].form or {}
        view = body["view"]
        return json.loads(view) if isinstance(view, str) else dict(view)

    def ephemeral_for(self, name: str) -> str:
        responses = self.slack.wait_until(lambda: self.slack.responses_for(name) or None, 10)
        return str(responses[-1]["text"])
