"""Scale-out, as a deployment runs it: two `amend worker` and two `amend
gateway` processes on one task queue, one Temporal server, one PostgreSQL.

Rounds started through either gateway complete, and clicks sent to both
gateways (Slack's retry of a click may reach the other replica) settle each
proposal once. A worker killed with SIGKILL mid-round loses nothing: its
dataset step is taken over by the other worker when its heartbeats stop, not
at the step's six-hour timeout. A worker sent SIGTERM stops polling, finishes
what it runs and exits 0; a gateway sent SIGTERM answers the decisions it
accepted before it exits 0.

The stand-ins for the model and Slack run in the test process; the processes
reach them over HTTP, as they would reach the real services.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from bench.fleet import ALICE, CHANNEL, Fleet, running_fleet
from constitution import RoundState
from constitution.contracts import RoundResult
from constitution.samples import sample_constitution
from ledger.store import Ledger
from standins.reviewer import told_to, wait_until_told
from tests.conftest import SMALL_EVAL_SET, eventually

# Long enough to be caught mid-way (three model calls an example, four at a
# time, 0.1 s each: about 3 s), short enough for a lean test.
EXAMPLES = 40
DATASET = {"prompt_count": EXAMPLES, "critique_passes": 1, "heartbeat_timeout": "PT8S"}
SPEC = {"max_proposals": 2, "training": {**DATASET, "poll_interval": "PT0.2S"}}
# The model's latency once a test has caught the work it needed caught mid-way.
FAST_S = 0.005


@pytest.fixture
async def fleet(
    dev_server: WorkflowEnvironment,
    ledger: Ledger,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> AsyncIterator[Fleet]:
    """Two workers and two gateways, each in a process of its own."""
    await ledger.save_version(sample_constitution())
    async with running_fleet(
        dev_server.client.service_client.config.target_host,
        ledger,
        database_url,
        task_queue,
        tmp_path,
        worker_graceful_shutdown_s="30",
        gateway_graceful_shutdown_s="30",
        # The small evaluation set, as every test stack has: the shipped one is for the dev stack.
        eval_prompt_file=str(SMALL_EVAL_SET),
    ) as running:
        yield running


def handle(env: WorkflowEnvironment, round_id: str) -> WorkflowHandle[Any, RoundResult]:
    return env.client.get_workflow_handle(f"round-{round_id}", result_type=RoundResult)


async def _events(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return list((await handle.fetch_history()).events)


def _started(events: list[HistoryEvent], activity: str) -> list[HistoryEvent]:
    """The ActivityTaskStarted event of each run of `activity` (its last attempt)."""
    scheduled = {
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity
    }
    return [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]


async def _running(env: WorkflowEnvironment, round_id: str, activity: str) -> str:
    """The identity of the worker running `activity`, once it has made progress."""

    async def found() -> str | None:
        described = await handle(env, round_id).describe()
        for pending in described.raw_description.pending_activities:
            if pending.activity_type.name == activity and pending.HasField("heartbeat_details"):
                return pending.last_worker_identity
        return None

    identity: str = await eventually(found, f"{activity} under way with a heartbeat", 60)
    return identity


async def _settled_once(fleet: Fleet, round_ids: list[str]) -> None:
    """Nothing lost, nothing twice: one decision and one settling per proposal,
    an unbroken chain, a dataset of every example once."""
    for round_id in round_ids:
        decisions = await fleet.ledger.decisions(round_id)
        timeline = await fleet.ledger.timeline(round_id)
        settled = [t.entity for t in timeline if t.to_state == "accepted"]
        assert sorted(settled) == sorted(f"proposal:{d.proposal_id}" for d in decisions)
        assert len(set(settled)) == len(settled) == 2, settled
        assert [t.sequence for t in timeline] == list(range(1, len(timeline) + 1))
        assert await fleet.ledger.verify_chain(round_id) == []
        examples = await fleet.ledger.dataset_examples(round_id)
        assert [e.position for e in examples] == list(range(EXAMPLES))


async def test_two_workers_and_two_gateways_share_rounds_and_survive_a_killed_worker(
    dev_server: WorkflowEnvironment, fleet: Fleet
) -> None:
    first, second = fleet.gateways
    await fleet.start_round(first, "through-one", **SPEC)
    await fleet.start_round(second, "through-two", **SPEC)
    clicks = 0
    # The round whose worker is killed is decided last, so its dataset step
    # has only just begun when the test looks for it.
    for round_id in ("through-two", "through-one"):
        for message in await fleet.messages(round_id, 2):
            # The click goes to one gateway, and Slack's retry of it to the other.
            taken_by, retried_by = fleet.gateways[clicks % 2], fleet.gateways[1 - clicks % 2]
            payload = fleet.reviewer(taken_by).block_actions_payload(
                message, "accept", channel_id=CHANNEL
            )
            answers = [
                await fleet.reviewer(taken_by).send_payload(payload),
                await fleet.reviewer(retried_by).send_payload(payload),
            ]
            assert [a.status_code for a in answers] == [200, 200]
            assert answers[0].json()["outcome"] == "pending", answers[0].text
            # The reviewer is told the round took it, once for the click and its retry.
            told = await wait_until_told(fleet.slack_url, ALICE, seen=clicks, wait_s=60)
            assert "accept recorded" in told["text"], told
            clicks += 1

    # Kill whichever worker runs the first round's dataset step, mid-way.
    doomed = fleet.worker_running(await _running(dev_server, "through-one", "generate_dataset"))
    doomed.process.send_signal(signal.SIGKILL)
    assert await doomed.exited() == -signal.SIGKILL
    survivor = next(w for w in fleet.workers if w is not doomed)
    # Caught mid-way; the takeover and the evaluations after it need no slow model.
    await fleet.set_model_latency(FAST_S)

    for round_id in ("through-one", "through-two"):
        result = await asyncio.wait_for(handle(dev_server, round_id).result(), 120)
        assert result.state is RoundState.completed
    await _settled_once(fleet, ["through-one", "through-two"])
    assert len(await told_to(fleet.slack_url, ALICE)) == clicks

    # Taken over when the heartbeats stopped, not at the six-hour timeout.
    [taken_over] = _started(await _events(handle(dev_server, "through-one")), "generate_dataset")
    attributes = taken_over.activity_task_started_event_attributes
    assert attributes.attempt == 2 and attributes.identity == survivor.identity
    failure = attributes.last_failure.timeout_failure_info
    assert failure.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT


async def test_sigterm_lets_a_worker_finish_its_activities_and_a_gateway_answer_its_clicks(
    dev_server: WorkflowEnvironment, fleet: Fleet
) -> None:
    gateway = fleet.gateways[0]
    await fleet.start_round(gateway, "sigterm", **{**SPEC, "max_proposals": 1})
    [message] = await fleet.messages("sigterm", 1)

    # The gateway: both workers stall, so the click is accepted (Slack is
    # answered within its budget) but not yet decided when SIGTERM comes.
    for worker in fleet.workers:
        worker.process.send_signal(signal.SIGSTOP)
    click = asyncio.create_task(
        fleet.reviewer(gateway).click(message, "accept", channel_id=CHANNEL)
    )
    await asyncio.sleep(0.5)
    gateway.process.send_signal(signal.SIGTERM)  # mid-request
    answer = await click
    assert answer.status_code == 200 and answer.json()["outcome"] == "pending", answer.text
    await asyncio.sleep(1)
    assert gateway.process.returncode is None, "it left before the decision was answered"
    for worker in fleet.workers:
        worker.process.send_signal(signal.SIGCONT)
    assert await gateway.exited() == 0, gateway.output()

    async with httpx.AsyncClient() as http:
        told = (await http.get(f"{fleet.slack_url}/_standin/ephemeral")).json()
    assert [t["user"] for t in told] == [ALICE]
    assert "accept recorded" in told[0]["text"]
    assert len(await fleet.ledger.decisions("sigterm")) == 1

    # The worker: SIGTERM while it runs the dataset step.
    running = fleet.worker_running(await _running(dev_server, "sigterm", "generate_dataset"))
    other = next(w for w in fleet.workers if w is not running)
    running.process.send_signal(signal.SIGTERM)
    assert await running.exited() == 0, running.output()
    await fleet.set_model_latency(FAST_S)
    result = await asyncio.wait_for(handle(dev_server, "sigterm").result(), 120)
    assert result.state is RoundState.completed

    events = await _events(handle(dev_server, "sigterm"))
    [step] = _started(events, "generate_dataset")
    # Finished by the worker that was stopping, in its first attempt...
    assert step.activity_task_started_event_attributes.attempt == 1
    assert step.activity_task_started_event_attributes.identity == running.identity
    # ...which polled for nothing more: the rest ran on the other worker.
    later = [*_started(events, "start_fine_tune"), *_started(events, "evaluate")]
    assert later and all(
        e.activity_task_started_event_attributes.identity == other.identity for e in later
    )
    examples = await fleet.ledger.dataset_examples("sigterm")
    assert [e.position for e in examples] == list(range(EXAMPLES))
