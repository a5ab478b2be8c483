"""A simulated reviewer: a **stand-in** for a person clicking in Slack.

`SimulatedReviewer` sends what Slack itself would send to the gateway when a
person presses a button on a proposal message or submits a modal: a signed
``POST {gateway_url}/slack/interactions`` with an
``application/x-www-form-urlencoded`` body holding one field,
``payload=<json>``, and the ``X-Slack-Request-Timestamp`` /
``X-Slack-Signature`` headers (``v0=`` + HMAC-SHA256 of
``v0:{timestamp}:{raw body}`` with the signing secret).

The module-level helpers follow the path a person takes, using the Slack Web
API stand-in (`standins.slack`) to see what the gateway posted and opened:

* `wait_for_message` waits for a message carrying a given button;
* `decide_in_slack` clicks Accept, or clicks Reject… / Modify…, waits for the
  modal the gateway opens for that click and submits it;
* `SimulatedReviewer.accept` clicks Accept and waits for what the gateway
  tells the reviewer about it (`wait_until_told`): the gateway acknowledges
  a click at once, "being recorded", and a person learns the round's answer
  from the ephemeral message that follows, never from the acknowledgement.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from review.messages import MODIFY_CALLBACK, REJECT_CALLBACK

JSONDict = dict[str, Any]
T = TypeVar("T")

APP_ID = "A0AMEND"
# The Slack user id the simulated reviewer clicks as (the demo's reviewer).
SIMULATED_REVIEWER = "U0SIMREVIEW"
VERIFICATION_TOKEN = "stand-in-legacy-verification-token"
RESPONSE_URL = "https://hooks.slack.com/actions/T0AMEND/1/stand-in"
DEFAULT_CHANNEL_NAMES = {"C0AMENDREVIEW": "amend-review"}

Decision = Literal["accept", "reject", "modify"]

_trigger_counter = itertools.count(1)


@cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client the reviewer opens: building one per
    request (httpx's default) cost more CPU than the whole round it was driving.
    Built on first use, not on import: the dev stack imports this module for
    `SIMULATED_REVIEWER` alone, and a context takes 20 ms (issue 14)."""
    return ssl.create_default_context()


class ReviewerError(RuntimeError):
    """The simulated reviewer could not do what it was asked to."""


def _unwrap_message(message: JSONDict) -> JSONDict:
    """Accept a Slack message object or a `/_standin/messages` record."""
    inner = message.get("message")
    if isinstance(inner, dict) and "history" in message:
        return inner
    return message


def _unwrap_view(view: JSONDict) -> JSONDict:
    """Accept a view object or a `/_standin/views` record."""
    inner = view.get("view")
    if isinstance(inner, dict) and "trigger_id" in view:
        return inner
    return view


def _find_button(message: JSONDict, action_id: str) -> tuple[JSONDict, JSONDict]:
    for block in message.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        candidates: list[Any] = []
        if block.get("type") == "actions":
            candidates = list(block.get("elements") or [])
        elif isinstance(block.get("accessory"), dict):
            candidates = [block["accessory"]]
        for element in candidates:
            if (
                isinstance(element, dict)
                and element.get("type") == "button"
                and element.get("action_id") == action_id
            ):
                return block, element
    buttons = [
        element.get("action_id")
        for block in message.get("blocks") or []
        if isinstance(block, dict)
        for element in (block.get("elements") or [])
        if isinstance(element, dict) and element.get("type") == "button"
    ]
    raise ReviewerError(
        f"message ts={message.get('ts')!r} has no button with action_id {action_id!r} "
        f"(buttons: {buttons})"
    )


@dataclass(frozen=True)
class Told:
    """A click and what the reviewer was told about it."""

    ack: httpx.Response  # the gateway's answer to Slack, which Slack does not show
    ephemeral: JSONDict  # the `/_standin/ephemeral` record the reviewer sees

    @property
    def text(self) -> str:
        return str(self.ephemeral.get("text") or "")

    @property
    def refused(self) -> bool:
        """Whether the reviewer was told the decision was not recorded."""
        return self.text.startswith("Not recorded")


class SimulatedReviewer:
    """A stand-in for one Slack user who reviews proposals through the gateway."""

    def __init__(
        self,
        gateway_url: str,
        signing_secret: str,
        user_id: str,
        user_name: str = "sim-reviewer",
        team_id: str = "T0AMEND",
        *,
        team_domain: str = "amend",
        slack_api_url: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.signing_secret = signing_secret
        self.user_id = user_id
        self.user_name = user_name
        self.team_id = team_id
        self.team_domain = team_domain
        # When set, every trigger id is registered with the Slack stand-in, so
        # the views the gateway opens with it are recorded with this user.
        self.slack_api_url = slack_api_url.rstrip("/") if slack_api_url else None
        self._client = client
        self._timeout = timeout
        self._verifier = SignatureVerifier(signing_secret)

    # ------------------------------------------------------------- pieces

    @property
    def interactions_url(self) -> str:
        return f"{self.gateway_url}/slack/interactions"

    def user(self) -> JSONDict:
        return {
            "id": self.user_id,
            "username": self.user_name,
            "name": self.user_name,
            "team_id": self.team_id,
        }

    def team(self) -> JSONDict:
        return {"id": self.team_id, "domain": self.team_domain}

    def new_trigger_id(self) -> str:
        """A fresh trigger id in Slack's "digits.digits.hex" shape."""
        return f"{int(time.time())}.{next(_trigger_counter)}.{secrets.token_hex(16)}"

    def sign(self, body: bytes, timestamp: int) -> str:
        """Slack's request signature for `body` sent at `timestamp`."""
        signature = self._verifier.generate_signature(timestamp=str(timestamp), body=body)
        if signature is None:  # only when timestamp is None, which it is not
            raise ReviewerError("could not sign the request")
        return signature

    @staticmethod
    def encode(payload: JSONDict) -> bytes:
        """The form body Slack sends: a single `payload` field holding JSON."""
        return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()

    # ------------------------------------------------------------- sending

    async def send_raw(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """POST `body` to the interactions endpoint, signed unless told otherwise.

        Pass `timestamp` (e.g. ten minutes ago) or `signature` to forge requests.
        """
        ts = int(time.time()) if timestamp is None else timestamp
        sig = self.sign(body, ts) if signature is None else signature
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sig,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        if self._client is not None:
            return await self._client.post(
                self.interactions_url, content=body, headers=headers, timeout=self._timeout
            )
        async with httpx.AsyncClient(timeout=self._timeout, verify=_tls()) as client:
            return await client.post(self.interactions_url, content=body, headers=headers)

    async def send_payload(self, payload: JSONDict) -> httpx.Response:
        return await self.send_raw(self.encode(payload))

    async def register_trigger(self, trigger_id: str, slack_api_url: str | None = None) -> None:
        """Tell the Slack stand-in this trigger id is this reviewer's."""
        url = (slack_api_url or self.slack_api_url or "").rstrip("/")
        if not url:
            return
        async with httpx.AsyncClient(timeout=self._timeout, verify=_tls()) as client:
            response = await client.post(
                f"{url}/_standin/triggers",
                json={"trigger_id": trigger_id, "user_id": self.user_id},
            )
            response.raise_for_status()

    # ------------------------------------------------------------- payloads

    def block_actions_payload(
        self,
        message: JSONDict,
        action_id: str,
        *,
        channel_id: str,
        channel_name: str | None = None,
        trigger_id: str | None = None,
    ) -> JSONDict:
        """The `block_actions` payload for pressing a button on `message`."""
        message = _unwrap_message(message)
        block, button = _find_button(message, action_id)
        action: JSONDict = {
            "action_id": action_id,
            "block_id": block.get("block_id"),
            "text": button.get("text") or {"type": "plain_text", "text": action_id},
            "type": "button",
            "action_ts": f"{time.time():.6f}",
        }
        if "value" in button:
            action["value"] = button["value"]
        if "style" in button:
            action["style"] = button["style"]
        container: JSONDict = {
            "type": "message",
            "message_ts": message.get("ts"),
            "channel_id": channel_id,
            "is_ephemeral": False,
        }
        if message.get("thread_ts"):
            container["thread_ts"] = message["thread_ts"]
        name = channel_name or DEFAULT_CHANNEL_NAMES.get(channel_id, channel_id.lower())
        return {
            "type": "block_actions",
            "user": self.user(),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": container,
            "trigger_id": trigger_id or self.new_trigger_id(),
            "team": self.team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": name},
            "message": message,
            "state": {"values": {}},
            "response_url": RESPONSE_URL,
            "actions": [action],
        }

    def view_submission_payload(
        self, view: JSONDict, values: dict[str, str], *, trigger_id: str | None = None
    ) -> JSONDict:
        """The `view_submission` payload for submitting `view` with `values`.

        `values` maps an input block's block_id to the text typed into it. An
        optional input left out is submitted empty (value null); a required one
        left out is an error, as the Slack client would not submit the modal.
        """
        view = _unwrap_view(view)
        state_values: dict[str, JSONDict] = {}
        known: set[str] = set()
        for block in view.get("blocks") or []:
            if not isinstance(block, dict) or block.get("type") != "input":
                continue
            block_id = block.get("block_id")
            element = block.get("element") or {}
            action_id = element.get("action_id")
            if not isinstance(block_id, str) or not isinstance(action_id, str):
                raise ReviewerError(f"input block without block_id/action_id: {block}")
            known.add(block_id)
            element_type = element.get("type", "plain_text_input")
            if block_id in values:
                value: str | None = values[block_id]
            elif block.get("optional"):
                value = None
            else:
                raise ReviewerError(
                    f"required input {block_id!r} of view {view.get('id')!r} has no value"
                )
            state_values[block_id] = {action_id: {"type": element_type, "value": value}}
        unknown = set(values) - known
        if unknown:
            raise ReviewerError(
                f"view {view.get('id')!r} has no input blocks {sorted(unknown)} "
                f"(inputs: {sorted(known)})"
            )
        submitted: JSONDict = {
            "id": view.get("id"),
            "team_id": view.get("team_id", self.team_id),
            "type": "modal",
            "blocks": view.get("blocks") or [],
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": state_values},
            "hash": view.get("hash", ""),
            "title": view.get("title"),
            "clear_on_close": view.get("clear_on_close", False),
            "notify_on_close": view.get("notify_on_close", False),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": view.get("previous_view_id"),
            "root_view_id": view.get("root_view_id", view.get("id")),
            "app_id": view.get("app_id", APP_ID),
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": view.get("app_installed_team_id", self.team_id),
            "bot_id": view.get("bot_id"),
        }
        return {
            "type": "view_submission",
            "team": self.team(),
            "user": self.user(),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": trigger_id or self.new_trigger_id(),
            "view": submitted,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }

    # ------------------------------------------------------------- actions

    async def click(
        self,
        message: JSONDict,
        action_id: str,
        *,
        channel_id: str,
        channel_name: str | None = None,
        trigger_id: str | None = None,
    ) -> httpx.Response:
        """Press the button `action_id` on `message` (a Slack message object or
        a `/_standin/messages` record). Raises `ReviewerError` if there is none."""
        payload = self.block_actions_payload(
            message,
            action_id,
            channel_id=channel_id,
            channel_name=channel_name,
            trigger_id=trigger_id,
        )
        await self.register_trigger(payload["trigger_id"])
        return await self.send_payload(payload)

    async def submit_view(self, view: JSONDict, values: dict[str, str]) -> httpx.Response:
        """Submit `view` (a view object or a `/_standin/views` record)."""
        return await self.send_payload(self.view_submission_payload(view, values))

    async def accept(self, message: JSONDict, *, channel_id: str, wait_s: float = 10.0) -> Told:
        """Press Accept on `message` and wait, as a person does, for the
        ephemeral message the gateway tells this reviewer about it.

        One click of this reviewer's at a time: the message told is the first
        this reviewer gets after the click. Needs `slack_api_url`.
        """
        if self.slack_api_url is None:
            raise ReviewerError("accept reads the ephemeral messages: give slack_api_url")
        seen = len(await told_to(self.slack_api_url, self.user_id))
        ack = await self.click(message, "accept", channel_id=channel_id)
        if ack.status_code != 200:
            raise ReviewerError(
                f"the gateway refused the accept click: {ack.status_code} {ack.text}"
            )
        told = await wait_until_told(self.slack_api_url, self.user_id, seen=seen, wait_s=wait_s)
        return Told(ack=ack, ephemeral=told)


# ----------------------------------------------------------------- a person's flow


async def _get_json(url: str) -> Any:
    async with httpx.AsyncClient(timeout=10.0, verify=_tls()) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.json()


async def _poll(
    url: str, pick: Callable[[list[JSONDict]], T | None], wait_s: float, missing: str
) -> T:
    """GET `url` until `pick` finds what it wants in the records, or time runs out."""
    deadline = time.monotonic() + wait_s
    while True:
        records: list[JSONDict] = await _get_json(url)
        found = pick(records)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise ReviewerError(f"{missing} within {wait_s}s ({len(records)} records seen)")
        await asyncio.sleep(0.05)


def _has_button(record: JSONDict, action_id: str) -> bool:
    try:
        _find_button(record["message"], action_id)
    except ReviewerError:
        return False
    return True


def _messages_url(slack_api_url: str, channel_id: str | None) -> str:
    url = slack_api_url.rstrip("/") + "/_standin/messages"
    return url if channel_id is None else f"{url}?channel={channel_id}"


async def wait_for_message(
    slack_api_url: str,
    *,
    channel_id: str | None = None,
    action_id: str = "accept",
    wait_s: float = 10.0,
    after_ts: str | None = None,
) -> JSONDict:
    """Wait for the newest message in the Slack stand-in with a button `action_id`.

    Returns its `/_standin/messages` record (``channel``, ``ts``, ``message``, ...);
    `SimulatedReviewer.click` accepts it as is. `after_ts` skips older messages.
    """

    def newest(records: list[JSONDict]) -> JSONDict | None:
        return next(
            (
                r
                for r in reversed(records)
                if (after_ts is None or float(r["ts"]) > float(after_ts))
                and _has_button(r, action_id)
            ),
            None,
        )

    return await _poll(
        _messages_url(slack_api_url, channel_id),
        newest,
        wait_s,
        f"no message with a {action_id!r} button appeared",
    )


async def open_proposals(slack_api_url: str, *, channel_id: str | None = None) -> list[JSONDict]:
    """The messages that still carry decision buttons now, oldest first."""
    records: list[JSONDict] = await _get_json(_messages_url(slack_api_url, channel_id))
    return [r for r in records if _has_button(r, "accept")]


async def wait_for_proposals(
    slack_api_url: str,
    count: int,
    *,
    channel_id: str | None = None,
    wait_s: float = 10.0,
    round_id: str | None = None,
) -> list[JSONDict]:
    """Wait until `count` messages with decision buttons are posted, as a
    reviewer watching the channel would; their records, oldest first.

    `round_id` keeps to that round's messages: a workspace kept across runs
    may still hold open proposals of another round."""

    def first(records: list[JSONDict]) -> list[JSONDict] | None:
        open_ = [
            r
            for r in records
            if _has_button(r, "accept") and (round_id is None or round_id in r["text"])
        ]
        return open_[:count] if len(open_) >= count else None

    return await _poll(
        _messages_url(slack_api_url, channel_id),
        first,
        wait_s,
        f"fewer than {count} messages with decision buttons appeared",
    )


async def wait_for_view(
    slack_api_url: str,
    *,
    trigger_id: str | None = None,
    user_id: str | None = None,
    callback_id: str | None = None,
    wait_s: float = 10.0,
) -> JSONDict:
    """Wait for the newest view the stand-in opened matching the filters; its record."""

    def newest(records: list[JSONDict]) -> JSONDict | None:
        return next(
            (
                r
                for r in reversed(records)
                if (trigger_id is None or r.get("trigger_id") == trigger_id)
                and (user_id is None or r.get("user") == user_id)
                and (callback_id is None or r["view"].get("callback_id") == callback_id)
            ),
            None,
        )

    return await _poll(
        slack_api_url.rstrip("/") + "/_standin/views",
        newest,
        wait_s,
        f"no view (trigger_id={trigger_id!r}, user={user_id!r}, callback_id={callback_id!r}) "
        "was opened",
    )


async def told_to(slack_api_url: str, user_id: str) -> list[JSONDict]:
    """The ephemeral messages the Slack stand-in holds for `user_id`, oldest first."""
    records: list[JSONDict] = await _get_json(slack_api_url.rstrip("/") + "/_standin/ephemeral")
    return [r for r in records if r.get("user") == user_id]


async def wait_until_told(
    slack_api_url: str, user_id: str, *, seen: int = 0, wait_s: float = 10.0
) -> JSONDict:
    """Wait for an ephemeral message to `user_id` past the first `seen`; its record."""

    def next_one(records: list[JSONDict]) -> JSONDict | None:
        mine = [r for r in records if r.get("user") == user_id]
        return mine[seen] if len(mine) > seen else None

    return await _poll(
        slack_api_url.rstrip("/") + "/_standin/ephemeral",
        next_one,
        wait_s,
        f"{user_id} was told nothing more (had been told {seen})",
    )


async def decide_in_slack(
    reviewer: SimulatedReviewer,
    slack_api_url: str,
    message: JSONDict,
    decision: Decision,
    *,
    channel_id: str,
    text: str | None = None,
    comment: str | None = None,
    wait_s: float = 10.0,
) -> httpx.Response:
    """Do what a person does to accept, reject or modify a proposal message.

    accept: press that button; the gateway's response is returned (it
    acknowledges the click, "being recorded"; `SimulatedReviewer.accept`
    waits for what the reviewer is told).
    reject / modify: press the button, wait for the modal the gateway opens
    with that click's trigger id (callback_id ``reject_proposal`` or
    ``modify_proposal``), fill its ``comment`` (and for modify ``text``) input
    and submit it; the submission's response is returned.
    """
    if decision == "accept":
        return await reviewer.click(message, decision, channel_id=channel_id)
    if decision not in ("modify", "reject"):
        raise ValueError(f"decision must be accept, reject or modify, not {decision!r}")
    trigger_id = reviewer.new_trigger_id()
    await reviewer.register_trigger(trigger_id, slack_api_url)
    clicked = await reviewer.click(message, decision, channel_id=channel_id, trigger_id=trigger_id)
    if clicked.status_code >= 400:
        raise ReviewerError(
            f"the gateway refused the {decision} click: {clicked.status_code} {clicked.text}"
        )
    if clicked.json().get("outcome") == "refused":
        return clicked  # a stale or settled proposal: no modal to fill in
    record = await wait_for_view(
        slack_api_url,
        trigger_id=trigger_id,
        callback_id=MODIFY_CALLBACK if decision == "modify" else REJECT_CALLBACK,
        wait_s=wait_s,
    )
    values = {"text": text} if decision == "modify" and text is not None else {}
    if comment is not None:
        values["comment"] = comment
    return await reviewer.submit_view(record, values)
