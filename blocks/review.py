"""The review-channel message that asks a person which MoonClerk customer called. Pure.

The select menu's option values are `"<case id>:<customer id>"` or `"<case id>:none"` (PickValue's
colon form): IDs only, never names or emails. The handler re-checks the choice against the case's stored candidates.
"""

from __future__ import annotations

from typing import Any, Final

from blocks.actions import ControlId, PickValue
from blocks.format import code, inline, link, mention, mrkdwn, plain
from blocks.limits import truncate, truncate_mrkdwn
from blocks.lookup import card_permalink, context, header, kind_label, section
from storage.models import Case
from storage.states import MatchStatus

MAX_OPTIONS: Final = 10


def _percent(score: object) -> str:
    if isinstance(score, int | float) and not isinstance(score, bool) and score == score:
        return f"{round(max(0.0, min(1.0, float(score))) * 100)}%"
    return "?"


def _candidates(case: Case) -> list[dict[str, Any]]:
    out = []
    for candidate in case.match_candidates or []:
        if isinstance(candidate, dict) and isinstance(candidate.get("customer_id"), int):
            out.append(candidate)
    return out[:MAX_OPTIONS]


def _caller(case: Case) -> str:
    parts = [f"*{inline(kind_label(case), 60)}* call {code(case.call_id, 120)}"]
    heard = []
    if case.customer_name:
        heard.append(inline(case.customer_name, 80))
    if case.email:
        heard.append(code(case.email, 100))
    phone = case.phone or case.caller_phone
    if phone:
        heard.append(code(phone, 30))
    if case.account_id:
        heard.append(f"account {code(case.account_id, 60)}")
    if case.payment_id:
        heard.append(f"payment {code(case.payment_id, 60)}")
    parts.append("Heard on the call: " + (" · ".join(heard) if heard else "nothing that identifies the caller"))
    opened = link(card_permalink(case.slack_channel, case.slack_ts), "Open the card")
    if opened:
        parts.append(opened)
    return "\n".join(parts)


def _candidate_line(index: int, candidate: dict[str, Any]) -> str:
    name = inline(candidate.get("name"), 60) if candidate.get("name") else "_no name_"
    parts = [f"*{index}.* {name}", f"customer {code(candidate['customer_id'], 24)}"]
    if candidate.get("email"):
        parts.append(code(candidate["email"], 80))
    if candidate.get("status"):
        parts.append(inline(candidate["status"], 20))
    parts.append(f"*{_percent(candidate.get('score'))}*")
    evidence = [inline(str(e), 60) for e in (candidate.get("evidence") or [])[:3]]
    line = " · ".join(parts)
    return line + (f" — {'; '.join(evidence)}" if evidence else "")


def _option(case_id: int, candidate: dict[str, Any]) -> dict[str, Any]:
    label = " · ".join(str(part) for part in (candidate.get("name") or "no name", candidate.get("email") or "",
                                                f"#{candidate['customer_id']}", _percent(candidate.get("score")))
                       if part)
    value = PickValue(case_id=case_id, customer_id=candidate["customer_id"]).key()
    return {"text": plain(truncate(" ".join(label.split()), 75)), "value": value}


def review_message(case: Case) -> dict[str, Any]:
    """chat.postMessage payload for the review channel."""
    assert case.id is not None
    candidates = _candidates(case)
    lines = [_candidate_line(i, c) for i, c in enumerate(candidates, start=1)]
    why = "; ".join(inline(str(e), 100) for e in (case.match_evidence or [])[:2])
    options = [_option(case.id, c) for c in candidates]
    options.append({"text": plain("None of these"), "value": PickValue(case_id=case.id, customer_id=None).key()})
    prefix = f"review-{case.id}"
    blocks = [
        header("Which MoonClerk customer called?"),
        section(_caller(case), block_id=f"{prefix}-caller"),
        section(truncate_mrkdwn("*Candidates*\n" + ("\n".join(lines) or "none"), 2900),
                block_id=f"{prefix}-candidates"),
        {"type": "actions", "block_id": f"{prefix}-pick", "elements": [{
            "type": "static_select", "action_id": ControlId.REVIEW_PICK,
            "placeholder": plain("Pick the caller's customer"),
            "options": options,
            "confirm": {"title": plain("Set the customer?"), "text": mrkdwn("The case card will show this customer."),
                        "confirm": plain("Set it"), "deny": plain("Cancel")},
        }]},
    ]
    if why:
        blocks.append(context(f"Why a person is asked: {why}"))
    text = f"Which MoonClerk customer called? {inline(kind_label(case), 60)} call {inline(case.call_id, 120)}"
    return {"text": truncate(text, 300), "blocks": blocks}


def review_settled(case: Case, user: str) -> dict[str, Any]:
    """What the review message becomes once someone has picked (no menu left to click)."""
    who = mention(user) or "someone"
    if case.match_status == MatchStatus.MATCHED and case.moonclerk_customer_id is not None:
        outcome = f"✅ {who} matched this caller to MoonClerk customer {code(case.moonclerk_customer_id, 24)}."
    else:
        outcome = f"🚫 {who} said none of the candidates is this caller."
    blocks = [section(_caller(case), block_id=f"review-{case.id}-caller-done"),
              section(outcome, block_id=f"review-{case.id}-done")]
    plain_outcome = outcome.replace("`", "")
    return {"text": truncate(plain_outcome, 300), "blocks": blocks}
