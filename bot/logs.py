"""Logging that cannot leak: every formatted line, tracebacks included, is redacted on the way out."""

from __future__ import annotations

import logging

from bot.triage.redact import redact


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record)).text


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; a Slack response_url is a bearer credential.
    logging.getLogger("httpx").setLevel(logging.WARNING)
