"""GET /metrics: every metric moves when its event happens, labels carry no person or ID, METRICS_TOKEN guards it."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from sqlalchemy import update

from bot.metrics import MeteredWebClient, provider_action
from bot.runtime import Runtime
from bot.standins import MoonClerkStandIn, SlackStandIn
from providers.base import ProviderError
from providers.moonclerk import MoonClerkClient
from storage.db import session_scope
from storage.models import utcnow
from storage.reminders import Reminder
from tests.conftest import WEBHOOK_SECRET, LiveServer
from tests.signing import dialnexa_headers

SAMPLES = Path(__file__).resolve().parent.parent / "bot" / "samples"
TOKEN = "metrics_token_fake_0123456789"


def scrape(url: str, token: str | None = TOKEN) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def server(runtime: Runtime) -> LiveServer:
    runtime.settings = runtime.settings.model_copy(update={
        "metrics_token": SecretStr(TOKEN), "moonclerk_webhook_token": SecretStr("mc_hook_token_fake_0123456789")})
    started = LiveServer(runtime).start()
    yield started  # type: ignore[misc]
    started.stop()


def test_webhooks_cases_and_queues_move_and_the_token_guards(server: LiveServer, runtime: Runtime) -> None:
    url = server.url
    assert httpx.get(f"{url}/metrics").status_code == 401
    assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    before = scrape(url)

    body = (SAMPLES / "01_refund.json").read_bytes()
    assert httpx.post(f"{url}/webhooks/dialnexa", content=body,
                      headers=dialnexa_headers(body, WEBHOOK_SECRET)).status_code == 200
    assert httpx.post(f"{url}/webhooks/dialnexa", content=body, headers={"Content-Type": "application/json"}
                      ).status_code in (400, 401)
    httpx.post(f"{url}/webhooks/moonclerk/mc_hook_token_fake_0123456789", content=b"{}",
               headers={"Content-Type": "application/json"})
    with session_scope(runtime.engine) as session:  # one reminder an hour overdue and unfired
        session.execute(update(Reminder).values(due_at=utcnow() - timedelta(hours=1), status="pending"))
    after = scrape(url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("finance_desk_webhook_requests_total", source="dialnexa", outcome="accepted") == 1
    assert moved("finance_desk_webhook_requests_total", source="dialnexa", outcome="refused") == 1
    assert moved("finance_desk_webhook_request_seconds_count", source="dialnexa") == 2
    assert sum(moved("finance_desk_webhook_requests_total", source="moonclerk", outcome=outcome)
               for outcome in ("accepted", "refused", "error")) == 1
    assert moved("finance_desk_cases_total", kind="refund") == 1
    assert value(after, "finance_desk_outbox_pending") >= 1
    assert value(after, "finance_desk_outbox_oldest_pending_seconds") >= 0
    assert value(after, "finance_desk_matching_queue") >= 1
    assert value(after, "finance_desk_reminders_due") >= 1
    assert value(after, "finance_desk_reminder_lag_seconds") >= 3500
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    # No label is a person or an ID: not the call's ID, its e-mail, nor the MoonClerk path token.
    assert "mc_hook_token" not in text and "@" not in text
    labels = set(re.findall(r'(\w+)="', text))
    assert labels <= {"source", "outcome", "kind", "method", "result", "provider", "action", "le"}


def test_slack_and_provider_calls_are_counted_without_ids() -> None:
    from bot.metrics import PROVIDER_CALLS, SLACK_CALLS

    def count(metric: object, *labels: str) -> float:
        return metric.labels(*labels)._value.get()  # type: ignore[attr-defined]

    with SlackStandIn(enforce_rate_limit=True, rate_limit_burst=1, rate_limit_per_second=0.01) as slack:
        client = MeteredWebClient(token="xoxb-fake", base_url=f"{slack.url}/api/")
        ok = count(SLACK_CALLS, "chat.postMessage", "ok")
        limited = count(SLACK_CALLS, "chat.postMessage", "ratelimited")
        client.chat_postMessage(channel="C0FINANCE", text="one")
        with pytest.raises(SlackApiError):
            client.chat_postMessage(channel="C0FINANCE", text="two")
        assert count(SLACK_CALLS, "chat.postMessage", "ok") == ok + 1
        assert count(SLACK_CALLS, "chat.postMessage", "ratelimited") == limited + 1

    assert provider_action("GET", "/customers/123") == "GET /customers/{id}"
    with MoonClerkStandIn(api_key="mc_fake") as moonclerk:
        before = count(PROVIDER_CALLS, "moonclerk", "GET /customers/{id}", "client_error")
        with MoonClerkClient("mc_wrong", moonclerk.url) as client, pytest.raises(ProviderError):
            client.get_customer(4242)
        assert count(PROVIDER_CALLS, "moonclerk", "GET /customers/{id}", "client_error") == before + 1
        with MoonClerkClient("mc_fake", moonclerk.url) as client:
            forms = count(PROVIDER_CALLS, "moonclerk", "GET /forms", "ok")
            list(client.list_forms())
            assert count(PROVIDER_CALLS, "moonclerk", "GET /forms", "ok") == forms + 1
