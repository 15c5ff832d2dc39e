"""Test helper: check Slack payloads against the Block Kit JSON Schema and our own limit checks.

The schema (TightknitAI's slack-block-kit.schema.json, draft 2020-12) validates a top-level array of
blocks; modals and Home tabs are `$defs/modal_view` and `$defs/home_view`. What it cannot express
(50 blocks a message, unique IDs, the fallback text, cumulative size) is blocks.limits' job, so both
run here. The schema lives in shared/ beside the repository, not in it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from blocks.limits import check_message, check_view

SCHEMA_NAME = "slack-block-kit.schema.json"


# Slack's official schemas (MIT), copied from shared/reference/schemas with their licences: the tests
# must never skip schema checks because a checkout sits somewhere without shared/ beside it.
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def schema_path(name: str = SCHEMA_NAME) -> Path:
    return SCHEMAS / name


@cache
def _validators() -> dict[str, Draft202012Validator]:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    defs = schema["$defs"]

    def pointing_at(name: str) -> dict[str, Any]:
        # Same $id and $defs as the whole schema, so its internal "#/$defs/..." references resolve.
        return {"$schema": schema["$schema"], "$id": schema["$id"], "$defs": defs, "$ref": f"#/$defs/{name}"}

    checker = Draft202012Validator.FORMAT_CHECKER
    return {
        "blocks": Draft202012Validator(schema, format_checker=checker),
        "modal": Draft202012Validator(pointing_at("modal_view"), format_checker=checker),
        "home": Draft202012Validator(pointing_at("home_view"), format_checker=checker),
    }


def _describe(error: ValidationError) -> str:
    # A failed oneOf ("is not valid under any of the given schemas") hides the useful part in its
    # context; pick the deepest, most specific sub-error instead.
    specific = best_match(error.context) if error.context else error
    where = specific.json_path if specific is not error else error.json_path
    return f"{where}: {specific.message[:300]}"


def schema_errors(kind: str, instance: Any) -> list[str]:
    errors = sorted(_validators()[kind].iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [_describe(error) for error in errors]


def _fail(what: str, problems: list[str], payload: Any) -> None:
    listed = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    pytest.fail(f"{what}:\n  {listed}{more}\npayload: {json.dumps(payload, ensure_ascii=False)[:2000]}")


def assert_valid_message(message: dict[str, Any]) -> None:
    """Fail with readable reasons unless `message` is a postable chat.postMessage payload."""
    # Limits first: they need no schema, so they still run (and can fail) where shared/ is absent.
    problems = check_message(message)
    if problems:
        _fail("message breaks Slack limits", problems, message)
    if "blocks" not in message:
        return  # a text-only message has nothing for the schema to check
    problems = schema_errors("blocks", message["blocks"])
    if problems:
        _fail("message blocks do not match the Block Kit schema", problems, message)


def assert_valid_view(view: dict[str, Any]) -> None:
    """Fail with readable reasons unless `view` is a valid modal or Home tab."""
    problems = check_view(view)
    if problems:
        _fail("view breaks Slack limits", problems, view)
    kind = "home" if view.get("type") == "home" else "modal"
    problems = schema_errors(kind, view)
    if problems:
        _fail(f"{kind} view does not match the Block Kit schema", problems, view)
