"""The Slack Web API stand-in and the simulated reviewer, driven by the real slack_sdk."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from standins.reviewer import (
    ReviewerError,
    SimulatedReviewer,
    decide_in_slack,
    told_to,
    wait_for_message,
    wait_until_told,
)
from standins.serving import serve
from standins.slack.app import create_app
from standins.slack.config import SlackStandInConfig
from standins.slack.state import standin_state

TOKEN = "xoxb-amend-stand-in"
CHANNEL = "C0AMENDREVIEW"
SECRET = "stand-in-signing-secret"
REVIEWER_ID = "U0REVIEWER"

PROPOSAL_BLOCKS: list[dict[str, Any]] = [
    {"type": "section", "block_id": "summary", "text": {"type": "mrkdwn", "text": "*P-1*"}},
    {
        "type": "actions",
        "block_id": "decision",
        "elements": [
            {
                "type": "button",
                "action_id": action,
                "text": {"type": "plain_text", "text": action.title()},
                "value": "P-1",
            }
            for action in ("accept", "reject", "modify")
        ],
    },
]

MODIFY_VIEW: dict[str, Any] = {
    "type": "modal",
    "callback_id": "modify_proposal",
    "private_metadata": "P-1",
    "title": {"type": "plain_text", "text": "Modify"},
    "submit": {"type": "plain_text", "text": "Submit"},
    "blocks": [
        {
            "type": "input",
            "block_id": "text",
            "label": {"type": "plain_text", "text": "Text"},
            "element": {"type": "plain_text_input", "action_id": "text", "multiline": True},
        },
        {
            "type": "input",
            "block_id": "comment",
            "optional": True,
            "label": {"type": "plain_text", "text": "Comment"},
            "element": {"type": "plain_text_input", "action_id": "comment"},
        },
    ],
}


@dataclass
class SlackStandIn:
    url: str
    app: FastAPI

    @property
    def api(self) -> str:
        return self.url + "/api/"

    def client(self, token: str | None = TOKEN, **kwargs: Any) -> AsyncWebClient:
        return AsyncWebClient(token=token, base_url=self.api, **kwargs)

    async def get(self, path: str) -> Any:
        async with httpx.AsyncClient() as http:
            response = await http.get(self.url + path)
            response.raise_for_status()
            return response.json()

    async def post(self, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient() as http:
            response = await http.post(self.url + path, json=body)
            response.raise_for_status()
            return response.json()


@pytest.fixture(scope="module")
async def slack_server() -> AsyncIterator[SlackStandIn]:
    app = create_app()
    async with serve(app) as served:
        yield SlackStandIn(served.url, app)


@pytest.fixture
async def slack(slack_server: SlackStandIn) -> SlackStandIn:
    await slack_server.post("/_standin/reset")
    return slack_server


# --------------------------------------------------------------------------- Web API


async def test_post_thread_update_and_state(slack: SlackStandIn) -> None:
    client = slack.client()
    auth = await client.auth_test()
    assert auth["ok"] and auth["user_id"] == "U0AMENDBOT" and auth["team_id"] == "T0AMEND"

    posted = await client.chat_postMessage(
        channel=CHANNEL, text="Proposal P-1", blocks=PROPOSAL_BLOCKS, metadata=None
    )
    ts = posted["ts"]
    assert posted["channel"] == CHANNEL
    assert isinstance(ts, str) and ts.count(".") == 1 and len(ts.split(".")[1]) == 6
    message = posted["message"]
    assert message["type"] == "message" and message["ts"] == ts
    assert message["text"] == "Proposal P-1" and message["blocks"] == PROPOSAL_BLOCKS
    assert message["bot_id"] == "B0AMENDBOT" and message["app_id"] == "A0AMEND"
    assert message["user"] == "U0AMENDBOT" and "thread_ts" not in message

    reply = await client.chat_postMessage(channel=CHANNEL, text="a reply", thread_ts=ts)
    assert float(reply["ts"]) > float(ts)
    assert reply["message"]["thread_ts"] == ts
    assert reply["message"]["blocks"][0]["type"] == "rich_text"

    new_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Accepted"}}]
    updated = await client.chat_update(channel=CHANNEL, ts=ts, text="done", blocks=new_blocks)
    assert updated["ts"] == ts and updated["text"] == "done"
    assert updated["message"]["blocks"][0]["text"]["text"] == "Accepted"
    assert updated["message"]["blocks"][0]["block_id"]  # filled in, as Slack does
    assert "edited" in updated["message"]

    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel=CHANNEL, ts="1.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"

    link = await client.chat_getPermalink(channel=CHANNEL, message_ts=reply["ts"])
    assert link["permalink"].startswith(f"https://amend.slack.com/archives/{CHANNEL}/p")
    assert f"thread_ts={ts}" in link["permalink"]

    messages = await slack.get("/_standin/messages")
    assert [m["ts"] for m in messages] == [ts, reply["ts"]]
    first = messages[0]
    assert first["channel"] == CHANNEL and first["thread_ts"] is None
    assert first["text"] == "done" and first["blocks"][0]["text"]["text"] == "Accepted"
    assert first["history"][0]["text"] == "Proposal P-1"
    assert first["history"][0]["blocks"] == PROPOSAL_BLOCKS
    assert messages[1]["thread_ts"] == ts

    calls = await slack.get("/_standin/calls")
    assert [c["method"] for c in calls][:3] == ["auth.test", "chat.postMessage", "chat.postMessage"]
    assert calls[-1]["ok"] is True


async def test_form_body_with_json_encoded_blocks_and_metadata(slack: SlackStandIn) -> None:
    client = slack.client()
    response = await client.api_call(
        "chat.postMessage",
        data={
            "channel": CHANNEL,
            "text": "form",
            "blocks": json.dumps(PROPOSAL_BLOCKS),
            "metadata": json.dumps({"event_type": "proposal", "event_payload": {"id": "P-1"}}),
        },
    )
    assert response["message"]["blocks"] == PROPOSAL_BLOCKS
    assert response["message"]["metadata"]["event_payload"] == {"id": "P-1"}
    with pytest.raises(SlackApiError) as bad:
        await client.api_call("chat.postMessage", data={"channel": CHANNEL, "blocks": "not json"})
    assert bad.value.response["error"] == "invalid_blocks"


async def test_ephemeral_views_conversations_users(slack: SlackStandIn) -> None:
    client = slack.client()
    eph = await client.chat_postEphemeral(channel=CHANNEL, user=REVIEWER_ID, text="only you")
    assert eph["ok"] and eph["message_ts"]
    ephemeral = await slack.get("/_standin/ephemeral")
    assert ephemeral[0]["user"] == REVIEWER_ID and ephemeral[0]["text"] == "only you"

    await slack.post("/_standin/triggers", {"trigger_id": "1.2.abc", "user_id": REVIEWER_ID})
    opened = await client.views_open(trigger_id="1.2.abc", view=MODIFY_VIEW)
    view = opened["view"]
    assert view["id"].startswith("V") and view["hash"] and view["state"] == {"values": {}}
    assert view["callback_id"] == "modify_proposal" and view["private_metadata"] == "P-1"
    with pytest.raises(SlackApiError) as again:
        await client.views_open(trigger_id="1.2.abc", view=MODIFY_VIEW)
    assert again.value.response["error"] == "trigger_exchanged"

    with pytest.raises(SlackApiError) as conflict:
        await client.views_update(view_id=view["id"], view=MODIFY_VIEW, hash="stale")
    assert conflict.value.response["error"] == "hash_conflict"
    updated = await client.views_update(view_id=view["id"], view=MODIFY_VIEW, hash=view["hash"])
    assert updated["view"]["id"] == view["id"]

    views = await slack.get("/_standin/views")
    assert views[0]["trigger_id"] == "1.2.abc" and views[0]["user"] == REVIEWER_ID
    assert views[0]["view"]["id"] == view["id"] and len(views[0]["history"]) == 1

    info = await client.conversations_info(channel=CHANNEL)
    assert info["channel"]["id"] == CHANNEL and info["channel"]["name"] == "amend-review"
    user = await client.users_info(user=REVIEWER_ID)
    assert user["user"]["id"] == REVIEWER_ID and user["user"]["is_bot"] is False


async def test_history_and_replies_page_newest_first_and_show_metadata_only_when_asked(
    slack: SlackStandIn,
) -> None:
    client = slack.client()
    metadata = {"event_type": "amend_post", "event_payload": {"key": "k1"}}
    first = await client.chat_postMessage(channel=CHANNEL, text="one", metadata=metadata)
    second = await client.chat_postMessage(channel=CHANNEL, text="two")
    reply = await client.chat_postMessage(
        channel=CHANNEL, text="reply", thread_ts=first["ts"], metadata=metadata
    )
    plain = await client.conversations_history(channel=CHANNEL)
    assert [m["ts"] for m in plain["messages"]] == [second["ts"], first["ts"]]
    assert all("metadata" not in m for m in plain["messages"])
    paged = await client.conversations_history(channel=CHANNEL, limit=1, include_all_metadata=True)
    assert [m["ts"] for m in paged["messages"]] == [second["ts"]] and paged["has_more"]
    rest = await client.conversations_history(
        channel=CHANNEL,
        limit=1,
        include_all_metadata=True,
        cursor=paged["response_metadata"]["next_cursor"],
    )
    assert [m["metadata"] for m in rest["messages"]] == [metadata] and not rest["has_more"]
    since = await client.conversations_history(channel=CHANNEL, oldest=first["ts"])
    assert [m["ts"] for m in since["messages"]] == [second["ts"]]
    thread = await client.conversations_replies(
        channel=CHANNEL, ts=first["ts"], include_all_metadata=True
    )
    assert [m["ts"] for m in thread["messages"]] == [first["ts"], reply["ts"]]
    assert thread["messages"][1]["metadata"] == metadata


async def test_a_deleted_message_cannot_be_updated(slack: SlackStandIn) -> None:
    client = slack.client()
    posted = await client.chat_postMessage(channel=CHANNEL, text="soon gone")
    deleted = await client.chat_delete(channel=CHANNEL, ts=posted["ts"])
    assert deleted["ok"] and deleted["ts"] == posted["ts"]
    for call in (
        client.chat_update(channel=CHANNEL, ts=posted["ts"], text="edited"),
        client.chat_delete(channel=CHANNEL, ts=posted["ts"]),
    ):
        with pytest.raises(SlackApiError) as gone:
            await call
        assert gone.value.response["error"] == "message_not_found"
    assert await slack.get("/_standin/messages") == []


async def test_auth_and_channel_errors(slack: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as invalid:
        await slack.client(token="xoxb-wrong").chat_postMessage(channel=CHANNEL, text="x")
    assert invalid.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as absent:
        await slack.client(token=None).auth_test()
    assert absent.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as channel:
        await slack.client().chat_postMessage(channel="C0NOPE", text="x")
    assert channel.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as unknown:
        await slack.client().api_call("chat.frobnicate")
    assert unknown.value.response["error"] == "unknown_method"

    await slack.post("/_standin/revoke")
    with pytest.raises(SlackApiError) as revoked:
        await slack.client().auth_test()
    assert revoked.value.response["error"] == "token_revoked"
    await slack.post("/_standin/reset")
    assert (await slack.client().auth_test())["ok"]


async def test_faults(slack: SlackStandIn) -> None:
    await slack.post(
        "/_standin/faults",
        {
            "faults": [
                {"kind": "rate_limited", "retry_after": 1},
                {"kind": "server_error"},
                {"kind": "error", "error": "channel_not_found"},
            ]
        },
    )
    client = slack.client()
    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel=CHANNEL, text="x")
    assert limited.value.response.status_code == 429
    assert limited.value.response["error"] == "ratelimited"
    assert limited.value.response.headers["Retry-After"] == "1"
    with pytest.raises(SlackApiError) as server:
        await client.chat_postMessage(channel=CHANNEL, text="x")
    assert server.value.response.status_code == 500
    with pytest.raises(SlackApiError) as error:
        await client.chat_postMessage(channel=CHANNEL, text="x")
    assert error.value.response["error"] == "channel_not_found"
    assert (await client.chat_postMessage(channel=CHANNEL, text="x"))["ok"]


async def test_rate_limit_is_retried_by_slack_sdk(slack: SlackStandIn) -> None:
    await slack.post("/_standin/faults", {"faults": [{"kind": "rate_limited", "retry_after": 0}]})
    client = slack.client(retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    posted = await client.chat_postMessage(channel=CHANNEL, text="after a 429")
    assert posted["ok"]
    calls = await slack.get("/_standin/calls")
    assert [(c["method"], c["status"]) for c in calls] == [
        ("chat.postMessage", 429),
        ("chat.postMessage", 200),
    ]


async def test_per_channel_post_rate_limit() -> None:
    app = create_app(SlackStandInConfig(post_message_per_second=1.0))
    async with serve(app) as served:
        client = AsyncWebClient(token=TOKEN, base_url=served.url + "/api/")
        assert (await client.chat_postMessage(channel=CHANNEL, text="one"))["ok"]
        with pytest.raises(SlackApiError) as limited:
            await client.chat_postMessage(channel=CHANNEL, text="two")
        assert limited.value.response.status_code == 429
        assert limited.value.response.headers["Retry-After"] == "1"
        retrying = AsyncWebClient(
            token=TOKEN,
            base_url=served.url + "/api/",
            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
        )
        assert (await retrying.chat_postMessage(channel=CHANNEL, text="two"))["ok"]
        assert len(standin_state(app).messages) == 2


# --------------------------------------------------------------------------- reviewer


@dataclass
class EchoGateway:
    """A tiny gateway: verifies Slack's signature, records payloads, opens the modal."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
async def gateway(slack_server: SlackStandIn) -> AsyncIterator[EchoGateway]:
    echo = EchoGateway()
    verifier = SignatureVerifier(SECRET)
    app = FastAPI()

    @app.post("/slack/interactions")
    async def interactions(request: Request) -> JSONResponse:
        body = await request.body()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        form = parse_qs(body.decode())
        assert list(form) == ["payload"]
        payload = json.loads(form["payload"][0])
        echo.received.append(payload)
        actions = payload.get("actions") or [{}]
        if payload["type"] == "block_actions" and actions[0].get("action_id") == "modify":
            client = slack_server.client()
            await client.views_open(trigger_id=payload["trigger_id"], view=MODIFY_VIEW)
        if payload["type"] == "block_actions" and actions[0].get("action_id") == "accept":
            # Told before the answer here, so no message outlives its test.
            await slack_server.client().chat_postEphemeral(
                channel=CHANNEL,
                user=payload["user"]["id"],
                text=f"accept recorded for {actions[0]['value']}",
            )
        return JSONResponse({"payload": payload})

    async with serve(app) as served:
        echo.url = served.url
        yield echo


@pytest.fixture
def reviewer(gateway: EchoGateway) -> SimulatedReviewer:
    gateway.received.clear()
    return SimulatedReviewer(gateway.url, SECRET, REVIEWER_ID)


async def test_click_sends_signed_block_actions(
    slack: SlackStandIn, reviewer: SimulatedReviewer
) -> None:
    posted = await slack.client().chat_postMessage(
        channel=CHANNEL, text="P-1", blocks=PROPOSAL_BLOCKS
    )
    response = await reviewer.click(posted["message"], "accept", channel_id=CHANNEL)
    assert response.status_code == 200
    payload = response.json()["payload"]
    assert payload["type"] == "block_actions"
    assert payload["user"] == {
        "id": REVIEWER_ID,
        "username": "sim-reviewer",
        "name": "sim-reviewer",
        "team_id": "T0AMEND",
    }
    assert payload["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": CHANNEL,
        "is_ephemeral": False,
    }
    assert payload["channel"] == {"id": CHANNEL, "name": "amend-review"}
    assert payload["team"] == {"id": "T0AMEND", "domain": "amend"}
    assert payload["api_app_id"] == "A0AMEND" and payload["token"]
    assert payload["enterprise"] is None and payload["is_enterprise_install"] is False
    assert payload["message"]["ts"] == posted["ts"] and payload["state"] == {"values": {}}
    assert payload["response_url"].startswith("https://hooks.slack.com/actions/")
    (action,) = payload["actions"]
    assert action["action_id"] == "accept" and action["block_id"] == "decision"
    assert action["type"] == "button" and action["value"] == "P-1"
    assert action["text"] == {"type": "plain_text", "text": "Accept"}
    assert abs(float(action["action_ts"]) - time.time()) < 5

    other = await reviewer.click(posted["message"], "reject", channel_id=CHANNEL)
    assert other.json()["payload"]["trigger_id"] != payload["trigger_id"]
    with pytest.raises(ReviewerError, match="no button"):
        await reviewer.click(posted["message"], "approve", channel_id=CHANNEL)


async def test_forged_and_stale_requests_fail_verification(reviewer: SimulatedReviewer) -> None:
    body = SimulatedReviewer.encode({"type": "block_actions"})
    assert (await reviewer.send_raw(body)).status_code == 200
    forger = SimulatedReviewer(reviewer.gateway_url, "wrong-secret", REVIEWER_ID)
    assert (await forger.send_raw(body)).status_code == 401
    stale = int(time.time()) - 600
    assert (await reviewer.send_raw(body, timestamp=stale)).status_code == 401
    now = int(time.time())
    assert (await reviewer.send_raw(body, timestamp=now, signature="v0=00")).status_code == 401
    expected = SignatureVerifier(SECRET).generate_signature(timestamp=str(now), body=body)
    assert reviewer.sign(body, now) == expected and expected.startswith("v0=")


async def test_decide_modify_submits_the_opened_view(
    slack: SlackStandIn, reviewer: SimulatedReviewer, gateway: EchoGateway
) -> None:
    await slack.client().chat_postMessage(channel=CHANNEL, text="P-1", blocks=PROPOSAL_BLOCKS)
    record = await wait_for_message(slack.url, channel_id=CHANNEL, wait_s=2)
    response = await decide_in_slack(
        reviewer,
        slack.url,
        record,
        "modify",
        channel_id=CHANNEL,
        text="Be kinder.",
        comment="tone",
    )
    assert response.status_code == 200
    click, submission = gateway.received
    assert click["actions"][0]["action_id"] == "modify"
    views = await slack.get("/_standin/views")
    assert views[-1]["user"] == REVIEWER_ID
    assert views[-1]["trigger_id"] == click["trigger_id"]
    assert submission["type"] == "view_submission"
    assert submission["user"]["id"] == REVIEWER_ID and submission["api_app_id"] == "A0AMEND"
    view = submission["view"]
    assert view["id"] == views[-1]["id"] and view["callback_id"] == "modify_proposal"
    assert view["private_metadata"] == "P-1" and view["type"] == "modal"
    assert view["hash"] == views[-1]["view"]["hash"] and view["title"]["text"] == "Modify"
    assert view["state"]["values"] == {
        "text": {"text": {"type": "plain_text_input", "value": "Be kinder."}},
        "comment": {"comment": {"type": "plain_text_input", "value": "tone"}},
    }

    accepted = await decide_in_slack(reviewer, slack.url, record, "accept", channel_id=CHANNEL)
    assert accepted.json()["payload"]["actions"][0]["action_id"] == "accept"
    with pytest.raises(ReviewerError, match="required input"):
        await reviewer.submit_view(views[-1], {"comment": "no text"})


async def test_accept_returns_what_the_reviewer_is_told_after_the_click(
    slack: SlackStandIn, gateway: EchoGateway
) -> None:
    await slack.client().chat_postMessage(channel=CHANNEL, text="P-1", blocks=PROPOSAL_BLOCKS)
    record = await wait_for_message(slack.url, channel_id=CHANNEL, wait_s=2)
    reviewer = SimulatedReviewer(gateway.url, SECRET, REVIEWER_ID, slack_api_url=slack.url)
    # Told something before, and someone else told meanwhile: neither is this click's answer.
    client = slack.client()
    await client.chat_postEphemeral(channel=CHANNEL, user=REVIEWER_ID, text="Not recorded: old")
    await client.chat_postEphemeral(channel=CHANNEL, user="U0OTHER", text="Not recorded: theirs")
    told = await reviewer.accept(record, channel_id=CHANNEL, wait_s=2)
    assert told.ack.status_code == 200
    assert told.text == "accept recorded for P-1" and not told.refused
    assert [t["text"] for t in await told_to(slack.url, REVIEWER_ID)] == [
        "Not recorded: old",
        "accept recorded for P-1",
    ]
    with pytest.raises(ReviewerError, match="was told nothing more"):
        await wait_until_told(slack.url, REVIEWER_ID, seen=2, wait_s=0.2)
    with pytest.raises(ReviewerError, match="slack_api_url"):
        await SimulatedReviewer(gateway.url, SECRET, REVIEWER_ID).accept(record, channel_id=CHANNEL)
