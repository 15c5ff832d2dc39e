"""Every surface rendered with hostile values in every field: caller text, provider text and URLs stay
data. No mention, channel link, group ping or foreign link goes live; no code span, emphasis or quote
comes from what a caller said or a provider answered.

Pure renderers are called directly; the action runner and `/finance lookup` run against the database
and the MoonClerk and Poof stand-ins, and their thread replies are read back from the outbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from blocks.card import case_card
from blocks.format import code, inline, link, prose
from blocks.home import home_view
from blocks.lookup import case_message, queue_message
from blocks.modals import deny_modal, invoice_modal, payout_modal, resolve_modal
from blocks.reminders import (
    ReminderValue,
    card_reference,
    escalation_message,
    reminder_message,
    snooze_modal,
)
from blocks.review import review_message, review_settled
from blocks.thread import thread_reply
from bot import decisions
from bot.actions import runner
from bot.actions.authz import Directory
from bot.actions.runner import ActionContext, InvoiceRequest, PayoutRequest
from bot.lookup.customers import MoonClerkLookup, parse_term
from bot.lookup.queries import CaseList, CaseQuery, HomeData, Lookup
from bot.lookup.review import pick
from bot.policy import Policy
from bot.slack.listeners.commands import FinanceContext, answer
from bot.standins.moonclerk import MoonClerkStandIn
from bot.standins.poof import PoofStandIn
from bot.triage.model import KIND_LABELS
from bot.workflow import Outcome
from providers.moonclerk import MoonClerkClient
from providers.poof import PoofClient
from storage.db import session_scope
from storage.models import AuditEvent, Case, OutboxMessage, ProviderAction
from tests.blockkit import assert_valid_message, assert_valid_view

HOSTILE = ("<!everyone> *bolded* _slanted_ ~struck~ `coded` <https://evil.example|click> <@U123> <#C123> "
           "<!subteam^S123> <!here|here> &amp; > quoted\n*Amount:* 0\n> more quoted")
HOSTILE_ID = "call`<!here>`"
EVIL_URL = "https://x.example/a>b<!everyone>|c"
NOT_WEB = "javascript:alert(1)"
APPROVER = "U0APPROVER1"
SENIOR = "U0SENIOR"
OWNER = "U0OWNER"
# IDs we put in messages on purpose: people who clicked, policy owners and groups, our channels.
TRUSTED_USERS = frozenset({APPROVER, SENIOR, OWNER})
TRUSTED_CHANNELS = frozenset({"C0FIN"})
TRUSTED_GROUPS = frozenset({"S0ONCALL"})
# Every label a link of ours may carry: a link labelled anything else was made from untrusted text.
LINK_LABELS = frozenset({"Transcript", "Recording", "CRM", "Support ticket", "Payment platform", "open", "manage",
                         "Open the card", "open in Poof", "Case", *KIND_LABELS.values()})
CHANNEL = "C0FIN"
TS = "1700000000.000100"
MC_KEY = "mc_test_key"
POOF_KEY = "poof_test_key"
MARKERS = ("bolded", "slanted", "struck")

_TOKEN = re.compile(r"<([^<>]*)>")
_DATE = re.compile(r"!date\^\d+\^\{date_short_pretty\} at \{time\}\|[^|<>]*")
_CODE_SPAN = re.compile(r"`[^`]*`")
_EMPHASIS = re.compile(r"[*_~]\s*(?:" + "|".join(MARKERS) + r")|(?:" + "|".join(MARKERS) + r")\s*[*_~]")
_QUOTE = re.compile(r"(?m)^\s*(?:&gt;|>)")


# ---------------------------------------------------------------------------------------------------
# The check


def _token_problem(token: str) -> str | None:
    if token.startswith("!date^"):
        return None if _DATE.fullmatch(token) else "malformed date"
    if token.startswith("@"):
        return None if token[1:] in TRUSTED_USERS else "mention of an untrusted ID"
    if token.startswith("#"):
        return None if token[1:] in TRUSTED_CHANNELS else "untrusted channel link"
    if token.startswith("!subteam^"):
        return None if token.removeprefix("!subteam^") in TRUSTED_GROUPS else "untrusted group ping"
    if token.startswith(("https://", "http://")):
        url, _, label = token.partition("|")
        if any(char in url for char in " \"'`|") or "evil.example" in url:
            return "a link built from an unencoded or foreign URL"
        return None if label in LINK_LABELS else "a link labelled with untrusted text"
    return "live markup"


def assert_inert(text: str, where: str) -> None:
    """`text` is mrkdwn Slack will render: nothing in it may come alive from untrusted values."""
    for token in _TOKEN.findall(text):
        problem = _token_problem(token)
        assert problem is None, f"{where}: {problem}: <{token}> in {text!r}"
    leftover = _TOKEN.sub("", text)
    assert "<" not in leftover and ">" not in leftover, f"{where}: a stray angle bracket in {text!r}"
    assert text.count("`") % 2 == 0, f"{where}: an unmatched backtick in {text!r}"
    assert "`coded`" not in text, f"{where}: the caller's code span is live in {text!r}"
    prose_only = _CODE_SPAN.sub("", text)  # code spans show their content as it is
    assert not _EMPHASIS.search(prose_only), f"{where}: the caller's emphasis is live in {text!r}"
    assert "*Amount:* 0" not in prose_only, f"{where}: the caller started a fake line in {text!r}"
    assert not _QUOTE.search(prose_only), f"{where}: the caller started a block quote in {text!r}"


def _mrkdwn_texts(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            assert node.get("verbatim") is True, f"{path}: mrkdwn without verbatim auto-links bare names"
            yield path, node["text"]
            return
        for key, value in node.items():
            yield from _mrkdwn_texts(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _mrkdwn_texts(value, f"{path}[{index}]")


def assert_message_inert(message: dict[str, Any], where: str) -> None:
    """A message (card, reply, page, answer): its fallback `text` is mrkdwn too, and so is every block."""
    assert_inert(message["text"], f"{where}.text")
    for path, text in _mrkdwn_texts(message.get("blocks", []), f"{where}.blocks"):
        assert_inert(text, path)


def assert_view_inert(view: dict[str, Any], where: str) -> None:
    texts = list(_mrkdwn_texts(view["blocks"], f"{where}.blocks"))
    assert texts, f"{where}: nothing was checked"
    for path, text in texts:
        assert_inert(text, path)


# ---------------------------------------------------------------------------------------------------
# Hostile cases


def _fit(name: str, value: str) -> str:
    """`value` cut to its column's length, so PostgreSQL stores it too."""
    length = getattr(Case.__table__.c[name].type, "length", None)  # type: ignore[attr-defined]
    return value[:length] if length else value


def hostile_case(case_id: int = 1, **overrides: Any) -> Case:
    """A case whose every string field holds markup; URLs are an unencoded and a non-web one."""
    strings = {name: _fit(name, HOSTILE) for name, field in Case.model_fields.items()
               if field.annotation in (str, str | None)}
    values: dict[str, Any] = {
        **strings,
        "id": case_id, "call_id": f"{HOSTILE_ID}{case_id}", "currency": "<!h", "amount": Decimal("12.50"),
        "is_billing": True, "confidence": 0.5, "match_score": 0.5, "moonclerk_customer_id": None,
        "transcript_url": EVIL_URL, "recording_url": NOT_WEB, "crm_url": EVIL_URL,
        "support_ticket_url": HOSTILE, "payment_platform_url": "https://pay.example/p?q=<!channel>",
        "action_url": EVIL_URL, "action_status": "failed", "action_label": "invoice_poof",
        "approvals_given": [{"by": HOSTILE, "for": HOSTILE, "senior": True}, {"by": OWNER, "for": HOSTILE}],
        "approvals_needed": 3,
        "due_date": date(2026, 1, 2), "follow_up_deadline": datetime(2026, 1, 3, tzinfo=UTC),
        "state_at": datetime(2026, 1, 1, tzinfo=UTC), "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "escalation_reasons": [HOSTILE, f"caller or agent: {HOSTILE}"], "suppressed": True,
        "suppressed_kinds": [HOSTILE], "match_evidence": [HOSTILE, HOSTILE],
        "match_candidates": [{"customer_id": 7, "name": HOSTILE, "email": HOSTILE, "status": HOSTILE,
                              "score": 0.5, "evidence": [HOSTILE]},
                             {"customer_id": 8, "name": HOSTILE, "score": "<!here>"}],
        "payout_consent": True, "callback_expected": True, "approval_required": True, "is_vip": True,
        "slack_channel": None, "slack_ts": None, "card_version": 1,
    }
    values.update(overrides)
    return Case(**values)


VARIANTS = {
    "hostile": lambda: hostile_case(),
    "hostile, action unknown": lambda: hostile_case(action_status="unknown"),
    "hostile labels and states": lambda: hostile_case(action_status=HOSTILE[:30], state="failed"),
    "hostile, posted": lambda: hostile_case(slack_channel=CHANNEL, slack_ts=TS, owner=OWNER, state_by=APPROVER,
                                            finance_owner=APPROVER, moonclerk_customer_id=53453,
                                            match_status="matched"),
    "hostile channel and ts": lambda: hostile_case(slack_channel="C0FIN>|<!everyone", slack_ts="1.2|<!here>"),
    "swapped urls": lambda: hostile_case(transcript_url=NOT_WEB, recording_url=EVIL_URL, action_url=NOT_WEB,
                                         crm_url=HOSTILE),
}


# ---------------------------------------------------------------------------------------------------
# The one way: unit checks of blocks.format


@pytest.mark.parametrize("value", [HOSTILE, HOSTILE_ID, "*a*", "_a_", "~a~", "> a", "  >a", "a\n> b", "`",
                                   "<@U123>", "&lt;!here&gt;", ">>> quoted"])
def test_untrusted_text_is_inert_in_prose_inline_and_code(value: str) -> None:
    for made in (inline(value, 500), prose(value, 500), f"x {code(value, 500)} y"):
        assert_inert(made, repr(value))


def _edge_markers(text: str) -> list[str]:
    """Formatting characters Slack could read as markup: any `*`, `_` or `~` not inside a word."""
    return [text[max(0, i - 3):i + 4] for i, char in enumerate(text) if char in "*_~"
            and not (0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum())]


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from(list("ab1 \n\t*_~`<>&|@!#:.éß\u200b")), max_size=80))
def test_any_mix_of_markup_characters_stays_inert(value: str) -> None:
    for made in (inline(value, 500), prose(value, 500)):
        assert_inert(made, repr(value))
        assert not _edge_markers(made), (value, made)
    spanned = code(value, 500)
    assert spanned == "—" or (spanned.startswith("`") and spanned.endswith("`") and spanned.count("`") == 2)
    assert "<" not in spanned and ">" not in spanned


def test_words_keep_their_inner_underscores_and_arithmetic_its_signs() -> None:
    assert inline("past_due 2*3 a>b", 100) == "past_due 2*3 a&gt;b"
    assert inline("> a", 100) == "＞ a"


def test_code_of_nothing_is_no_empty_span() -> None:
    assert code("  ", 20) == "—"


@pytest.mark.parametrize("url", [NOT_WEB, "ftp://x.example/a", "not a url", "https://", "//x.example/a", "",
                                 "http://[::1", "data:text/html,<b>"])
def test_link_refuses_anything_but_an_http_url(url: str) -> None:
    assert link(url, "open") is None


def test_link_encodes_the_url_itself() -> None:
    made = link(EVIL_URL, "open")
    assert made == "<https://x.example/a%3Eb%3C!everyone%3E%7Cc|open>"
    assert link("https://x.example/a?b=1&c=2", "open") == "<https://x.example/a?b=1&amp;c=2|open>"
    with pytest.raises(ValueError):
        link("https://x.example/", "<!here>")


# ---------------------------------------------------------------------------------------------------
# Pure surfaces


@pytest.mark.parametrize("make", VARIANTS.values(), ids=VARIANTS.keys())
def test_the_card(make: Any) -> None:
    message = case_card(make(), next_reminder=datetime(2026, 1, 4, tzinfo=UTC))
    assert_valid_message(message)
    assert_message_inert(message, "card")


def test_the_card_links_only_the_urls_it_encoded() -> None:
    text = str(case_card(hostile_case()))
    assert "<https://x.example/a%3Eb%3C!everyone%3E%7Cc|Transcript>" in text
    assert "Recording (not a web link)" in text and "javascript" not in text


@pytest.mark.parametrize("make", VARIANTS.values(), ids=VARIANTS.keys())
def test_escalation_pages_and_reminders(make: Any) -> None:
    case = make()
    zone = ZoneInfo("America/New_York")
    for owner in (OWNER, HOSTILE[:40], None):
        card = card_reference(case, CHANNEL)
        for followup in (None, 120):
            page = escalation_message(case, list(case.escalation_reasons), owner=owner, oncall_group="S0ONCALL",
                                      card=card, followup_minutes=followup, late_due_at=case.created_at, zone=zone)
            assert_valid_message(page)
            assert_message_inert(page, "page")
        for kind in ("lead", "due", "overdue", "snoozed"):
            reminder = reminder_message(case, 1, kind, deadline=case.follow_up_deadline, implied=True, owner=owner,
                                        oncall_group="S0ONCALL", zone=zone, late_due_at=case.created_at,
                                        snoozed_by=HOSTILE[:40])
            assert_valid_message(reminder)
            assert_message_inert(reminder, f"reminder {kind}")
    assert_inert(card_reference(case, "C0FIN>|<!everyone"), "card reference")
    assert "<!subteam^" not in escalation_message(case, [HOSTILE], owner=None, oncall_group="S1|<!here>",
                                                  card="the card")["text"]


@pytest.mark.parametrize("make", VARIANTS.values(), ids=VARIANTS.keys())
def test_review_posts(make: Any) -> None:
    case = make()
    message = review_message(case)
    assert_valid_message(message)
    assert_message_inert(message, "review")
    for user in (APPROVER, HOSTILE[:40]):
        settled = review_settled(case, user)
        assert_valid_message(settled)
        assert_message_inert(settled, "review settled")


@pytest.mark.parametrize("make", VARIANTS.values(), ids=VARIANTS.keys())
def test_modals(make: Any) -> None:
    case = make()
    outcomes = [(outcome.value, label) for outcome, label in decisions.RESOLUTION_LABELS.items()]
    for view in (invoice_modal(case), payout_modal(case), deny_modal(case, min_length=10, max_length=1000),
                 resolve_modal(case, outcomes, note_max=1000, reference_max=200)):
        assert_valid_view(view)
        assert_view_inert(view, str(view["callback_id"]))
    snooze = snooze_modal(ReminderValue(case_id=1, reminder_id=1), datetime(2026, 1, 1, tzinfo=UTC))
    assert_valid_view(snooze)
    assert_view_inert(snooze, "snooze")


def _action(case: Case, **overrides: Any) -> ProviderAction:
    values: dict[str, Any] = dict(
        id=1, case_id=case.id, call_id=case.call_id, action=HOSTILE[:40], provider=HOSTILE[:40], status="failed",
        idempotency_key="k", amount=Decimal("1"), currency=HOSTILE[:3], requested_by=HOSTILE[:40],
        approved_by=APPROVER, provider_reference=HOSTILE, error=HOSTILE, params={"address": HOSTILE},
        created_at=datetime(2026, 1, 1, tzinfo=UTC), updated_at=datetime(2026, 1, 1, tzinfo=UTC))
    values.update(overrides)
    return ProviderAction(**values)


@pytest.mark.parametrize("make", VARIANTS.values(), ids=VARIANTS.keys())
def test_case_and_queue_answers(make: Any) -> None:
    case = make()
    audit = [AuditEvent(at=datetime(2026, 1, 1, tzinfo=UTC), actor=actor, action=HOSTILE[:60], call_id=case.call_id,
                        reason=HOSTILE, outcome=HOSTILE[:40]) for actor in (APPROVER, HOSTILE[:100])]
    answer_ = case_message(case, [_action(case), _action(case, status="unknown", approved_by=HOSTILE[:40])], audit,
                           5, [(HOSTILE[:40], case.follow_up_deadline), (HOSTILE[:40], None)])
    assert_valid_message(answer_)
    assert_message_inert(answer_, "/finance case")
    queue = queue_message([case], 3, [case], 2)
    assert_valid_message(queue)
    assert_message_inert(queue, "/finance queue")


@pytest.mark.parametrize("make", VARIANTS.values(), ids=VARIANTS.keys())
def test_the_home_tab(make: Any) -> None:
    case = make()
    for approver in (True, False):
        listed = CaseList([case], 4)
        view = home_view(HomeData(user=APPROVER, is_approver=approver, assigned=listed, awaiting=listed,
                                  overdue=listed, review_size=1, now=datetime(2026, 1, 1, tzinfo=UTC),
                                  review_channel=HOSTILE[:40]))
        assert_valid_view(view)
        assert_view_inert(view, "home")


def test_thread_replies_made_by_hand_stay_as_given() -> None:
    reply = thread_reply(f"{inline(HOSTILE, 500)} by <@{APPROVER}>")
    assert_valid_message(reply)
    assert_message_inert(reply, "thread")


# ---------------------------------------------------------------------------------------------------
# Surfaces with a database and providers behind them


@pytest.fixture
def moonclerk() -> Iterator[MoonClerkStandIn]:
    with MoonClerkStandIn(api_key=MC_KEY) as standin:
        standin.add_customer(
            id=777001, name=HOSTILE, email="x`<!here>`@e.example", custom_id=HOSTILE,
            management_url=EVIL_URL, payment_method={"brand": HOSTILE, "last4": "<!h>"},
            subscription={"status": HOSTILE})
        standin.add_customer(id=777002, name=HOSTILE, management_url=NOT_WEB)
        standin.add_payment(id=888001, customer_id=777001, status=HOSTILE,
                            payment_method={"brand": HOSTILE, "last4": "42`4"})
        yield standin


@pytest.fixture
def poof() -> Iterator[PoofStandIn]:
    with PoofStandIn(api_key=POOF_KEY) as standin:
        yield standin


@pytest.fixture
def ctx(engine: Engine, policy: Policy, moonclerk: MoonClerkStandIn, poof: PoofStandIn) -> Iterator[ActionContext]:
    with MoonClerkClient(MC_KEY, moonclerk.url, timeout=5.0) as mc, PoofClient(POOF_KEY, poof.url, timeout=5.0) as pf:
        yield ActionContext(engine=engine, directory=Directory(policy, None), moonclerk=mc, invoices=pf, payouts=pf,
                            clock=lambda: datetime.now(UTC))


def _stored(engine: Engine, case_id: int, **overrides: Any) -> int:
    case = hostile_case(case_id, action_label=None, action_status=None, action_url=None, state="new",
                        slack_channel=CHANNEL, slack_ts=f"1700000000.{case_id:06d}", **overrides)
    with session_scope(engine) as session:
        session.add(case)
    return case_id


def _replies(engine: Engine, case_id: int) -> list[dict[str, Any]]:
    """The thread replies the outbox would post, as the delivery worker builds them."""
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).where(col(OutboxMessage.case_id) == case_id,
                                                        col(OutboxMessage.kind) == "thread")
                            .order_by(col(OutboxMessage.id))).all()
    messages = []
    for row in rows:
        message = thread_reply(row.text or "")
        if row.blocks:
            message["blocks"] = row.blocks
        messages.append(message)
    return messages


def _check_all(engine: Engine, case_id: int, outcomes: list[Outcome | str | None]) -> list[dict[str, Any]]:
    replies = _replies(engine, case_id)
    assert replies
    for reply in replies:
        assert_valid_message(reply)
        assert_message_inert(reply, "thread reply")
    for outcome in outcomes:
        if outcome is not None:
            text = outcome if isinstance(outcome, str) else outcome.message
            assert_inert(text, "ephemeral answer")
    return replies


def test_the_moonclerk_note(ctx: ActionContext, engine: Engine) -> None:
    case_id = _stored(engine, 11, moonclerk_customer_id=777001, owner=HOSTILE[:40])
    outcome = runner.note_moonclerk(ctx, case_id, APPROVER)
    assert outcome.ok, outcome.message
    [note] = _check_all(engine, case_id, [outcome])
    assert "MoonClerk note" in note["text"] and "https://x.example/a%3Eb%3C!everyone%3E%7Cc|manage>" in note["text"]
    assert code(f"{HOSTILE_ID}11", 210) in note["text"]
    # A non-web management URL and recording are named, never linked.
    other = _stored(engine, 12, moonclerk_customer_id=777002, transcript_url=NOT_WEB, recording_url=EVIL_URL)
    assert runner.note_moonclerk(ctx, other, APPROVER).ok
    [second] = _check_all(engine, other, [])
    assert "javascript" not in second["text"] and "not a web link" in second["text"]


def test_the_moonclerk_note_when_moonclerk_answers_with_markup(ctx: ActionContext, engine: Engine,
                                                                moonclerk: MoonClerkStandIn) -> None:
    case_id = _stored(engine, 13, moonclerk_customer_id=777001)
    moonclerk.fail_next("/customers/777001", 400, body={"error": HOSTILE})
    outcome = runner.note_moonclerk(ctx, case_id, APPROVER)
    assert not outcome.ok and "MoonClerk could not be reached" in outcome.message
    assert_inert(outcome.message, "ephemeral answer")


def test_review_refusals_and_an_invoice_that_fails_then_succeeds(ctx: ActionContext, engine: Engine,
                                                                 poof: PoofStandIn) -> None:
    case_id = _stored(engine, 14, moonclerk_customer_id=777001, amount=Decimal("10"), currency="USD")
    outcomes: list[Outcome | str | None] = [
        runner.refuse(ctx, case_id, APPROVER, "invoice_poof", HOSTILE),
        runner.to_review(ctx, case_id, APPROVER, "invoice_poof", HOSTILE),
    ]
    # Approval comes before money (the hostile case needs it); the approval's reply is checked below too.
    outcomes.append(decisions.approve(engine, ctx.directory, case_id, SENIOR, datetime.now(UTC)))
    request = InvoiceRequest(amount=Decimal("10"), currency="USD", method="paypal")
    poof.fail_next("/api/v1/create_fiat_invoice", 400, body={"error": HOSTILE})
    outcomes.append(runner.submit_invoice(ctx, case_id, SENIOR, request))
    poof.fail_next("/api/v1/create_fiat_invoice", 200, body={"payment_link": EVIL_URL, "payment_id": HOSTILE_ID})
    done = runner.retry(ctx, case_id, SENIOR, "invoice_poof")
    outcomes.append(done)
    assert done.ok, done.message
    replies = _check_all(engine, case_id, outcomes)
    texts = "\n".join(reply["text"] for reply in replies)
    assert "failed:" in texts and "|open in Poof>" in texts
    with Session(engine) as session:
        card = case_card(session.get(Case, case_id))  # type: ignore[arg-type]
    assert_message_inert(card, "card after the actions")


def test_decisions_made_with_hostile_reasons_notes_and_references(ctx: ActionContext, engine: Engine) -> None:
    now = datetime.now(UTC)
    denied = _stored(engine, 21, amount=Decimal("10"), currency="USD")
    resolved = _stored(engine, 22, approval_required=False, callback_expected=True, callback_done_at=None)
    outcomes: list[Outcome | str | None] = [
        decisions.approve(engine, ctx.directory, denied, "U0STRANGER", now),
        decisions.deny(engine, ctx.directory, denied, APPROVER, HOSTILE, now),
    ]
    _check_all(engine, denied, outcomes)
    outcomes = [
        decisions.callback_done(engine, ctx.directory, resolved, APPROVER, now),
        decisions.resolve(engine, ctx.directory, resolved, APPROVER, decisions.Resolution.OTHER, HOSTILE, HOSTILE,
                          now),
    ]
    _check_all(engine, resolved, outcomes)
    with Session(engine) as session:
        for case_id in (denied, resolved):
            case = session.get(Case, case_id)
            assert case is not None and case.state in {"denied", "done"}
            assert_message_inert(case_card(case), "card after a decision")


def test_a_payout_waiting_for_its_second_approver(ctx: ActionContext, engine: Engine) -> None:
    case_id = _stored(engine, 15, crypto_address=HOSTILE[:200], amount=Decimal("10"), currency="USD")
    approved = decisions.approve(engine, ctx.directory, case_id, SENIOR, datetime.now(UTC))
    # The hostile case has no matched caller: a senior vouches for the identity.
    request = PayoutRequest(amount=Decimal("10"), currency="USD", crypto=HOSTILE[:40], crypto_amount=Decimal("0.5"),
                            address=HOSTILE[:200], override_identity=True)
    outcome = runner.submit_payout(ctx, case_id, SENIOR, request)
    assert outcome.ok, outcome.message
    [_, asked] = _check_all(engine, case_id, [approved, outcome])
    assert "second, different approver" in asked["blocks"][0]["text"]["text"]


def test_a_review_pick_reply(engine: Engine) -> None:
    case_id = _stored(engine, 16, match_status="review")
    outcome = pick(engine, f"{case_id}:7", APPROVER, datetime.now(UTC), may_decide=lambda user: True)
    assert outcome.ok
    _check_all(engine, case_id, [outcome.message])


def test_finance_lookup_answers(ctx: ActionContext, engine: Engine, moonclerk: MoonClerkStandIn) -> None:
    assert ctx.moonclerk is not None
    _stored(engine, 17, moonclerk_customer_id=777001, email="x`<!here>`@e.example")
    finance = FinanceContext(engine=engine, lookup=MoonClerkLookup(ctx.moonclerk), is_finance=lambda user: True)
    found = answer(finance, Lookup(parse_term("777001")), APPROVER)
    assert "1 MoonClerk customer" in found["text"], found
    moonclerk.fail_next("/payments", 400, body={"error": HOSTILE})
    no_payments = answer(finance, Lookup(parse_term("777002")), APPROVER)
    assert "could not be read" in str(no_payments)
    moonclerk.fail_next("/customers/777003", 400, body={"error": HOSTILE})
    failed = answer(finance, Lookup(parse_term("777003")), APPROVER)
    assert "did not answer" in failed["text"], failed
    missing = answer(finance, CaseQuery(HOSTILE_ID), APPROVER)
    for message, where in ((found, "lookup"), (no_payments, "lookup, payments failed"),
                           (failed, "lookup, provider error"), (missing, "no such case")):
        assert_valid_message(message)
        assert_message_inert(message, where)
