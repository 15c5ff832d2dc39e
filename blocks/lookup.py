"""Ephemeral answers to `/finance`: lookup results, one case's record, the queue, help. Pure.

Everything from MoonClerk or a call is untrusted and goes through blocks.format. Payment methods show
their brand and last 4 digits only, never expiry dates or anything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from blocks.card import STATE_LABELS
from blocks.format import code, inline, link, mention, money, mrkdwn, plain, slack_date
from blocks.limits import MAX_SECTION_TEXT, truncate, truncate_mrkdwn
from blocks.stripe_status import stripe_status_text
from bot.triage.model import KIND_LABELS, BillingKind
from providers.base import Money
from providers.moonclerk import Customer, Payment, PaymentMethod
from providers.stripe import Customer as StripeCustomer
from storage.decisions import Approval
from storage.mail import MailMessage
from storage.models import AuditEvent, Case, ProviderAction
from storage.states import CaseState, MatchStatus, is_closed

EMPTY: Final = "—"
SECTION_BUDGET: Final = 2900
LINE_BUDGET: Final = 280
_CHANNEL = re.compile(r"[CDG][A-Z0-9]{2,40}")
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")


def card_permalink(channel: str | None, ts: str | None) -> str | None:
    """`https://slack.com/archives/<channel>/p<ts without dot>`, when the card has been posted."""
    if not channel or not ts or not _CHANNEL.fullmatch(channel) or not _TS.fullmatch(ts):
        return None
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def channel_link(channel: str | None) -> str | None:
    if not channel or not _CHANNEL.fullmatch(channel):
        return None
    return f"https://slack.com/app_redirect?channel={channel}"


def kind_label(case: Case) -> str:
    try:
        return KIND_LABELS[BillingKind(case.kind)]
    except ValueError:
        return "Case"


def state_label(state: str | None) -> str:
    return STATE_LABELS.get(state or "new") or inline(state or "new", 40)


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": mrkdwn(truncate_mrkdwn(text, MAX_SECTION_TEXT) or EMPTY)}
    if block_id:
        block["block_id"] = block_id
    return block


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [mrkdwn(truncate_mrkdwn(text, 2000) or EMPTY)]}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": plain(truncate(text, 150))}


def divider() -> dict[str, Any]:
    return {"type": "divider"}


def line_sections(title: str, lines: Sequence[str], *, empty: str = "None.") -> list[dict[str, Any]]:
    """A titled list, split over as many sections as its lines need (each under Slack's 3000)."""
    if not lines:
        return [section(f"*{title}*\n{empty}")]
    blocks: list[dict[str, Any]] = []
    current = f"*{title}*"
    for line in lines:
        line = truncate_mrkdwn(line, LINE_BUDGET)
        if len(current) + len(line) + 1 > SECTION_BUDGET:
            blocks.append(section(current))
            current = line
        else:
            current = f"{current}\n{line}"
    blocks.append(section(current))
    return blocks


def case_line(case: Case, *, when: datetime | None = None, extra: str | None = None) -> str:
    """`• <card|Refund request> · `call_1` · 🆕 New · <@U1> · since …`"""
    label = inline(kind_label(case), 60)
    url = card_permalink(case.slack_channel, case.slack_ts)
    title = link(url, label) or label
    parts = [f"• {title}", code(case.call_id, 70), state_label(case.state)]
    owner = mention(case.owner)
    if owner:
        parts.append(owner)
    parts.append(slack_date(when or case.created_at))
    if extra:
        parts.append(extra)
    return " · ".join(parts)


# ---------------------------------------------------------------------------------------------------
# /finance lookup


@dataclass(frozen=True)
class CustomerResult:
    customer: Customer
    payments: Sequence[Payment] = ()
    cases: Sequence[Case] = ()
    payments_error: str | None = None
    stripe_status: Mapping[str, Any] | None = None  # bot.stripe_status's JSON for customer_reference


@dataclass(frozen=True)
class StripeCustomerResult:
    """A Stripe customer no MoonClerk customer in the answer references (bot.lookup.stripe_directory)."""

    customer: StripeCustomer
    stripe_status: Mapping[str, Any] | None = None  # bot.stripe_status's JSON for this customer


@dataclass(frozen=True)
class LookupAnswer:
    label: str  # what was looked up, already safe ("email `a@b.c`")
    customers: Sequence[CustomerResult] = ()
    orphan_payments: Sequence[Payment] = ()
    notes: Sequence[str] = field(default_factory=tuple)
    stripe_customers: Sequence[StripeCustomerResult] = ()


def card_text(method: PaymentMethod | None) -> str:
    """Brand and last 4 only: `Visa ••4242`."""
    if method is None or not (method.brand or method.last4):
        return EMPTY
    brand = inline(method.brand, 30) if method.brand else "Card"
    last4 = method.last4 if method.last4 and method.last4.isdigit() and len(method.last4) <= 4 else None
    return f"{brand} ••{last4}" if last4 else brand


def payment_line(payment: Payment) -> str:
    when = slack_date(payment.date) if payment.date else "date unknown"
    status = inline(payment.status or "unknown", 20)
    refunded = ""
    if payment.amount_refunded:
        refunded = f" (refunded {inline(str(Money.from_minor(payment.amount_refunded, payment.currency)), 40)})"
    return (f"• {when} · {status} · *{inline(str(payment.money), 40)}*{refunded} · "
            f"{card_text(payment.payment_method)} · payment {code(payment.id, 24)}")


def _subscription(customer: Customer) -> str:
    subscription = customer.subscription
    if subscription is None:
        return "no subscription"
    parts = [f"subscription *{inline(subscription.status or 'unknown', 20)}*"]
    plan = subscription.plan
    if plan is not None and plan.money is not None:
        every = f"{plan.interval_count} {plan.interval}s" if (plan.interval_count or 1) > 1 else plan.interval
        parts.append(inline(f"{plan.money}" + (f" every {every}" if every else ""), 60))
    if subscription.next_payment_attempt is not None:
        parts.append(f"next payment {slack_date(subscription.next_payment_attempt)}")
    elif subscription.status in {"canceled", "expired"}:
        parts.append("no next payment")
    return " · ".join(parts)


def _customer_blocks(result: CustomerResult, index: int) -> list[dict[str, Any]]:
    customer = result.customer
    name = inline(customer.name, 80) if customer.name else "_no name_"
    who = [f"*{name}*", f"customer {code(customer.id, 24)}"]
    if customer.email:
        who.append(code(customer.email, 100))
    if customer.custom_id:
        who.append(f"custom ID {code(customer.custom_id, 60)}")
    if customer.delinquent:
        who.append("⚠️ delinquent")
    blocks = [section(" · ".join(who) + "\n" + _subscription(customer), block_id=f"customer-{index}")]
    stripe = stripe_status_text(result.stripe_status)
    if stripe:
        blocks.append(context(stripe))
    if result.payments_error:
        blocks.append(context(f"Recent payments could not be read: {inline(result.payments_error, 200)}"))
    else:
        blocks += line_sections("Recent payments", [payment_line(p) for p in result.payments],
                                empty="No payments on record.")
    blocks += line_sections("Open finance-desk cases", [case_line(c) for c in result.cases], empty="None open.")
    return blocks


def _stripe_customer_blocks(result: StripeCustomerResult, index: int) -> list[dict[str, Any]]:
    customer = result.customer
    name = inline(customer.name, 80) if customer.name else "_no name_"
    who = [f"*{name}*", f"Stripe customer {code(customer.id, 70)}"]
    if customer.email:
        who.append(code(customer.email, 100))
    if customer.phone:
        who.append(code(customer.phone, 40))
    blocks = [section(" · ".join(who), block_id=f"stripe-customer-{index}")]
    stripe = stripe_status_text(result.stripe_status)
    if stripe:
        blocks.append(context(stripe))
    return blocks


def _stripe_only(count: int) -> str:
    return f"{count} Stripe {'customer' if count == 1 else 'customers'} with no MoonClerk record"


def lookup_message(answer: LookupAnswer) -> dict[str, Any]:
    count, stripe_only = len(answer.customers), len(answer.stripe_customers)
    if not count and not answer.orphan_payments and not stripe_only:
        text = f"No MoonClerk customer matches {answer.label}."
        blocks = [section(text)]
    elif not count and not answer.orphan_payments:
        verb = "does" if stripe_only == 1 else "do"
        text = f"No MoonClerk customer matches {answer.label}; {_stripe_only(stripe_only)} {verb}."
        blocks = [section(f"*{text}*")]
    else:
        noun = "customer" if count == 1 else "customers"
        text = f"{count} MoonClerk {noun} for {answer.label}."
        if stripe_only:
            text += f" Also {_stripe_only(stripe_only)}."
        blocks = [section(f"*{text}*")]
        for index, result in enumerate(answer.customers):
            blocks.append(divider())
            blocks += _customer_blocks(result, index)
        if answer.orphan_payments:
            blocks.append(divider())
            blocks += line_sections("Payments with no subscription customer",
                                    [payment_line(p) for p in answer.orphan_payments])
    if stripe_only:
        blocks.append(divider())
        blocks.append(section("*Stripe customers with no MoonClerk record*"))
        for index, stripe_result in enumerate(answer.stripe_customers):
            blocks += _stripe_customer_blocks(stripe_result, index)
    for note in answer.notes:
        blocks.append(context(note))
    return {"text": truncate(text, 300), "blocks": blocks[:50]}


# ---------------------------------------------------------------------------------------------------
# /finance case


def _action_line(action: ProviderAction) -> str:
    parts = [f"• {slack_date(action.created_at)}", code(action.action, 40), inline(action.status, 30)]
    if action.amount is not None and action.currency:
        parts.append(inline(f"{action.amount} {action.currency}", 40))
    requested = mention(action.requested_by)
    if requested:
        parts.append(f"requested by {requested}")
    approved = mention(action.approved_by)
    if approved:
        parts.append(f"approved by {approved}")
    if action.provider_reference:
        parts.append(code(action.provider_reference, 60))
    if action.error and action.status in {"failed", "unknown"}:
        parts.append(inline(action.error, 120))
    return " · ".join(parts)


# Audit events whose record (an amount, a reference) and detail say what was decided, so the trail
# reads "approved 149.00 USD on behalf of @A (1 of 2)" rather than the bare action name.
DECISION_EVENTS: Final = frozenset({"case.approved", "case.denied", "case.resolved", "case.callback_done",
                                    "approval.nudged", "reminder.done", "decision.refused"})


def _decision_detail(event: AuditEvent) -> list[str]:
    detail = event.detail if isinstance(event.detail, dict) else {}
    parts = []
    if event.record:
        parts.append(inline(event.record, 80))
    behalf = mention(detail.get("on_behalf_of")) if isinstance(detail.get("on_behalf_of"), str) else None
    if behalf:
        parts.append(f"on behalf of {behalf}")
    approvals, needed = detail.get("approvals"), detail.get("needed")
    if isinstance(approvals, int) and isinstance(needed, int) and needed > 1:
        parts.append(f"{approvals} of {needed} approvals")
    for key in ("outcome", "level", "decision"):
        if isinstance(detail.get(key), str):
            parts.append(inline(_readable(detail[key]), 40))
    return parts


def _audit_line(event: AuditEvent) -> str:
    parts = [f"• {slack_date(event.at)}", mention(event.actor) or "?", code(event.action, 60)]
    if event.outcome and event.outcome != "ok":
        parts.append(inline(event.outcome, 40))
    if event.action in DECISION_EVENTS:
        parts += _decision_detail(event)
    if event.reason:
        parts.append(inline(event.reason, 120))
    return " · ".join(parts)


def _email_line(email: MailMessage) -> str:
    """What was sent, where, by whom, how it went (bot.mail): never the body."""
    parts = [f"• {slack_date(email.sent_at or email.created_at)}", code(email.recipient, 320),
             inline(_readable(email.status), 40), inline(email.subject, 120), f"by {mention(email.approved_by) or '?'}"]
    if email.document:
        parts.append(code(email.document, 300))
    if email.last_error and email.status != "sent":
        parts.append(inline(email.last_error, 200))
    return " · ".join(parts)


def _readable(value: str) -> str:
    """A stored code (`payment_plan_agreed`) as words: "Payment plan agreed"."""
    return value.replace("_", " ").capitalize()


def _approval_line(approval: Approval, rounds: int) -> str:
    who = mention(approval.approver) or "?"
    if approval.principal != approval.approver:
        who += f" on behalf of {mention(approval.principal) or '?'}"
    parts = [f"• {who}"]
    if approval.amount is not None:
        parts.append(money(approval.amount, approval.currency, 40))
    if approval.senior:
        parts.append("senior")
    parts.append(slack_date(approval.at))
    if rounds > 1:
        parts.append(f"round {approval.round}")
    return " · ".join(parts)


def decision_facts(case: Case) -> list[str]:
    """The decisions on a case, as `*Label:* value` lines: approval, denial, resolution, call back."""
    facts = []
    given = case.approvals_given or []
    needed = max(1, case.approvals_needed)
    if case.approved_at is not None:
        amount = (f" {money(case.approved_amount, case.approved_currency, 60)}"
                  if case.approved_amount is not None else "")
        facts.append(f"*Approval:* approved{amount} {slack_date(case.approved_at)}"
                     + (f" ({len(given)} of {needed} approvals)" if needed > 1 else ""))
    elif case.approval_required:
        progress = f" · {len(given)} of {needed} approvals" if needed > 1 or given else ""
        senior = " · a senior approver must approve" if case.senior_needed and not any(
            item.get("senior") for item in given) else ""
        facts.append(f"*Approval:* needed ({inline(case.approval_reason or 'no reason recorded', 200)})"
                     f"{progress}{senior}")
    if case.state == CaseState.DENIED or case.decision_reason:
        facts.append(f"*Denied:* {inline(case.decision_reason or 'no reason recorded', 1000)}")
    if case.resolution:
        text = f"*Resolution:* {inline(_readable(case.resolution), 60)}"
        if case.resolution_reference:
            text += f" · reference {code(case.resolution_reference, 210)}"
        if case.resolution_note:
            text += f"\n{inline(case.resolution_note, 1000)}"
        facts.append(text)
    if case.callback_done_at is not None:
        by = mention(case.callback_done_by) or "?"
        facts.append(f"*Call back:* done by {by} {slack_date(case.callback_done_at)}")
    elif case.callback_expected and not is_closed(case.state):
        facts.append("*Call back:* owed to the caller")
    if case.follow_up_done_at is not None:
        facts.append(f"*Follow-up:* marked done {slack_date(case.follow_up_done_at)}")
    return facts


def match_text(case: Case) -> str:
    status = case.match_status or MatchStatus.PENDING
    score = f" ({round(max(0.0, min(1.0, case.match_score)) * 100)}%)" if case.match_score is not None else ""
    text = f"{inline(status, 20)}{score}"
    if case.moonclerk_customer_id is not None:
        text += f" · customer {code(case.moonclerk_customer_id, 24)}"
    evidence = [inline(str(item), 80) for item in (case.match_evidence or [])[:4]]
    if evidence:
        text += "\n" + "; ".join(evidence)
    return text


def case_message(
    case: Case, actions: Sequence[ProviderAction], audit: Sequence[AuditEvent], audit_total: int,
    reminders: Sequence[tuple[str, datetime | None]], approvals: Sequence[Approval] | None = None,
    emails: Sequence[MailMessage] = (),
) -> dict[str, Any]:
    """One case's record. `approvals`: every round's approval rows (bot.lookup.queries.CaseDetail); when
    not given, this round's approvals as the case row keeps them."""
    title = f"{kind_label(case)} · {case.call_id}"
    facts = [
        f"*State:* {state_label(case.state)}" + (f" by {mention(case.state_by)}" if case.state_by else ""),
        f"*Owner:* {mention(case.owner) or 'Unassigned'}",
        f"*Caller:* {inline(case.customer_name, 80) if case.customer_name else EMPTY}"
        + (f" · {code(case.email, 100)}" if case.email else ""),
        f"*Customer match:* {match_text(case)}",
    ]
    if case.amount is not None:
        facts.append(f"*Amount:* {money(case.amount, case.currency, 60)}")
    facts += decision_facts(case)
    if case.follow_up_deadline is not None:
        facts.append(f"*Follow up by:* {slack_date(case.follow_up_deadline)}")
    opened = link(card_permalink(case.slack_channel, case.slack_ts), "Open the card")
    if opened:
        facts.append(opened)
    blocks = [header(title), section("\n".join(facts))]
    if approvals is not None:
        rounds = max((a.round for a in approvals), default=1)
        approval_lines = [_approval_line(a, rounds) for a in approvals]
    else:
        approval_lines = [_given_line(item) for item in case.approvals_given or []]
    if approval_lines or case.approval_required:
        blocks += line_sections("Approvals", approval_lines, empty="None yet.")
    blocks += line_sections("Actions", [_action_line(a) for a in actions], empty="No provider actions.")
    if emails:
        blocks += line_sections("Emails to the customer", [_email_line(e) for e in emails], empty="None.")
    shown = f"Audit trail (latest {len(audit)} of {audit_total})" if audit_total > len(audit) else "Audit trail"
    blocks += line_sections(shown, [_audit_line(e) for e in audit], empty="No audit events.")
    reminder_lines = [f"• {inline(kind, 40)} · {slack_date(due) if due else 'no time set'}" for kind, due in reminders]
    blocks += line_sections("Pending reminders", reminder_lines, empty="None.")
    fallback = f"{inline(kind_label(case), 60)} · {inline(case.call_id, 120)} ({inline(case.state, 20)})"
    return {"text": truncate_mrkdwn(fallback, 300), "blocks": blocks[:50]}


def _given_line(item: dict[str, Any]) -> str:
    by, principal = item.get("by"), item.get("for")
    who = mention(by if isinstance(by, str) else None) or "?"
    if isinstance(principal, str) and principal and principal != by:
        who += f" on behalf of {mention(principal) or '?'}"
    return f"• {who}" + (" · senior" if item.get("senior") else "")


# ---------------------------------------------------------------------------------------------------
# /finance queue


def queue_message(
    review: Sequence[Case], review_total: int, overdue: Sequence[Case], overdue_total: int,
) -> dict[str, Any]:
    def more(shown: int, total: int) -> list[str]:
        return [f"…and {total - shown} more"] if total > shown else []

    review_lines = [case_line(c, extra=_top_candidate(c)) for c in review] + more(len(review), review_total)
    overdue_lines = [case_line(c, when=c.follow_up_deadline, extra="overdue") for c in overdue]
    overdue_lines += more(len(overdue), overdue_total)
    blocks = [header("finance-desk queue")]
    blocks += line_sections(f"Customer match review ({review_total})", review_lines, empty="Nothing to review.")
    blocks += line_sections(f"Overdue follow-ups ({overdue_total})", overdue_lines, empty="Nothing overdue.")
    text = f"{review_total} to review, {overdue_total} overdue"
    return {"text": text, "blocks": blocks[:50]}


def _top_candidate(case: Case) -> str | None:
    candidates = [c for c in case.match_candidates or [] if isinstance(c, dict)]
    if not candidates:
        return None
    top = candidates[0]
    name = top.get("name") or f"customer {top.get('customer_id')}"
    score = top.get("score")
    percent = f" {round(float(score) * 100)}%" if isinstance(score, int | float) else ""
    return f"{len(candidates)} candidates, best {inline(name, 60)}{percent}"


# ---------------------------------------------------------------------------------------------------
# help and usage

HELP_LINES: Final = (
    "`/finance lookup <email | +phone | name | customer ID | payment ID>`: MoonClerk customers with recent "
    "payments, subscription state and open finance-desk cases",
    "`/finance case <DialNexa call ID>`: one case with its actions, audit trail and pending reminders",
    "`/finance queue`: the customer-match review queue and overdue follow-ups, oldest first",
    "`/finance help`: this list",
)


def help_message() -> dict[str, Any]:
    title = "finance-desk commands (answers are visible only to you)"
    body = "\n".join(f"• {line}" for line in HELP_LINES)
    return {"text": f"{title}\n{body}", "blocks": [section(f"*{title}*\n{body}")]}


def usage_message(problem: str, usage: str) -> dict[str, Any]:
    return notice(f"{problem}\n{usage}")


def notice(text: str) -> dict[str, Any]:
    """A short ephemeral answer. `text` is mrkdwn we made (untrusted parts through blocks.format); the
    section is verbatim, so a bare URL or @name in it stays text, which a plain `text` answer would not."""
    return {"text": text, "blocks": [section(text)]}
