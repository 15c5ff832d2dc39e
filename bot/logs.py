"""Logging that cannot leak: every message and traceback is redacted on the way out."""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType

from bot.triage.redact import redact

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class RedactingFormatter(logging.Formatter):
    # The message, the traceback and the stack are redacted apart from the line's prefix: the time,
    # level and logger name are ours, and the digits of the time would send every line through the
    # full redactor instead of its no-number fast path.
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = redact(record.message).text
        return super().formatMessage(record)

    def formatException(self, ei: _ExcInfo) -> str:
        return redact(super().formatException(ei)).text

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info)).text


# The call and case a thread is working on, for JSON lines logged without extra={"call_id": …}.
_context: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar("log_context", default=None)
_CONTEXT_KEYS = ("call_id", "case_id")


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """`with log_context(case_id=7): …`: every JSON line logged inside carries case_id."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(RedactingFormatter):
    """LOG_FORMAT=json: one object a line (time, level, logger, message, call_id/case_id when known,
    exc_info/stack_info), each text redacted exactly as the text format redacts it."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = redact(record.getMessage()).text
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.message,
        }
        known = _context.get() or {}
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None) or known.get(key)
            if isinstance(value, int | str) and not isinstance(value, bool):
                # Our own IDs, yet still redacted: a DialNexa call ID is outside text.
                line[key] = value if isinstance(value, int) else redact(value).text
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def formatter_for(log_format: str | None) -> logging.Formatter:
    if (log_format or "text").strip().lower() == "json":
        return JsonFormatter()
    return RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def setup_logging(level: int = logging.INFO, log_format: str | None = None) -> None:
    """`log_format` "json" or "text"; by default the LOG_FORMAT environment variable, else text."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_for(log_format if log_format is not None else os.environ.get("LOG_FORMAT")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; a Slack response_url is a bearer credential.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # APScheduler logs "Added job" for every wake of the workers, i.e. on every billing delivery.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
