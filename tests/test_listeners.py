"""Slack listeners called directly: the middleware prepares the context from a payload as Slack sends
it, then the listener runs with a recording ack and respond, over a real runtime and database.

The signed end-to-end tests (test_actions, test_slack_events, test_finance_command, test_review_and_home,
test_reminders) cover the same listeners through HTTP; these pin each one on its own.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from slack_bolt import BoltContext, BoltRequest, BoltResponse
from sqlmodel import Session, select

from blocks.actions import (
    VALUE_OF,
    ActionId,
    ButtonValue,
    CallbackId,
    ControlId,
    PickValue,
    ReminderValue,
    SlashCommand,
)
from bot.actions.authz import Directory
from bot.actions.runner import ActionContext
from bot.runtime import Runtime
from bot.slack.listeners import case_actions, commands, decisions, home, mail, money_actions, reminders, review
from bot.slack.listeners.context import KEY, Desk, Interaction, Prepare
from storage.db import session_scope
from storage.models import AuditEvent, Case

APPROVER, STRANGER = "U0APPROVER1", "U0STRANGER"
OWNER = "U0OWNER"  # the policy's default finance owner: a finance person, not an approver
RESPONSE_URL = "https://hooks.slack.test/actions/1"
MODULES = (case_actions, money_actions, reminders, commands, review, home, decisions, mail)


class Recorder:
    """Stands in for Bolt's ack and respond callables (not the code under test): records each call."""

    def __init__(self, response_url: str | None = RESPONSE_URL) -> None:
        self.response_url = response_url
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)

    @property
    def texts(self) -> list[str]:
        return [str(call.get("text")) for call in self.calls]


class Client:
    """Records Web API calls (views_open, chat_postEphemeral, views_publish) instead of making them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, method: str) -> Callable[..., None]:
        return lambda **kwargs: self.calls.append((method, kwargs))


class Inline(Executor):
    """Runs "after the ack" work at once, so a test can look at its result."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


@pytest.fixture
def desk(runtime: Runtime) -> Desk:
    actions = ActionContext(engine=runtime.engine, directory=Directory(runtime.policy, None), moonclerk=None,
                            invoices=None, payouts=None, clock=lambda: datetime.now(UTC), background=Inline())
    return Desk(runtime, actions)


def make_case(runtime: Runtime, call_id: str = "call_listener", **fields: Any) -> Case:
    now = datetime.now(UTC)
    values: dict[str, Any] = {"is_billing": True, "kind": "refund", "created_at": now, "updated_at": now,
                              "slack_channel": "C0FINANCE", "slack_ts": "1700000000.000100", **fields}
    with session_scope(runtime.engine) as session:
        case = Case(call_id=call_id, **values)
        session.add(case)
        session.flush()
        session.refresh(case)
        return case


def load(runtime: Runtime, case_id: int | None) -> Case:
    with Session(runtime.engine) as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case


def button(case: Case) -> str:
    assert case.id is not None
    return ButtonValue(case_id=case.id, call_id=case.call_id, v=case.card_version).dump()


def click(action_id: str, user: str, **element: Any) -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": user}, "trigger_id": "trigger-1", "response_url": RESPONSE_URL,
            "actions": [{"action_id": action_id, "block_id": "b", "type": "button", **element}]}


def submission(callback_id: str, user: str, metadata: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"type": "view_submission", "user": {"id": user},
            "view": {"callback_id": callback_id, "private_metadata": metadata, "state": {"values": values}}}


class Prepared:
    """The middleware run over one payload: what it answered, and the context a listener gets."""

    def __init__(self, desk: Desk, payload: dict[str, Any]) -> None:
        self.respond, self.client, self.nexts = Recorder(), Client(), 0
        request = BoltRequest(body=json.dumps(payload), headers={"content-type": ["application/json"]})
        request.context["client"] = self.client
        if "response_url" in payload:
            request.context["respond"] = self.respond
        self.context: BoltContext = request.context
        self.answer = Prepare(desk).process(req=request, resp=BoltResponse(status=200, body=""), next=self._next)

    def _next(self) -> BoltResponse:
        self.nexts += 1
        return BoltResponse(status=200, body="")

    def run(self, listener: Callable[..., None], **args: Any) -> Recorder:
        """Call the listener as Bolt would (it injects by parameter name); the recording ack comes back."""
        assert self.nexts == 1, "the middleware stopped this request"
        ack = Recorder()
        available = {"ack": ack, "context": self.context, "respond": self.respond, "client": self.client, **args}
        listener(**{name: available[name] for name in inspect.signature(listener).parameters})
        return ack


def run(desk: Desk, listener: Callable[..., None], payload: dict[str, Any]) -> tuple[Recorder, Prepared]:
    prepared = Prepared(desk, payload)
    args: dict[str, Any] = {"body": payload}
    kind = payload.get("type")
    if kind == "block_actions":
        args["action"] = payload["actions"][0]
    elif kind == "view_submission":
        args["view"] = payload["view"]
    elif kind == "event_callback":
        args["event"] = payload["event"]
    else:
        args["command"] = payload
    return prepared.run(listener, **args), prepared


# ---------------------------------------------------------------------------------------------------
# Shape: named module-level functions, one table per module, every ID registered once


def _tables(module: ModuleType) -> dict[Any, Callable[..., None]]:
    found: dict[Any, Callable[..., None]] = {}
    for name in ("ACTIONS", "VIEWS", "COMMANDS", "EVENTS"):
        found.update(getattr(module, name, {}))
    return found


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_listeners_are_named_module_level_functions(module: ModuleType) -> None:
    for listener in _tables(module).values():
        assert listener.__qualname__ == listener.__name__  # not a closure or a method
        assert getattr(module, listener.__name__) is listener


def test_every_interactive_id_has_exactly_one_listener() -> None:
    keys = [key for module in MODULES for key in _tables(module)]
    plain = [key for key in keys if isinstance(key, str)]
    assert len(plain) == len(set(plain))
    assert set(plain) == {*ActionId, *ControlId, *CallbackId, *SlashCommand, "app_home_opened"} - {
        ControlId.HOME_OPEN_REVIEW}
    [pattern] = [key for key in keys if isinstance(key, re.Pattern)]
    assert pattern.match(ControlId.HOME_OPEN_REVIEW) and pattern.match("home_open_mine_7")
    assert set(VALUE_OF) <= set(plain)


def test_ids_keep_their_public_strings() -> None:
    assert {str(a) for a in ActionId} == {"approve", "deny", "resolve", "note_moonclerk", "invoice_poof",
                                          "payout_poof", "refund_stripe", "route_review", "assign_self", "snooze",
                                          "dismiss", "send_to_customer"}
    assert {str(c) for c in ControlId} == {"confirm_payout", "callback_done", "retry_action", "reconcile_action",
                                           "reminder_done", "reminder_snooze", "reminder_reassign", "review_pick",
                                           "home_open_review"}
    assert {str(c) for c in CallbackId} == {"invoice_poof_modal", "payout_poof_modal", "refund_stripe_modal",
                                            "reminder_snooze_modal",
                                            "reminder_done_modal", "deny_modal", "resolve_modal",
                                            "send_to_customer_modal"}


# ---------------------------------------------------------------------------------------------------
# One value encoding, one parser


def test_one_parser_reads_every_value_ever_posted() -> None:
    assert ButtonValue.parse('{"case_id":1,"call_id":"c","v":3}') == ButtonValue(case_id=1, call_id="c", v=3)
    assert ReminderValue.parse('{"case_id":7,"reminder_id":99}') == ReminderValue.parse("reminder:7:99")
    assert ReminderValue(case_id=7, reminder_id=99).block_id() == "reminder:7:99"
    assert PickValue.parse("7:700") == PickValue(case_id=7, customer_id=700) == PickValue.parse(
        PickValue(case_id=7, customer_id=700).dump())
    assert PickValue.parse("7:none").customer_id is None and PickValue(case_id=7, customer_id=None).key() == "7:none"


@pytest.mark.parametrize("raw", ["garbage", "7", "7:", "0:5", "7:0", "7:5:1", "x:7", "-7:5", "7:1e3",
                                 "99999999999999999999:1", " 7:700", "+7:700",
                                 '{"case_id": 7, "customer_id": 5, "name": "x"}'])
def test_the_parser_refuses_anything_else(raw: str) -> None:
    with pytest.raises(ValueError):
        PickValue.parse(raw)


# ---------------------------------------------------------------------------------------------------
# The middleware


def test_a_value_that_does_not_parse_is_answered_by_the_middleware(desk: Desk, runtime: Runtime) -> None:
    prepared = Prepared(desk, click(ActionId.ASSIGN_SELF, APPROVER, value="not json"))
    assert prepared.nexts == 0 and isinstance(prepared.answer, BoltResponse) and prepared.answer.status == 200
    assert prepared.respond.calls == [{"response_type": "ephemeral", "replace_original": False,
                                       "text": "That button is out of date."}]
    reminder = Prepared(desk, click(ControlId.REMINDER_DONE, APPROVER, value="{}"))
    assert reminder.respond.texts == ["That reminder is out of date."]
    select_menu = {"selected_option": {"value": "7:someone"}}
    assert Prepared(desk, click(ControlId.REVIEW_PICK, APPROVER, **select_menu)).respond.texts == [
        "That choice is out of date."]


def test_a_modal_with_unreadable_metadata_just_closes(desk: Desk) -> None:
    prepared = Prepared(desk, submission(CallbackId.REMINDER_SNOOZE, APPROVER, "nope", {}))
    assert prepared.nexts == 0 and prepared.answer is not None and prepared.answer.body == ""
    assert prepared.respond.calls == [] and prepared.client.calls == []


def test_the_middleware_hands_listeners_the_typed_value(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime)
    prepared = Prepared(desk, click(ActionId.ASSIGN_SELF, APPROVER, value=button(case)))
    it = prepared.context[KEY]
    assert prepared.nexts == 1 and isinstance(it, Interaction)
    assert it.user == APPROVER and it.ref(ButtonValue).case_id == case.id
    with pytest.raises(TypeError):
        it.ref(ReminderValue)
    # A reminder select carries its value in the block ID.
    picked = Prepared(desk, click(ControlId.REMINDER_REASSIGN, APPROVER, block_id="reminder:7:99"))
    assert picked.context[KEY].ref(ReminderValue) == ReminderValue(case_id=7, reminder_id=99)
    # Anything without a value (a command, an event, a Home link) still gets the runtime.
    command = Prepared(desk, {"command": "/finance", "text": "help", "user_id": APPROVER})
    assert command.nexts == 1 and command.context[KEY].value is None


# ---------------------------------------------------------------------------------------------------
# Card buttons


def test_assign_self_acks_and_changes_the_case_quietly(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime)
    ack, prepared = run(desk, case_actions.assign_self, click(ActionId.ASSIGN_SELF, OWNER, value=button(case)))
    assert ack.calls == [{}]
    assert load(runtime, case.id).owner == OWNER
    assert prepared.respond.calls == []  # the card and its thread say what changed


@pytest.mark.parametrize("element", [ActionId.ASSIGN_SELF, ActionId.ROUTE_REVIEW, ActionId.SNOOZE, ActionId.APPROVE,
                                     ActionId.RESOLVE, ControlId.CALLBACK_DONE, ControlId.REMINDER_DONE])
def test_every_control_that_changes_a_case_is_for_finance_people(desk: Desk, runtime: Runtime,
                                                                  element: str) -> None:
    case = make_case(runtime, call_id=f"call_{element}")
    assert case.id is not None
    value = ReminderValue(case_id=case.id, reminder_id=1).key() if element == ControlId.REMINDER_DONE else button(case)
    prepared = Prepared(desk, click(element, STRANGER, value=value))
    assert prepared.nexts == 0  # stopped before any listener
    assert "only finance people" in prepared.respond.texts[0]
    assert prepared.respond.calls[0]["response_type"] == "ephemeral"
    with Session(runtime.engine) as session:
        refused = session.exec(select(AuditEvent).where(AuditEvent.action == "action.refused")).one()
    assert refused.actor == STRANGER and refused.case_id == case.id and refused.detail == {"action": element}
    assert load(runtime, case.id).card_version == case.card_version  # nothing changed


def test_dismiss_is_for_finance_people_and_refusals_are_audited(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime)
    prepared = Prepared(desk, click(ActionId.DISMISS, STRANGER, value=button(case)))
    assert prepared.nexts == 0 and "only finance people" in prepared.respond.texts[0]
    assert prepared.respond.calls[0]["response_type"] == "ephemeral"
    assert load(runtime, case.id).state == "new"
    with Session(runtime.engine) as session:
        refused = session.exec(select(AuditEvent).where(AuditEvent.action == "action.refused")).one()
    assert refused.actor == STRANGER and refused.detail == {"action": "dismiss"}

    run(desk, case_actions.dismiss, click(ActionId.DISMISS, APPROVER, value=button(case)))
    assert load(runtime, case.id).state == "dismissed"
    _, again = run(desk, case_actions.route_review, click(ActionId.ROUTE_REVIEW, APPROVER, value=button(case)))
    assert "already dismissed" in again.respond.texts[0]


def test_card_snooze_answers_ephemerally(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime, follow_up_deadline=datetime.now(UTC) + timedelta(days=2))
    ack, prepared = run(desk, reminders.snooze, click(ActionId.SNOOZE, APPROVER, value=button(case)))
    assert ack.calls == [{}] and prepared.respond.texts[0].startswith("💤 Snoozed")
    assert prepared.respond.calls[0]["response_type"] == "ephemeral"


# ---------------------------------------------------------------------------------------------------
# Money buttons and modals


def test_a_money_modal_is_refused_before_it_opens(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime, amount=Decimal("120.00"), currency="USD", moonclerk_customer_id=42,
                     match_status="matched")
    ack, prepared = run(desk, money_actions.invoice_poof, click(ActionId.INVOICE_POOF, OWNER, value=button(case)))
    assert ack.calls == [{}] and "approvers" in prepared.respond.texts[0]
    assert prepared.client.calls == []


def test_a_money_button_answers_after_the_ack(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime, moonclerk_customer_id=42)
    ack, prepared = run(desk, money_actions.note_moonclerk,
                        click(ActionId.NOTE_MOONCLERK, OWNER, value=button(case)))
    assert ack.calls == [{}] and "only finance approvers" in prepared.respond.texts[0]


def test_a_ledger_button_for_an_unknown_action_is_out_of_date(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime)
    payload = click(ControlId.RETRY_ACTION, APPROVER, value=button(case))
    payload["actions"][0]["block_id"] = f"case-{case.id}-ledger:not_an_action"
    _, prepared = run(desk, money_actions.retry_action, payload)
    assert prepared.respond.texts == ["That button is out of date."]


def test_after_a_modal_the_answer_goes_to_the_card_thread(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime, amount=Decimal("120.00"), currency="USD")
    values = {"amount": {"value": {"type": "plain_text_input", "value": "120.00"}},
              "currency": {"value": {"type": "plain_text_input", "value": "USD"}},
              "method": {"value": {"type": "static_select", "selected_option": {"value": "paypal"}}}}
    ack, prepared = run(desk, money_actions.submit_invoice,
                        submission(CallbackId.INVOICE_POOF, OWNER, button(case), values))
    assert ack.calls == [{}]
    [(method, call)] = prepared.client.calls
    assert method == "chat_postEphemeral" and call["channel"] == "C0FINANCE" and call["user"] == OWNER
    assert call["thread_ts"] == case.slack_ts and "approvers" in call["text"]


def test_invalid_modal_input_is_answered_in_the_modal(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime)
    values = {"amount": {"value": {"type": "plain_text_input", "value": "lots"}}}
    ack, prepared = run(desk, money_actions.submit_invoice,
                        submission(CallbackId.INVOICE_POOF, APPROVER, button(case), values))
    assert ack.calls[0]["response_action"] == "errors" and prepared.client.calls == []


# ---------------------------------------------------------------------------------------------------
# Reminders, review, /finance, Home


def test_reassign_from_a_reminder(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime)
    assert case.id is not None
    payload = click(ControlId.REMINDER_REASSIGN, APPROVER, block_id=ReminderValue(case_id=case.id,
                                                                                  reminder_id=1).block_id())
    payload["actions"][0].update(type="users_select", selected_user="U0APPROVER2")
    ack, prepared = run(desk, reminders.reminder_reassign, payload)
    assert ack.calls == [{}] and load(runtime, case.id).owner == "U0APPROVER2"
    assert prepared.respond.calls[0]["response_type"] == "ephemeral"


def test_an_unknown_snooze_choice_is_out_of_date(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime)
    assert case.id is not None
    value = ReminderValue(case_id=case.id, reminder_id=1)
    payload = click(ControlId.REMINDER_SNOOZE, APPROVER, block_id=value.block_id(),
                    selected_option={"value": "forever"})
    _, prepared = run(desk, reminders.reminder_snooze, payload)
    assert prepared.respond.texts == ["That reminder is out of date."]


def test_review_pick_is_for_finance_people_and_replaces_the_message(desk: Desk, runtime: Runtime) -> None:
    case = make_case(runtime, match_status="review", match_candidates=[{"customer_id": 700, "name": "Ryan"}])
    assert case.id is not None
    option = {"selected_option": {"value": PickValue(case_id=case.id, customer_id=700).key()}}
    refused = Prepared(desk, click(ControlId.REVIEW_PICK, STRANGER, **option))
    assert refused.nexts == 0 and "only finance people" in refused.respond.texts[0]
    ack, picked = run(desk, review.review_pick, click(ControlId.REVIEW_PICK, APPROVER, **option))
    assert ack.calls == [{}] and picked.respond.calls[0]["replace_original"] is True
    assert picked.respond.calls[0]["blocks"] and load(runtime, case.id).moonclerk_customer_id == 700


def test_finance_command(desk: Desk) -> None:
    def slash(text: str, user: str) -> tuple[Recorder, Prepared]:
        return run(desk, commands.finance, {"command": "/finance", "text": text, "user_id": user,
                                            "response_url": RESPONSE_URL})

    ack, prepared = slash("help", STRANGER)  # help is the ack itself, for anyone
    assert ack.calls[0]["response_type"] == "ephemeral" and "/finance" in ack.calls[0]["text"]
    assert prepared.respond.calls == []
    ack, prepared = slash("queue", STRANGER)
    assert ack.calls == [{}] and prepared.respond.texts == [commands.NOT_ALLOWED]
    ack, prepared = slash("lookup a@b.co", APPROVER)  # acked at once, answered after it
    assert ack.calls == [{"response_type": "ephemeral", "text": commands.LOOKING_UP}]
    assert "MoonClerk is not configured" in prepared.respond.texts[0]
    assert prepared.respond.calls[0]["replace_original"] is True


def test_home_is_published_for_its_opener(desk: Desk) -> None:
    payload = {"type": "event_callback", "event": {"type": "app_home_opened", "user": APPROVER, "tab": "home"}}
    _, prepared = run(desk, home.app_home_opened, payload)
    [(method, call)] = prepared.client.calls
    assert method == "views_publish" and call["user_id"] == APPROVER and call["view"]["type"] == "home"
    _, messages = run(desk, home.app_home_opened, {**payload, "event": {**payload["event"], "tab": "messages"}})
    assert messages.client.calls == []
