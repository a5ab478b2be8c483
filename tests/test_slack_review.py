"""Slack review through the real paths (Temporal dev server, PostgreSQL, the
gateway over HTTP, the Slack Web API stand-in): who may decide, quorum and
veto, concurrent and retried clicks, stale buttons, and Slack failures that
block a round until Slack answers again. Clicks are signed `block_actions`
and `view_submission` payloads from the simulated reviewer (a stand-in)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.testing import WorkflowEnvironment

from constitution import ProposalState, RoundState
from constitution.contracts import RoundResult, RoundStatus
from ledger.store import Ledger
from standins.reviewer import SimulatedReviewer, decide_in_slack, wait_for_proposals
from tests.conftest import StackFactory, eventually, operator_api
from tests.conftest import start_round as start_e2e_round
from tests.test_round_end_to_end import handle, reviewer
from worker.stack import Stack
from workflows.round import TrainingRoundWorkflow

CHANNEL = "C0AMENDREVIEW"
ALICE, BOB, CAROL, MALLORY = "U0ALICE", "U0BOB", "U0CAROL", "U0MALLORY"


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(dev_server) as running:
        yield running


async def start_round(stack: Stack, round_id: str, **spec: Any) -> None:
    await start_e2e_round(stack, round_id, **{"max_proposals": 1, **spec})


async def standin(stack: Stack, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient() as http:
        if body is None:
            response = await http.get(f"{stack.slack_stand_in_url}{path}")
        else:
            response = await http.post(f"{stack.slack_stand_in_url}{path}", json=body)
    response.raise_for_status()
    return response.json()


async def status_of(env: WorkflowEnvironment, round_id: str) -> RoundStatus:
    status: RoundStatus = await handle(env, round_id).query(TrainingRoundWorkflow.state)
    return status


async def test_a_quorum_of_two_adopts_only_on_the_second_accept_and_one_vote_each(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await start_round(stack, "quorum", reviewers=[ALICE, BOB, CAROL], policy={"quorum": 2})
    [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
    first = await reviewer(stack, ALICE).accept(message, channel_id=CHANNEL)
    assert "accept recorded" in first.text and "1 of 2 accepts" in first.text
    status = await status_of(dev_server, "quorum")
    assert status.proposals[0].state is ProposalState.posted

    # The message shows the vote and keeps its buttons while the proposal is open.
    async def shows_the_vote() -> dict[str, Any] | None:
        [record] = await standin(stack, "/_standin/messages")
        return record if "accept by <@U0ALICE>" in str(record["blocks"]) else None

    record = await eventually(shows_the_vote, "the message to show the vote")
    assert "1 of 2 accepts; waiting for <@U0BOB> or <@U0CAROL>" in str(record["blocks"])
    assert any(b["type"] == "actions" for b in record["blocks"])

    again = await reviewer(stack, ALICE).accept(message, channel_id=CHANNEL)
    assert again.refused and "one vote" in again.text

    second = await reviewer(stack, BOB).accept(message, channel_id=CHANNEL)
    assert "accept recorded" in second.text and not second.refused
    result: RoundResult = await handle(dev_server, "quorum").result()
    assert result.state is RoundState.completed
    assert sorted(d.reviewer for d in await ledger.decisions("quorum")) == [ALICE, BOB]
    [refusal] = await ledger.decision_attempts("quorum")
    assert refusal.reviewer == ALICE and "one vote" in refusal.reason
    [final] = [m for m in await standin(stack, "/_standin/messages") if m["ts"] == message["ts"]]
    assert not any(b["type"] == "actions" for b in final["blocks"])
    assert "Accepted by <@U0BOB>" in str(final["blocks"])


async def test_under_veto_one_reject_with_a_reason_rejects_despite_an_accept(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await start_round(stack, "veto", reviewers=[ALICE, BOB], policy={"quorum": 2, "veto": True})
    [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
    await reviewer(stack, ALICE).click(message, "accept", channel_id=CHANNEL)
    response = await decide_in_slack(
        reviewer(stack, BOB),
        stack.slack_stand_in_url or "",
        message,
        "reject",
        channel_id=CHANNEL,
        comment="Weakens P2 without evidence.",
    )
    assert response.json() == {"response_action": "clear"}
    result: RoundResult = await handle(dev_server, "veto").result()
    assert result.state is RoundState.completed_unchanged
    rejected = [t for t in await ledger.timeline("veto") if t.to_state == "rejected"]
    assert len(rejected) == 1 and rejected[0].actor == BOB
    assert rejected[0].reason == "Weakens P2 without evidence."
    summary = [m for m in await standin(stack, "/_standin/messages") if "review ended" in m["text"]]
    assert len(summary) == 1 and "1 rejected" in summary[0]["text"]


async def test_members_of_a_reviewer_group_may_decide_and_outsiders_are_told_why(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await standin(stack, "/_standin/usergroups", {"usergroups": {"S0REVIEW": [BOB]}})
    await start_round(
        stack,
        "groups",
        reviewers=[ALICE],
        reviewer_groups=["S0REVIEW"],
        strict_policy={"quorum": 1},
    )
    [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
    outsider = await reviewer(stack, MALLORY).accept(message, channel_id=CHANNEL)
    assert outsider.refused and "not a reviewer" in outsider.text
    assert "<!subteam^S0REVIEW>" in outsider.text
    [attempt] = await ledger.decision_attempts("groups")
    assert attempt.reviewer == MALLORY and attempt.outcome == "refused"
    told = await standin(stack, "/_standin/ephemeral")
    assert [e["user"] for e in told] == [MALLORY]

    member = await reviewer(stack, BOB).accept(message, channel_id=CHANNEL)
    assert "accept recorded" in member.text and not member.refused
    assert (await handle(dev_server, "groups").result()).state is RoundState.completed


async def test_concurrent_double_and_retried_clicks_settle_a_proposal_once(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    # One accept settles it, protected principle or not.
    await start_round(stack, "storm", reviewers=[ALICE, BOB], strict_policy={"quorum": 1})
    [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
    # Generous client timeouts: on a loaded machine eleven requests at once
    # may queue before the gateway sees them; what is asserted is the outcome.
    secret = stack.settings.slack_signing_secret.get_secret_value()
    alice, bob = (
        SimulatedReviewer(stack.gateway_url, secret, user, timeout=60) for user in (ALICE, BOB)
    )
    retried = alice.encode(alice.block_actions_payload(message, "accept", channel_id=CHANNEL))

    async def retry_of_first_click(number: int) -> httpx.Response:
        # Slack's retries of one request: same body, X-Slack-Retry-Num set.
        ts = int(time.time())
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": alice.sign(retried, ts),
            "X-Slack-Retry-Num": str(number),
            "X-Slack-Retry-Reason": "http_timeout",
        }
        async with httpx.AsyncClient(timeout=60) as http:
            return await http.post(alice.interactions_url, content=retried, headers=headers)

    clicks = [alice.send_raw(retried)]
    clicks += [retry_of_first_click(n) for n in (1, 2)]
    clicks += [alice.click(message, "accept", channel_id=CHANNEL) for _ in range(4)]
    clicks += [bob.click(message, "accept", channel_id=CHANNEL) for _ in range(4)]
    answers = [r.json() for r in await asyncio.gather(*clicks)]

    # Every click is answered "pending" once the decision inbox keeps it; of
    # Slack's three deliveries of the first, those that find it kept already
    # are answered from the inbox (the round's answer, once there is one).
    # Each reviewer is told the outcome in Slack.
    assert all(a["outcome"] == "pending" for a in answers[3:]), answers
    assert "pending" in [a["outcome"] for a in answers[:3]], answers
    assert all(a["outcome"] in ("taken", "refused", "pending") for a in answers[:3]), answers
    assert (await handle(dev_server, "storm").result()).state is RoundState.completed
    decisions = await ledger.decisions("storm")
    assert len(decisions) == 1
    accepted = [t for t in await ledger.timeline("storm") if t.to_state == "accepted"]
    assert len(accepted) == 1 and accepted[0].actor == decisions[0].reviewer
    # Nine interactions, one taken: every refused click is in the ledger as an
    # attempt, once; Slack's three deliveries of the first click share one.
    interactions = len(clicks) - 2

    async def all_refusals() -> list[Any] | None:
        found = await ledger.decision_attempts("storm")
        return found if len(found) >= interactions - 1 else None

    attempts = await eventually(all_refusals, "every refused click in the ledger")
    assert len({a.interaction_key for a in attempts}) == len(attempts) == interactions - 1
    # Each interaction's reviewer is told what it came to, once.

    async def all_told() -> list[Any] | None:
        found = await standin(stack, "/_standin/ephemeral")
        return found if len(found) >= interactions else None

    told = await eventually(all_told, "every click's reviewer told")
    assert len(told) == interactions, told


async def test_buttons_of_a_cancelled_round_get_a_clear_answer(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await start_round(stack, "gone")
    [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
    await handle(dev_server, "gone").cancel()

    async def cancelled() -> bool:
        row = await ledger.get_round("gone")
        return row is not None and row.state == "cancelled"

    await eventually(cancelled, "the round to be cancelled")
    clicked = await reviewer(stack, ALICE).accept(message, channel_id=CHANNEL)
    assert clicked.refused and "cancelled" in clicked.text
    modify = await reviewer(stack, ALICE).click(message, "modify", channel_id=CHANNEL)
    assert modify.json()["outcome"] == "refused" and "cancelled" in modify.json()["message"]
    assert await ledger.decisions("gone") == []
    assert await standin(stack, "/_standin/views") == []


@pytest.mark.parametrize(
    ("breaks", "fixes", "reason"),
    [
        (
            ("/_standin/faults", {"faults": [{"kind": "error", "error": "channel_not_found"}]}),
            None,
            "channel_not_found",
        ),
        (("/_standin/revoke", {}), ("/_standin/restore", {}), "token_revoked"),
    ],
    ids=["channel_not_found", "token_revoked"],
)
async def test_a_slack_error_retrying_cannot_fix_blocks_the_round_until_slack_answers(
    stack: Stack,
    dev_server: WorkflowEnvironment,
    ledger: Ledger,
    breaks: tuple[str, dict[str, Any]],
    fixes: tuple[str, dict[str, Any]] | None,
    reason: str,
) -> None:
    round_id = f"blocked-{reason.replace('_', '-')}"
    await standin(stack, *breaks)
    await start_round(stack, round_id)

    async def blocked() -> RoundStatus | None:
        status = await status_of(dev_server, round_id)
        return status if status.blocked else None

    status = await eventually(blocked, "the round to be blocked")
    assert reason in (status.blocked or "")
    assert status.state is RoundState.proposing and status.proposals[0].message is None
    async with operator_api(stack) as http:
        shown = (await http.get(f"/api/rounds/{round_id}")).json()
    assert reason in shown["blocked"]

    async def block_recorded() -> list[Any]:
        return [t for t in await ledger.timeline(round_id) if t.entity == "slack"]

    [block] = await eventually(block_recorded, "the block in the ledger")
    assert (block.from_state, block.to_state) == ("ok", "blocked") and reason in block.reason

    if fixes is not None:
        await standin(stack, *fixes)
    async with operator_api(stack) as http:
        retried = await http.post(f"/api/rounds/{round_id}/retry-slack")
        missing = await http.post("/api/rounds/no-such/retry-slack")
    assert retried.status_code == 202 and missing.status_code == 404
    [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)

    async def posted() -> RoundStatus | None:
        status = await status_of(dev_server, round_id)
        return status if status.proposals[0].state is ProposalState.posted else None

    status = await eventually(posted, "the proposal to be posted")
    assert status.blocked is None
    slack_rows = [t for t in await ledger.timeline(round_id) if t.entity == "slack"]
    assert [t.to_state for t in slack_rows] == ["blocked", "ok"]
    await reviewer(stack, ALICE).click(message, "accept", channel_id=CHANNEL)
    assert (await handle(dev_server, round_id).result()).state is RoundState.completed
    assert await ledger.verify_chain(round_id) == []


async def test_a_click_while_the_message_is_still_being_posted_is_taken_not_refused(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    """Slack shows a message before chat.postMessage answers, so a quick
    reviewer can click before the round has noted the proposal as posted."""
    slow = {"kind": "slow_answer", "hold_s": 2.0, "method": "chat.postMessage"}
    await standin(stack, "/_standin/faults", {"faults": [slow]})
    await start_round(stack, "quick-click")
    [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
    clicked = await reviewer(stack, ALICE).click(message, "accept", channel_id=CHANNEL)
    assert clicked.json()["outcome"] == "pending"
    result = await asyncio.wait_for(handle(dev_server, "quick-click").result(), 60)
    assert result.state is RoundState.completed
    assert [d.reviewer for d in await ledger.decisions("quick-click")] == [ALICE]
    assert await ledger.decision_attempts("quick-click") == []


async def test_rate_limits_and_server_errors_are_retried_without_blocking(
    stack: Stack, dev_server: WorkflowEnvironment
) -> None:
    await standin(
        stack,
        "/_standin/faults",
        {
            "faults": [
                {"kind": "rate_limited", "retry_after": 0, "method": "chat.postMessage"},
                {"kind": "server_error", "method": "chat.postMessage"},
            ]
        },
    )
    await start_round(stack, "flaky")
    [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
    posts = [
        c for c in await standin(stack, "/_standin/calls") if c["method"] == "chat.postMessage"
    ]
    assert [c["status"] for c in posts[:3]] == [429, 500, 200]
    status = await status_of(dev_server, "flaky")
    assert status.blocked is None
    messages = await standin(stack, "/_standin/messages")
    assert len([m for m in messages if m["ts"] == message["ts"]]) == 1
    await reviewer(stack, ALICE).click(message, "accept", channel_id=CHANNEL)
    assert (await handle(dev_server, "flaky").result()).state is RoundState.completed


async def test_a_decision_arrives_over_socket_mode_and_is_acknowledged_on_the_socket(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    async with stack_on(dev_server, slack_app_token=SecretStr("xapp-amend-stand-in")) as stack:
        await start_round(stack, "socket", strict_policy={"quorum": 1})
        [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
        # Slack sends the same block_actions payload over the socket, unsigned.
        payload = reviewer(stack, ALICE).block_actions_payload(
            message, "accept", channel_id=CHANNEL
        )
        sent = await standin(stack, "/_standin/socket", {"type": "interactive", "payload": payload})
        assert sent["acked"] is True and sent["ack_payload"] is None
        assert (await handle(dev_server, "socket").result()).state is RoundState.completed
        [decision] = await ledger.decisions("socket")
        assert decision.reviewer == ALICE and decision.kind == "accept"

        # A modal submission is answered on the socket with Slack's response_action.
        bogus = {
            "type": "view_submission",
            "user": {"id": ALICE},
            "view": {
                "callback_id": "reject_proposal",
                "private_metadata": "round-socket|socket-p1|C|1",
            },
        }
        late = await standin(stack, "/_standin/socket", {"type": "interactive", "payload": bogus})
        assert late["acked"] is True
        assert late["ack_payload"]["response_action"] == "errors"
        assert "no longer" in late["ack_payload"]["errors"]["comment"]


async def test_a_proposal_whose_message_was_deleted_is_posted_again_and_can_still_be_decided(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    """Someone deletes the proposal's message in Slack: the next update of it
    posts a fresh message (in the ledger as the proposal's), never retries the
    gone one forever; reviewers decide on the new one and `round repost` still works."""
    await start_round(stack, "deleted", reviewers=[ALICE, BOB], policy={"quorum": 2})
    [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
    token = stack.settings.slack_bot_token
    assert token is not None
    slack = AsyncWebClient(
        token=token.get_secret_value(), base_url=f"{stack.slack_stand_in_url}/api/"
    )
    await slack.chat_delete(channel=CHANNEL, ts=message["ts"])
    first = await reviewer(stack, ALICE).accept(message, channel_id=CHANNEL)
    assert "accept recorded" in first.text and not first.refused

    async def posted_again() -> dict[str, Any] | None:
        records = await standin(stack, "/_standin/messages")
        fresh = [r for r in records if "accept by <@U0ALICE>" in str(r["blocks"])]
        return fresh[0] if fresh else None

    fresh = await eventually(posted_again, "the proposal to be posted again")
    assert fresh["ts"] != message["ts"]
    assert any(b["type"] == "actions" for b in fresh["blocks"])

    # Slack shows the fresh message a moment before the round notes it.
    async def noted() -> RoundStatus | None:
        status = await status_of(dev_server, "deleted")
        message = status.proposals[0].message
        return status if message is not None and message.ts == fresh["ts"] else None

    status = await eventually(noted, "the round to note the fresh message")
    [item] = status.proposals
    assert [m.ts for m in item.earlier_messages] == [message["ts"]]
    assert status.blocked is None
    assert await ledger.proposal_message(item.proposal.id) == (CHANNEL, fresh["ts"])

    async def recorded() -> list[Any]:
        return [t for t in await ledger.timeline("deleted") if t.data.get("repost")]

    reposts = await eventually(recorded, "the fresh message in the round's timeline")
    assert [t.data["ts"] for t in reposts] == [fresh["ts"]]

    async with operator_api(stack) as http:
        reposted = await http.post("/api/rounds/deleted/repost", json={"reason": "checking"})
    assert reposted.status_code == 200, reposted.text
    *_, latest = await wait_for_proposals(stack.slack_stand_in_url or "", 2, wait_s=30)
    assert latest["ts"] > fresh["ts"]
    second = await reviewer(stack, BOB).accept(latest, channel_id=CHANNEL)
    assert "accept recorded" in second.text and not second.refused
    result: RoundResult = await handle(dev_server, "deleted").result()
    assert result.state is RoundState.completed
