"""Logging that cannot leak: every message and traceback is redacted on the way out."""

from __future__ import annotations

import logging
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


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; a Slack response_url is a bearer credential.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # APScheduler logs "Added job" for every wake of the workers, i.e. on every billing delivery.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
