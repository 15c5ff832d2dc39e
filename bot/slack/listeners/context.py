"""What every listener is handed, written once as Bolt middleware: `interaction(context)`.

Before any listener runs, `Prepare` reads the interaction's value into its typed model (blocks.actions
says which element carries which), answers "out of date" itself when it does not parse, and puts an
`Interaction` in Bolt's `context`: the runtime, who acted, the value, one clock and one way to reply.
A listener is then a plain module-level function that acks and calls a plain function; tests call it
with a hand-built `BoltContext`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

from slack_bolt import BoltContext, BoltRequest, BoltResponse, Respond
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient
from sqlmodel import Session

from blocks.actions import VALUE_OF, ButtonValue, CaseRef
from bot import decisions
from bot.actions import authz
from bot.actions.runner import ActionContext
from bot.outcome import Outcome
from bot.runtime import Runtime
from bot.slack.errors import failure_answer
from storage.db import reader
from storage.models import Case

log = logging.getLogger(__name__)

KEY: Final = "interaction"
V = TypeVar("V", bound=CaseRef)


@dataclass(frozen=True)
class Desk:
    """The parts of the process every listener may use: the same for every request."""

    runtime: Runtime
    actions: ActionContext
    # Database-only changes after the ack (decisions): two at a time. They hold the GIL and (on SQLite)
    # queue for one write lock anyway, so more threads only take CPU from the acks of later clicks.
    changes: Executor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=2, thread_name_prefix="change"))


@dataclass(frozen=True)
class Reply:
    """The one way to answer the person who acted: through response_url when Slack gave one, else
    (after a modal, which has none) ephemerally in the card's thread."""

    respond: Respond | None
    client: WebClient | None
    desk: Desk
    user: str
    case_id: int | None

    def ephemeral(self, text: str) -> None:
        if self.respond is not None:
            self.respond(response_type="ephemeral", replace_original=False, text=text)
            return
        if self.client is None or self.case_id is None:
            return
        with Session(reader(self.desk.runtime.engine)) as session:
            case = session.get(Case, self.case_id)
        if case is None or case.slack_channel is None:
            return
        self.client.chat_postEphemeral(channel=case.slack_channel, user=self.user, text=text,
                                       thread_ts=case.slack_ts)

    def after_ack(self, text: str) -> None:
        """`ephemeral` for work after the ack, where an exception would reach no one: it is logged instead."""
        try:
            self.ephemeral(text)
        except Exception as unsent:  # Slack down, or the response_url expired
            log.error("an answer after the ack could not be sent: %s", unsent.__class__.__name__)

    def failed(self, error: Exception, doing: str) -> None:
        """Tell the person that `error` stopped what they asked for, under an error ID that is in the log."""
        self.after_ack(failure_answer(error, doing))

    def replace(self, message: dict[str, Any]) -> None:
        """Replace the message the control was on (`text`, optionally `blocks`), so it cannot be used twice."""
        if self.respond is not None:
            self.respond(replace_original=True, **message)


@dataclass(frozen=True)
class Interaction:
    desk: Desk
    user: str
    value: CaseRef | None
    reply: Reply

    def now(self) -> datetime:
        """The one clock listeners read (the money actions' clock, so tests can move both)."""
        return self.desk.actions.clock()

    def ref(self, model: type[V]) -> V:
        """The parsed value; the middleware guarantees its model for the listener's element."""
        if not isinstance(self.value, model):
            raise TypeError(f"{model.__name__} expected, the middleware parsed {self.value!r}")
        return self.value

    def permits(self, what: str) -> bool:
        return authz.permits(self.desk.actions.directory, self.user, what)

    def later(self, work: Callable[[], str]) -> None:
        """Run the slow part after the ack, off Bolt's listener threads, and tell the person its result.

        A provider call must never hold the threads that ack other clicks. Bolt's error handler never sees
        this work (it runs on another executor), so a failure here is told to the person the same way.
        """
        def run() -> None:
            try:
                text = work()
            except Exception as error:
                text = failure_answer(error, "work after the ack")
            self.reply.after_ack(text)

        self.desk.actions.background.submit(run)

    def change_later(self, work: Callable[[], Outcome]) -> None:
        """`later` for a change the card and its thread report: only a refusal is told to the person.

        Even a database-only change runs here: sixteen clicks at once would otherwise hold every Bolt
        listener thread and delay the acks of the clicks behind them.
        """
        def run() -> None:
            try:
                outcome = work()
            except Exception as error:
                self.reply.failed(error, "work after the ack")
                return
            if not outcome.ok:
                self.reply.after_ack(outcome.message)

        self.desk.changes.submit(run)


def interaction(context: BoltContext) -> Interaction:
    found = context[KEY]
    assert isinstance(found, Interaction)
    return found


def on_error(error: Exception, body: dict[str, Any], context: BoltContext,
             response: BoltResponse | None) -> BoltResponse | None:
    """Bolt's one error handler (`app.error`), for every listener and middleware.

    A `Refused` is answered with its own words, anything else with a generic answer; both carry an
    error ID that is also in the log line. Slack gets an empty 200 rather than a 500, which it would
    show as a bare "something went wrong" of its own.
    """
    kind = body.get("type") or ("command" if "command" in body else "request")
    doing = f"slack {kind} {_element_id(body) or body.get('command') or ''}".rstrip()
    found = context.get(KEY)
    if isinstance(found, Interaction):
        # After the HTTP ack, never before it: a response_url round trip could outlast Slack's 3 s.
        found.desk.actions.background.submit(found.reply.failed, error, doing)
    else:
        failure_answer(error, doing)  # the middleware failed first: there is no one to answer, only a log line
    # Bolt hands a response only while the request is still unanswered; after the ack it must get none.
    return BoltResponse(status=200, body="") if response is not None else None


def _element_id(body: dict[str, Any]) -> str:
    if body.get("type") == "block_actions":
        return str((body.get("actions") or [{}])[0].get("action_id"))
    if body.get("type") == "view_submission":
        return str((body.get("view") or {}).get("callback_id"))
    return ""


def parsed_value(body: dict[str, Any]) -> tuple[CaseRef | None, str | None]:
    """The interaction's value in its model, or what to answer when it should have one and does not parse."""
    model = VALUE_OF.get(_element_id(body))
    if model is None:
        return None, None
    try:
        if body.get("type") == "view_submission":
            return model.parse(str(body["view"].get("private_metadata") or "")), None
        return model.read(body["actions"][0]), None
    except ValueError:
        return None, model.stale


class Prepare(Middleware):
    """Global middleware: an `Interaction` in `context`, or the "out of date" answer without a listener."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def process(self, *, req: BoltRequest, resp: BoltResponse,
                next: Callable[[], BoltResponse]) -> BoltResponse | None:
        context = req.context
        value, stale = parsed_value(req.body)
        # Bolt hands a Respond even when the payload has no response_url (a modal's): it then cannot be used.
        respond = context.respond if context.respond is not None and context.respond.response_url else None
        reply = Reply(respond, context.client, self.desk, context.user_id or "",
                      value.case_id if value is not None else None)
        if stale is not None:
            if req.body.get("type") == "block_actions":
                # After the HTTP ack, never before it: a response_url round trip could outlast Slack's 3 s.
                self.desk.actions.background.submit(reply.after_ack, stale)
            return BoltResponse(status=200, body="")  # a view with unreadable metadata just closes
        user = context.user_id or ""
        element = _element_id(req.body)
        kind = req.body.get("type")
        if kind in _GUARDED and element in authz.FINANCE_ONLY and not authz.permits(self.desk.actions.directory,
                                                                                    user, element):
            self._answer_later(reply, lambda now: decisions.refuse_interaction(
                self.desk.runtime.engine, reply.case_id, user, element, authz.FINANCE_ONLY_REASON, now))
            return BoltResponse(status=200, body="")
        if kind == "block_actions" and isinstance(value, ButtonValue):
            message_ts = (req.body.get("container") or {}).get("message_ts")
            old_card = decisions.stale_card(self.desk.runtime.engine, value.case_id, value.v, message_ts)
            if old_card is not None:
                self._answer_later(reply, lambda now: decisions.stale_answer(
                    self.desk.runtime.engine, old_card, value.v, user, element, now))
                return BoltResponse(status=200, body="")
        context[KEY] = Interaction(self.desk, user, value, reply)
        return next()

    def _answer_later(self, reply: Reply, answer: Callable[[datetime], str]) -> None:
        """Audit and answer after the ack, never before it (see on_error)."""
        def run() -> None:
            try:
                text = answer(self.desk.actions.clock())
            except Exception as error:
                text = failure_answer(error, "a refusal")
            reply.after_ack(text)

        self.desk.actions.background.submit(run)


# Clicks and modal submissions: the slash command checks its own subcommands (some are open to all).
_GUARDED: Final = frozenset({"block_actions", "view_submission"})
