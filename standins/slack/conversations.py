"""Channels in the Slack stand-in: which exist, what they are called, and what they hold.

The methods are `conversations.info`, `conversations.history` (a channel's
top-level messages, newest first) and `conversations.replies` (a thread,
its parent first), both paged with `limit` and `cursor` and bounded by
`oldest`/`latest` as Slack pages them. A message's `metadata` is in their
answers only when the call sets `include_all_metadata`, as in Slack; amend
finds a post it already made by that metadata.

The stand-in knows only the configured channels; a call naming another gets
`channel_not_found`, as a bot outside a channel does, so a misconfigured
review channel fails in tests the way it would in a workspace.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from standins.slack.chat import message_object
from standins.slack.config import SlackStandInConfig
from standins.slack.state import SlackStandInState, WebAPIMethod
from standins.slack.wire import JSONDict, SlackError, require_channel, str_field

# Slack's page sizes: history answers 100 unless asked, and at most 999.
DEFAULT_LIMIT = 100
MAX_LIMIT = 999


def channel_name(config: SlackStandInConfig, channel: str) -> str:
    """The channel's display name; one without a configured name is named after its id."""
    return config.channel_names.get(channel, channel.lower())


def conversations_info(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`conversations.info`: a public channel the bot is a member of."""
    config = state.config
    channel = require_channel(config, params)
    name = channel_name(config, channel)
    return {
        "ok": True,
        "channel": {
            "id": channel,
            "name": name,
            "name_normalized": name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": False,
            "is_archived": False,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": True,
            "created": 1700000000,
            "creator": config.bot_user_id,
            "context_team_id": config.team_id,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        },
    }


def _flag(params: JSONDict, name: str) -> bool:
    value = params.get(name)
    return value is True or str(value).lower() in {"1", "true"}


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def _bound(params: JSONDict, name: str) -> tuple[int, int] | None:
    value = str_field(params, name)
    if value is None:
        return None
    try:
        return _ts_key(value)
    except ValueError as exc:
        raise SlackError(f"invalid_{name}") from exc


def _page(
    state: SlackStandInState, params: JSONDict, records: Iterable[JSONDict], newest_first: bool
) -> JSONDict:
    """One page of `records` as history and replies answer it, after the bounds and cursor."""
    try:
        limit = int(params.get("limit") or DEFAULT_LIMIT)
    except (TypeError, ValueError) as exc:
        raise SlackError("invalid_limit") from exc
    limit = max(1, min(limit, MAX_LIMIT))
    oldest, latest = _bound(params, "oldest"), _bound(params, "latest")
    inclusive = _flag(params, "inclusive")
    kept = []
    for record in records:
        key = _ts_key(record["ts"])
        if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
            continue
        if latest is not None and (key > latest or (key == latest and not inclusive)):
            continue
        kept.append(record)
    kept.sort(key=lambda r: _ts_key(r["ts"]), reverse=newest_first)
    cursor = str_field(params, "cursor")
    start = 0
    if cursor is not None:
        try:
            start = int(base64.b64decode(cursor).decode().removeprefix("next_ts:"))
        except ValueError as exc:
            raise SlackError("invalid_cursor") from exc
    page = kept[start : start + limit]
    more = start + limit < len(kept)
    with_metadata = _flag(params, "include_all_metadata")
    messages = []
    for record in page:
        message = message_object(state.config, record)
        if not with_metadata:
            message.pop("metadata", None)
        messages.append(message)
    next_cursor = base64.b64encode(f"next_ts:{start + limit}".encode()).decode() if more else ""
    return {
        "ok": True,
        "messages": messages,
        "has_more": more,
        "response_metadata": {"next_cursor": next_cursor},
    }


def conversations_history(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`conversations.history`: the channel's messages, thread replies left out, newest first."""
    channel = require_channel(state.config, params)
    top_level = (
        record
        for (where, ts), record in state.messages.items()
        if where == channel and record.get("thread_ts") in (None, ts)
    )
    answer = _page(state, params, top_level, newest_first=True)
    answer["pin_count"] = 0
    return answer


def conversations_replies(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`conversations.replies`: a thread's parent and its replies, oldest first."""
    channel = require_channel(state.config, params)
    ts = str_field(params, "ts")
    parent = state.messages.get((channel, ts or ""))
    if parent is None or ts is None:
        raise SlackError("thread_not_found")
    thread = parent.get("thread_ts") or ts
    records = (
        record
        for (where, record_ts), record in state.messages.items()
        if where == channel and (record_ts == thread or record.get("thread_ts") == thread)
    )
    return _page(state, params, records, newest_first=False)


METHODS: dict[str, WebAPIMethod] = {
    "conversations.info": conversations_info,
    "conversations.history": conversations_history,
    "conversations.replies": conversations_replies,
}
"""The Web API methods this module answers."""
