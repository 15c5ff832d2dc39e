"""manifest.yml against Slack's official v1 manifest schema, and against what the code really uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.blockkit import shared_path

ROOT = Path(__file__).resolve().parents[1]


def manifest() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert isinstance(data, dict)
    return data


def schema() -> dict[str, Any]:
    path = shared_path("reference/schemas/slack-app-manifest.schema.1.0.0.json")
    if not path.exists():
        pytest.skip(f"manifest schema not found at {path}")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_manifest_is_valid_against_slack_schema() -> None:
    jsonschema.validate(manifest(), schema())


def test_socket_mode_variant_is_valid() -> None:
    data = manifest()
    data["settings"]["socket_mode_enabled"] = True
    del data["settings"]["interactivity"]["request_url"]
    for command in data["features"].get("slash_commands", []):
        command.pop("url", None)
    jsonschema.validate(data, schema())


def test_schema_rejects_a_broken_manifest() -> None:
    data = manifest()
    data["display_information"]["name"] = "x" * 80
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema())


def test_scopes_are_the_ones_the_code_calls() -> None:
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    source = "\n".join(path.read_text() for path in (ROOT / "bot").rglob("*.py"))
    called = set(re.findall(r"client\.(chat_\w+|conversations_\w+|views_\w+|users_\w+|usergroups_\w+)", source))
    needs = {"chat_postMessage": "chat:write", "chat_update": "chat:write", "chat_postEphemeral": "chat:write",
             "conversations_history": "channels:history", "usergroups_users_list": "usergroups:read"}
    for method in called:
        if method in needs:
            assert needs[method] in scopes, f"{method} needs {needs[method]}"
    if "conversations_history" not in called:
        assert "channels:history" not in scopes
