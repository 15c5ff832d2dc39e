"""The one error policy of the Slack edge: what a person is told when something they asked for fails.

Each failure gets a short error ID that is both in the answer and in the log line, so a report of it can
be found. The log line names the exception and where it was raised, never the request's payload (it may
hold customer data) and never a database error's text (it carries the statement's parameters).
"""

from __future__ import annotations

import logging
import secrets
import traceback

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

log = logging.getLogger(__name__)


class Refused(Exception):
    """A typed refusal: str() is written for the person who acted and is shown to them as it is."""


def _described(error: Exception) -> str:
    if isinstance(error, DBAPIError):
        return f"{error.__class__.__name__} ({error.orig.__class__.__name__})"
    if isinstance(error, SQLAlchemyError):
        return error.__class__.__name__
    return f"{error.__class__.__name__}: {error}"


def _raised_at(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "unknown"


def failure_answer(error: Exception, doing: str) -> str:
    """Log `error` under a new error ID and return what to tell the person; `doing` names what failed."""
    error_id = secrets.token_hex(4)
    if isinstance(error, Refused):
        log.warning("%s refused (error ID %s): %s", doing, error_id, error)
        return f"{error} (error ID `{error_id}`)"
    log.error("%s failed (error ID %s): %s at %s", doing, error_id, _described(error), _raised_at(error))
    if isinstance(error, SQLAlchemyError):
        return (f"⚠️ finance-desk could not reach its database (error ID `{error_id}`). "
                "Check the card before trying again.")
    return f"⚠️ Something went wrong (error ID `{error_id}`). Check the card before trying again."
