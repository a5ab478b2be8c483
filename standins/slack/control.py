"""The test-control API of the Slack stand-in, under `/_standin/` (no auth).

Tests, the simulated reviewer and the benchmarks use it to see what amend
posted and opened, to make Slack misbehave, and to act as Slack's side of an
interaction, through the same HTTP a separate process would use:

* `GET  /_standin/messages`  channel messages (`?channel=` filters), each with
  `channel`, `ts`, `thread_ts`, `text`, `blocks`, `metadata`, `history`
  (earlier versions, oldest first) and `message` (the message object as Slack
  would hand it out, e.g. inside a `block_actions` payload).
* `GET  /_standin/ephemeral` ephemeral messages.
* `GET  /_standin/views`     opened views: `id`, `trigger_id`, `user` (when the
  trigger was registered), `view` (current), `history`.
* `GET  /_standin/calls`     every Web API call: `method`, `at`, `status`, `ok`,
  `error`.
* `GET|POST /_standin/faults` the queued faults; `{"faults": [...]}` queues more
  (see `standins.slack.state.FaultSpec`); each later Web API call consumes the
  first queued fault (one whose optional `method` matches, when it has one).
* `POST /_standin/triggers`  `{"trigger_id", "user_id"}`: tells the stand-in
  which user a trigger id belongs to (the simulated reviewer does this).
* `POST /_standin/revoke`    revokes the bot token (`token_revoked`);
  `POST /_standin/restore` puts it back (a re-installed app).
* `POST /_standin/usergroups` `{"usergroups": {"S...": ["U...", ...]}}`: sets
  user group members (`usergroups.users.list`; unknown ids: `no_such_subteam`).
* `POST /_standin/socket`    `{"type": "interactive", "payload": {...}}`: sends
  the payload over Socket Mode to the connected app and answers `{"acked",
  "ack_payload", "ack_ms"}` once the app acknowledges the envelope (or
  `acked: false` after 3 s, as Slack would give up).
* `POST /_standin/reset`     forgets everything, un-revokes the token.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from standins.slack.chat import message_object
from standins.slack.config import SlackStandInConfig
from standins.slack.state import FaultSpec, SlackState, Trigger
from standins.slack.wire import JSONDict

router = APIRouter()


class FaultsBody(BaseModel):
    """`POST /_standin/faults`: the faults to queue, in order."""

    faults: list[FaultSpec]


class UsergroupsBody(BaseModel):
    """`POST /_standin/usergroups`: user group id -> member user ids."""

    usergroups: dict[str, list[str]]


class SocketBody(BaseModel):
    """`POST /_standin/socket`: the envelope type and the payload Slack would send."""

    type: str = "interactive"
    payload: dict[str, Any]


class TriggerBody(BaseModel):
    """`POST /_standin/triggers`: whose click a trigger id came from."""

    trigger_id: str
    user_id: str


def message_record(config: SlackStandInConfig, record: JSONDict) -> JSONDict:
    """A stored message as `/_standin/messages` shows it: the record and Slack's object."""
    return {
        "channel": record["channel"],
        "ts": record["ts"],
        "thread_ts": record["thread_ts"],
        "text": record["text"],
        "blocks": record["blocks"],
        "metadata": record["metadata"],
        "history": record["history"],
        "message": message_object(config, record),
    }


@router.get("/_standin/messages")
async def list_messages(state: SlackState, channel: str | None = None) -> list[JSONDict]:
    """Channel messages in the order posted, optionally of one channel."""
    return [
        message_record(state.config, r)
        for r in state.messages.values()
        if channel is None or r["channel"] == channel
    ]


@router.get("/_standin/ephemeral")
async def list_ephemeral(state: SlackState) -> list[JSONDict]:
    """Ephemeral messages, which no channel history shows."""
    return state.ephemeral


@router.get("/_standin/views")
async def list_views(state: SlackState) -> list[JSONDict]:
    """Every view opened, with who opened it when the trigger was registered."""
    return list(state.views.values())


@router.get("/_standin/calls")
async def list_calls(state: SlackState) -> list[JSONDict]:
    """Every Web API call and how it was answered."""
    return state.calls


@router.get("/_standin/faults")
async def list_faults(state: SlackState) -> JSONDict:
    """The faults still queued, so a test can see they were all consumed."""
    return {"faults": [f.model_dump() for f in state.faults]}


@router.post("/_standin/faults")
async def add_faults(body: FaultsBody, state: SlackState) -> JSONDict:
    """Queue faults for the next Web API calls."""
    state.faults.extend(body.faults)
    return {"ok": True, "pending": len(state.faults)}


@router.post("/_standin/triggers")
async def add_trigger(body: TriggerBody, state: SlackState) -> JSONDict:
    """Register a trigger id as a user's click, so `views.open` holds it to Slack's rules."""
    state.triggers[body.trigger_id] = Trigger(body.user_id, time.monotonic())
    return {"ok": True}


@router.post("/_standin/revoke")
async def revoke(state: SlackState) -> JSONDict:
    """Revoke the bot token, as uninstalling the app does."""
    state.revoked = True
    return {"ok": True}


@router.post("/_standin/restore")
async def restore(state: SlackState) -> JSONDict:
    """Give the bot token back, as re-installing the app does."""
    state.revoked = False
    return {"ok": True}


@router.post("/_standin/usergroups")
async def set_usergroups(body: UsergroupsBody, state: SlackState) -> JSONDict:
    """Set user groups' members while the stand-in runs."""
    state.config.usergroups.update(body.usergroups)
    return {"ok": True}


@router.post("/_standin/socket")
async def socket_send(body: SocketBody, state: SlackState) -> JSONDict:
    """Send an envelope over Socket Mode, as Slack does on a click, and report the ack."""
    return await state.socket.send(body.type, body.payload)


@router.post("/_standin/reset")
async def reset(state: SlackState) -> JSONDict:
    """Forget everything and un-revoke the token, so a shared stand-in starts clean."""
    state.reset()
    return {"ok": True}
