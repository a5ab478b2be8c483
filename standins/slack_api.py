"""Stand-in for the Slack Web API, so the real `slack_sdk` runs unchanged.

This is a **stand-in**, not Slack: a small FastAPI app that answers the Web API
methods amend uses, with Slack's response shapes and error codes, and keeps
everything it was asked to do in memory so tests can look at it.

Point the real client at it::

    async with serve(create_app()) as served:
        client = AsyncWebClient(token="xoxb-amend-stand-in", base_url=served.url + "/api/")

Web API methods are served at ``POST /api/<method>`` (``GET`` works too, as
slack_sdk sends a few read methods that way). Bodies may be
``application/x-www-form-urlencoded`` or ``application/json``; query
parameters are merged in. Fields that slack_sdk JSON-encodes in form bodies
(``blocks``, ``view``, ``metadata``, ``attachments``) are accepted as strings or
as JSON values.

Methods: ``auth.test``, ``chat.postMessage``, ``chat.update``,
``chat.postEphemeral``, ``chat.getPermalink``, ``views.open``, ``views.update``,
``conversations.info``, ``users.info``, ``usergroups.users.list``. Anything else answers
``{"ok": false, "error": "unknown_method"}``.

Test control, under ``/_standin/`` (no auth):

* ``GET  /_standin/messages``  channel messages (``?channel=`` filters), each with
  ``channel``, ``ts``, ``thread_ts``, ``text``, ``blocks``, ``metadata``,
  ``history`` (earlier versions, oldest first) and ``message`` (the message
  object as Slack would hand it out, e.g. inside a ``block_actions`` payload).
* ``GET  /_standin/ephemeral`` ephemeral messages.
* ``GET  /_standin/views``     opened views: ``id``, ``trigger_id``, ``user``
  (when the trigger was registered), ``view`` (current), ``history``.
* ``GET  /_standin/calls``     every Web API call: ``method``, ``at``, ``status``,
  ``ok``, ``error``.
* ``POST /_standin/faults``    ``{"faults": [...]}``, queued; each later Web API
  call consumes the first queued fault (one whose optional ``method`` matches,
  when it has one). Kinds: ``rate_limited`` (429, ``Retry-After``),
  ``server_error`` (500), ``error`` (200 with ``{"ok": false, "error": ...}``),
  ``slow_answer`` (the call takes effect at once, its answer comes ``hold_s``
  later, as over a slow network).
* ``POST /_standin/triggers``  ``{"trigger_id", "user_id"}``: tells the stand-in
  which user a trigger id belongs to (the simulated reviewer does this).
* ``POST /_standin/revoke``    revokes the bot token (``token_revoked``);
  ``POST /_standin/restore`` puts it back (a re-installed app).
* ``POST /_standin/usergroups`` ``{"usergroups": {"S...": ["U...", ...]}}``: sets
  user group members (``usergroups.users.list``; unknown ids: ``no_such_subteam``).
* ``POST /_standin/reset``     forgets everything, un-revokes the token.
* ``POST /_standin/socket``    ``{"type": "interactive", "payload": {...}}``: Socket
  Mode. ``apps.connections.open`` (with the app token) hands out a
  ``ws://`` URL served by the stand-in; this sends the payload as an envelope
  to the app connected there and answers ``{"acked", "ack_payload", "ack_ms"}``
  once the app acknowledges the envelope (or ``acked: false`` after 3 s, as
  Slack would give up).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

JSONDict = dict[str, Any]


class SlackStandInConfig(BaseModel):
    """How the Slack Web API stand-in behaves."""

    bot_token: str = "xoxb-amend-stand-in"
    app_token: str = "xapp-amend-stand-in"  # Socket Mode's apps.connections.open
    channels: list[str] = Field(default_factory=lambda: ["C0AMENDREVIEW"])
    # chat.postMessage faster than this, per channel, gets a 429 like real Slack.
    post_message_per_second: float | None = None
    # Display names; a channel without one is named after its id.
    channel_names: dict[str, str] = Field(default_factory=lambda: {"C0AMENDREVIEW": "amend-review"})
    # users.info names; an unlisted U.../W... id gets a made-up name.
    users: dict[str, str] = Field(default_factory=dict)
    # User group id -> member user ids, for usergroups.users.list.
    usergroups: dict[str, list[str]] = Field(default_factory=dict)
    # Registered trigger ids older than this are `expired_trigger_id` (Slack: 3 s).
    # None: they never expire. Unregistered trigger ids are accepted unless
    # `strict_triggers`, in which case they are `invalid_trigger_id`.
    trigger_ttl_seconds: float | None = None
    strict_triggers: bool = False
    team_id: str = "T0AMEND"
    team_name: str = "amend"
    team_domain: str = "amend"
    bot_user_id: str = "U0AMENDBOT"
    bot_user_name: str = "amend"
    bot_id: str = "B0AMENDBOT"
    app_id: str = "A0AMEND"


class FaultSpec(BaseModel):
    """One injected failure, consumed by the next matching Web API call."""

    kind: Literal["rate_limited", "server_error", "error", "slow_answer"]
    retry_after: int = 1
    hold_s: float = 2.0  # slow_answer: the call takes effect, its answer comes this much later
    error: str = "internal_error"
    method: str | None = None


class FaultsBody(BaseModel):
    faults: list[FaultSpec]


class UsergroupsBody(BaseModel):
    usergroups: dict[str, list[str]]


class SocketBody(BaseModel):
    type: str = "interactive"
    payload: dict[str, Any]


class TriggerBody(BaseModel):
    trigger_id: str
    user_id: str


@dataclass
class _Trigger:
    user_id: str
    registered_at: float
    used: bool = False


@dataclass
class SlackStandInState:
    """Everything the stand-in remembers; reachable as `app.state.slack`."""

    config: SlackStandInConfig
    messages: dict[tuple[str, str], JSONDict] = field(default_factory=dict)
    ephemeral: list[JSONDict] = field(default_factory=list)
    views: dict[str, JSONDict] = field(default_factory=dict)
    calls: list[JSONDict] = field(default_factory=list)
    faults: list[FaultSpec] = field(default_factory=list)
    triggers: dict[str, _Trigger] = field(default_factory=dict)
    revoked: bool = False
    last_post: dict[str, float] = field(default_factory=dict)
    last_ts_us: int = 0
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def reset(self) -> None:
        self.messages.clear()
        self.ephemeral.clear()
        self.views.clear()
        self.calls.clear()
        self.faults.clear()
        self.triggers.clear()
        self.last_post.clear()
        self.revoked = False

    def next_ts(self) -> str:
        """A Slack-style "seconds.micros" ts, strictly increasing."""
        now_us = int(time.time() * 1_000_000)
        self.last_ts_us = max(now_us, self.last_ts_us + 1)
        return f"{self.last_ts_us // 1_000_000}.{self.last_ts_us % 1_000_000:06d}"

    def new_id(self, prefix: str, width: int = 10) -> str:
        n = next(self.ids)
        return f"{prefix}{n:0{width}d}"

    def take_fault(self, method: str) -> FaultSpec | None:
        for i, fault in enumerate(self.faults):
            if fault.method is None or fault.method == method:
                return self.faults.pop(i)
        return None


class _SlackError(Exception):
    """An `{"ok": false, "error": ...}` answer, HTTP 200 unless told otherwise."""

    def __init__(
        self, error: str, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers


class _SocketModeServer:
    """Socket Mode's websocket: one app connection, envelopes out, acks back."""

    def __init__(self) -> None:
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._socket: web.WebSocketResponse | None = None
        self._acks: dict[str, asyncio.Future[JSONDict]] = {}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/link", self._connect)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}/link"

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _connect(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._socket = socket
        await socket.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0AMEND"}}
        )
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            ack = json.loads(message.data)
            waiting = self._acks.pop(str(ack.get("envelope_id")), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(ack)
        return socket

    async def send(self, kind: str, payload: JSONDict) -> JSONDict:
        if self._socket is None or self._socket.closed:
            return {"acked": False, "error": "no app is connected"}
        envelope_id = str(uuid.uuid4())
        waiting: asyncio.Future[JSONDict] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = waiting
        started = time.monotonic()
        await self._socket.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "accepts_response_payload": True,
                "payload": payload,
            }
        )
        try:
            ack = await asyncio.wait_for(waiting, 3.0)
        except TimeoutError:
            self._acks.pop(envelope_id, None)
            return {"acked": False, "error": "no ack within 3 s"}
        return {
            "acked": True,
            "ack_payload": ack.get("payload"),
            "ack_ms": (time.monotonic() - started) * 1000,
        }


def standin_state(app: FastAPI) -> SlackStandInState:
    """The in-memory state of an app made by `create_app`."""
    state: SlackStandInState = app.state.slack
    return state


# --------------------------------------------------------------------------- helpers


def _json_field(params: JSONDict, name: str) -> Any:
    """A field slack_sdk JSON-encodes in form bodies but sends raw in JSON bodies."""
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise _SlackError(f"invalid_{name}") from exc
    return value


def _str_field(params: JSONDict, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return str(value)


def _short_id(seed: str, n: int = 5) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:n])


def _normalise_blocks(raw: Any, seed: str) -> list[JSONDict]:
    """Validate blocks and fill in `block_id`/`action_id` as Slack does."""
    if not isinstance(raw, list) or not all(isinstance(b, dict) for b in raw):
        raise _SlackError("invalid_blocks")
    blocks: list[JSONDict] = []
    for i, block in enumerate(raw):
        if "type" not in block:
            raise _SlackError("invalid_blocks")
        block = json.loads(json.dumps(block))
        block.setdefault("block_id", _short_id(f"{seed}/{i}"))
        elements = block.get("elements")
        if block["type"] == "actions" and isinstance(elements, list):
            for j, element in enumerate(elements):
                if isinstance(element, dict) and "type" in element:
                    element.setdefault("action_id", _short_id(f"{seed}/{i}/{j}"))
        blocks.append(block)
    return blocks


def _text_blocks(text: str, seed: str) -> list[JSONDict]:
    """Slack turns a text-only message into one rich_text block."""
    if not text:
        return []
    return [
        {
            "type": "rich_text",
            "block_id": _short_id(seed),
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
            ],
        }
    ]


async def _read_params(request: Request) -> JSONDict:
    params: JSONDict = dict(request.query_params)
    body = await request.body()
    if not body:
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError as exc:
            raise _SlackError("invalid_json") from exc
        if not isinstance(parsed, dict):
            raise _SlackError("invalid_json")
        params.update(parsed)
    else:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


# --------------------------------------------------------------------------- the app


def create_app(config: SlackStandInConfig | None = None) -> FastAPI:
    """Build the Slack Web API stand-in app."""
    cfg = config or SlackStandInConfig()
    state = SlackStandInState(config=cfg)
    socket = _SocketModeServer()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await socket.start()
        try:
            yield
        finally:
            await socket.stop()

    app = FastAPI(title="Slack Web API stand-in", lifespan=lifespan)
    app.state.slack = state

    def bot_profile() -> JSONDict:
        return {
            "id": cfg.bot_id,
            "app_id": cfg.app_id,
            "name": cfg.bot_user_name,
            "deleted": False,
            "team_id": cfg.team_id,
        }

    def message_object(record: JSONDict) -> JSONDict:
        msg: JSONDict = {
            "type": "message",
            "user": cfg.bot_user_id,
            "bot_id": cfg.bot_id,
            "app_id": cfg.app_id,
            "text": record["text"],
            "blocks": record["blocks"],
            "team": cfg.team_id,
            "bot_profile": bot_profile(),
            "ts": record["ts"],
        }
        if record.get("thread_ts"):
            msg["thread_ts"] = record["thread_ts"]
            msg["parent_user_id"] = record.get("parent_user_id", cfg.bot_user_id)
        if record.get("metadata") is not None:
            msg["metadata"] = record["metadata"]
        if record.get("edited") is not None:
            msg["edited"] = record["edited"]
        return msg

    def channel_name(channel: str) -> str:
        return cfg.channel_names.get(channel, channel.lower())

    def require_channel(params: JSONDict) -> str:
        channel = _str_field(params, "channel")
        if channel is None or channel not in cfg.channels:
            raise _SlackError("channel_not_found")
        return channel

    def permalink(channel: str, ts: str, thread_ts: str | None) -> str:
        link = f"https://{cfg.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        if thread_ts and thread_ts != ts:
            link += f"?thread_ts={thread_ts}&cid={channel}"
        return link

    def message_content(params: JSONDict, seed: str) -> tuple[str | None, list[JSONDict] | None]:
        text = params.get("text")
        text = None if text is None else str(text)
        blocks_raw = _json_field(params, "blocks")
        blocks = None if blocks_raw is None else _normalise_blocks(blocks_raw, seed)
        return text, blocks

    def metadata_field(params: JSONDict) -> JSONDict | None:
        metadata = _json_field(params, "metadata")
        if metadata is None:
            return None
        if not isinstance(metadata, dict) or "event_type" not in metadata:
            raise _SlackError("invalid_metadata_format")
        return metadata

    def parse_view(params: JSONDict) -> JSONDict:
        view = _json_field(params, "view")
        if not isinstance(view, dict):
            raise _SlackError("invalid_arguments")
        if view.get("type") not in ("modal", "home"):
            raise _SlackError("invalid_arguments")
        if view.get("type") == "modal" and not isinstance(view.get("title"), dict):
            raise _SlackError("invalid_arguments")
        view["blocks"] = _normalise_blocks(view.get("blocks", []), f"view/{next(state.ids)}")
        return view

    def view_object(view_id: str, view: JSONDict, view_hash: str) -> JSONDict:
        return {
            "id": view_id,
            "team_id": cfg.team_id,
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
            "app_id": cfg.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": cfg.team_id,
            "bot_id": cfg.bot_id,
        }

    def new_hash() -> str:
        return f"{int(time.time())}.{secrets.token_hex(4)}"

    # ----------------------------------------------------------------- methods

    def auth_test(params: JSONDict) -> JSONDict:
        return {
            "ok": True,
            "url": f"https://{cfg.team_domain}.slack.com/",
            "team": cfg.team_name,
            "user": cfg.bot_user_name,
            "team_id": cfg.team_id,
            "user_id": cfg.bot_user_id,
            "bot_id": cfg.bot_id,
            "is_enterprise_install": False,
        }

    def post_message(params: JSONDict) -> JSONDict:
        channel = require_channel(params)
        if cfg.post_message_per_second:
            interval = 1.0 / cfg.post_message_per_second
            now = time.monotonic()
            last = state.last_post.get(channel)
            if last is not None and now - last < interval:
                retry_after = max(1, math.ceil(interval - (now - last)))
                raise _SlackError("ratelimited", 429, {"Retry-After": str(retry_after)})
        ts = state.next_ts()
        text, blocks = message_content(params, ts)
        if not text and not blocks and not params.get("attachments"):
            raise _SlackError("no_text")
        thread_ts = _str_field(params, "thread_ts")
        parent_user_id = None
        if thread_ts is not None:
            parent = state.messages.get((channel, thread_ts))
            if parent is None:
                raise _SlackError("thread_not_found")
            thread_ts = parent.get("thread_ts") or parent["ts"]
            parent_user_id = cfg.bot_user_id
        if cfg.post_message_per_second:
            state.last_post[channel] = time.monotonic()
        record: JSONDict = {
            "channel": channel,
            "ts": ts,
            "thread_ts": thread_ts,
            "text": text or "",
            "blocks": blocks if blocks is not None else _text_blocks(text or "", ts),
            "metadata": metadata_field(params),
            "user": cfg.bot_user_id,
            "bot_id": cfg.bot_id,
            "parent_user_id": parent_user_id,
            "edited": None,
            "history": [],
        }
        state.messages[(channel, ts)] = record
        return {"ok": True, "channel": channel, "ts": ts, "message": message_object(record)}

    def update(params: JSONDict) -> JSONDict:
        channel = _str_field(params, "channel")
        ts = _str_field(params, "ts")
        if channel is None or channel not in cfg.channels:
            raise _SlackError("channel_not_found")
        record = state.messages.get((channel, ts or ""))
        if record is None or ts is None:
            raise _SlackError("message_not_found")
        edit_ts = state.next_ts()
        text, blocks = message_content(params, edit_ts)
        if text is None and blocks is None and params.get("attachments") is None:
            raise _SlackError("no_text")
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
            record["blocks"] = _text_blocks(text, edit_ts)
        if metadata is not None:
            record["metadata"] = metadata
        record["edited"] = {"user": cfg.bot_user_id, "ts": edit_ts}
        message = message_object(record)
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": record["text"],
            "message": message,
        }

    def post_ephemeral(params: JSONDict) -> JSONDict:
        channel = require_channel(params)
        user = _str_field(params, "user")
        if user is None or user[0] not in "UW":
            raise _SlackError("user_not_found")
        ts = state.next_ts()
        text, blocks = message_content(params, ts)
        if not text and not blocks and not params.get("attachments"):
            raise _SlackError("no_text")
        state.ephemeral.append(
            {
                "channel": channel,
                "user": user,
                "message_ts": ts,
                "thread_ts": _str_field(params, "thread_ts"),
                "text": text or "",
                "blocks": blocks or [],
            }
        )
        return {"ok": True, "message_ts": ts}

    def get_permalink(params: JSONDict) -> JSONDict:
        channel = require_channel(params)
        ts = _str_field(params, "message_ts")
        record = state.messages.get((channel, ts or ""))
        if record is None or ts is None:
            raise _SlackError("message_not_found")
        return {
            "ok": True,
            "channel": channel,
            "permalink": permalink(channel, ts, record.get("thread_ts")),
        }

    def views_open(params: JSONDict) -> JSONDict:
        trigger_id = _str_field(params, "trigger_id") or _str_field(params, "interactivity_pointer")
        if trigger_id is None:
            raise _SlackError("invalid_arguments")
        trigger = state.triggers.get(trigger_id)
        if trigger is None and cfg.strict_triggers:
            raise _SlackError("invalid_trigger_id")
        if trigger is not None:
            if trigger.used:
                raise _SlackError("trigger_exchanged")
            ttl = cfg.trigger_ttl_seconds
            if ttl is not None and time.monotonic() - trigger.registered_at > ttl:
                raise _SlackError("expired_trigger_id")
        view = parse_view(params)
        if trigger is not None:
            trigger.used = True
        view_id = state.new_id("V0AMEND", 6)
        obj = view_object(view_id, view, new_hash())
        state.views[view_id] = {
            "id": view_id,
            "trigger_id": trigger_id,
            "user": trigger.user_id if trigger is not None else None,
            "opened_at": time.time(),
            "view": obj,
            "history": [],
        }
        return {"ok": True, "view": obj}

    def views_update(params: JSONDict) -> JSONDict:
        view_id = _str_field(params, "view_id")
        external_id = _str_field(params, "external_id")
        record: JSONDict | None = None
        if view_id is not None:
            record = state.views.get(view_id)
        elif external_id is not None:
            record = next(
                (r for r in state.views.values() if r["view"]["external_id"] == external_id),
                None,
            )
        else:
            raise _SlackError("invalid_arguments")
        if record is None:
            raise _SlackError("not_found")
        expected_hash = _str_field(params, "hash")
        if expected_hash is not None and expected_hash != record["view"]["hash"]:
            raise _SlackError("hash_conflict")
        view = parse_view(params)
        record["history"].append(record["view"])
        record["view"] = view_object(record["id"], view, new_hash())
        return {"ok": True, "view": record["view"]}

    def conversations_info(params: JSONDict) -> JSONDict:
        channel = require_channel(params)
        name = channel_name(channel)
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
                "creator": cfg.bot_user_id,
                "context_team_id": cfg.team_id,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
            },
        }

    def users_info(params: JSONDict) -> JSONDict:
        user = _str_field(params, "user")
        if user is None or user[0] not in "UW":
            raise _SlackError("user_not_found")
        is_bot = user == cfg.bot_user_id
        name = cfg.bot_user_name if is_bot else cfg.users.get(user, f"user-{user.lower()}")
        return {
            "ok": True,
            "user": {
                "id": user,
                "team_id": cfg.team_id,
                "name": name,
                "deleted": False,
                "real_name": name,
                "tz": "Etc/UTC",
                "tz_label": "Coordinated Universal Time",
                "tz_offset": 0,
                "is_admin": False,
                "is_owner": False,
                "is_bot": is_bot,
                "is_app_user": False,
                "updated": 1700000000,
                "profile": {
                    "real_name": name,
                    "display_name": name,
                    "real_name_normalized": name,
                    "display_name_normalized": name,
                    "team": cfg.team_id,
                },
            },
        }

    def usergroups_users_list(params: JSONDict) -> JSONDict:
        group = _str_field(params, "usergroup")
        if group is None:
            raise _SlackError("invalid_arguments")
        if group not in cfg.usergroups:
            raise _SlackError("no_such_subteam")
        return {"ok": True, "users": list(cfg.usergroups[group])}

    def apps_connections_open(params: JSONDict) -> JSONDict:
        return {"ok": True, "url": socket.url}

    handlers: dict[str, Any] = {
        "auth.test": auth_test,
        "chat.postMessage": post_message,
        "chat.update": update,
        "chat.postEphemeral": post_ephemeral,
        "chat.getPermalink": get_permalink,
        "views.open": views_open,
        "views.update": views_update,
        "conversations.info": conversations_info,
        "users.info": users_info,
        "usergroups.users.list": usergroups_users_list,
        "apps.connections.open": apps_connections_open,
    }

    def auth_error(request: Request, params: JSONDict, method: str) -> str | None:
        header = request.headers.get("authorization")
        token: str | None = None
        if header is not None:
            scheme, _, value = header.partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
            if token is None or not token:
                return "invalid_auth"
        else:
            token = _str_field(params, "token")
        if token is None:
            return "not_authed"
        wanted = cfg.app_token if method == "apps.connections.open" else cfg.bot_token
        if token != wanted:
            return "invalid_auth"
        if state.revoked:
            return "token_revoked"
        return None

    async def web_api(method: str, request: Request) -> JSONResponse:
        call: JSONDict = {"method": method, "at": time.time()}
        state.calls.append(call)

        def reply(
            body: JSONDict, status: int = 200, headers: dict[str, str] | None = None
        ) -> JSONResponse:
            call.update(status=status, ok=bool(body.get("ok")), error=body.get("error"))
            return JSONResponse(body, status_code=status, headers=headers)

        if method not in handlers:
            return reply({"ok": False, "error": "unknown_method", "req_method": method})
        fault = state.take_fault(method)
        hold_s = fault.hold_s if fault is not None and fault.kind == "slow_answer" else 0.0
        if fault is not None and not hold_s:
            if fault.kind == "rate_limited":
                headers = {"Retry-After": str(fault.retry_after)}
                return reply({"ok": False, "error": "ratelimited"}, 429, headers)
            if fault.kind == "server_error":
                return reply({"ok": False, "error": "internal_error"}, 500)
            return reply({"ok": False, "error": fault.error})
        try:
            params = await _read_params(request)
            error = auth_error(request, params, method)
            if error is not None:
                return reply({"ok": False, "error": error})
            result = handlers[method](params)
        except _SlackError as exc:
            return reply({"ok": False, "error": exc.error}, exc.status, exc.headers)
        if hold_s:
            await asyncio.sleep(hold_s)
        return reply(result)

    app.add_api_route("/api/{method}", web_api, methods=["POST", "GET"])

    # ----------------------------------------------------------------- control

    def message_record(record: JSONDict) -> JSONDict:
        return {
            "channel": record["channel"],
            "ts": record["ts"],
            "thread_ts": record["thread_ts"],
            "text": record["text"],
            "blocks": record["blocks"],
            "metadata": record["metadata"],
            "history": record["history"],
            "message": message_object(record),
        }

    @app.get("/_standin/messages")
    async def list_messages(channel: str | None = None) -> list[JSONDict]:
        return [
            message_record(r)
            for r in state.messages.values()
            if channel is None or r["channel"] == channel
        ]

    @app.get("/_standin/ephemeral")
    async def list_ephemeral() -> list[JSONDict]:
        return state.ephemeral

    @app.get("/_standin/views")
    async def list_views() -> list[JSONDict]:
        return list(state.views.values())

    @app.get("/_standin/calls")
    async def list_calls() -> list[JSONDict]:
        return state.calls

    @app.get("/_standin/faults")
    async def list_faults() -> JSONDict:
        return {"faults": [f.model_dump() for f in state.faults]}

    @app.post("/_standin/faults")
    async def add_faults(body: FaultsBody) -> JSONDict:
        state.faults.extend(body.faults)
        return {"ok": True, "pending": len(state.faults)}

    @app.post("/_standin/triggers")
    async def add_trigger(body: TriggerBody) -> JSONDict:
        state.triggers[body.trigger_id] = _Trigger(body.user_id, time.monotonic())
        return {"ok": True}

    @app.post("/_standin/revoke")
    async def revoke() -> JSONDict:
        state.revoked = True
        return {"ok": True}

    @app.post("/_standin/restore")
    async def restore() -> JSONDict:
        state.revoked = False
        return {"ok": True}

    @app.post("/_standin/usergroups")
    async def set_usergroups(body: UsergroupsBody) -> JSONDict:
        cfg.usergroups.update(body.usergroups)
        return {"ok": True}

    @app.post("/_standin/socket")
    async def socket_send(body: SocketBody) -> JSONDict:
        return await socket.send(body.type, body.payload)

    @app.post("/_standin/reset")
    async def reset() -> JSONDict:
        state.reset()
        return {"ok": True}

    return app
