"""Block Kit builders: every card is schema-valid and inside Slack's limits, whatever the call said."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from blocks.actions import ActionId, ButtonValue, ControlId
from blocks.builder import block_kit_builder_url
from blocks.card import case_card
from blocks.format import inline
from blocks.limits import (
    MAX_BUTTON_VALUE,
    MAX_CUMULATIVE_TEXT,
    MAX_FIELD_TEXT,
    MAX_HEADER,
    MAX_MESSAGE_BLOCKS,
    MAX_SECTION_TEXT,
    check_message,
    check_view,
    slack_len,
    truncate,
    truncate_mrkdwn,
)
from blocks.thread import thread_reply
from storage.models import Case
from tests.blockkit import assert_valid_message, assert_valid_view

DEADLINE = datetime(2025, 3, 4, 15, 30, tzinfo=UTC)
ALWAYS = {ActionId.DENY, ActionId.RESOLVE, ActionId.ROUTE_REVIEW, ActionId.ASSIGN_SELF, ActionId.SNOOZE,
          ActionId.DISMISS}
PROPERTY = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def full_refund(**overrides: Any) -> Case:
    values: dict[str, Any] = dict(
        id=1, call_id="call_abc", card_version=3, stage="call_analyzed", call_status="ended",
        caller_phone="+15551230000", summary="Customer was charged twice for March and wants one refunded.",
        kind="refund", is_billing=True, rule="analysis.billing_intent=refund_request", confidence=0.92,
        classification_source="analysis", evidence="I was charged twice",
        customer_name="Acme Corp", account_id="ACC-77", email="billing@acme.test", phone="+15551230000",
        moonclerk_customer_id=53453, invoice_number="INV-2025-0042", payment_id="pay_123",
        subscription_id="sub_9", tax_region="US-CA", amount=Decimal("1249"), currency="USD",
        due_date=date(2025, 3, 1), payment_status="past_due", caller_claim="Charged twice for March",
        refund_reason="duplicate charge", dispute_reason="bank says unauthorised",
        credit_request="one month credit", approval_requested=True, finance_owner="U0FINANCE1",
        next_step="Refund the duplicate and email a receipt", follow_up_deadline=DEADLINE,
        callback_expected=True, recipient_email="ap@acme.test", payout_recipient="Acme Corp AP",
        verified_email="billing@acme.test",  # the customer record's address: Send to customer is offered
        payout_consent=True, crypto="usdc", crypto_address="0xabc123",
        transcript_url="https://dialnexa.test/calls/call_abc/transcript",
        recording_url="https://dialnexa.test/calls/call_abc/recording.mp3",
        crm_url="https://crm.test/accounts/77", support_ticket_url="https://help.test/tickets/5",
        payment_platform_url="https://dashboard.moonclerk.test/payments/123",
        urgency="high", is_vip=False, approval_required=True,
        approval_reason="1249 USD is above the 500 USD threshold",
        escalation_reasons=["refund above the approval threshold"], owner="U0FINANCE1",
        suppressed=True, suppressed_kinds=["card_number", "bank_details"],
        state="in_review", state_by="U0REVIEWER", state_at=datetime(2025, 3, 2, 9, 0, tzinfo=UTC),
    )
    values.update(overrides)
    return Case(**values)


def minimal(**overrides: Any) -> Case:
    values: dict[str, Any] = dict(id=2, call_id="call_min", kind="billing_question")
    values.update(overrides)
    return Case(**values)


def vip_failed_renewal() -> Case:
    return Case(
        id=3, call_id="call_vip", kind="failed_renewal", is_billing=True, urgency="critical", is_vip=True,
        customer_name="Globex", email="ceo@globex.test", moonclerk_customer_id=12742, subscription_id="sub_1",
        amount=Decimal("99.5"), currency="EUR", payment_status="card declined",
        escalation_reasons=["VIP payment blocker", "failed renewal"],
    )


def payout_case() -> Case:
    return Case(
        id=4, call_id="call_pay", kind="refund", is_billing=True, urgency="normal", customer_name="Initech",
        amount=Decimal("10000"), currency="JPY", crypto="usdc", crypto_address="0xfeed", payout_consent=True,
    )


def done_case() -> Case:
    return full_refund(id=5, call_id="call_done", state="done", state_by="U0CLOSER")


def huge_case() -> Case:
    nasty = "<!channel> *bold* _it_ ~s~ `code` &amp; <https://evil.test|click> @here "
    return full_refund(
        id=6, call_id="c" * 200, summary=("long summary " * 800)[:10_000] + nasty,
        customer_name=("N" * 490) + nasty, email="e" * 500, account_id="a" * 500,
        invoice_number="I" * 500, payment_id="P" * 500, subscription_id="S" * 500, tax_region="T" * 500,
        payment_status="s" * 500, caller_claim=nasty * 10, refund_reason="r" * 500, dispute_reason="d" * 500,
        credit_request="c" * 500, evidence="v" * 500, finance_owner="f" * 500, next_step="n" * 500,
        approval_reason="a" * 500, escalation_reasons=["x" * 500] * 30, rule="r" * 200,
        transcript_url="https://dialnexa.test/t?q=<script>&x=>>|pipe " + "t" * 900,
        recording_url="https://dialnexa.test/" + "r" * 2900, crm_url="https://crm.test/" + "c" * 990,
        support_ticket_url="https://help.test/" + "s" * 990,
        payment_platform_url="https://pay.test/" + "p" * 990,
        suppressed_kinds=["kind_" + "k" * 100] * 40 + ["<!here>"], amount=Decimal("123456789012345.678"),
        currency="USD", state_by="x" * 40,
    )


ALL_CASES = {
    "full refund": full_refund,
    "minimal": minimal,
    "vip failed renewal": vip_failed_renewal,
    "payout": payout_case,
    "done": done_case,
    "huge": huge_case,
}


def dumped(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def all_text(message: dict[str, Any]) -> str:
    """Every string a reader can see, joined, for "does it say X" assertions."""
    found: list[str] = [message["text"]]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message["blocks"])
    return "\n".join(found)


def block(message: dict[str, Any], suffix: str) -> dict[str, Any] | None:
    for item in message["blocks"]:
        if item.get("block_id", "").endswith(f"-{suffix}"):
            return item  # type: ignore[no-any-return]
    return None


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The card's buttons: the decisions row, then the actions row (not the ledger's Retry/Reconcile)."""
    return [element for item in message["blocks"] if item["type"] == "actions"
            and item["block_id"].rsplit("-", 1)[-1] in {"decide", "actions"} for element in item["elements"]]


def action_ids(case: Case) -> set[str]:
    return {button["action_id"] for button in buttons(case_card(case))}


# ---------------------------------------------------------------------------------------------------
# Validity


@pytest.mark.parametrize("make", ALL_CASES.values(), ids=ALL_CASES.keys())
def test_every_card_is_valid_and_within_limits(make: Any) -> None:
    message = case_card(make(), next_reminder=DEADLINE + timedelta(hours=1))
    assert_valid_message(message)
    assert message["text"].strip()
    assert len(message["blocks"]) <= MAX_MESSAGE_BLOCKS


def test_huge_values_are_cut_with_an_ellipsis_and_stay_under_the_cumulative_limit() -> None:
    message = case_card(huge_case())
    assert_valid_message(message)
    text = all_text(message)
    assert "…" in block(message, "summary")["text"]["text"]  # type: ignore[index]
    assert sum(slack_len(t) for t in text.split("\n")) < MAX_CUMULATIVE_TEXT
    for field in block(message, "facts")["fields"]:  # type: ignore[index]
        assert slack_len(field["text"]) <= MAX_FIELD_TEXT
    assert "link too long" in text  # the 2,900-character recording URL is not cut into a broken link
    assert "classified 92%" in text  # a long name does not push out how sure the triage is


def test_mrkdwn_injection_is_escaped() -> None:
    message = case_card(huge_case())
    raw = dumped(message)
    assert "<!channel>" not in raw and "<!here>" not in raw
    assert "<https://evil.test" not in raw
    assert "*bold*" not in raw and "_it_" not in raw and "~s~" not in raw
    assert "&lt;!channel&gt;" in raw
    assert "&amp;amp;" in raw  # an ampersand the caller typed is shown, not interpreted
    # The only "<" left are our own links, mentions and dates.
    for token in re.findall(r"<[^>]*>", all_text(message)):
        assert token.startswith(("<https://", "<@U", "<!date^")), token


def test_bare_mentions_are_not_auto_parsed() -> None:
    card = case_card(full_refund(summary="ping @here and #general"))
    for item in card["blocks"]:
        for text in [item.get("text"), *item.get("fields", []), *item.get("elements", [])]:
            if isinstance(text, dict) and text.get("type") == "mrkdwn":
                assert text["verbatim"] is True


def test_identifiers_keep_their_underscores() -> None:
    text = all_text(case_card(full_refund()))
    assert "`pay_123`" in text
    assert "past_due" in text


def test_a_card_needs_a_stored_case() -> None:
    with pytest.raises(ValueError, match="stored case"):
        case_card(minimal(id=None))


# ---------------------------------------------------------------------------------------------------
# Content


def test_full_card_shows_every_part_of_the_case() -> None:
    message = case_card(full_refund())
    text = all_text(message)
    header = message["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "🟠 Refund request · High"
    for expected in (
        "Acme Corp", "`billing@acme.test`", "MoonClerk customer `53453`", "classified 92% "
        "(`analysis.billing_intent=refund_request`)", "Invoice `INV-2025-0042`", "Payment `pay_123`",
        "Subscription `sub_9`", "1,249.00 USD", "Sat 1 Mar 2025", "past_due", "Charged twice for March",
        "*Refund reason:* duplicate charge", "*Dispute reason:* bank says unauthorised",
        "*Credit requested:* one month credit", "⚠️ Needed: 1249 USD is above the 500 USD threshold",
        "<@U0FINANCE1>", "Refund the duplicate and email a receipt", "Callback owed by <@U0FINANCE1>",
        "<https://dialnexa.test/calls/call_abc/transcript|Transcript>", "|Recording>", "|CRM>",
        "|Support ticket>", "|Payment platform>", "DialNexa call `call_abc`", "*👀 In review*",
        "by <@U0REVIEWER>",
    ):
        assert expected in text, expected


def test_call_id_is_in_a_context_block() -> None:
    evidence = block(case_card(minimal()), "evidence")
    assert evidence is not None and evidence["type"] == "context"
    assert any("`call_min`" in element["text"] for element in evidence["elements"])


@pytest.mark.parametrize(
    ("urgency", "emoji"), [("critical", "🔴"), ("high", "🟠"), ("normal", "🟡"), ("low", "⚪")]
)
def test_urgency_emoji(urgency: str, emoji: str) -> None:
    header = case_card(minimal(urgency=urgency))["blocks"][0]["text"]["text"]
    assert header.startswith(emoji)
    assert urgency.capitalize() in header


def test_vip_badge_and_kind_label() -> None:
    message = case_card(vip_failed_renewal())
    assert message["blocks"][0]["text"]["text"] == "🔴 Failed renewal · Critical · ⭐ VIP"
    assert "VIP" in message["text"]
    assert "VIP" not in case_card(minimal())["blocks"][0]["text"]["text"]


def test_unknown_kind_urgency_and_state_still_render() -> None:
    message = case_card(minimal(kind="<!channel>_weird", urgency="??", state="on_fire"))
    assert_valid_message(message)
    assert "<!channel>" not in dumped(message)
    assert "On fire" in all_text(message)


def test_fallback_text_has_kind_urgency_customer_and_amount() -> None:
    text = case_card(full_refund())["text"]
    assert "Refund request" in text and "high" in text and "Acme Corp" in text and "1,249.00 USD" in text
    assert case_card(minimal())["text"].strip()
    assert "&lt;!channel&gt;" in case_card(minimal(customer_name="<!channel>"))["text"]


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [(Decimal("1249"), "USD", "1,249.00 USD"), (Decimal("10000"), "JPY", "10,000 JPY"),
     (Decimal("1.5"), "KWD", "1.500 KWD"), (Decimal("12"), None, "12 (currency not stated)"),
     (Decimal("NaN"), "USD", "NaN USD"), (Decimal("1E+40"), "USD", "1E+40 USD")],
)
def test_money(amount: Decimal, currency: str | None, shown: str) -> None:
    message = case_card(minimal(amount=amount, currency=currency))
    assert_valid_message(message)
    assert f"*Amount*\n{shown}" in all_text(message)


def test_caller_without_a_match_shows_their_own_details() -> None:
    text = all_text(case_card(minimal(caller_phone="+15550001111", confidence=0.4, rule="rules.refund")))
    assert "`+15550001111`" in text
    assert "no customer matched" in text
    assert "classified 40% (`rules.refund`)" in text
    assert "Unknown caller" in all_text(case_card(minimal()))


def test_suppression_note_lists_kinds_never_values() -> None:
    note = block(case_card(full_refund()), "suppressed")
    assert note is not None and note["type"] == "context"
    text = note["elements"][0]["text"]
    assert "suppressed" in text and "bank details" in text and "card number" in text
    assert block(case_card(minimal()), "suppressed") is None
    bare = block(case_card(minimal(suppressed=True)), "suppressed")
    assert bare is not None and "unspecified kinds" in bare["elements"][0]["text"]


def test_deadline_state_and_reminder_use_slack_date_formatting() -> None:
    message = case_card(full_refund(), next_reminder=datetime(2025, 3, 3, 8, 0, tzinfo=UTC))
    text = all_text(message)
    stamp = int(DEADLINE.timestamp())
    assert f"Follow up by <!date^{stamp}^{{date_short_pretty}} at {{time}}|2025-03-04 15:30 UTC>" in text
    state = block(message, "state")["elements"][0]["text"]  # type: ignore[index]
    assert f"<!date^{int(datetime(2025, 3, 2, 9, 0, tzinfo=UTC).timestamp())}^" in state
    assert "next reminder <!date^" in state


def test_naive_datetimes_are_read_as_utc() -> None:
    text = all_text(case_card(minimal(follow_up_deadline=datetime(2025, 3, 4, 15, 30))))
    assert f"<!date^{int(DEADLINE.timestamp())}^" in text


def test_links_only_for_http_urls_and_never_broken_by_their_characters() -> None:
    message = case_card(minimal(
        transcript_url="javascript:alert(1)", recording_url="https://x.test/a?b=1&c=>2|3 4",
        crm_url="ftp://crm.test/x", support_ticket_url="not a url",
    ))
    assert_valid_message(message)
    text = all_text(message)
    assert "javascript" not in text and "ftp://" not in text
    assert "Transcript (not a web link)" in text and "CRM (not a web link)" in text
    assert "<https://x.test/a?b=1&amp;c=%3E2%7C3%204|Recording>" in text


def test_block_ids_carry_the_card_version() -> None:
    old = case_card(full_refund(card_version=3))
    new = case_card(full_refund(card_version=4))
    old_ids = {item["block_id"] for item in old["blocks"]}
    new_ids = {item["block_id"] for item in new["blocks"]}
    assert "card-1-v3-header" in old_ids
    assert not old_ids & new_ids


# ---------------------------------------------------------------------------------------------------
# Buttons


def test_full_case_offers_every_action_that_fits_its_kind() -> None:
    every = set(ActionId) | {ControlId.CALLBACK_DONE}  # the caller expects a call back
    # A Stripe refund is for refunds and duplicate charges, once approved.
    assert action_ids(full_refund(kind="failed_renewal")) == every - {ActionId.REFUND_STRIPE}
    # Money owed back to the customer is never invoiced.
    for kind in ("refund", "duplicate_charge", "dispute"):
        assert action_ids(full_refund(kind=kind)) == every - {ActionId.INVOICE_POOF, ActionId.REFUND_STRIPE}
    approved = {"approved_at": DEADLINE, "approved_amount": Decimal("1249.00"), "approved_currency": "USD"}
    for kind in ("refund", "duplicate_charge"):
        assert ActionId.REFUND_STRIPE in action_ids(full_refund(kind=kind, **approved))
    assert ActionId.REFUND_STRIPE not in action_ids(full_refund(kind="dispute", **approved))


def test_minimal_case_offers_only_the_routing_actions() -> None:
    assert action_ids(minimal()) == ALWAYS


@pytest.mark.parametrize(
    ("overrides", "offered"),
    [
        ({"payout_recipient": "Acme AP", "payout_consent": True}, True),
        ({"crypto_address": "0xabc", "payout_consent": True}, True),
        ({"payout_recipient": "Acme AP", "payout_consent": None}, False),
        ({"payout_recipient": "Acme AP", "payout_consent": False}, False),
        ({"payout_consent": True}, False),
    ],
)
def test_payout_needs_a_recipient_and_consent(overrides: dict[str, Any], offered: bool) -> None:
    assert (ActionId.PAYOUT_POOF in action_ids(minimal(**overrides))) is offered


@pytest.mark.parametrize(
    ("overrides", "offered"),
    [
        # What the caller merely said is no match; a MoonClerk customer (named or matched) is.
        ({"email": "a@b.test", "amount": Decimal("5"), "currency": "USD"}, False),
        ({"customer_name": "Acme", "amount": Decimal("5"), "currency": "USD"}, False),
        ({"moonclerk_customer_id": 1, "amount": Decimal("5"), "currency": "USD"}, True),
        ({"email": "a@b.test", "match_status": "matched", "amount": Decimal("5"), "currency": "USD"}, True),
        ({"moonclerk_customer_id": 1, "amount": Decimal("5")}, False),
        ({"moonclerk_customer_id": 1, "currency": "USD"}, False),
        ({"caller_phone": "+15550001111", "amount": Decimal("5"), "currency": "USD"}, False),
    ],
)
def test_invoice_needs_a_matched_caller_and_an_amount_with_currency(
    overrides: dict[str, Any], offered: bool
) -> None:
    assert (ActionId.INVOICE_POOF in action_ids(minimal(**overrides))) is offered


@pytest.mark.parametrize("status", ["succeeded", "paid", "running", "awaiting_approval", "unknown", "failed"])
def test_a_money_button_goes_once_its_action_has_happened(status: str) -> None:
    case = minimal(moonclerk_customer_id=1, amount=Decimal("5"), currency="USD", action_label="invoice_poof",
                   action_status=status)
    assert ActionId.INVOICE_POOF not in action_ids(case)


@pytest.mark.parametrize(
    ("overrides", "offered"),
    # An invoice number alone names no MoonClerk record the note could be verified against.
    [({"moonclerk_customer_id": 7}, True), ({"payment_id": "pay_1"}, True),
     ({"invoice_number": "INV-1"}, False), ({"account_id": "ACC-1"}, False), ({"email": "a@b.test"}, False)],
)
def test_moonclerk_note_needs_a_customer_or_payment_reference(
    overrides: dict[str, Any], offered: bool
) -> None:
    assert (ActionId.NOTE_MOONCLERK in action_ids(minimal(**overrides))) is offered


@pytest.mark.parametrize("state", ["done", "rejected", "dismissed"])
def test_closed_cases_have_no_buttons_only_the_state_line(state: str) -> None:
    message = case_card(full_refund(state=state, state_by="U0CLOSER"), next_reminder=DEADLINE)
    assert_valid_message(message)
    assert block(message, "actions") is None
    assert not any(item["type"] == "actions" for item in message["blocks"])
    state_line = block(message, "state")["elements"][0]["text"]  # type: ignore[index]
    assert "<@U0CLOSER>" in state_line and "next reminder" not in state_line


@pytest.mark.parametrize("state", ["new", "in_review", "approved", "failed"])
def test_open_cases_keep_their_buttons(state: str) -> None:
    assert action_ids(full_refund(state=state)) >= ALWAYS


def test_button_values_identify_the_case_and_nothing_else() -> None:
    case = full_refund()
    for button in buttons(case_card(case)):
        value = ButtonValue.parse(button["value"])
        assert value == ButtonValue(case_id=1, call_id="call_abc", v=3)
        assert set(json.loads(button["value"])) == {"case_id", "call_id", "v"}
        assert "1249" not in button["value"] and "acme" not in button["value"].lower()


def test_styles_and_confirm_dialogs() -> None:
    by_id = {button["action_id"]: button for button in buttons(case_card(full_refund()))}
    assert by_id["dismiss"]["style"] == "danger"
    assert by_id["dismiss"]["confirm"]["style"] == "danger"
    assert "1,249.00 USD" in by_id["payout_poof"]["confirm"]["text"]["text"]
    # While approval is needed, approving is the one primary button; then paying back is.
    assert [b["action_id"] for b in by_id.values() if b.get("style") == "primary"] == ["approve"]
    assert "1,249.00 USD" in by_id["approve"]["confirm"]["text"]["text"]
    approved = full_refund(approved_at=DEADLINE, approved_amount=Decimal("1249.00"), approved_currency="USD")
    by_id = {button["action_id"]: button for button in buttons(case_card(approved))}
    assert "approve" not in by_id and "deny" not in by_id  # decided: the decision buttons leave the card
    # A refund's main money action is refunding the charge on Stripe.
    assert [b["action_id"] for b in by_id.values() if b.get("style") == "primary"] == ["refund_stripe"]
    renewal = {b["action_id"]: b for b in buttons(case_card(vip_failed_renewal()))}
    assert renewal["invoice_poof"]["style"] == "primary"
    assert "style" not in buttons(case_card(minimal()))[0]


def test_button_value_round_trip() -> None:
    value = ButtonValue(case_id=42, call_id="call_ÿ\"x", v=7)
    dumped_value = value.dump()
    assert " " not in dumped_value
    assert ButtonValue.parse(dumped_value) == value
    assert len(ButtonValue(case_id=1, call_id="\x00" * 255, v=0).dump()) <= MAX_BUTTON_VALUE


@pytest.mark.parametrize(
    "raw",
    ['{"case_id": 1, "call_id": "c", "v": 1, "amount": "5"}', '{"case_id": 1, "v": 1}',
     '{"case_id": 0, "call_id": "c", "v": 1}', "not json"],
)
def test_button_value_rejects_anything_else(raw: str) -> None:
    with pytest.raises(ValidationError):
        ButtonValue.parse(raw)


# ---------------------------------------------------------------------------------------------------
# Limits helpers


@PROPERTY
@given(st.text(), st.integers(min_value=0, max_value=400))
def test_truncate_never_exceeds_the_limit(text: str, limit: int) -> None:
    cut = truncate(text, limit)
    assert slack_len(cut) <= limit and len(cut) <= limit
    if slack_len(text) <= limit:
        assert cut == text
    elif limit > 0:
        assert cut.endswith("…")
        assert text.startswith(cut[:-1])


@PROPERTY
@given(st.text(alphabet=st.sampled_from(list("ab <>&|*_`😀é\n"))), st.integers(min_value=0, max_value=60))
def test_escaped_truncation_never_splits_an_entity(text: str, limit: int) -> None:
    cut = inline(text, limit)
    assert slack_len(cut) <= limit
    assert "<" not in cut and ">" not in cut and "`" not in cut
    assert re.sub(r"&(amp|lt|gt);", "", cut).count("&") == 0
    if slack_len(inline(text, 10_000)) <= limit:
        assert cut == inline(text, 10_000)


@PROPERTY
@given(st.lists(st.sampled_from(["word ", "<@U123ABC>", "&amp;", "<https://x.test/a|Link>", " ", "`pay_1 2`"])),
       st.integers(min_value=0, max_value=80))
def test_markup_aware_truncation_never_leaves_half_a_token(parts: list[str], limit: int) -> None:
    cut = truncate_mrkdwn("".join(parts), limit)
    assert slack_len(cut) <= limit
    assert cut.count("<") == cut.count(">")
    assert cut.count("`") % 2 == 0  # a half code span would pair with the next one
    assert re.sub(r"&(amp|lt|gt);", "", cut).count("&") == 0


def test_inline_escapes_slacks_control_characters() -> None:
    assert inline("a & <b> <!channel>", 100) == "a &amp; &lt;b&gt; &lt;!channel&gt;"


_TEXT_FIELDS = ("summary", "customer_name", "email", "invoice_number", "payment_status", "caller_claim",
                "refund_reason", "next_step", "finance_owner", "approval_reason", "transcript_url", "rule")


@PROPERTY
@given(st.fixed_dictionaries({name: st.text(max_size=600) for name in _TEXT_FIELDS}),
       st.text(min_size=1, max_size=200), st.booleans())
def test_any_text_in_any_field_makes_a_valid_card(values: dict[str, str], call_id: str, closed: bool) -> None:
    case = full_refund(call_id=call_id, state="done" if closed else "new", **values)
    assert_valid_message(case_card(case))


# ---------------------------------------------------------------------------------------------------
# The checker can fail


def _ok_message(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"text": "fallback", "blocks": blocks}


def _section(block_id: str, text: str = "hi") -> dict[str, Any]:
    return {"type": "section", "block_id": block_id, "text": {"type": "mrkdwn", "text": text}}


def _button(action_id: str, text: str = "Go", value: str = "v") -> dict[str, Any]:
    label = {"type": "plain_text", "text": text}
    return {"type": "button", "action_id": action_id, "text": label, "value": value}


def test_checker_accepts_a_good_message() -> None:
    assert check_message(_ok_message([_section("a"), _section("b")])) == []


def test_checker_catches_51_blocks() -> None:
    problems = check_message(_ok_message([_section(f"b{i}") for i in range(51)]))
    assert any("51 blocks" in problem for problem in problems)
    assert check_message(_ok_message([_section(f"b{i}") for i in range(50)])) == []


def test_checker_catches_duplicate_block_ids() -> None:
    problems = check_message(_ok_message([_section("same"), _section("same")]))
    assert problems == ["blocks[1].block_id: 'same' duplicates blocks[0]"]


def test_checker_catches_duplicate_action_ids() -> None:
    actions = {"type": "actions", "elements": [_button("go"), _button("go")]}
    assert any("action_id 'go' duplicates" in p for p in check_message(_ok_message([actions])))


@pytest.mark.parametrize("message", [{"blocks": [_section("a")]}, {"text": "", "blocks": [_section("a")]},
                                     {"text": "   ", "blocks": []}])
def test_checker_catches_missing_fallback_text(message: dict[str, Any]) -> None:
    assert any(problem.startswith("text:") for problem in check_message(message))


def test_checker_catches_oversized_text() -> None:
    fields = {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 10 + [
        {"type": "mrkdwn", "text": "x" * (MAX_FIELD_TEXT + 1)}]}
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * (MAX_HEADER + 1)}}
    actions = {"type": "actions", "elements": [_button("a", text="t" * 76), _button("b", value="v" * 2001)]}
    long_section = _section("s", "x" * (MAX_SECTION_TEXT + 1))
    joined = "\n".join(check_message(_ok_message([long_section, fields, header, actions])))
    for expected in ("blocks[0].text.text: 3001", "blocks[1].fields: 11 fields",
                     "blocks[1].fields[10].text: 2001", "blocks[2].text.text: 151",
                     "blocks[3].elements[0].text.text: 76", "blocks[3].elements[1].value: 2001"):
        assert expected in joined, expected


def test_checker_counts_emoji_as_two_characters() -> None:
    assert check_message(_ok_message([_section("s", "😀" * 1500)])) == []
    assert check_message(_ok_message([_section("s", "😀" * 1501)]))


def test_checker_catches_cumulative_size() -> None:
    blocks = [_section(f"s{i}", "x" * 2500) for i in range(5)]
    assert any("in all" in problem for problem in check_message(_ok_message(blocks)))


def test_view_checker() -> None:
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Case"}, "blocks": [_section("a")]}
    assert check_view(view) == []
    assert_valid_view(view)
    crowded = {**view, "blocks": [_section(f"b{i}") for i in range(101)]}
    assert any("101 blocks" in p for p in check_view(crowded))
    assert check_view({**view, "type": "message"})
    home = {"type": "home", "blocks": [_section("a"), _section("a")]}
    assert any("duplicates" in p for p in check_view(home))


def test_schema_rejects_what_the_checker_cannot_see() -> None:
    bad = _ok_message([{"type": "header", "text": {"type": "mrkdwn", "text": "no mrkdwn in headers"}}])
    assert check_message(bad) == []
    with pytest.raises(pytest.fail.Exception, match="Block Kit schema"):
        assert_valid_message(bad)
    with pytest.raises(pytest.fail.Exception):
        assert_valid_view({"type": "modal", "title": {"type": "plain_text", "text": "t" * 25},
                           "blocks": [_section("a")]})


# ---------------------------------------------------------------------------------------------------
# Thread replies and the Builder link


def test_thread_reply() -> None:
    reply = thread_reply("<@U123> approved the refund")
    assert_valid_message(reply)
    assert reply["text"] == "<@U123> approved the refund"
    long = thread_reply("x" * 5000)
    assert_valid_message(long)
    assert slack_len(long["text"]) <= MAX_SECTION_TEXT and long["text"].endswith("…")
    assert_valid_message(thread_reply("   "))


def test_block_kit_builder_url() -> None:
    message = case_card(full_refund())
    url = block_kit_builder_url(message)
    prefix = "https://app.slack.com/block-kit-builder/#"
    assert url.startswith(prefix)
    assert json.loads(unquote(url[len(prefix):])) == {"blocks": message["blocks"]}
    assert " " not in url and "{" not in url


def test_a_new_cases_state_line_says_since_when() -> None:
    arrived = datetime(2026, 11, 30, 15, 4, tzinfo=UTC)
    state = next(b for b in case_card(minimal(created_at=arrived))["blocks"] if b.get("block_id", "").endswith("state"))
    text = state["elements"][0]["text"]
    assert "New*" in text and f"since <!date^{int(arrived.timestamp())}^" in text
