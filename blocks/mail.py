"""Email to the customer: the card's recipient line, the send modal, and the thread replies.

Pure renderers: the draft's text comes from bot.mail, the addresses from the case. Every value from a
caller or a mail server goes through blocks.format, so none of it can ping anyone or fake a link.
"""

from __future__ import annotations

from typing import Any

from blocks.actions import CallbackId, MailValue
from blocks.format import code, inline, mention, mrkdwn, plain, prose
from blocks.limits import truncate, truncate_mrkdwn
from storage.models import Case

MAIL_STATUS_TEXT = {
    "queued": "⏳ queued", "sending": "⏳ sending", "sent": "✅ sent", "failed": "❌ failed",
    "in_doubt": "⚠️ may have been delivered (the connection was lost after the server received it)",
}
SUBJECT_MAX = 250
BODY_MAX = 20_000
# Slack's plain_text_input holds at most 3,000 characters; a longer draft is cut for the modal.
_INPUT_MAX = 3000
ADDRESS_BUDGET = 320


def asked_recipient(case: Case) -> str | None:
    """The address the caller asked for: the one they named for sending, else their own."""
    return case.recipient_email or case.email


def differs(asked: str | None, verified: str | None) -> bool:
    return bool(asked and verified and asked.strip().lower() != verified.strip().lower())


def recipient_context(case: Case) -> dict[str, Any] | None:
    """The card's email line: the verified recipient beside the one asked for, and the latest email."""
    asked = asked_recipient(case)
    if not case.verified_email and not case.mail_status:
        return None
    parts = []
    if case.verified_email:
        parts.append(f"✉️ Verified recipient {code(case.verified_email, ADDRESS_BUDGET)} (customer record)")
    else:
        parts.append("✉️ No verified recipient")
    if asked:
        mark = " ⚠️ differs: sending there needs a senior approver's override" if differs(
            asked, case.verified_email) else ""
        parts.append(f"asked for {code(asked, ADDRESS_BUDGET)}{mark}")
    if case.mail_status:
        status = MAIL_STATUS_TEXT.get(case.mail_status, inline(case.mail_status, 40))
        line = f"last email: {status}"
        if case.mail_note:
            line += f" ({prose(case.mail_note, 300)})"
        parts.append(line)
    assert case.id is not None
    # A new block_id per card version, like the card's own blocks (blocks.card._block_id).
    return {"type": "context", "block_id": f"card-{case.id}-v{case.card_version}-mail",
            "elements": [mrkdwn(truncate_mrkdwn(" · ".join(parts), 3000))]}


def _input(block_id: str, label: str, initial: str | None, *, multiline: bool = False, hint: str | None = None,
           max_length: int | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "multiline": multiline}
    if initial:
        element["initial_value"] = truncate(initial, _INPUT_MAX)
    if max_length:
        element["max_length"] = max_length
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": plain(label), "element": element}
    if hint:
        block["hint"] = plain(hint)
    return block


def send_modal(case: Case, value: MailValue, *, subject: str, body: str, document: str | None) -> dict[str, Any]:
    """The send_to_customer_modal: recipient (the verified one), subject and body, both editable."""
    asked = asked_recipient(case)
    verified = case.verified_email or ""
    lines = [f"*Verified recipient:* {code(verified, ADDRESS_BUDGET)} (the customer record)"]
    if asked:
        lines.append(f"*Asked for on the call:* {code(asked, ADDRESS_BUDGET)}"
                     + (" ⚠️ differs" if differs(asked, verified) else ""))
    if document:
        lines.append(f"*Link in the draft:* {code(document, 500)}")
    lines.append("Never include card numbers, bank details or tax IDs: such a message is refused.")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": mrkdwn(truncate_mrkdwn("\n".join(lines), 3000))},
        _input("recipient", "Send to", verified, hint="The verified recipient; another address needs a senior "
                                                      "approver and the override below"),
        {"type": "input", "block_id": "override", "optional": True, "label": plain("Recipient override"),
         "element": {"type": "checkboxes", "action_id": "value", "options": [{
             "text": plain("Send to a different address than the customer record's"),
             "description": plain("Senior approvers only; audited"), "value": "override"}]}},
        _input("subject", "Subject", subject, max_length=SUBJECT_MAX),
        _input("body", "Message", body, multiline=True,
               hint="Factual: what the caller asked, what finance did or will do and by when"),
    ]
    return {
        "type": "modal", "callback_id": CallbackId.SEND_TO_CUSTOMER, "private_metadata": value.dump(),
        "title": plain("Email the customer"), "submit": plain("Send"), "close": plain("Cancel"),
        "blocks": [{"type": "context", "elements": [mrkdwn(f"Case {code(case.call_id, 210)}")]}, *blocks],
    }


def sent_reply(recipient: str, approver: str, subject: str, document: str | None) -> str:
    who = mention(approver) or "an approver"
    text = f"📧 Sent to {code(recipient, ADDRESS_BUDGET)} by {who}: {inline(subject, 250)}"
    if document:
        text += f" (with {code(document, 500)})"
    return text


def failed_reply(recipient: str, approver: str, answer: str) -> str:
    return (f"❌ Email to {code(recipient, ADDRESS_BUDGET)} (asked by {mention(approver) or 'an approver'}) was not "
            f"sent: {prose(answer, 400)}. Use ✉️ Send to customer on the card to try again.")


def in_doubt_reply(recipient: str, approver: str, answer: str) -> str:
    return (f"⚠️ Email to {code(recipient, ADDRESS_BUDGET)} (asked by {mention(approver) or 'an approver'}) may have "
            f"been delivered: {prose(answer, 400)}. It will not be sent again by itself; check with the customer "
            "before sending another.")


def queued_reply(recipient: str, approver: str, override: bool) -> str:
    text = f"✉️ {mention(approver) or 'An approver'} is emailing {code(recipient, ADDRESS_BUDGET)}"
    if override:
        text += " (a senior approver's override: not the customer record's address)"
    return text + "."
