"""The Slack app manifest in deploy/ asks for what amend uses and no more."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "slack-app-manifest.yaml"
# Web API methods amend calls, and the bot scope each needs.
SCOPES = {
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "chat_postEphemeral": "chat:write",
    "views_open": None,  # needs a trigger id, no scope
    "usergroups_users_list": "usergroups:read",
    "conversations_history": "channels:history",
    "conversations_replies": "channels:history",
}


def manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(data, dict)
    return data


def called_methods() -> set[str]:
    """Every `<client>.<method>(` slack_sdk call in the activities and gateway."""
    calls: set[str] = set()
    for path in [*(ROOT / "activities").glob("*.py"), *(ROOT / "gateway").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and re.match(
                r"^(chat|views|usergroups|users|conversations)_", node.attr
            ):
                calls.add(node.attr)
    return calls


def test_the_manifest_grants_a_scope_for_every_method_amend_calls() -> None:
    methods = called_methods()
    assert methods, "no Slack calls found: the scan is broken"
    unknown = methods - set(SCOPES)
    assert not unknown, f"add the scopes of {sorted(unknown)} to the manifest and this test"
    granted = set(manifest()["oauth_config"]["scopes"]["bot"])
    needed = {scope for m in methods if (scope := SCOPES[m]) is not None}
    assert needed <= granted, f"the manifest lacks {sorted(needed - granted)}"
    known = {scope for scope in SCOPES.values() if scope is not None}
    assert granted <= known | {"users:read"}, "the manifest asks for more"


def test_interactivity_points_at_the_gateways_endpoint() -> None:
    settings = manifest()["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith("/slack/interactions")
    assert settings["interactivity"]["request_url"].startswith("https://")
    assert settings["socket_mode_enabled"] is False
    info = manifest()["display_information"]
    assert info["name"] and len(info["description"]) <= 140
    assert manifest()["features"]["bot_user"]["display_name"]
