"""Slack's per-channel rate, kept by the worker across rounds: real rounds on
the Temporal dev server post to one channel of the Slack stand-in, which
enforces the rate with 429s as Slack does (`worker.stack` sets it from
`AMEND_SLACK_POST_INTERVAL_S`); the posts land spaced at the rate without one
429, and a round cancelled while its post waits its turn posts nothing more."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from standins.reviewer import wait_for_proposals
from tests.conftest import REVIEW_CHANNEL, StackFactory, start_round
from worker.stack import Stack

INTERVAL_S = 0.3


async def standin(stack: Stack, path: str) -> Any:
    async with httpx.AsyncClient(base_url=stack.slack_stand_in_url or "") as http:
        response = await http.get(path)
    response.raise_for_status()
    return response.json()


async def proposal_posts(stack: Stack) -> list[float]:
    """When the stand-in took each proposal's message in the review channel."""
    messages = await standin(stack, f"/_standin/messages?channel={REVIEW_CHANNEL}")
    return sorted(
        float(m["ts"])
        for m in messages
        if ":proposal:" in str(((m.get("metadata") or {}).get("event_payload") or {}).get("key"))
    )


async def rate_limited(stack: Stack) -> list[dict[str, Any]]:
    calls = await standin(stack, "/_standin/calls")
    return [c for c in calls if c["method"] == "chat.postMessage" and c["status"] == 429]


async def test_rounds_posting_to_one_channel_together_share_its_rate_without_a_429(
    dev_server: WorkflowEnvironment, stack_on: StackFactory
) -> None:
    async with stack_on(dev_server, slack_post_interval_s=INTERVAL_S) as stack:
        for n in range(3):
            await start_round(stack, f"paced-{n}")
        slack = stack.slack_stand_in_url or ""
        await wait_for_proposals(slack, 9, channel_id=REVIEW_CHANNEL, wait_s=60)
        posted = await proposal_posts(stack)
        assert len(posted) == 9
        gaps = [later - earlier for earlier, later in itertools.pairwise(posted)]
        assert min(gaps) >= INTERVAL_S, gaps
        assert await rate_limited(stack) == []


async def test_a_round_cancelled_while_its_post_waits_its_turn_posts_no_more(
    dev_server: WorkflowEnvironment, stack_on: StackFactory
) -> None:
    """Temporal tells an activity of its cancel only in a heartbeat's answer:
    the post that waits its turn hears it and gives up before the turn comes."""
    turn_s = 4.0
    async with stack_on(dev_server, slack_post_interval_s=turn_s) as stack:
        await start_round(stack, "cancelled-waiting")
        slack = stack.slack_stand_in_url or ""
        await wait_for_proposals(slack, 1, channel_id=REVIEW_CHANNEL, wait_s=60)
        [first] = await proposal_posts(stack)
        handle = dev_server.client.get_workflow_handle("round-cancelled-waiting")
        # The second proposal's post is waiting for its turn, `turn_s` after the
        # first, in the activity that posts the round's proposals together.
        await asyncio.sleep(turn_s / 3)
        pending = (await handle.describe()).raw_description.pending_activities
        assert [a.activity_type.name for a in pending] == ["post_proposals"]
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        # Past the turn the cancelled post would have had, and the next one's.
        await asyncio.sleep(max(0.0, first + 2.5 * turn_s - time.time()))
        assert await proposal_posts(stack) == [first]
        assert await rate_limited(stack) == []
