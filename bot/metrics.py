"""Prometheus metrics: what finance-desk is doing right now, served at GET /metrics.

Labels are closed sets chosen here (a webhook source, a case kind, a Slack method, a provider
action with its IDs taken out, an outcome word), never a person, an e-mail, a call or case ID.
Counters and histograms are per process (Prometheus sums replicas); the queue gauges are read from
the database at scrape time, so every replica reports the same shared figures.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse
from sqlalchemy import Engine, func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from providers import base as provider_base
from storage.models import Case, OutboxMessage, utcnow
from storage.reminders import Reminder
from storage.states import MatchStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

WEBHOOK_REQUESTS = Counter(
    "finance_desk_webhook_requests", "Inbound requests by source (dialnexa, poof, moonclerk, slack) and outcome "
    "(accepted 2xx, refused 4xx, error 5xx).", ["source", "outcome"], registry=REGISTRY)
WEBHOOK_SECONDS = Histogram(
    "finance_desk_webhook_request_seconds", "Time to answer an inbound request, by source.", ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=REGISTRY)
CASES = Counter("finance_desk_cases", "Cases created, by kind (not_billing included).", ["kind"], registry=REGISTRY)
SLACK_CALLS = Counter(
    "finance_desk_slack_api_calls", "Slack Web API calls by method and result (ok, ratelimited for a 429, "
    "error for any other Slack error, failed when no answer came).", ["method", "result"], registry=REGISTRY)
PROVIDER_CALLS = Counter(
    "finance_desk_provider_calls", "HTTP attempts to a provider by provider, action (method and path, IDs "
    "replaced by {id}) and outcome (ok, ratelimited, client_error, server_error, no_answer).",
    ["provider", "action", "outcome"], registry=REGISTRY)
PROVIDER_SECONDS = Histogram(
    "finance_desk_provider_call_seconds", "Duration of one HTTP attempt to a provider.", ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=REGISTRY)

_SOURCES = {"dialnexa", "poof", "moonclerk"}
# Path segments that may carry an identifier (digits, long tokens) become {id} in a provider action.
_ID_SEGMENT = re.compile(r"^(?=.*\d)[^/]+$|^[A-Za-z0-9_-]{24,}$")


def webhook_source(path: str) -> str | None:
    """The closed label for an inbound path, or None for routes that are not counted (/healthz, /metrics).
    /webhooks/moonclerk/{token} counts as "moonclerk": the token never becomes a label."""
    if path == "/slack/events":
        return "slack"
    parts = path.split("/")
    if len(parts) >= 3 and parts[1] == "webhooks":
        return parts[2] if parts[2] in _SOURCES else "unknown"
    return None


def observe_webhook(source: str, status: int, seconds: float) -> None:
    outcome = "accepted" if status < 400 else "refused" if status < 500 else "error"
    WEBHOOK_REQUESTS.labels(source, outcome).inc()
    WEBHOOK_SECONDS.labels(source).observe(seconds)


def case_created(kind: str) -> None:
    CASES.labels(kind).inc()


def provider_action(method: str, path: str) -> str:
    segments = [("{id}" if _ID_SEGMENT.match(part) else part) for part in path.split("?")[0].split("/")]
    return f"{method.upper()} {'/'.join(segments)}"


def observe_provider_call(provider: str, method: str, path: str, outcome: str, seconds: float) -> None:
    PROVIDER_CALLS.labels(provider, provider_action(method, path), outcome).inc()
    PROVIDER_SECONDS.labels(provider).observe(seconds)


# Every provider client in this process reports its attempts here (providers know nothing of bot).
provider_base.set_call_observer(observe_provider_call)


class MeteredWebClient(WebClient):
    """slack_sdk's WebClient, counting each Web API call by method and result."""

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        method = api_method.split("?")[0][:60]
        try:
            response = super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            status = getattr(exc.response, "status_code", None)
            SLACK_CALLS.labels(method, "ratelimited" if status == 429 else "error").inc()
            raise
        except Exception:
            SLACK_CALLS.labels(method, "failed").inc()
            raise
        SLACK_CALLS.labels(method, "ok").inc()
        return response


class QueueCollector(Collector):
    """The shared queues, read from the database when Prometheus scrapes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        try:
            with Session(self.engine) as session:
                pending = col(OutboxMessage.sent_at).is_(None) & col(OutboxMessage.failed_at).is_(None)
                depth, oldest = session.exec(
                    select(func.count(), func.min(OutboxMessage.created_at)).where(pending)).one()
                due = (col(Reminder.status) == "pending") & (col(Reminder.due_at) <= now)
                overdue, first_due = session.exec(select(func.count(), func.min(Reminder.due_at)).where(due)).one()
                matching = session.exec(select(func.count()).select_from(Case).where(
                    col(Case.is_billing), col(Case.match_status) == MatchStatus.PENDING.value)).one()
        except SQLAlchemyError:
            return  # /healthz reports the database; a scrape must not fail with it
        yield _gauge("finance_desk_outbox_pending", "Slack outbox rows not yet sent (nor given up).", depth)
        yield _gauge("finance_desk_outbox_oldest_pending_seconds", "Age of the oldest unsent outbox row (0 if none).",
                     _age(now, oldest))
        yield _gauge("finance_desk_reminders_due", "Reminders due now and not yet fired.", overdue)
        yield _gauge("finance_desk_reminder_lag_seconds",
                     "How late the most overdue unfired reminder is (0 when the scheduler keeps up).",
                     _age(now, first_due))
        yield _gauge("finance_desk_matching_queue", "Billing cases waiting for customer matching.", matching)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:  # SQLite hands back naive UTC in aggregates
        then = then.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - then).total_seconds())


def render(engine: Engine) -> bytes:
    """This process's counters, then the database's queue gauges, in Prometheus' text format."""
    queues = CollectorRegistry(auto_describe=False)
    queues.register(QueueCollector(engine))
    return generate_latest(REGISTRY) + generate_latest(queues)

