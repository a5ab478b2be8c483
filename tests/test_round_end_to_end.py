"""One training round through the real paths: the Temporal dev server, real
PostgreSQL, the gateway over HTTP, the Slack Web API stand-in and the scripted
stand-in model, decided by the simulated reviewer with signed payloads."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from constitution import ProposalState, RoundState
from constitution.contracts import RoundResult
from constitution.samples import sample_constitution
from ledger.store import Ledger
from standins.reviewer import (
    SimulatedReviewer,
    decide_in_slack,
    told_to,
    wait_for_proposals,
    wait_until_told,
)
from tests.conftest import StackFactory, eventually, start_round
from worker.stack import Stack
from workflows.round import TrainingRoundWorkflow

REVIEWER = "U0ALICE"
MODEL_KEY = "sk-e2e-model-key-never-in-history"
SIGNING_SECRET = "e2e-signing-secret-never-in-history"
CHANNEL = "C0AMENDREVIEW"


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(
        dev_server, model_api_key=MODEL_KEY, slack_signing_secret=SIGNING_SECRET
    ) as running:
        yield running


async def proposal_messages(stack: Stack, count: int) -> list[dict[str, Any]]:
    """Wait for the round's proposals to be posted, as a reviewer would."""
    return await wait_for_proposals(stack.slack_stand_in_url or "", count, wait_s=30)


def _buttons(message: dict[str, Any]) -> list[str]:
    return [
        e.get("action_id")
        for b in message.get("blocks", [])
        if b.get("type") == "actions"
        for e in b.get("elements", [])
    ]


def reviewer(stack: Stack, user: str = REVIEWER) -> SimulatedReviewer:
    return SimulatedReviewer(
        stack.gateway_url,
        stack.settings.slack_signing_secret.get_secret_value(),
        user,
        slack_api_url=stack.slack_stand_in_url,
    )


def handle(env: WorkflowEnvironment, round_id: str) -> WorkflowHandle[Any, Any]:
    return env.client.get_workflow_handle(f"round-{round_id}", result_type=RoundResult)


async def test_a_round_goes_from_proposals_to_a_new_version_and_a_promoted_model(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await start_round(stack, "e2e")
    first, second, third = await proposal_messages(stack, 3)
    # Each message links to the round on the gateway that serves it.
    assert f"{stack.gateway_url}/rounds/e2e" in json.dumps(first["blocks"])
    alice = reviewer(stack)
    assert (
        await decide_in_slack(
            alice, stack.slack_stand_in_url or "", first, "accept", channel_id=CHANNEL
        )
    ).status_code == 200
    await decide_in_slack(
        alice,
        stack.slack_stand_in_url or "",
        second,
        "modify",
        channel_id=CHANNEL,
        text="Reviewers' own wording.",
        comment="tighter",
    )
    await decide_in_slack(
        alice, stack.slack_stand_in_url or "", third, "reject", channel_id=CHANNEL
    )

    result: RoundResult = await handle(dev_server, "e2e").result()
    assert result.state is RoundState.completed
    assert result.base_version == 1 and result.result_version == 2
    assert result.candidate_model and result.candidate_model.startswith("ft:")

    new = await ledger.get_version(2)
    assert new is not None and new.parent_hash == sample_constitution().content_hash
    assert "Reviewers' own wording." in [p.text for p in new.principles]

    rounds = [t.to_state for t in await ledger.timeline("e2e") if t.entity == "round"]
    assert rounds == [
        "created",
        "proposing",
        "in_review",
        "amending",
        "generating_data",
        "training",
        "evaluating",
        "completed",
    ]
    decisions = await ledger.decisions("e2e")
    assert sorted(d.kind for d in decisions) == ["accept", "modify", "reject"]
    assert await ledger.verify_chain("e2e") == []

    async with httpx.AsyncClient() as http:
        messages = (await http.get(f"{stack.slack_stand_in_url}/_standin/messages")).json()
    updated = [m for m in messages if m.get("history")]
    assert len(updated) == 3 and not any(_buttons(m) for m in updated)

    # A stale button (its message captured before the round ended) is answered clearly.
    stale = await alice.click(first, "reject", channel_id=CHANNEL)
    assert stale.json()["outcome"] == "refused"
    assert "no longer" in stale.json()["message"]
    assert len(await ledger.decisions("e2e")) == 3

    recorded = await handle(dev_server, "e2e").fetch_history()
    # The workflow is deterministic: its own history replays without error.
    await Replayer(
        workflows=[TrainingRoundWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(recorded)
    history = recorded.to_json()
    bot_token = stack.settings.slack_bot_token
    assert bot_token is not None
    for secret in (MODEL_KEY, SIGNING_SECRET, bot_token.get_secret_value()):
        assert secret not in history
    assert MODEL_KEY not in repr(stack.settings) and SIGNING_SECRET not in str(stack.settings)


async def test_forged_and_stale_slack_requests_get_401_and_change_nothing(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await start_round(stack, "forged", max_proposals=1)
    [message] = await proposal_messages(stack, 1)

    async def noted_posted() -> bool:
        status = await handle(dev_server, "forged").query(TrainingRoundWorkflow.state)
        return [p.state for p in status.proposals] == [ProposalState.posted]

    # Slack shows the message a moment before the round notes it posted.
    await eventually(noted_posted, "the round to note its proposal posted")
    alice = reviewer(stack)
    body = alice.encode(alice.block_actions_payload(message, "accept", channel_id=CHANNEL))
    forged = await alice.send_raw(body, signature="v0=" + "0" * 64)
    stale = await alice.send_raw(body, timestamp=int(time.time()) - 600)
    assert forged.status_code == 401 and stale.status_code == 401
    status = await handle(dev_server, "forged").query(TrainingRoundWorkflow.state)
    assert [p.state for p in status.proposals] == [ProposalState.posted]
    assert await ledger.decisions("forged") == []
    await handle(dev_server, "forged").cancel()


async def test_a_reviewer_not_on_the_list_is_refused_and_the_attempt_recorded(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await start_round(stack, "outsider", max_proposals=1)
    [message] = await proposal_messages(stack, 1)
    mallory = reviewer(stack, "U0MALLORY")
    response = await mallory.accept(message, channel_id=CHANNEL)
    assert response.ack.json()["outcome"] == "pending"  # told after Slack got its answer
    assert response.refused and "not a reviewer" in response.text
    assert await ledger.decisions("outsider") == []
    [attempt] = await ledger.decision_attempts("outsider")
    assert attempt.reviewer == "U0MALLORY" and attempt.outcome == "refused"
    async with httpx.AsyncClient() as http:
        told = (await http.get(f"{stack.slack_stand_in_url}/_standin/ephemeral")).json()
    assert [e["user"] for e in told] == ["U0MALLORY"]
    await handle(dev_server, "outsider").cancel()


async def test_the_same_decision_sent_twice_is_taken_once(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await start_round(stack, "twice", max_proposals=2)
    first, _second = await proposal_messages(stack, 2)
    alice = reviewer(stack)
    payload = alice.block_actions_payload(first, "accept", channel_id=CHANNEL)
    body = alice.encode(payload)
    # Slack's retry of one click carries the same payload (same action_ts):
    # answered from the decision inbox, with the round's answer once it has it.
    once = await alice.send_raw(body)
    assert once.json()["outcome"] == "pending"
    told = await wait_until_told(stack.slack_stand_in_url or "", REVIEWER)
    assert "accept recorded" in told["text"]
    again = await alice.send_raw(body)
    assert again.json()["outcome"] == "taken" and "accept recorded" in again.json()["message"]
    # A double click is a second interaction: refused, the proposal is settled.
    double = await alice.accept(first, channel_id=CHANNEL)
    assert double.refused and "already accepted" in double.text
    # Told once per interaction: the retry told nobody.
    assert len(await told_to(stack.slack_stand_in_url or "", REVIEWER)) == 2
    assert len(await ledger.decisions("twice")) == 1
    proposal_rows = [
        t
        for t in await ledger.timeline("twice")
        if t.entity.startswith("proposal:") and t.to_state == "accepted"
    ]
    assert len(proposal_rows) == 1
    await handle(dev_server, "twice").cancel()


async def test_malformed_model_output_fails_the_round_with_the_reason_recorded(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    async with httpx.AsyncClient() as http:
        queued = await http.post(
            f"{stack.model_stand_in_url}/_standin/faults",
            json={"faults": ["malformed_json", "malformed_json"], "task": "ProposalBatch"},
        )
    assert queued.status_code == 200
    await start_round(stack, "garbled")
    with pytest.raises(WorkflowFailureError):
        await handle(dev_server, "garbled").result()
    round_row = await ledger.get_round("garbled")
    assert round_row is not None and round_row.state == "failed"
    [failed] = [t for t in await ledger.timeline("garbled") if t.to_state == "failed"]
    assert "did not match ProposalBatch" in failed.reason
    assert await ledger.decisions("garbled") == []


async def test_a_database_outage_delays_a_decision_but_loses_and_duplicates_nothing(
    stack: Stack,
    dev_server: WorkflowEnvironment,
    ledger: Ledger,
    database_url: str,
    postgres_admin_url: str,
) -> None:
    await start_round(stack, "outage", max_proposals=1)
    [message] = await proposal_messages(stack, 1)
    database = database_url.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
        )
        # The round takes the decision, but writing it to the ledger waits for the
        # database: Slack still gets its answer in time, saying it is being recorded.
        answer = await reviewer(stack).click(message, "accept", channel_id=CHANNEL)
        assert answer.json()["outcome"] == "pending"
        await asyncio.sleep(1)
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
    result: RoundResult = await handle(dev_server, "outage").result()
    assert result.state is RoundState.completed
    assert len(await ledger.decisions("outage")) == 1
    timeline = await ledger.timeline("outage")
    assert [t.sequence for t in timeline] == list(range(1, len(timeline) + 1))
    assert await ledger.verify_chain("outage") == []


async def test_a_round_on_a_missing_constitution_version_fails_with_the_reason_recorded(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await start_round(stack, "no-such-version", constitution_version=99)
    with pytest.raises(WorkflowFailureError):
        await handle(dev_server, "no-such-version").result()
    round_row = await ledger.get_round("no-such-version")
    assert round_row is not None and round_row.state == "failed"
    [failed] = await ledger.timeline("no-such-version")
    assert "no constitution (version 99)" in failed.reason
