"""Provider-action buttons and modals: ack at once, then call bot.actions.runner.

A slow provider never delays the ack: Bolt returns the HTTP answer as soon as ack() runs, and the
provider call happens afterwards on the listener thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from sqlmodel import Session

from blocks.actions import ActionId, ButtonValue
from blocks.modals import INVOICE_CALLBACK, PAYOUT_CALLBACK, invoice_modal, payout_modal, submitted
from bot.actions import runner
from bot.actions.forms import parse_invoice, parse_payout
from bot.actions.runner import ActionContext
from bot.workflow import Outcome
from storage.models import Case

log = logging.getLogger(__name__)


def _case(ctx: ActionContext, value: str) -> Case | None:
    try:
        button = ButtonValue.parse(value)
    except ValueError:
        return None
    with Session(ctx.engine) as session:
        return session.get(Case, button.case_id)


def _say(respond: Respond, outcome: Outcome | str) -> None:
    text = outcome if isinstance(outcome, str) else outcome.message
    respond(response_type="ephemeral", replace_original=False, text=text)


def _tell(client: WebClient, case: Case | None, user: str, outcome: Outcome) -> None:
    """After a modal there is no response_url: answer with an ephemeral message in the card's channel."""
    if case is None or case.slack_channel is None:
        return
    client.chat_postEphemeral(channel=case.slack_channel, user=user, text=outcome.message,
                              thread_ts=case.slack_ts)


def _later(ctx: ActionContext, work: Callable[[], None]) -> None:
    """Run the slow part after the ack, off Bolt's listener threads; failures are logged, not lost."""
    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("provider action failed after its ack")

    ctx.background.submit(run)


def register(app: App, ctx: ActionContext) -> None:
    def opener(check: Callable[[ActionContext, Case, str], str | None],
               modal: Callable[[Case], dict[str, Any]]) -> Callable[..., None]:
        def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                     respond: Respond) -> None:
            ack()
            case = _case(ctx, str(action.get("value", "")))
            if case is None:
                _say(respond, "That button is out of date.")
                return
            problem = check(ctx, case, body["user"]["id"])
            if problem:
                _say(respond, problem)
                return
            # trigger_id expires 3 s after the click: open the modal before anything slow.
            client.views_open(trigger_id=body["trigger_id"], view=modal(case))

        return listener

    app.action(ActionId.INVOICE_POOF.value)(opener(runner.check_invoice, invoice_modal))
    app.action(ActionId.PAYOUT_POOF.value)(opener(runner.check_payout, payout_modal))

    def submit_invoice(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        parsed = parse_invoice(submitted(view))
        if isinstance(parsed, dict):
            ack(response_action="errors", errors=parsed)
            return
        ack()
        case = _case(ctx, view.get("private_metadata", ""))
        if case is None or case.id is None:
            return
        user, case_id = body["user"]["id"], case.id
        _later(ctx, lambda: _tell(client, case, user, runner.submit_invoice(ctx, case_id, user, parsed)))

    def submit_payout(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        parsed = parse_payout(submitted(view))
        if isinstance(parsed, dict):
            ack(response_action="errors", errors=parsed)
            return
        ack()
        case = _case(ctx, view.get("private_metadata", ""))
        if case is None or case.id is None:
            return
        user, case_id = body["user"]["id"], case.id
        _later(ctx, lambda: _tell(client, case, user, runner.submit_payout(ctx, case_id, user, parsed)))

    app.view(INVOICE_CALLBACK)(submit_invoice)
    app.view(PAYOUT_CALLBACK)(submit_payout)

    def simple(run: Callable[[ActionContext, int, str], Outcome]) -> Callable[..., None]:
        def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
            ack()
            case = _case(ctx, str(action.get("value", "")))
            if case is None or case.id is None:
                _say(respond, "That button is out of date.")
                return
            case_id, user = case.id, body["user"]["id"]
            _later(ctx, lambda: _say(respond, run(ctx, case_id, user)))

        return listener

    app.action(ActionId.NOTE_MOONCLERK.value)(simple(runner.note_moonclerk))
    app.action(runner.CONFIRM_PAYOUT)(simple(runner.confirm_payout))

    def on_ledger_action(run: Callable[[ActionContext, int, str, str], Outcome]) -> Callable[..., None]:
        def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
            ack()
            case = _case(ctx, str(action.get("value", "")))
            which = str(action.get("block_id", "")).rsplit(":", 1)[-1]
            if case is None or case.id is None or which not in {a.value for a in ActionId}:
                _say(respond, "That button is out of date.")
                return
            case_id, user = case.id, body["user"]["id"]
            _later(ctx, lambda: _say(respond, run(ctx, case_id, user, which)))

        return listener

    app.action(runner.RETRY_ACTION)(on_ledger_action(runner.retry))
    app.action(runner.RECONCILE_ACTION)(on_ledger_action(runner.reconcile))
