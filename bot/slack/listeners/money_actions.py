"""Provider-action buttons and modals: ack at once, then call bot.actions.runner.

A slow provider never delays the ack: Bolt returns the HTTP answer as soon as ack() runs, and the
provider call happens afterwards on the provider executor (`Interaction.later`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from blocks.actions import ActionId, ButtonValue, CallbackId, ControlId
from blocks.modals import invoice_modal, payout_modal, refund_loading_modal, submitted
from bot.actions import refunds, runner
from bot.actions.forms import parse_invoice, parse_payout, parse_refund
from bot.actions.runner import ActionContext
from bot.outcome import Outcome
from bot.slack.listeners.context import Interaction, interaction
from storage.db import reader
from storage.models import Case

Check = Callable[[ActionContext, Case, str], str | None]


def _case(it: Interaction) -> Case | None:
    with Session(reader(it.desk.runtime.engine)) as session:
        return session.get(Case, it.ref(ButtonValue).case_id)


def _open_modal(it: Interaction, trigger_id: str, client: WebClient, check: Check,
                modal: Callable[[Case], dict[str, Any]]) -> None:
    case = _case(it)
    if case is None:
        it.reply.ephemeral(ButtonValue.stale)
        return
    problem = check(it.desk.actions, case, it.user)
    if problem:
        it.reply.ephemeral(problem)
        return
    # trigger_id expires 3 s after the click: open the modal before anything slow.
    client.views_open(trigger_id=trigger_id, view=modal(case))


def invoice_poof(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    _open_modal(interaction(context), body["trigger_id"], client, runner.check_invoice, invoice_modal)


def payout_poof(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    _open_modal(interaction(context), body["trigger_id"], client, runner.check_payout, payout_modal)


def refund_stripe(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    it = interaction(context)
    case = _case(it)
    if case is None:
        it.reply.ephemeral(ButtonValue.stale)
        return
    problem = refunds.check_refund(it.desk.actions, case, it.user)
    if problem:
        it.reply.ephemeral(problem)
        return
    # The trigger expires 3 s after the click and Stripe may be slow: a waiting modal opens now, and the
    # charges found replace it once Stripe answers.
    view_id = client.views_open(trigger_id=body["trigger_id"], view=refund_loading_modal(case))["view"]["id"]

    def fill() -> None:
        try:
            client.views_update(view_id=view_id, view=refunds.modal(it.desk.actions, case))
        except Exception as error:
            it.reply.failed(error, "looking up the charge in Stripe")

    it.desk.actions.background.submit(fill)


def _submit(ack: Ack, view: dict[str, Any], context: BoltContext, parse: Callable[[dict[str, Any]], Any],
            run: Callable[[ActionContext, int, str, Any], Outcome]) -> None:
    parsed = parse(submitted(view))
    if isinstance(parsed, dict):  # the form's errors, shown beside their fields
        ack(response_action="errors", errors=parsed)
        return
    ack()
    it = interaction(context)
    case_id = it.ref(ButtonValue).case_id
    it.later(lambda: run(it.desk.actions, case_id, it.user, parsed).message)


def submit_invoice(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    _submit(ack, view, context, parse_invoice, runner.submit_invoice)


def submit_payout(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    _submit(ack, view, context, parse_payout, runner.submit_payout)


def submit_refund(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    _submit(ack, view, context, parse_refund, refunds.submit_refund)


def _run_later(it: Interaction, run: Callable[[ActionContext, int, str], Outcome]) -> None:
    if _case(it) is None:
        it.reply.ephemeral(ButtonValue.stale)
        return
    case_id = it.ref(ButtonValue).case_id
    it.later(lambda: run(it.desk.actions, case_id, it.user).message)


def note_moonclerk(ack: Ack, context: BoltContext) -> None:
    ack()
    _run_later(interaction(context), runner.note_moonclerk)


def confirm_payout(ack: Ack, context: BoltContext) -> None:
    ack()
    _run_later(interaction(context), runner.confirm_payout)


def _ledger_later(it: Interaction, action: dict[str, Any],
                  run: Callable[[ActionContext, int, str, str], Outcome]) -> None:
    # The ledger line's block ID ends with the action it is about (invoice_poof or payout_poof).
    which = str(action.get("block_id", "")).rsplit(":", 1)[-1]
    if _case(it) is None or which not in set(ActionId):
        it.reply.ephemeral(ButtonValue.stale)
        return
    case_id = it.ref(ButtonValue).case_id
    it.later(lambda: run(it.desk.actions, case_id, it.user, which).message)


def _retry(ctx: ActionContext, case_id: int, user: str, action: str) -> Outcome:
    if action == ActionId.REFUND_STRIPE:
        return refunds.retry_refund(ctx, case_id, user)
    return runner.retry(ctx, case_id, user, action)


def _reconcile(ctx: ActionContext, case_id: int, user: str, action: str) -> Outcome:
    if action == ActionId.REFUND_STRIPE:
        return refunds.reconcile_refund(ctx, case_id, user)
    return runner.reconcile(ctx, case_id, user, action)


def retry_action(ack: Ack, action: dict[str, Any], context: BoltContext) -> None:
    ack()
    _ledger_later(interaction(context), action, _retry)


def reconcile_action(ack: Ack, action: dict[str, Any], context: BoltContext) -> None:
    ack()
    _ledger_later(interaction(context), action, _reconcile)


ACTIONS: dict[str, Callable[..., None]] = {
    ActionId.INVOICE_POOF: invoice_poof,
    ActionId.PAYOUT_POOF: payout_poof,
    ActionId.NOTE_MOONCLERK: note_moonclerk,
    ActionId.REFUND_STRIPE: refund_stripe,
    ControlId.CONFIRM_PAYOUT: confirm_payout,
    ControlId.RETRY_ACTION: retry_action,
    ControlId.RECONCILE_ACTION: reconcile_action,
}
VIEWS: dict[str, Callable[..., None]] = {
    CallbackId.INVOICE_POOF: submit_invoice,
    CallbackId.PAYOUT_POOF: submit_payout,
    CallbackId.REFUND_STRIPE: submit_refund,
}


def register(app: App) -> None:
    for action_id, listener in ACTIONS.items():
        app.action(action_id)(listener)
    for callback_id, listener in VIEWS.items():
        app.view(callback_id)(listener)
