"""manifest.yml against Slack's official v1 manifest schema, and against what the code really uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.blockkit import schema_path

ROOT = Path(__file__).resolve().parents[1]


def manifest() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert isinstance(data, dict)
    return data


def schema() -> dict[str, Any]:
    return json.loads(schema_path("slack-app-manifest.schema.1.0.0.json").read_text())  # type: ignore[no-any-return]


def test_manifest_is_valid_against_slack_schema() -> None:
    jsonschema.validate(manifest(), schema())


def test_schema_rejects_a_broken_manifest() -> None:
    data = manifest()
    data["display_information"]["name"] = "x" * 80
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema())


# Every Web API method the code calls, with the bot scopes it needs (api.slack.com/methods).
# conversations.history and .replies need channels:history in a public channel and groups:history in a private one.
METHOD_SCOPES: dict[str, set[str]] = {
    "chat_postMessage": {"chat:write"}, "chat_update": {"chat:write"}, "chat_postEphemeral": {"chat:write"},
    "conversations_history": {"channels:history", "groups:history"},
    "conversations_replies": {"channels:history", "groups:history"}, "usergroups_users_list": {"usergroups:read"},
    "views_open": set(), "views_update": set(), "views_publish": set(),
}


def test_scopes_are_exactly_the_ones_the_code_uses() -> None:
    data = manifest()
    declared = set(data["oauth_config"]["scopes"]["bot"])
    source = "\n".join(path.read_text() for path in (ROOT / "bot").rglob("*.py"))
    called = set(re.findall(r"client\.((?:chat|conversations|views|users|usergroups|reactions|files)_\w+)\(", source))
    unknown = called - METHOD_SCOPES.keys()
    assert not unknown, f"add these Web API methods and their scopes to METHOD_SCOPES: {unknown}"
    needed = set().union(*(METHOD_SCOPES[method] for method in called))
    if data["features"].get("slash_commands"):
        needed.add("commands")
    assert declared == needed, f"declared but unused: {declared - needed}; used but not declared: {needed - declared}"


def test_socket_mode_variant_has_no_urls() -> None:
    data = manifest()
    data["settings"]["socket_mode_enabled"] = True
    del data["settings"]["interactivity"]["request_url"]
    del data["settings"]["event_subscriptions"]["request_url"]
    for command in data["features"].get("slash_commands", []):
        command.pop("url", None)
    jsonschema.validate(data, schema())
    assert "https://" not in json.dumps(data)
