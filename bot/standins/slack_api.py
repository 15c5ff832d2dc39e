"""A local Slack Web API that answers the methods finance-desk calls, with Slack's response shapes.

Point slack_sdk at it with `WebClient(token="xoxb-...", base_url=f"{standin.url}/api/")`; the
`/<method>` spelling (base_url=url + "/") works too. Behaviour follows docs/reference slack.md:
errors come back as HTTP 200 with `{"ok": false, "error": ...}`, except rate limiting, which is
HTTP 429 with `Retry-After` (§1.6).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.standins.base import Recorded, Reply, StandIn, _Handler, json_reply, text_reply

TEAM_ID = "T0FIN"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
APP_ID = "A0FIN"

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT_CHARS = 40_000

# Parameters that slack_sdk (or a hand-written form post) may send as JSON text inside a form body.
_JSON_PARAMS = frozenset({"blocks", "attachments", "metadata", "view", "user_auth_blocks"})

_CHANNEL_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived"})

Handler = Callable[[dict[str, Any]], Reply]


def _ok(**fields: Any) -> Reply:
    return json_reply({"ok": True, **fields})


def _err(error: str, **fields: Any) -> Reply:
    return json_reply({"ok": False, "error": error, **fields})


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def _ts_key(ts: str) -> tuple[int, int]:
    # "1700000000.5" (an `oldest` a client computed) is 1700000000.500000, not .000005.
    whole, _, frac = ts.partition(".")
    return int(whole), int(frac[:6].ljust(6, "0"))


def _cursor(ts: str) -> str:
    # Slack's cursors are opaque base64 ("next_ts:…" inside); positions are never offsets, so a message
    # posted between two pages cannot shift what the next page holds.
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _cursor_ts(cursor: str) -> tuple[int, int] | None:
    try:
        kind, _, ts = base64.b64decode(cursor, validate=True).decode().partition(":")
        return _ts_key(ts) if kind == "next_ts" else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


class _LostReply(Reply):
    """A reply the client never receives: the work was done, then the connection closed without an answer."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class SlackStandIn(StandIn):
    """Slack Web API stand-in.

    Constructor arguments:
      enforce_rate_limit: apply chat.postMessage's per-channel special tier (token bucket).
      rate_limit_burst / rate_limit_per_second: bucket capacity and refill rate.
      retry_after: seconds sent in the 429 `Retry-After` header.
      revoked_tokens: xoxb- tokens that answer `invalid_auth`.
      known_channels: if given, every other channel answers `channel_not_found`.
      usergroups: usergroup id -> member user ids, for usergroups.users.list.
      users: user id -> fields merged over the synthesised users.info profile.
      clock: monotonic clock used by the rate limiter (inject one to test refill without sleeping).
    """

    def __init__(
        self,
        *,
        enforce_rate_limit: bool = False,
        rate_limit_burst: int = 3,
        rate_limit_per_second: float = 1.0,
        retry_after: int = 1,
        revoked_tokens: Iterable[str] = (),
        known_channels: Iterable[str] | None = None,
        usergroups: Mapping[str, Iterable[str]] | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self._enforce_rate_limit = enforce_rate_limit
        self.rate_limit_burst = rate_limit_burst
        self.rate_limit_per_second = rate_limit_per_second
        self.retry_after = retry_after
        self.revoked_tokens: set[str] = set(revoked_tokens)
        self.known_channels: set[str] | None = None if known_channels is None else set(known_channels)
        self.usergroups: dict[str, list[str]] = {k: list(v) for k, v in (usergroups or {}).items()}
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        self._clock = clock
        # What Slack says the token was granted (the x-oauth-scopes header on every answer; auth.test here).
        self.granted_scopes = "chat:write,channels:history,groups:history,usergroups:read,commands"
        self._buckets: dict[str, _Bucket] = {}
        self._channel_errors: dict[str, str] = {}
        self._expired_triggers: set[str] = set()
        self._lost: dict[str, int] = {}
        self._last_ts_us = 0
        # channel -> every message (top-level and replies) in post order
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._home_views: dict[str, dict[str, Any]] = {}
        self._responses: list[tuple[str, dict[str, Any]]] = []
        self._methods: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._get_permalink,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroup_users,
        }

    # ----------------------------------------------------------------- configuration

    @property
    def enforce_rate_limit(self) -> bool:
        return self._enforce_rate_limit

    @enforce_rate_limit.setter
    def enforce_rate_limit(self, value: bool) -> None:
        with self._lock:
            self._enforce_rate_limit = value
            self._buckets.clear()

    def set_channel_error(self, channel: str, error: str | None) -> None:
        """Make every call naming `channel` fail with `error` (None restores the channel)."""
        if error is not None and error not in _CHANNEL_ERRORS:
            raise ValueError(f"unsupported channel error {error!r}; use one of {sorted(_CHANNEL_ERRORS)}")
        with self._lock:
            if error is None:
                self._channel_errors.pop(channel, None)
            else:
                self._channel_errors[channel] = error

    def expire_trigger(self, trigger_id: str) -> None:
        """Make views.open / views.push with this trigger_id answer `expired_trigger_id`."""
        with self._lock:
            self._expired_triggers.add(trigger_id)

    def lose_answers(self, method: str, times: int = 1) -> None:
        """Carry out the next `times` calls to `method` (e.g. "chat.postMessage"), then close the connection
        without answering: what a client sees when Slack took the request but the answer was lost."""
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._lost[method] = self._lost.get(method, 0) + times

    def add_message(self, channel: str, text: str, *, user: str = "U0PERSON", thread_ts: str | None = None) -> str:
        """A message some person posted (not the app), e.g. to make a channel busy; returns its ts."""
        with self._lock:
            ts = self._next_ts()
            message: dict[str, Any] = {"type": "message", "user": user, "team": TEAM_ID, "text": text, "ts": ts}
            if thread_ts:
                message["thread_ts"] = thread_ts
            self._messages.setdefault(channel, []).append(message)
            self._changed()
            return ts

    def response_url(self, name: str = "hook") -> str:
        """A response_url that lands in `responses`; put it in slash-command / action payloads."""
        return f"{self.url}/response_url/{name}"

    # ----------------------------------------------------------------- accessors

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages in `channel`, oldest first."""
        with self._lock:
            return [copy.deepcopy(m) for m in self._messages.get(channel, []) if self._is_top_level(m)]

    def all_messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message in `channel` including thread replies, in post order."""
        with self._lock:
            return copy.deepcopy(self._messages.get(channel, []))

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The parent message followed by its replies, oldest first."""
        with self._lock:
            return copy.deepcopy(self._thread_of(channel, ts))

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        with self._lock:
            found = self._find(channel, ts)
            if found is None:
                raise KeyError(f"no message {ts} in {channel}")
            return copy.deepcopy(found)

    def wait_for_messages(
        self, channel: str, count: int = 1, timeout: float = 5.0, *, include_replies: bool = False
    ) -> list[dict[str, Any]]:
        """Block until `channel` holds at least `count` messages; return them oldest first."""

        def check() -> list[dict[str, Any]] | None:
            found = [m for m in self._messages.get(channel, []) if include_replies or self._is_top_level(m)]
            return copy.deepcopy(found) if len(found) >= count else None

        def describe() -> str:
            have = len(self._messages.get(channel, []))
            return f"wanted {count} message(s) in {channel}, have {have}"

        return self.wait_until(check, timeout, describe)

    @property
    def ephemerals(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._ephemerals)

    @property
    def home_views(self) -> dict[str, dict[str, Any]]:
        """user_id -> the view last published to that user's Home tab."""
        with self._lock:
            return copy.deepcopy(self._home_views)

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        """view_id -> current state of every modal opened, pushed or updated."""
        with self._lock:
            return copy.deepcopy(self._views)

    @property
    def responses(self) -> list[dict[str, Any]]:
        """JSON bodies posted to any response_url path, in arrival order."""
        with self._lock:
            return [copy.deepcopy(body) for _, body in self._responses]

    def responses_for(self, name: str) -> list[dict[str, Any]]:
        """Bodies posted to `response_url(name)` only."""
        path = f"/response_url/{name}"
        with self._lock:
            return [copy.deepcopy(body) for p, body in self._responses if p == path]

    @property
    def rate_limited_count(self) -> int:
        """429s sent, whether from the enforced per-channel limit or from fail_next."""
        return self.status_count(429)

    # ----------------------------------------------------------------- base hooks

    def canonical_path(self, path: str) -> str:
        path = super().canonical_path(path if path.startswith("/") else "/" + path)
        if path.startswith(("/api/", "/response_url")):
            return path
        return "/api" + path

    def fault_body(self, status: int) -> Any:
        if status == 429:
            return {"ok": False, "error": "ratelimited"}
        if status == 503:
            return {"ok": False, "error": "service_unavailable"}
        return {"ok": False, "error": "fatal_error"}

    def fault_headers(self, status: int) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if status == 429 else {}

    def handle(self, request: Recorded) -> Reply:
        path = self.canonical_path(request.path)
        if path.startswith("/response_url"):
            return self._response_url(request, path)
        method = path.removeprefix("/api/")
        handler = self._methods.get(method)
        if handler is None:
            return _err("unknown_method")
        params = self._params(request)
        auth_error = self._check_auth(request, params)
        if auth_error:
            return _err(auth_error)
        reply = handler(params)
        if self._lost.get(method):
            self._lost[method] -= 1
            return _LostReply(reply.status, reply.body, reply.headers)
        return reply

    @staticmethod
    def _write(handler: _Handler, reply: Reply) -> None:
        if isinstance(reply, _LostReply):
            handler.close_connection = True  # no status line, no body: the client's read fails
            return
        StandIn._write(handler, reply)

    # ----------------------------------------------------------------- request plumbing

    @staticmethod
    def _params(request: Recorded) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if isinstance(request.json, dict):
            params.update(request.json)
        elif request.form:
            params.update(request.form)
        for key in _JSON_PARAMS & params.keys():
            value = params[key]
            if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    params[key] = value
        return params

    def _check_auth(self, request: Recorded, params: Mapping[str, Any]) -> str | None:
        header = request.headers.get("authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else params.get("token")
        if not token:
            return "not_authed"
        if not str(token).startswith("xoxb-") or token in self.revoked_tokens:
            return "invalid_auth"
        return None

    def _channel_problem(self, channel: Any) -> str | None:
        if not channel or not isinstance(channel, str):
            return "channel_not_found"
        if channel in self._channel_errors:
            return self._channel_errors[channel]
        if self.known_channels is not None and channel not in self.known_channels:
            return "channel_not_found"
        return None

    def _next_ts(self) -> str:
        # Real ts values are epoch seconds with a 6-digit suffix; they must be unique and sortable.
        now_us = int(time.time() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + 100)
        whole, frac = divmod(self._last_ts_us, 1_000_000)
        return f"{whole}.{frac:06d}"

    def _take_token(self, channel: str) -> bool:
        now = self._clock()
        bucket = self._buckets.get(channel)
        if bucket is None:
            bucket = self._buckets[channel] = _Bucket(float(self.rate_limit_burst), now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self.rate_limit_burst), bucket.tokens + elapsed * self.rate_limit_per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    @staticmethod
    def _is_top_level(message: Mapping[str, Any]) -> bool:
        thread_ts = message.get("thread_ts")
        return thread_ts is None or thread_ts == message["ts"]

    def _find(self, channel: str, ts: Any) -> dict[str, Any] | None:
        for message in self._messages.get(channel, []):
            if message["ts"] == ts:
                return message
        return None

    def _thread_of(self, channel: str, ts: str) -> list[dict[str, Any]]:
        found = self._find(channel, ts)
        if found is None:
            return []
        parent_ts = found.get("thread_ts") or found["ts"]
        return [m for m in self._messages.get(channel, []) if m["ts"] == parent_ts or m.get("thread_ts") == parent_ts]

    @staticmethod
    def _content_problem(params: Mapping[str, Any], *, need_content: bool) -> Reply | None:
        blocks = params.get("blocks")
        if need_content and not params.get("text") and not blocks and not params.get("attachments"):
            return _err("no_text")
        if blocks is not None and not isinstance(blocks, list):
            return _err("invalid_blocks_format")
        if isinstance(blocks, list) and len(blocks) > MAX_MESSAGE_BLOCKS:
            return _err(
                "invalid_blocks",
                response_metadata={"messages": [f"[ERROR] no more than {MAX_MESSAGE_BLOCKS} items allowed"]},
            )
        metadata = params.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and isinstance(metadata.get("event_type"), str)
            and isinstance(metadata.get("event_payload"), dict)
        ):
            return _err("invalid_metadata_format")
        return None

    @staticmethod
    def _apply_content(message: dict[str, Any], params: Mapping[str, Any]) -> list[str]:
        warnings: list[str] = []
        if "text" in params:
            text = str(params["text"] or "")
            if len(text) > MAX_TEXT_CHARS:
                text = text[:MAX_TEXT_CHARS]
                warnings.append("message_truncated")
            message["text"] = text
        for key in ("blocks", "attachments", "metadata"):
            if key in params and params[key] is not None:
                message[key] = copy.deepcopy(params[key])
        return warnings

    @staticmethod
    def _with_warnings(reply_fields: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
        if warnings:
            reply_fields["warning"] = ",".join(warnings)
            reply_fields["response_metadata"] = {
                "warnings": warnings,
                "messages": [
                    "[WARN] Your message was truncated but still posted. "
                    "The `text` field accepts up to 40,000 characters."
                ],
            }
        return reply_fields

    # ----------------------------------------------------------------- methods

    def _auth_test(self, params: dict[str, Any]) -> Reply:
        return json_reply(
            {"ok": True, "url": "https://finance.slack.com/", "team": "Finance", "user": "finance-desk",
             "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID},
            headers={"x-oauth-scopes": self.granted_scopes},
        )

    def _post_message(self, params: dict[str, Any]) -> Reply:
        channel = params.get("channel")
        problem = self._channel_problem(channel)
        if problem:
            return _err(problem)
        assert isinstance(channel, str)
        bad = self._content_problem(params, need_content=True)
        if bad is not None:
            return bad
        if self._enforce_rate_limit and not self._take_token(channel):
            return json_reply(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(self.retry_after)},
            )
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": "",
            "ts": ts,
        }
        warnings = self._apply_content(message, params)
        thread_ts = params.get("thread_ts")
        if thread_ts:
            parent = self._find(channel, thread_ts)
            # Replying to a reply lands in the same thread, keyed by the parent's ts.
            parent_ts = (parent.get("thread_ts") or parent["ts"]) if parent else str(thread_ts)
            message["thread_ts"] = parent_ts
            parent = self._find(channel, parent_ts)
            if parent is not None:
                parent["thread_ts"] = parent_ts
                parent["reply_count"] = int(parent.get("reply_count", 0)) + 1
                parent["latest_reply"] = ts
                parent["reply_users"] = [BOT_USER_ID]
                parent["reply_users_count"] = 1
        self._messages.setdefault(channel, []).append(message)
        self._changed()
        return json_reply(
            self._with_warnings({"ok": True, "channel": channel, "ts": ts, "message": copy.deepcopy(message)}, warnings)
        )

    def _update(self, params: dict[str, Any]) -> Reply:
        channel = params.get("channel")
        problem = self._channel_problem(channel)
        if problem:
            return _err(problem)
        assert isinstance(channel, str)
        message = self._find(channel, params.get("ts"))
        if message is None:
            return _err("message_not_found")
        bad = self._content_problem(params, need_content=False)
        if bad is not None:
            return bad
        warnings = self._apply_content(message, params)
        message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        self._changed()
        return json_reply(
            self._with_warnings(
                {
                    "ok": True,
                    "channel": channel,
                    "ts": message["ts"],
                    "text": message.get("text", ""),
                    "message": copy.deepcopy(message),
                },
                warnings,
            )
        )

    def _post_ephemeral(self, params: dict[str, Any]) -> Reply:
        channel = params.get("channel")
        problem = self._channel_problem(channel)
        if problem:
            return _err(problem)
        if not params.get("user"):
            return _err("user_not_found")
        bad = self._content_problem(params, need_content=True)
        if bad is not None:
            return bad
        ts = self._next_ts()
        entry: dict[str, Any] = {"channel": channel, "user": params["user"], "ts": ts, "text": ""}
        self._apply_content(entry, params)
        if params.get("thread_ts"):
            entry["thread_ts"] = params["thread_ts"]
        self._ephemerals.append(entry)
        self._changed()
        return _ok(message_ts=ts)

    def _get_permalink(self, params: dict[str, Any]) -> Reply:
        channel = params.get("channel")
        problem = self._channel_problem(channel)
        if problem:
            return _err(problem)
        assert isinstance(channel, str)
        ts = params.get("message_ts")
        if self._find(channel, ts) is None:
            return _err("message_not_found")
        return _ok(
            channel=channel,
            permalink=f"https://finance.slack.com/archives/{channel}/p{str(ts).replace('.', '')}",
        )

    def _history(self, params: dict[str, Any]) -> Reply:
        channel = params.get("channel")
        problem = self._channel_problem(channel)
        if problem:
            return _err(problem)
        assert isinstance(channel, str)
        rows = self._in_range([m for m in self._messages.get(channel, []) if self._is_top_level(m)], params)
        rows.sort(key=lambda m: _ts_key(m["ts"]), reverse=True)
        return self._page(rows, params, "messages", newest_first=True)

    def _replies(self, params: dict[str, Any]) -> Reply:
        channel = params.get("channel")
        problem = self._channel_problem(channel)
        if problem:
            return _err(problem)
        assert isinstance(channel, str)
        rows = self._thread_of(channel, str(params.get("ts", "")))
        if not rows:
            return _err("thread_not_found")
        # The parent comes first whatever the time range; the replies are filtered by it.
        parent, replies = rows[0], rows[1:]
        return self._page([parent, *self._in_range(replies, params)], params, "messages", newest_first=False)

    @staticmethod
    def _in_range(rows: list[dict[str, Any]], params: Mapping[str, Any]) -> list[dict[str, Any]]:
        inclusive = _truthy(params.get("inclusive", False))
        if params.get("oldest"):
            low = _ts_key(str(params["oldest"]))
            rows = [m for m in rows if _ts_key(m["ts"]) > low or (inclusive and _ts_key(m["ts"]) == low)]
        if params.get("latest"):
            high = _ts_key(str(params["latest"]))
            rows = [m for m in rows if _ts_key(m["ts"]) < high or (inclusive and _ts_key(m["ts"]) == high)]
        return rows

    @staticmethod
    def _page(rows: list[dict[str, Any]], params: Mapping[str, Any], key: str, *, newest_first: bool) -> Reply:
        """One page of `rows` (already in the order Slack returns them), after the cursor's position.

        Metadata comes back only with include_all_metadata, as Slack documents for both methods.
        """
        try:
            limit = max(1, min(int(params.get("limit") or 100), 999))
        except (TypeError, ValueError):
            return _err("invalid_arguments")
        if params.get("cursor"):
            start = _cursor_ts(str(params["cursor"]))
            if start is None:
                return _err("invalid_cursor")
            rows = [m for m in rows if (_ts_key(m["ts"]) <= start if newest_first else _ts_key(m["ts"]) >= start)]
        page, rest = copy.deepcopy(rows[:limit]), rows[limit:]
        if not _truthy(params.get("include_all_metadata", False)):
            for message in page:
                message.pop("metadata", None)
        return _ok(
            **{key: page},
            has_more=bool(rest),
            response_metadata={"next_cursor": _cursor(rest[0]["ts"]) if rest else ""},
        )

    def _new_view(self, view: Any, **extra: Any) -> dict[str, Any] | Reply:
        if not isinstance(view, dict):
            return _err("invalid_arguments")
        blocks = view.get("blocks")
        if not isinstance(blocks, list) or len(blocks) > MAX_VIEW_BLOCKS:
            return _err("invalid_arguments")
        view_id = "V" + secrets.token_hex(5).upper()
        stored: dict[str, Any] = {
            "id": view_id,
            "team_id": TEAM_ID,
            "state": {"values": {}},
            "hash": self._view_hash(),
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            **copy.deepcopy(view),
            **extra,
        }
        return stored

    def _view_hash(self) -> str:
        return f"{self._next_ts()}.{secrets.token_hex(4)}"

    def _trigger_problem(self, trigger_id: Any) -> Reply | None:
        if not trigger_id:
            return _err("invalid_arguments")
        if trigger_id in self._expired_triggers:
            return _err("expired_trigger_id")
        return None

    def _views_open(self, params: dict[str, Any]) -> Reply:
        problem = self._trigger_problem(params.get("trigger_id"))
        if problem is not None:
            return problem
        view = self._new_view(params.get("view"))
        if isinstance(view, Reply):
            return view
        self._views[view["id"]] = view
        self._changed()
        return _ok(view=copy.deepcopy(view))

    def _views_push(self, params: dict[str, Any]) -> Reply:
        return self._views_open(params)

    def _views_update(self, params: dict[str, Any]) -> Reply:
        view_id = params.get("view_id")
        external_id = params.get("external_id")
        current = self._views.get(str(view_id)) if view_id else None
        if current is None and external_id:
            current = next((v for v in self._views.values() if v.get("external_id") == external_id), None)
        if current is None:
            return _err("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            return _err("hash_conflict")
        new_view = params.get("view")
        if not isinstance(new_view, dict) or not isinstance(new_view.get("blocks"), list):
            return _err("invalid_arguments")
        current.update(copy.deepcopy(new_view))
        current["hash"] = self._view_hash()
        self._changed()
        return _ok(view=copy.deepcopy(current))

    def _views_publish(self, params: dict[str, Any]) -> Reply:
        user_id = params.get("user_id")
        if not user_id:
            return _err("invalid_arguments")
        previous = self._home_views.get(str(user_id))
        if previous is not None and params.get("hash") and params["hash"] != previous["hash"]:
            return _err("hash_conflict")
        view = self._new_view(params.get("view"))
        if isinstance(view, Reply):
            return view
        if view.get("type") != "home":
            return _err("invalid_arguments")
        if previous is not None:
            view["id"] = view["root_view_id"] = previous["id"]
        self._home_views[str(user_id)] = view
        self._changed()
        return _ok(view=copy.deepcopy(view))

    def _users_info(self, params: dict[str, Any]) -> Reply:
        user_id = params.get("user")
        if not user_id or not isinstance(user_id, str):
            return _err("user_not_found")
        name = user_id.lower()
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": name,
            "deleted": False,
            "is_bot": False,
            "tz": "America/New_York",
            "tz_label": "Eastern Standard Time",
            "tz_offset": -18000,
            "profile": {
                "email": f"{name}@finance.example.com",
                "real_name": name,
                "display_name": name,
            },
        }
        overrides = self.users.get(user_id, {})
        profile = {**user["profile"], **overrides.get("profile", {})}
        user.update(copy.deepcopy(dict(overrides)))
        user["profile"] = profile
        return _ok(user=user)

    def _usergroup_users(self, params: dict[str, Any]) -> Reply:
        group = params.get("usergroup")
        if not group or group not in self.usergroups:
            return _err("no_such_subteam")
        return _ok(users=list(self.usergroups[group]))

    def _response_url(self, request: Recorded, path: str) -> Reply:
        if request.method != "POST":
            return text_reply("invalid_method", status=405)
        body = request.json if isinstance(request.json, dict) else {"_raw": request.text}
        self._responses.append((path, copy.deepcopy(body)))
        self._changed()
        return text_reply("ok")
