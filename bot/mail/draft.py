"""The email's draft and the checks its final text must pass.

The draft is factual and built only from stored case fields (redacted when they were stored): what the
caller asked, what finance did or will do and by when, and the document or link. An approver may edit
it; the final subject and body are then checked again, redaction included, before anything is queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from blocks.mail import BODY_MAX, SUBJECT_MAX
from bot.triage.model import KIND_LABELS, BillingKind
from bot.triage.redact import SuppressedKind, redact
from providers.mail import is_loopback
from storage.models import Case, ProviderAction
from storage.states import ActionStatus

_WHAT = {
    SuppressedKind.CARD_NUMBER: "a card number",
    SuppressedKind.CARD_SECURITY_CODE: "a card security code",
    SuppressedKind.CARD_EXPIRY: "a card expiry date",
    SuppressedKind.IBAN: "bank details (an IBAN)",
    SuppressedKind.BANK_ACCOUNT: "bank details (a routing or account number)",
    SuppressedKind.TAX_ID: "a tax ID",
}
# MoonClerk's management pages are for staff (they open the customer's record in finance's account).
_STAFF_ONLY_HOSTS = ("moonclerk.com",)


@dataclass(frozen=True)
class Draft:
    subject: str
    body: str
    document: str | None  # the link the body carries, recorded in the audit trail


def staff_only(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == domain or host.endswith(f".{domain}") for domain in _STAFF_ONLY_HOSTS)


def document_for(session: Session, case: Case) -> str | None:
    """The document or link the customer may have: the Poof payment link made for this call."""
    url = session.exec(
        select(ProviderAction.provider_url).where(
            ProviderAction.call_id == case.call_id, ProviderAction.action == "invoice_poof",
            ProviderAction.status == ActionStatus.SUCCEEDED, col(ProviderAction.provider_url).is_not(None))
        .order_by(col(ProviderAction.id).desc())
    ).first()
    if url and _sendable(url) and not staff_only(url):
        return url
    return None


def _sendable(url: str) -> bool:
    """Only https links go to customers; plain http only to a loopback host, which exists only where the
    payment provider is a local stand-in (`finance-desk demo`): no customer could ever open one."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))


def _kind_label(case: Case) -> str:
    try:
        return KIND_LABELS[BillingKind(case.kind)]
    except ValueError:
        return "billing request"


def draft(case: Case, document: str | None) -> Draft:
    label = _kind_label(case).lower()
    subject = f"Your {label}"
    if case.invoice_number:
        subject += f" (invoice {case.invoice_number})"
    lines = [f"Hello {case.customer_name}," if case.customer_name else "Hello,", ""]
    when = case.started_at or case.created_at
    asked = case.caller_claim or case.refund_reason or case.dispute_reason or case.credit_request
    opening = f"Thank you for your call on {when:%d %B %Y}" if when else "Thank you for your call"
    # The stored texts often end in their own full stop; one is enough.
    lines.append(f"{opening} about your {label}." + (f" You asked: {asked.rstrip(' .')}." if asked else ""))
    if case.next_step:
        by = f" by {case.follow_up_deadline:%d %B %Y}" if case.follow_up_deadline else ""
        lines.append(f"What we will do: {case.next_step.rstrip(' .')}{by}.")
    if document:
        lines += ["", f"Your payment link: {document}"]
    lines += ["", "If anything here is not right, reply to this email.", "", "Billing team"]
    return Draft(subject=subject[:SUBJECT_MAX], body="\n".join(lines), document=document)


def subject_problem(subject: str) -> str | None:
    if not subject.strip():
        return "Write a subject"
    if len(subject) > SUBJECT_MAX:
        return f"At most {SUBJECT_MAX} characters"
    return _sensitive(subject)


def body_problem(body: str) -> str | None:
    if not body.strip():
        return "Write the message"
    if len(body) > BODY_MAX:
        return f"At most {BODY_MAX:,} characters (this one has {len(body):,})"
    sensitive = _sensitive(body)
    if sensitive:
        return sensitive
    if any(staff_only(word) for word in body.split() if word.startswith(("http://", "https://"))):
        return "MoonClerk management links are for staff only; remove it"
    return None


def _sensitive(text: str) -> str | None:
    """Redaction runs on the final text: what it would remove must not be sent at all."""
    kinds = redact(text).kinds
    if not kinds:
        return None
    found = sorted(_WHAT.get(kind, str(kind)) for kind in kinds)
    return f"Remove {' and '.join(dict.fromkeys(found))}: payment details are never emailed"
