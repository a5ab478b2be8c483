"""Messages in the Slack stand-in: posting, editing, ephemeral messages, permalinks.

The methods are `chat.postMessage`, `chat.update`, `chat.delete`,
`chat.postEphemeral` and `chat.getPermalink`.

amend posts a round's proposals as messages and edits them as decisions
land; the stand-in keeps every version (`history`), so a test can see each
edit, and answers with the message object Slack would hand out (inside a
`block_actions` payload, say), so the simulated reviewer clicks on what a
real one would see. `chat.postMessage` can be rate limited per channel, as
Slack limits it.
"""

from __future__ import annotations

import math
import time

from standins.slack.config import SlackStandInConfig
from standins.slack.state import SlackStandInState, WebAPIMethod
from standins.slack.wire import (
    JSONDict,
    SlackError,
    json_field,
    normalise_blocks,
    require_channel,
    str_field,
    text_blocks,
)


def bot_profile(config: SlackStandInConfig) -> JSONDict:
    """The `bot_profile` Slack attaches to a bot's messages."""
    return {
        "id": config.bot_id,
        "app_id": config.app_id,
        "name": config.bot_user_name,
        "deleted": False,
        "team_id": config.team_id,
    }


def message_object(config: SlackStandInConfig, record: JSONDict) -> JSONDict:
    """A stored message as Slack hands it out, to the poster and in interaction payloads."""
    msg: JSONDict = {
        "type": "message",
        "user": config.bot_user_id,
        "bot_id": config.bot_id,
        "app_id": config.app_id,
        "text": record["text"],
        "blocks": record["blocks"],
        "team": config.team_id,
        "bot_profile": bot_profile(config),
        "ts": record["ts"],
    }
    if record.get("thread_ts"):
        msg["thread_ts"] = record["thread_ts"]
        msg["parent_user_id"] = record.get("parent_user_id", config.bot_user_id)
    if record.get("metadata") is not None:
        msg["metadata"] = record["metadata"]
    if record.get("edited") is not None:
        msg["edited"] = record["edited"]
    return msg


def permalink(config: SlackStandInConfig, channel: str, ts: str, thread_ts: str | None) -> str:
    """A message's permalink in Slack's format, a reply's naming its thread."""
    link = f"https://{config.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
    if thread_ts and thread_ts != ts:
        link += f"?thread_ts={thread_ts}&cid={channel}"
    return link


def message_content(params: JSONDict, seed: str) -> tuple[str | None, list[JSONDict] | None]:
    """The call's `text` and `blocks`, each None when not sent; blocks normalised."""
    text = params.get("text")
    text = None if text is None else str(text)
    blocks_raw = json_field(params, "blocks")
    blocks = None if blocks_raw is None else normalise_blocks(blocks_raw, seed)
    return text, blocks


def metadata_field(params: JSONDict) -> JSONDict | None:
    """The call's message `metadata`, refused as Slack does without an `event_type`."""
    metadata = json_field(params, "metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or "event_type" not in metadata:
        raise SlackError("invalid_metadata_format")
    return metadata


def post_message(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`chat.postMessage`, in a channel or a thread, within the per-channel rate."""
    config = state.config
    channel = require_channel(config, params)
    if config.post_message_per_second:
        interval = 1.0 / config.post_message_per_second
        now = time.monotonic()
        last = state.last_post.get(channel)
        if last is not None and now - last < interval:
            retry_after = max(1, math.ceil(interval - (now - last)))
            raise SlackError("ratelimited", 429, {"Retry-After": str(retry_after)})
    ts = state.next_ts()
    text, blocks = message_content(params, ts)
    if not text and not blocks and not params.get("attachments"):
        raise SlackError("no_text")
    thread_ts = str_field(params, "thread_ts")
    parent_user_id = None
    if thread_ts is not None:
        parent = state.messages.get((channel, thread_ts))
        if parent is None:
            raise SlackError("thread_not_found")
        thread_ts = parent.get("thread_ts") or parent["ts"]
        parent_user_id = config.bot_user_id
    if config.post_message_per_second:
        state.last_post[channel] = time.monotonic()
    record: JSONDict = {
        "channel": channel,
        "ts": ts,
        "thread_ts": thread_ts,
        "text": text or "",
        "blocks": blocks if blocks is not None else text_blocks(text or "", ts),
        "metadata": metadata_field(params),
        "user": config.bot_user_id,
        "bot_id": config.bot_id,
        "parent_user_id": parent_user_id,
        "edited": None,
        "history": [],
    }
    state.put_message(record)
    return {"ok": True, "channel": channel, "ts": ts, "message": message_object(config, record)}


def update(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`chat.update`: replace a message's text, blocks or metadata, keeping the old version."""
    config = state.config
    channel = str_field(params, "channel")
    ts = str_field(params, "ts")
    if channel is None or channel not in config.channels:
        raise SlackError("channel_not_found")
    record = state.messages.get((channel, ts or ""))
    if record is None or ts is None:
        raise SlackError("message_not_found")
    edit_ts = state.next_ts()
    text, blocks = message_content(params, edit_ts)
    if text is None and blocks is None and params.get("attachments") is None:
        raise SlackError("no_text")
    metadata = metadata_field(params)
    record["history"].append(
        {
            "text": record["text"],
            "blocks": record["blocks"],
            "metadata": record["metadata"],
            "replaced_at": edit_ts,
        }
    )
    if text is not None:
        record["text"] = text
    if blocks is not None:
        record["blocks"] = blocks
    elif text is not None and (
        not record["blocks"] or record["blocks"][0].get("type") == "rich_text"
    ):
        record["blocks"] = text_blocks(text, edit_ts)
    if metadata is not None:
        record["metadata"] = metadata
    record["edited"] = {"user": config.bot_user_id, "ts": edit_ts}
    state.put_message(record)
    message = message_object(config, record)
    return {
        "ok": True,
        "channel": channel,
        "ts": ts,
        "text": record["text"],
        "message": message,
    }


def delete(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`chat.delete`: the message is gone; a later `chat.update` of it gets `message_not_found`."""
    channel = require_channel(state.config, params)
    ts = str_field(params, "ts")
    if ts is None or state.drop_message(channel, ts) is None:
        raise SlackError("message_not_found")
    return {"ok": True, "channel": channel, "ts": ts}


def post_ephemeral(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`chat.postEphemeral`: a message only one user sees, kept apart from the channel's."""
    channel = require_channel(state.config, params)
    user = str_field(params, "user")
    if user is None or user[0] not in "UW":
        raise SlackError("user_not_found")
    ts = state.next_ts()
    text, blocks = message_content(params, ts)
    if not text and not blocks and not params.get("attachments"):
        raise SlackError("no_text")
    state.add_ephemeral(
        {
            "channel": channel,
            "user": user,
            "message_ts": ts,
            "thread_ts": str_field(params, "thread_ts"),
            "text": text or "",
            "blocks": blocks or [],
        }
    )
    return {"ok": True, "message_ts": ts}


def get_permalink(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`chat.getPermalink` for a message the stand-in holds."""
    channel = require_channel(state.config, params)
    ts = str_field(params, "message_ts")
    record = state.messages.get((channel, ts or ""))
    if record is None or ts is None:
        raise SlackError("message_not_found")
    return {
        "ok": True,
        "channel": channel,
        "permalink": permalink(state.config, channel, ts, record.get("thread_ts")),
    }


METHODS: dict[str, WebAPIMethod] = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "chat.postEphemeral": post_ephemeral,
    "chat.getPermalink": get_permalink,
}
"""The Web API methods this module answers."""
