"""The outbox worker: claims due rows with a lease in the database and sends them to Slack.

Exactly-once comes from the database, not from memory: a row is claimed by an atomic UPDATE, a
card's ts is stored once, and a send only completes the version it rendered. Every post carries its
row's key as message metadata, so a retry after an answer Slack sent but we never got finds the post
instead of making a second one. A 429 or 5xx delays a row; errors that retrying cannot fix stop it,
are logged once with the fix and degrade /healthz.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from sqlalchemy import Engine, func, literal, or_, update
from sqlmodel import Session, col, select

from blocks.card import case_card
from blocks.thread import thread_reply
from bot.polling import PollingWorker, new_worker_id
from storage.audit import Event, write_audit
from storage.db import session_scope
from storage.models import Case, OutboxMessage, utcnow
from storage.types import UTCDateTime

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
MAX_BACKOFF_SECONDS = 300
METADATA_EVENT = "finance_desk_outbox"
# A message's ts comes from Slack's clock, the first attempt's time from ours: the look-up for what an
# attempt may have posted starts this much earlier, so a small difference between the clocks hides nothing.
CLOCK_SKEW = timedelta(minutes=2)
PAGE_SIZE = 200  # Slack's advice for conversations.history and conversations.replies pages

# Errors no retry can fix, with what a Slack admin must do about each.
FATAL_ERRORS = {
    "channel_not_found": "FINANCE_CHANNEL {channel} does not exist or is private: use the channel ID (C…) "
    "and invite the app to it",
    "not_in_channel": "the app is not a member of {channel}: run /invite @finance-desk in that channel",
    "is_archived": "channel {channel} is archived: unarchive it or set FINANCE_CHANNEL to another channel",
    "invalid_auth": "SLACK_BOT_TOKEN is not valid: reinstall the app and copy the new xoxb- token",
    "not_authed": "SLACK_BOT_TOKEN is missing from requests: set it and restart",
    "token_revoked": "SLACK_BOT_TOKEN was revoked: reinstall the app and copy the new xoxb- token",
    "account_inactive": "the app's bot user was deactivated: reinstall the app",
    "missing_scope": "the app lacks a scope ({needed}): update it from manifest.yml and reinstall",
    "invalid_blocks": "Slack rejected the card's blocks: report this as a finance-desk bug",
    "msg_too_long": "Slack rejected the message as too long: report this as a finance-desk bug",
}


@dataclass
class ChannelPacer:
    """Keeps posts to one channel at Slack's ~1 message a second, sleeping rather than hitting 429."""

    interval: float = 1.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _next: dict[str, float] = field(default_factory=dict)

    def wait(self, channel: str) -> None:
        now = self.clock()
        ready = self._next.get(channel, now)
        if ready > now:
            self.sleep(ready - now)
        self._next[channel] = max(ready, now) + self.interval


def outbox_metadata(row: OutboxMessage, case: Case) -> dict[str, Any]:
    """The message metadata every outbox post carries: which row sent it, so a retry can find it."""
    return {"event_type": METADATA_EVENT, "event_payload": {"outbox_key": row.dedup_key, "call_id": case.call_id}}


def _is_ours(message: dict[str, Any], row: OutboxMessage, case: Case) -> bool:
    metadata = message.get("metadata") or {}
    return metadata.get("event_type") == METADATA_EVENT and metadata.get("event_payload") == outbox_metadata(
        row, case)["event_payload"]


class OutboxWorker(PollingWorker):
    thread_name, what = "outbox-worker", "outbox pass"

    def __init__(
        self,
        engine: Engine,
        client: WebClient,
        channel: str,
        *,
        on_problem: Callable[[str, str], None] = lambda key, message: None,
        on_recovered: Callable[[str], None] = lambda key: None,
        on_sent: Callable[[OutboxMessage, Case], None] = lambda row, case: None,
        clock: Callable[[], datetime] = utcnow,
        pacer: ChannelPacer | None = None,
        poll_seconds: float = 1.0,
        worker_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.client = client
        # Posts go through a copy that never re-sends on a dropped connection by itself: Slack may have
        # posted already, and only the worker looks (by the message's metadata) before posting again.
        self._poster = copy.copy(client)
        self._poster.retry_handlers = [handler for handler in client.retry_handlers
                                       if not isinstance(handler, ConnectionErrorRetryHandler)]
        self.channel = channel
        self.on_problem = on_problem
        self.on_recovered = on_recovered
        self.on_sent = on_sent
        self.clock = clock
        self.pacer = pacer or ChannelPacer()
        super().__init__(poll_seconds)
        self.worker_id = worker_id or new_worker_id()
        self._reported: set[str] = set()
        self._card_posted = False

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        self._requeue_failed()
        self._start_thread()

    def _requeue_failed(self) -> None:
        """On start, give rows stopped by a fatal error one more chance: the admin may have fixed it."""
        with session_scope(self.engine) as session:
            session.execute(
                update(OutboxMessage)
                .where(col(OutboxMessage.failed_at).is_not(None), col(OutboxMessage.sent_at).is_(None))
                .values(failed_at=None, due_at=self.clock())
            )

    # -- one pass ------------------------------------------------------------------------------
    def run_once(self, limit: int = 50) -> int:
        """Send what is due now; returns how many rows were processed."""
        now = self.clock()
        with Session(self.engine) as session:
            due = session.exec(
                select(OutboxMessage.id)
                .where(
                    col(OutboxMessage.sent_at).is_(None),
                    col(OutboxMessage.failed_at).is_(None),
                    col(OutboxMessage.due_at) <= now,
                    or_(col(OutboxMessage.claim_expires_at).is_(None), col(OutboxMessage.claim_expires_at) < now),
                )
                # Cards before thread replies: a reply needs its card's ts.
                .order_by(col(OutboxMessage.kind), col(OutboxMessage.due_at), col(OutboxMessage.id))
                .limit(limit)
            ).all()
        processed = 0
        for row_id in due:
            if self._stop.is_set():
                break
            assert row_id is not None
            row = self._claim(row_id)
            if row is not None:
                self._process(row)
                processed += 1
        return processed

    def _claim(self, row_id: int) -> OutboxMessage | None:
        now = self.clock()
        with session_scope(self.engine) as session:
            claimed = session.execute(
                update(OutboxMessage)
                .where(
                    col(OutboxMessage.id) == row_id,
                    col(OutboxMessage.sent_at).is_(None),
                    col(OutboxMessage.failed_at).is_(None),
                    col(OutboxMessage.due_at) <= now,
                    or_(col(OutboxMessage.claim_expires_at).is_(None), col(OutboxMessage.claim_expires_at) < now),
                )
                .values(claimed_by=self.worker_id, claim_expires_at=now + LEASE, attempts=OutboxMessage.attempts + 1,
                        first_attempt_at=func.coalesce(col(OutboxMessage.first_attempt_at),
                                                       literal(now, UTCDateTime())))
            ).rowcount  # type: ignore[attr-defined]
            if claimed != 1:
                return None  # another worker got it first
            return session.get(OutboxMessage, row_id)

    def _process(self, row: OutboxMessage) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            case = session.get(Case, row.case_id)
        if case is None:
            self._finish(row, error="case_missing")
            return
        try:
            if row.kind == "card":
                self._send_card(row, case)
            elif row.kind == "message":
                self._send_message(row, case)
            elif case.slack_ts is None:
                self._release(row, delay=timedelta(seconds=2), count_attempt=False)
                return
            else:
                self._send_thread(row, case)
        except SlackApiError as exc:
            self._slack_error(row, exc)
            return
        except Exception as exc:  # connection errors, timeouts: Slack may be down
            log.warning("slack unreachable for outbox row %s: %s", row.id, exc.__class__.__name__)
            self._release(row, delay=self._backoff(row.attempts))
            return
        self.on_sent(row, case)

    def _send_card(self, row: OutboxMessage, case: Case) -> None:
        message = case_card(case)
        channel = case.slack_channel or self.channel
        if case.slack_ts is None:
            # An earlier attempt may have posted and died before storing the ts: look before posting.
            found = self._already_posted(row, case, channel)
            if found:
                self._store_ts(case, channel, found)
        if case.slack_ts is None:
            self.pacer.wait(channel)
            response = self._poster.chat_postMessage(
                channel=channel,
                text=message["text"],
                blocks=message["blocks"],
                metadata=outbox_metadata(row, case),
                unfurl_links=False,
                unfurl_media=False,
            )
            self._store_ts(case, str(response["channel"]), str(response["ts"]))
            posted = "slack.card_posted"
        else:
            self.client.chat_update(channel=channel, ts=case.slack_ts, text=message["text"], blocks=message["blocks"])
            posted = "slack.card_updated"
        self._finish(row, audit=(posted, case, channel))
        if not self._card_posted:
            # A card reached the finance channel: whatever any process recorded before (and a restart
            # was the fix for) no longer holds, even though this worker never saw it.
            self._card_posted = True
            self.on_recovered("slack:*")
        self._recovered()

    def _send_thread(self, row: OutboxMessage, case: Case) -> None:
        assert case.slack_channel is not None and case.slack_ts is not None
        message = thread_reply(row.text or "")
        if row.blocks:
            message["blocks"] = row.blocks
        if not self._already_posted(row, case, case.slack_channel, thread_ts=case.slack_ts):
            self.pacer.wait(case.slack_channel)
            self._poster.chat_postMessage(
                channel=case.slack_channel, thread_ts=case.slack_ts, text=message["text"], blocks=message["blocks"],
                metadata=outbox_metadata(row, case),
            )
        self._finish(row, audit=("slack.thread_reply_posted", case, case.slack_channel))
        self._recovered()

    def _send_message(self, row: OutboxMessage, case: Case) -> None:
        channel = row.channel or self.channel
        message = thread_reply(row.text or "")
        if row.blocks:
            message["blocks"] = row.blocks
        if not self._already_posted(row, case, channel):
            self.pacer.wait(channel)
            self._poster.chat_postMessage(channel=channel, text=message["text"], blocks=message["blocks"],
                                         metadata=outbox_metadata(row, case), unfurl_links=False, unfurl_media=False)
        self._finish(row, audit=("slack.message_posted", case, channel))
        self._recovered()

    def _already_posted(self, row: OutboxMessage, case: Case, channel: str, thread_ts: str | None = None
                        ) -> str | None:
        """The ts of the message an earlier attempt at this row posted, if Slack took it but the answer
        was lost (a timeout, a 5xx, the process dying); None when this is the first attempt or none landed.

        Only the messages since the first attempt are read, page by page: a thread's replies, or the
        channel's history from that moment on, however busy the channel has been since. A failed look-up
        raises, and the row is retried, rather than risk posting twice.
        """
        if row.attempts <= 1 or row.first_attempt_at is None:
            return None
        oldest = f"{(row.first_attempt_at - CLOCK_SKEW).timestamp():.6f}"
        cursor: str | None = None
        while True:
            if thread_ts is None:
                page = self.client.conversations_history(channel=channel, oldest=oldest, limit=PAGE_SIZE,
                                                         include_all_metadata=True, cursor=cursor)
            else:
                page = self.client.conversations_replies(channel=channel, ts=thread_ts, oldest=oldest,
                                                         limit=PAGE_SIZE, include_all_metadata=True, cursor=cursor)
            for message in page.get("messages") or []:
                if _is_ours(message, row, case):
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not page.get("has_more") or cursor is None:
                return None

    def _store_ts(self, case: Case, channel: str, ts: str) -> None:
        with session_scope(self.engine) as session:
            # Only the first post counts: never overwrite a ts another worker already stored.
            session.execute(
                update(Case)
                .where(col(Case.id) == case.id, col(Case.slack_ts).is_(None))
                .values(slack_channel=channel, slack_ts=ts)
            )
        case.slack_channel, case.slack_ts = channel, ts

    # -- bookkeeping ---------------------------------------------------------------------------
    def _finish(self, row: OutboxMessage, error: str | None = None,
                audit: tuple[str, Case, str] | None = None) -> None:
        now = self.clock()
        with session_scope(self.engine) as session:
            if audit is not None:
                action, case, channel = audit
                # Every message posted is part of the audit trail: what went where, for which case.
                write_audit(session, case, "finance-desk", now,
                            Event(action, reason=row.kind, target=f"slack:{channel}",
                                  detail={"outbox_id": row.id, "text": (row.text or "")[:500]}))
            done = session.execute(
                update(OutboxMessage)
                .where(
                    col(OutboxMessage.id) == row.id,
                    col(OutboxMessage.claimed_by) == self.worker_id,
                    col(OutboxMessage.version) == row.version,
                )
                .values(
                    sent_at=now if error is None else None,
                    failed_at=now if error is not None else None,
                    last_error=error,
                    claimed_by=None,
                    claim_expires_at=None,
                )
            ).rowcount  # type: ignore[attr-defined]
            if done != 1:
                # The case changed while we sent an older render: release so the newer one goes out.
                session.execute(
                    update(OutboxMessage)
                    .where(col(OutboxMessage.id) == row.id, col(OutboxMessage.claimed_by) == self.worker_id)
                    .values(claimed_by=None, claim_expires_at=None, due_at=now)
                )

    def _release(self, row: OutboxMessage, delay: timedelta, count_attempt: bool = True) -> None:
        with session_scope(self.engine) as session:
            values: dict[str, Any] = {"claimed_by": None, "claim_expires_at": None, "due_at": self.clock() + delay}
            if not count_attempt:
                values["attempts"] = OutboxMessage.attempts - 1
            session.execute(
                update(OutboxMessage)
                .where(col(OutboxMessage.id) == row.id, col(OutboxMessage.claimed_by) == self.worker_id)
                .values(**values)
            )

    def _slack_error(self, row: OutboxMessage, exc: SlackApiError) -> None:
        response = exc.response
        error = str(response.get("error", "unknown_error")) if isinstance(response.data, dict) else "unknown_error"
        if response.status_code == 429 or error == "ratelimited":
            retry_after = int(response.headers.get("retry-after", response.headers.get("Retry-After", 1)) or 1)
            log.info("slack rate limited outbox row %s; retrying in %ss", row.id, retry_after)
            self._release(row, delay=timedelta(seconds=retry_after), count_attempt=False)
            return
        if response.status_code >= 500:
            self._release(row, delay=self._backoff(row.attempts))
            return
        fix = FATAL_ERRORS.get(error)
        if fix is None:
            fix = f"Slack answered {error}; the message is kept and will be retried after a restart"
        fix = fix.format(channel=self.channel, needed=response.get("needed", "see the Slack error"))
        if error not in self._reported:
            self._reported.add(error)
            log.error("slack error %s: %s", error, fix)
        self.on_problem(f"slack:{error}", f"Slack: {error}: {fix}")
        self._finish(row, error=error)

    def _recovered(self) -> None:
        if self._reported:
            for error in self._reported:
                self.on_recovered(f"slack:{error}")
            self._reported.clear()

    @staticmethod
    def _backoff(attempts: int) -> timedelta:
        return timedelta(seconds=min(MAX_BACKOFF_SECONDS, 2 ** max(0, attempts - 1)))
