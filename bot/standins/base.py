"""A tiny real-HTTP server that stand-ins for third-party APIs build on.

Stand-ins speak real HTTP on 127.0.0.1 so the code under test exercises its actual client stack
(urllib inside slack_sdk, httpx for the payment providers): timeouts, headers, retries and JSON
encoding all behave as they would against the real service.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

T = TypeVar("T")

FaultBody = bytes | str | Mapping[str, Any] | list[Any] | None


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in received it. `path` excludes the query string."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any | None
    form: dict[str, str] | None
    at: float
    query: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json_default(value: object) -> object:
    # Money stays exact end to end: a Decimal is written as its string form, never via float.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_reply(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    body = json.dumps(payload, default=_json_default).encode()
    return Reply(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def text_reply(text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Reply:
    return Reply(status, text.encode(), {"Content-Type": content_type})


@dataclass
class _Fault:
    status: int
    body: FaultBody
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog of 5 drops connections when a lookup reads 10 records at
    # once; the dropped client retries a second later, which looks like a slow app.
    request_queue_size = 128
    standin: StandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out and hang up are an expected scenario, not noise for stderr.
        return


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 closes every connection after its response, so once stop() returns no pooled
    # keep-alive connection can still reach a lingering handler thread.
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        self.server.standin._serve_one(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""


class StandIn:
    """Base class: subclasses implement `handle()` and keep their state under `self._lock`."""

    def __init__(self, *, port: int = 0) -> None:
        self._port = port
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._requests: list[Recorded] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._statuses: Counter[tuple[str, int]] = Counter()
        self._errors: list[str] = []

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.standin = self
        self._server = server
        self._serve_thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{server.server_address[1]}",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._serve_thread
        if server is None:
            return
        # Wakes handlers parked in delay() so a slow path cannot hold the process open.
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._serve_thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- request log

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Exceptions raised inside handle(); each was answered with a 500."""
        with self._lock:
            return list(self._errors)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._statuses.clear()

    def canonical_path(self, path: str) -> str:
        """Map equivalent spellings of a route onto one key (used by faults, delays and calls)."""
        path = urlsplit(path).path or "/"
        return path.rstrip("/") or "/"

    def calls(self, path: str, method: str | None = None) -> list[Recorded]:
        key = self.canonical_path(path)
        with self._lock:
            return [
                r
                for r in self._requests
                if self.canonical_path(r.path) == key and (method is None or r.method == method.upper())
            ]

    def status_count(self, status: int, path: str | None = None) -> int:
        """How many responses with this status were sent (optionally for one path)."""
        with self._lock:
            if path is None:
                return sum(n for (_, s), n in self._statuses.items() if s == status)
            return self._statuses[(self.canonical_path(path), status)]

    def wait_for(
        self,
        predicate: str | Callable[[Recorded], bool],
        timeout: float = 5.0,
        *,
        count: int = 1,
    ) -> list[Recorded]:
        """Block until at least `count` recorded requests match; return all that match.

        A string predicate matches a path (same rules as `calls`). Requests are recorded on
        arrival, before any delay, so an in-flight slow request is already visible.
        """
        matches: Callable[[Recorded], bool]
        if isinstance(predicate, str):
            key = self.canonical_path(predicate)
            matches = lambda r: self.canonical_path(r.path) == key  # noqa: E731
            label = repr(predicate)
        else:
            matches = predicate
            label = getattr(predicate, "__name__", repr(predicate))

        def check() -> list[Recorded] | None:
            found = [r for r in self._requests if matches(r)]
            return found if len(found) >= count else None

        def describe() -> str:
            seen = [f"{r.method} {r.path}" for r in self._requests[-10:]]
            return f"wanted {count} request(s) matching {label}; saw {len(self._requests)} request(s), latest: {seen}"

        return self.wait_until(check, timeout, describe)

    def wait_until(
        self,
        check: Callable[[], T | None],
        timeout: float = 5.0,
        message: str | Callable[[], str] = "condition not met",
    ) -> T:
        """Block until `check()` returns something other than None or False; return that value.

        `check` runs under the stand-in's lock and is re-evaluated whenever a request arrives or
        state changes, so callers never sleep-poll.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = check()
                if result is not None and result is not False:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    text = message() if callable(message) else message
                    raise TimeoutError(f"{type(self).__name__}: {text} (after {timeout:.1f}s)")
                self._cond.wait(remaining)

    def _changed(self) -> None:
        """Subclasses call this after mutating state that someone may be waiting on."""
        with self._cond:
            self._cond.notify_all()

    # ----------------------------------------------------------------- fault injection

    def fail_next(
        self,
        path: str,
        status: int,
        body: FaultBody = None,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests to `path` with a canned response instead of handling them.

        A body of None uses the subclass's default error body for that status.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        key = self.canonical_path(path)
        with self._lock:
            queue = self._faults.setdefault(key, deque())
            for _ in range(times):
                queue.append(_Fault(status, body, dict(headers or {})))

    def delay(self, path: str, seconds: float | None) -> None:
        """Make every request to `path` wait `seconds` before it is answered; 0 or None clears."""
        key = self.canonical_path(path)
        with self._lock:
            if seconds:
                self._delays[key] = float(seconds)
            else:
                self._delays.pop(key, None)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._delays.clear()

    def pending_faults(self, path: str) -> int:
        with self._lock:
            return len(self._faults.get(self.canonical_path(path), ()))

    def fault_body(self, status: int) -> Any:
        return {"error": f"injected fault {status}"}

    def fault_headers(self, status: int) -> dict[str, str]:
        return {}

    # ----------------------------------------------------------------- subclass hook

    def handle(self, request: Recorded) -> Reply:
        raise NotImplementedError

    def decode_json(self, body: bytes) -> Any:
        """Parse a JSON request body; stand-ins that deal in money override this to use Decimal."""
        return json.loads(body)

    # ----------------------------------------------------------------- plumbing

    def _parse(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Recorded:
        parts = urlsplit(raw_path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        parsed_json: Any | None = None
        form: dict[str, str] | None = None
        content_type = headers.get("content-type", "")
        # Sniff rather than trust Content-Type: slack_sdk labels form bodies as JSON.
        if body.lstrip()[:1] in (b"{", b"["):
            with contextlib.suppress(ValueError):
                parsed_json = self.decode_json(body)
        if parsed_json is None and body and ("x-www-form-urlencoded" in content_type or b"=" in body):
            with contextlib.suppress(ValueError):
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        return Recorded(
            method=method,
            path=parts.path or "/",
            headers=headers,
            body=body,
            json=parsed_json,
            form=form,
            at=time.time(),
            query=query,
        )

    def _serve_one(self, handler: _Handler) -> None:
        try:
            body = handler.read_body()
        except (OSError, ValueError):
            return
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = self._parse(handler.command, handler.path, headers, body)
        key = self.canonical_path(request.path)
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()
            pause = self._delays.get(key, 0.0)
        if pause:
            self._stopping.wait(pause)
        with self._lock:
            queue = self._faults.get(key)
            fault = queue.popleft() if queue else None
            if fault is not None:
                reply = self._fault_reply(fault)
            else:
                try:
                    reply = self.handle(request)
                except Exception as exc:  # a bug in a stand-in must surface in tests, not hang them
                    self._errors.append(f"{request.method} {request.path}: {exc!r}")
                    reply = json_reply({"error": f"stand-in error: {exc!r}"}, status=500)
            self._statuses[(key, reply.status)] += 1
            self._cond.notify_all()
        self._write(handler, reply)

    def _fault_reply(self, fault: _Fault) -> Reply:
        body = fault.body if fault.body is not None else self.fault_body(fault.status)
        headers = {**self.fault_headers(fault.status), **fault.headers}
        if isinstance(body, bytes):
            reply = Reply(fault.status, body, {"Content-Type": "application/octet-stream"})
        elif isinstance(body, str):
            reply = text_reply(body, fault.status)
        else:
            reply = json_reply(body, fault.status)
        reply.headers.update(headers)
        return reply

    @staticmethod
    def _write(handler: _Handler, reply: Reply) -> None:
        try:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(reply.body)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(reply.body)
        except OSError:
            # The client gave up (e.g. its timeout fired during delay()); nothing left to tell it.
            return
