"""Send to the customer: the card's button opens the modal; its submit queues the email (bot.mail)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from blocks.actions import ActionId, ButtonValue, CallbackId, MailValue
from blocks.mail import send_modal
from blocks.modals import submitted
from bot.mail import send
from bot.mail.send import MailContext, Prepared
from bot.slack.listeners.context import Interaction, interaction
from storage.db import reader
from storage.models import Case


def mail_context(it: Interaction) -> MailContext:
    runtime, actions = it.desk.runtime, it.desk.actions
    wake = runtime.wake_workers
    return MailContext(engine=runtime.engine, directory=actions.directory, moonclerk=actions.moonclerk,
                       mail_from=runtime.settings.mail_from if runtime.settings.smtp_url is not None else None,
                       clock=actions.clock, wake=wake if wake is not None else (lambda: None))


def send_to_customer(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    it = interaction(context)
    ref = it.ref(ButtonValue)
    ctx = mail_context(it)
    prepared = send.prepare(ctx, ref.case_id, it.user)
    if not isinstance(prepared, Prepared):
        it.reply.ephemeral(prepared.message)
        return
    from_db = _case(ctx, ref.case_id)
    if from_db is None:
        it.reply.ephemeral(ButtonValue.stale)
        return
    value = MailValue(case_id=ref.case_id, call_id=ref.call_id, v=ref.v, n=prepared.n)
    client.views_open(trigger_id=body["trigger_id"], view=send_modal(
        from_db, value, subject=prepared.draft.subject, body=prepared.draft.body, document=prepared.draft.document))


def _case(ctx: MailContext, case_id: int) -> Case | None:
    with Session(reader(ctx.engine)) as session:
        return session.get(Case, case_id)


def submit_send_to_customer(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    parsed = send.parse_form(submitted(view))
    if isinstance(parsed, dict):  # refused in place, beside the field
        ack(response_action="errors", errors=parsed)
        return
    ack()
    it = interaction(context)
    ref = it.ref(MailValue)
    ctx = mail_context(it)
    it.later(lambda: send.submit(ctx, ref.case_id, ref.n, it.user, parsed).message)


ACTIONS: dict[str, Callable[..., None]] = {ActionId.SEND_TO_CUSTOMER: send_to_customer}
VIEWS: dict[str, Callable[..., None]] = {CallbackId.SEND_TO_CUSTOMER: submit_send_to_customer}


def register(app: App) -> None:
    for action_id, listener in ACTIONS.items():
        app.action(action_id)(listener)
    for callback_id, listener in VIEWS.items():
        app.view(callback_id)(listener)
