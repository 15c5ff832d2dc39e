"""Every log line is redacted: the message, its arguments, a traceback and a stack."""

from __future__ import annotations

import io
import logging

import pytest

from bot.logs import RedactingFormatter

CARD = "4242 4242 4242 4242"


@pytest.fixture
def logged() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("tests.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_message_arguments_traceback_and_stack_are_redacted(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.info("caller read %s", CARD)
    try:
        raise ValueError(f"provider echoed 4111{chr(0x202F)}1111{chr(0x202F)}1111{chr(0x202F)}1111 back")
    except ValueError:
        logger.exception("failed for IBAN DE89 3704 0044 0532 0130 00")
    logger.warning("stack", stack_info=True, extra={"unused": CARD})
    text = stream.getvalue()
    assert "4242 4242" not in text and "[card ending 4242]" in text
    assert "1111\u202f1111" not in text and "1111 1111" not in text and "[card ending 1111]" in text
    assert "3704" not in text and "[redacted iban]" in text
    assert "Traceback" in text and "Stack (most recent call last)" in text


def test_the_time_prefix_is_kept_as_written(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.info("no numbers here")
    line = stream.getvalue().strip()
    assert line.endswith("INFO tests.logs: no numbers here")
    assert line[:4].isdigit()  # the year of asctime, untouched


def test_json_lines_parse_carry_ids_and_no_secret_or_card_number() -> None:
    import json

    from bot.logs import formatter_for, log_context

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for("json"))
    logger = logging.getLogger("tests.logs.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.info("caller read %s", CARD, extra={"call_id": "call_123", "case_id": 7})
    with log_context(case_id=9):
        try:
            raise ValueError("IBAN DE89 3704 0044 0532 0130 00 and card 4111 1111 1111 1111")
        except ValueError:
            logger.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert {"time", "level", "logger", "message"} <= first.keys()
    assert first["level"] == "INFO" and first["logger"] == "tests.logs.json"
    assert first["call_id"] == "call_123" and first["case_id"] == 7
    assert second["case_id"] == 9 and "Traceback" in second["exc_info"]
    text = stream.getvalue()
    assert "4242 4242" not in text and "4111 1111" not in text and "[card ending 4242]" in text
    assert "3704" not in text


def test_text_stays_the_default() -> None:
    from bot.logs import JsonFormatter, formatter_for

    assert not isinstance(formatter_for(None), JsonFormatter)
    assert isinstance(formatter_for("JSON"), JsonFormatter)
