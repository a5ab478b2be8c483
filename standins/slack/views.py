"""Modals in the Slack stand-in: `views.open` and `views.update`.

The gateway opens the modify modal from a button click within Slack's
trigger rules: a trigger id opens one view, and only for a few seconds. The
stand-in enforces them for triggers a test registered (`POST
/_standin/triggers`) and keeps every view and its earlier versions, so tests
can see who opened what.
"""

from __future__ import annotations

import secrets
import time

from standins.slack.config import SlackStandInConfig
from standins.slack.state import SlackStandInState, WebAPIMethod
from standins.slack.wire import JSONDict, SlackError, json_field, normalise_blocks, str_field


def parse_view(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """The call's `view`, refused as Slack does unless a modal (with a title) or home tab."""
    view = json_field(params, "view")
    if not isinstance(view, dict):
        raise SlackError("invalid_arguments")
    if view.get("type") not in ("modal", "home"):
        raise SlackError("invalid_arguments")
    if view.get("type") == "modal" and not isinstance(view.get("title"), dict):
        raise SlackError("invalid_arguments")
    view["blocks"] = normalise_blocks(view.get("blocks", []), state.new_id("view/", 1))
    return view


def view_object(
    config: SlackStandInConfig, view_id: str, view: JSONDict, view_hash: str
) -> JSONDict:
    """A view as Slack hands it out, with the `hash` a later update must quote."""
    return {
        "id": view_id,
        "team_id": config.team_id,
        "type": view.get("type", "modal"),
        "blocks": view["blocks"],
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "state": {"values": {}},
        "hash": view_hash,
        "title": view.get("title"),
        "clear_on_close": bool(view.get("clear_on_close", False)),
        "notify_on_close": bool(view.get("notify_on_close", False)),
        "close": view.get("close"),
        "submit": view.get("submit"),
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": config.app_id,
        "external_id": view.get("external_id", ""),
        "app_installed_team_id": config.team_id,
        "bot_id": config.bot_id,
    }


def new_hash() -> str:
    """A fresh view hash, so an update quoting a stale one gets `hash_conflict`."""
    return f"{int(time.time())}.{secrets.token_hex(4)}"


def views_open(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`views.open`, held to Slack's trigger rules for registered triggers."""
    config = state.config
    trigger_id = str_field(params, "trigger_id") or str_field(params, "interactivity_pointer")
    if trigger_id is None:
        raise SlackError("invalid_arguments")
    trigger = state.triggers.get(trigger_id)
    if trigger is None and config.strict_triggers:
        raise SlackError("invalid_trigger_id")
    if trigger is not None:
        if trigger.used:
            raise SlackError("trigger_exchanged")
        ttl = config.trigger_ttl_seconds
        if ttl is not None and time.monotonic() - trigger.registered_at > ttl:
            raise SlackError("expired_trigger_id")
    view = parse_view(state, params)
    if trigger is not None:
        trigger.used = True
    view_id = state.new_id("V0AMEND", 6)
    obj = view_object(config, view_id, view, new_hash())
    state.put_view(
        {
            "id": view_id,
            "trigger_id": trigger_id,
            "user": trigger.user_id if trigger is not None else None,
            "opened_at": time.time(),
            "view": obj,
            "history": [],
        }
    )
    return {"ok": True, "view": obj}


def views_update(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`views.update` by view id or external id, refused on a stale `hash`."""
    view_id = str_field(params, "view_id")
    external_id = str_field(params, "external_id")
    record: JSONDict | None = None
    if view_id is not None:
        record = state.views.get(view_id)
    elif external_id is not None:
        record = next(
            (r for r in state.views.values() if r["view"]["external_id"] == external_id),
            None,
        )
    else:
        raise SlackError("invalid_arguments")
    if record is None:
        raise SlackError("not_found")
    expected_hash = str_field(params, "hash")
    if expected_hash is not None and expected_hash != record["view"]["hash"]:
        raise SlackError("hash_conflict")
    view = parse_view(state, params)
    record["history"].append(record["view"])
    record["view"] = view_object(state.config, record["id"], view, new_hash())
    state.put_view(record)
    return {"ok": True, "view": record["view"]}


METHODS: dict[str, WebAPIMethod] = {"views.open": views_open, "views.update": views_update}
"""The Web API methods this module answers."""
