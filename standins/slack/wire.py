"""The Slack Web API conventions every method of the Slack stand-in shares.

slack_sdk sends the same arguments as a form in one call and as JSON in the
next, JSON-encodes some fields inside forms, and expects `{"ok": false,
"error": ...}` with HTTP 200 for most refusals. Reading parameters and
blocks the way Slack does, in one place, keeps every method answering alike.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import Request

from standins.slack.config import SlackStandInConfig

JSONDict = dict[str, Any]
"""A JSON object as the Web API reads and writes it."""


class SlackError(Exception):
    """An `{"ok": false, "error": ...}` answer, HTTP 200 unless told otherwise.

    Raised from inside a method, it becomes the answer the real Web API would
    give, so slack_sdk raises its `SlackApiError` with the same `error` code.
    """

    def __init__(
        self, error: str, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        """Hold Slack's error code, and the status and headers for the rare non-200 ones."""
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers


def json_field(params: JSONDict, name: str) -> Any:
    """A field slack_sdk JSON-encodes in form bodies but sends raw in JSON bodies."""
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise SlackError(f"invalid_{name}") from exc
    return value


def str_field(params: JSONDict, name: str) -> str | None:
    """A string parameter, None when absent or empty, as Slack treats an empty one."""
    value = params.get(name)
    if value is None or value == "":
        return None
    return str(value)


def require_channel(config: SlackStandInConfig, params: JSONDict) -> str:
    """The call's `channel`, refused with `channel_not_found` unless configured."""
    channel = str_field(params, "channel")
    if channel is None or channel not in config.channels:
        raise SlackError("channel_not_found")
    return channel


def short_id(seed: str, n: int = 5) -> str:
    """A Slack-looking `block_id`/`action_id`, the same for the same seed."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:n])


def normalise_blocks(raw: Any, seed: str) -> list[JSONDict]:
    """Validate blocks and fill in `block_id`/`action_id` as Slack does."""
    if not isinstance(raw, list) or not all(isinstance(b, dict) for b in raw):
        raise SlackError("invalid_blocks")
    blocks: list[JSONDict] = []
    for i, block in enumerate(raw):
        if "type" not in block:
            raise SlackError("invalid_blocks")
        block = json.loads(json.dumps(block))
        block.setdefault("block_id", short_id(f"{seed}/{i}"))
        elements = block.get("elements")
        if block["type"] == "actions" and isinstance(elements, list):
            for j, element in enumerate(elements):
                if isinstance(element, dict) and "type" in element:
                    element.setdefault("action_id", short_id(f"{seed}/{i}/{j}"))
        blocks.append(block)
    return blocks


def text_blocks(text: str, seed: str) -> list[JSONDict]:
    """Slack turns a text-only message into one rich_text block."""
    if not text:
        return []
    return [
        {
            "type": "rich_text",
            "block_id": short_id(seed),
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
            ],
        }
    ]


async def read_params(request: Request) -> JSONDict:
    """A Web API call's arguments: the query, then a form or JSON body over it."""
    params: JSONDict = dict(request.query_params)
    body = await request.body()
    if not body:
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError as exc:
            raise SlackError("invalid_json") from exc
        if not isinstance(parsed, dict):
            raise SlackError("invalid_json")
        params.update(parsed)
    else:
        # A form, urlencoded or multipart, parsed by python-multipart (uploads are not kept).
        form = await request.form()
        params.update({key: value for key, value in form.multi_items() if isinstance(value, str)})
    return params
