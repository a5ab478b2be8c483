"""Rounds that wait a long time for people, on the time-skipping test server:
reminders on a timer, escalation after a count, no deadline unless set, and a
cancellation that withdraws what was pending."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from constitution import ProposalState, RoundSpec, RoundState
from constitution.contracts import RoundInput, RoundStatus
from ledger.store import Ledger
from tests.conftest import StackFactory, eventually
from worker.stack import Stack
from workflows.round import TrainingRoundWorkflow

CHANNEL = "C0AMENDREVIEW"


@pytest.fixture
async def stack(time_skipping: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(time_skipping) as running:
        yield running


async def start(env: WorkflowEnvironment, stack: Stack, **spec: Any) -> WorkflowHandle[Any, Any]:
    round_spec = RoundSpec.model_validate({"reviewers": ["U0ALICE"], "max_proposals": 2, **spec})
    return await env.client.start_workflow(
        TrainingRoundWorkflow.run,
        RoundInput(spec=round_spec),
        id=round_spec.workflow_id,
        task_queue=stack.settings.temporal_task_queue,
    )


async def threaded_replies(stack: Stack) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        messages = (await http.get(f"{stack.slack_stand_in_url}/_standin/messages")).json()
    return [m for m in messages if m.get("thread_ts")]


async def test_a_week_long_wait_posts_a_reminder_a_day_and_escalates_after_three(
    time_skipping: WorkflowEnvironment, stack: Stack, ledger: Ledger
) -> None:
    handle = await start(
        time_skipping,
        stack,
        round_id="week",
        escalate_after=3,
        escalate_to="U0LEAD",
        reminder_interval="P1D",
    )

    async def in_review() -> bool:
        status: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
        return status.state is RoundState.in_review

    await eventually(in_review, "the round to be in review")
    await time_skipping.sleep(timedelta(days=7, hours=1))

    async def seven_reminders() -> list[dict[str, Any]]:
        replies = await threaded_replies(stack)
        return replies if len(replies) == 7 * 2 else []

    replies = await eventually(seven_reminders, "7 reminders in each of 2 threads")
    status: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
    assert status.state is RoundState.in_review  # no deadline: still waiting
    assert status.reminders_sent == 7
    escalated = [r for r in replies if "<@U0LEAD>" in r["text"]]
    assert len(escalated) == (7 - 2) * 2  # from the third reminder on, in both threads

    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    proposals = {
        t.entity: t.to_state
        for t in await ledger.timeline("week")
        if t.entity.startswith("proposal:")
    }
    assert set(proposals.values()) == {ProposalState.withdrawn.value}
    round_row = await ledger.get_round("week")
    assert round_row is not None and round_row.state == RoundState.cancelled.value


async def test_a_deadline_withdraws_what_is_still_pending(
    time_skipping: WorkflowEnvironment, stack: Stack, ledger: Ledger
) -> None:
    handle = await start(
        time_skipping, stack, round_id="deadline", reminder_interval="P1D", deadline="P3D"
    )
    result = await handle.result()  # the test server skips the three days
    assert result.state is RoundState.completed_unchanged
    status: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
    assert status.reminders_sent == 2
    assert {p.state for p in status.proposals} == {ProposalState.withdrawn}
    assert await ledger.verify_chain("deadline") == []
    # Each message ends without buttons, saying who withdrew it and why.
    async with httpx.AsyncClient() as http:
        messages = (await http.get(f"{stack.slack_stand_in_url}/_standin/messages")).json()
    proposals = [m for m in messages if m["text"].startswith("Proposal ")]
    assert len(proposals) == 2
    for message in proposals:
        assert not [b for b in message["blocks"] if b["type"] == "actions"]
        assert "Withdrawn by the round" in str(message["blocks"])
        assert "review deadline passed" in str(message["blocks"])


async def test_ninety_days_of_hourly_reminders_run_as_several_bounded_runs(
    time_skipping: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    # Pacing is Slack's per-channel rate in real time: without it here, the
    # days pass as fast as the workflow runs.
    async with stack_on(time_skipping, slack_post_interval_s=0) as stack:
        runs = await wait_ninety_days(time_skipping, stack)
    # The timeline says where each run continued as new, with the run it left.
    moves = [t for t in await ledger.timeline("ninety") if t.entity == "history"]
    assert [(t.from_state, t.to_state) for t in moves] == [
        (f"run {n}", f"run {n + 1}") for n in range(1, runs)
    ]
    assert all(t.data["run_id"] and t.data["events"] > 0 for t in moves)
    assert await ledger.verify_chain("ninety") == []


async def wait_ninety_days(time_skipping: WorkflowEnvironment, stack: Stack) -> int:
    """Ninety days of hourly reminders; the runs the round took."""
    handle = await start(
        time_skipping,
        stack,
        round_id="ninety",
        max_proposals=1,
        reminder_interval="PT1H",
        escalate_after=24,
        escalate_to="C0LEADS",
    )

    async def in_review() -> bool:
        status: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
        return status.state is RoundState.in_review

    await eventually(in_review, "the round to be in review")
    for _day in range(90):  # a day at a time: one long sleep outlives the RPC's deadline
        await time_skipping.sleep(timedelta(days=1))
    await time_skipping.sleep(timedelta(minutes=30))
    hours = 90 * 24

    async def all_reminders() -> RoundStatus | None:
        status: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
        return status if status.reminders_sent >= hours else None

    status = await eventually(all_reminders, f"{hours} reminders", wait_s=300)
    assert status.reminders_sent == hours and status.state is RoundState.in_review
    assert status.digests_sent == 90  # one digest a day
    # History stays bounded: the wait continued as new, each run a bounded size.
    assert status.runs >= 10
    history = await handle.fetch_history()
    assert len(history.events) <= 1024  # a quarter of Temporal's 4 Ki suggestion
    # Each reminder was posted once, in the proposal's thread.
    replies = await threaded_replies(stack)
    assert len(replies) == hours
    assert len({r["text"] for r in replies}) == hours
    assert sum("<#C0LEADS>" in r["text"] for r in replies) == hours - 23
    await handle.cancel()
    runs: int = status.runs
    return runs
