"""Tables. Every text column that can leave the process holds redacted text only."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.fields import CaseFields
from storage.states import MatchStatus
from storage.types import DecimalString, UTCDateTime


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class Case(CaseFields, table=True):
    __tablename__ = "cases"

    id: int | None = Field(default=None, primary_key=True)
    # Unique in the database: concurrent deliveries of one call can never make two cases.
    call_id: str = Field(max_length=200, unique=True, index=True)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)

    # The call
    stage: str = Field(default="call_initiated", max_length=40)
    call_status: str | None = Field(default=None, max_length=40)
    direction: str | None = Field(default=None, max_length=20)
    agent_id: str | None = Field(default=None, max_length=200)
    caller_phone: str | None = Field(default=None, max_length=20, index=True)
    hangup_reason: str | None = Field(default=None, max_length=100)
    started_at: datetime | None = _ts(default=None)
    ended_at: datetime | None = _ts(default=None)
    duration_seconds: int | None = None
    summary: str | None = Field(default=None, sa_type=Text)

    # Classification
    kind: str = Field(default="not_billing", max_length=40, index=True)
    is_billing: bool = Field(default=False, index=True)
    rule: str | None = Field(default=None, max_length=200)
    confidence: float = 0.0
    classification_source: str = Field(default="none", max_length=20)
    evidence: str | None = Field(default=None, max_length=500)

    # The captured call fields (customer, invoice, amount, deadline, links …) are CaseFields', shared
    # with the triage result so the two can never disagree.

    # Routing (recomputed from the captured fields and the policy after every merge)
    urgency: str = Field(default="normal", max_length=20)
    is_vip: bool = False
    approval_required: bool = False
    approval_reason: str | None = Field(default=None, max_length=500)
    approvals_needed: int = 0  # different approvers, while approval is required
    senior_needed: bool = False  # one of them must be a senior approver
    escalation_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    owner: str | None = Field(default=None, max_length=40)

    # Suppression flag: that it happened and of which kinds, never the values
    suppressed: bool = False
    suppressed_kinds: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))

    # Workflow state shown on the card
    state: str = Field(default="new", max_length=20)
    state_by: str | None = Field(default=None, max_length=40)
    state_at: datetime | None = _ts(default=None)

    # The latest provider action, shown on the card (the full history is the ledger and the thread)
    action_label: str | None = Field(default=None, max_length=200)
    action_status: str | None = Field(default=None, max_length=30)
    action_reference: str | None = Field(default=None, max_length=300)
    action_url: str | None = Field(default=None, max_length=3000)
    action_error: str | None = Field(default=None, max_length=500)

    # Decisions (bot.decisions): what was approved, why it was denied, how it was resolved.
    approval_round: int = 1
    # What a later round is asked to approve (a money action above what an earlier round approved);
    # None in the first round, which approves the call's own amount.
    approval_amount: Decimal | None = Field(default=None, sa_type=DecimalString)
    approval_currency: str | None = Field(default=None, max_length=3)
    # This round's approvals, copied from the approvals table for the card: [{"by", "for", "senior"}].
    approvals_given: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    approved_amount: Decimal | None = Field(default=None, sa_type=DecimalString)
    approved_currency: str | None = Field(default=None, max_length=3)
    approved_at: datetime | None = _ts(default=None)
    decision_reason: str | None = Field(default=None, max_length=1000)
    resolution: str | None = Field(default=None, max_length=40)
    resolution_note: str | None = Field(default=None, max_length=1000)
    resolution_reference: str | None = Field(default=None, max_length=200)
    # A promised call back, once made; and the follow-up a person marked done from a reminder.
    callback_done_by: str | None = Field(default=None, max_length=40)
    callback_done_at: datetime | None = _ts(default=None)
    follow_up_done_at: datetime | None = _ts(default=None)

    # Follow-up: when the next reminder fires (kept by the reminder scheduler; shown on the card)
    next_reminder_at: datetime | None = _ts(default=None)

    # Customer matching against MoonClerk: matched | review | unmatched | pending
    match_status: str = Field(default="pending", max_length=20)
    match_score: float | None = None
    match_evidence: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    match_candidates: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))

    # Where the card lives in Slack
    slack_channel: str | None = Field(default=None, max_length=40)
    slack_ts: str | None = Field(default=None, max_length=40)
    card_version: int = 0

    # Email to the customer (bot.mail): the address on the matched MoonClerk customer record, as last
    # verified, and how the latest email went (queued, sending, sent, failed, in_doubt) with its recipient
    # or the server's answer; the mail_outbox table holds every email.
    verified_email: str | None = Field(default=None, max_length=320)
    mail_status: str | None = Field(default=None, max_length=20)
    mail_note: str | None = Field(default=None, max_length=500)

    # Stripe (providers.stripe): the charge a refund would run on once one is known (a `ch_`/`py_` ID,
    # or a `pi_` PaymentIntent), the matched customer's Stripe customer, and a chargeback's dispute with
    # its Stripe status (`needs_response`, …, `won`, `lost`); its evidence deadline is follow_up_deadline.
    stripe_charge_id: str | None = Field(default=None, max_length=100, index=True)
    stripe_customer_id: str | None = Field(default=None, max_length=100)
    stripe_dispute_id: str | None = Field(default=None, max_length=100, index=True)
    stripe_dispute_status: str | None = Field(default=None, max_length=40)
    # What Stripe last said of the matched customer's charge, subscription and latest invoice (shown on the
    # card; bot.lookup.stripe_status), or {"unavailable": …} when it could not be asked.
    stripe_status: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))

    # The two facts both the action gates (bot.actions.gates) and the card's buttons (blocks.card) read:
    # here, on the data, so the view never asks the domain for a verdict.
    @property
    def caller_matched(self) -> bool:
        """The caller is a known customer: named by MoonClerk ID on the call, or matched (or picked in
        review) to a MoonClerk customer. A name or email the caller merely said is not a match."""
        return self.moonclerk_customer_id is not None or self.match_status == MatchStatus.MATCHED

    @property
    def approval_subject(self) -> tuple[Decimal | None, str | None]:
        """The amount and currency this approval round is for."""
        if self.approval_round > 1 and self.approval_amount is not None:
            return self.approval_amount, self.approval_currency
        return self.amount, self.currency

    @property
    def has_moonclerk_reference(self) -> bool:
        """A MoonClerk customer or payment a note can be verified against."""
        return self.moonclerk_customer_id is not None or bool(self.payment_id)


class WebhookDelivery(SQLModel, table=True):
    """One row per accepted delivery: what came, when, and what it did. Never the body itself."""

    __tablename__ = "webhook_deliveries"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = _ts(default_factory=utcnow, index=True)
    source: str = Field(default="dialnexa", max_length=20)
    call_id: str | None = Field(default=None, max_length=200, index=True)
    event_name: str | None = Field(default=None, max_length=100)
    event_kind: str | None = Field(default=None, max_length=40)
    body_sha256: str = Field(max_length=64, index=True)
    outcome: str = Field(max_length=20)  # stored | duplicate | ignored


class AuditEvent(SQLModel, table=True):
    """Who did what to which record, where it went, why, when, and how it ended."""

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(default_factory=utcnow, index=True)
    actor: str = Field(max_length=100)  # Slack user ID, or "system"/"dialnexa"
    action: str = Field(max_length=60, index=True)
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    call_id: str | None = Field(default=None, max_length=200, index=True)
    record: str | None = Field(default=None, max_length=500)  # which invoice/payment/customer
    target: str | None = Field(default=None, max_length=500)  # where it was sent
    reason: str | None = Field(default=None, max_length=1000)
    outcome: str = Field(default="ok", max_length=40)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class OutboxMessage(SQLModel, table=True):
    """Work for Slack, written in the same transaction as the change it reports.

    kind "card" means "make the case's card match the case" (post it once, then chat.update);
    kind "thread" is one reply in the card's thread. A worker claims rows with a lease, so
    several processes on one database never send the same row twice at once.
    """

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("dedup_key", name="uq_outbox_dedup_key"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    kind: str = Field(max_length=20)  # card | thread | message (a standalone post to `channel`)
    dedup_key: str = Field(max_length=300)
    channel: str | None = Field(default=None, max_length=40)
    text: str | None = Field(default=None, sa_type=Text)
    # Optional Block Kit blocks for a thread reply (e.g. a payout's second-approval button).
    blocks: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Bumped by every enqueue of a card row; a send only completes the version it rendered.
    version: int = 1
    created_at: datetime = _ts(default_factory=utcnow)
    due_at: datetime = _ts(default_factory=utcnow, index=True)
    attempts: int = 0
    # When the first attempt to send began, recorded before it: a retry looks for what that attempt
    # may have posted among the messages since then, not among a fixed number of the latest.
    first_attempt_at: datetime | None = _ts(default=None)
    claimed_by: str | None = Field(default=None, max_length=100)
    claim_expires_at: datetime | None = _ts(default=None)
    sent_at: datetime | None = _ts(default=None, index=True)
    failed_at: datetime | None = _ts(default=None)
    last_error: str | None = Field(default=None, max_length=500)


class ProviderAction(SQLModel, table=True):
    """The action ledger: one row per (DialNexa call, action), so each money action runs at most once.

    status: awaiting_approval (a payout waiting for its second approver) → running → succeeded |
    failed | unknown. "unknown" means the provider may have acted (a timeout after sending); it is
    never retried automatically, only reconciled.
    """

    __tablename__ = "provider_actions"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_provider_actions_idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=300)  # "<DialNexa call ID>:<action ID>"
    case_id: int = Field(foreign_key="cases.id", index=True)
    call_id: str = Field(max_length=200, index=True)
    action: str = Field(max_length=40)
    provider: str = Field(max_length=40)
    status: str = Field(max_length=30, index=True)
    requested_by: str = Field(max_length=40)
    approved_by: str | None = Field(default=None, max_length=40)
    amount: Decimal | None = Field(default=None, sa_type=DecimalString)
    currency: str | None = Field(default=None, max_length=3)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    provider_reference: str | None = Field(default=None, max_length=300)
    provider_url: str | None = Field(default=None, max_length=3000)
    error: str | None = Field(default=None, max_length=1000)
    attempts: int = 0
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)



class StripeEvent(SQLModel, table=True):
    """A Stripe webhook event, once: its ID is the key, so a replay finds its row and does nothing."""

    __tablename__ = "stripe_events"

    id: str = Field(primary_key=True, max_length=255)  # evt_…
    type: str = Field(max_length=100)
    object_id: str | None = Field(default=None, max_length=255, index=True)
    created: datetime = _ts()  # Stripe's own `created`, for ordering
    received_at: datetime = _ts()
    outcome: str = Field(max_length=500)


class HealthProblem(SQLModel, table=True):
    """A problem a process hit that no retry fixes (e.g. Slack's invalid_auth), with its fix.

    Kept in the database so every process's /healthz reports it, whichever process hit it.
    """

    __tablename__ = "health_problems"

    key: str = Field(primary_key=True, max_length=100)
    message: str = Field(max_length=1000)
    reported_at: datetime = _ts(default_factory=utcnow)
    reported_by: str = Field(max_length=100)

# The reminders table lives in its own module; importing it here registers it with every model.
from storage.decisions import Approval as Approval  # noqa: E402
from storage.decisions import Delegation as Delegation  # noqa: E402
from storage.directory import DirectoryCustomer as DirectoryCustomer  # noqa: E402
from storage.directory import DirectorySync as DirectorySync  # noqa: E402
from storage.mail import MailMessage as MailMessage  # noqa: E402
from storage.reminders import Reminder as Reminder  # noqa: E402
