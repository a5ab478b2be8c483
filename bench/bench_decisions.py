"""Slack decisions, clicked through the gateway by simulated reviewers (a
stand-in for people in Slack), against Temporal's own floor.

Click-to-ack: fifty reviewers click Accept on one proposal at the same moment
(a quorum of fifty, so every click is a vote the round takes); each click is
timed from the signed POST to the gateway's answer. The gateway answers within
Slack's 3-second budget even when the round has not finished taking the vote
(it then says the decision is being recorded), so p99 is bounded by design.

Click-to-ledger: one click at a time, timed from the POST to the gateway's
"taken" answer, which the round gives only after the decision row is in the
ledger. The floor is a raw Temporal update round trip on a no-op workflow on
the same dev server, measured in interleaved blocks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.harness import BenchEnv, BenchStack, Figure, Timings, alternating, at_most, percentile
from standins.reviewer import SimulatedReviewer, wait_for_proposals

CONCURRENT = 50
SEQUENTIAL = 30
CHANNEL = "C0AMENDBENCH"


@workflow.defn(sandboxed=False)
class NoopWorkflow:
    """The floor: an update that does nothing but answer."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.update
    async def touch(self, value: int) -> int:
        return value

    @workflow.signal
    def finish(self) -> None:
        self.done = True


def _users(prefix: str, count: int) -> list[str]:
    return [f"U0{prefix}{n:03d}" for n in range(count)]


async def run(env: BenchEnv) -> list[Figure]:
    async with env.stack() as bench:
        return await _measure(bench, env.temporal)


async def _measure(bench: BenchStack, temporal: Client) -> list[Figure]:
    stack = bench.stack
    crowd, queue = _users("CROWD", CONCURRENT), _users("LINE", SEQUENTIAL + 5)
    round_id = f"bench-{uuid.uuid4().hex[:6]}"
    quorum = {"quorum": CONCURRENT}  # the crowd settles the first proposal, no more
    spec = {
        "round_id": round_id,
        "reviewers": crowd + queue,
        "max_proposals": 2,
        "policy": quorum,
        "strict_policy": quorum,
    }
    token = {"Authorization": f"Bearer {stack.operator_token}"}
    async with httpx.AsyncClient(timeout=30, headers=token) as http:
        started = await http.post(f"{stack.gateway_url}/api/rounds", json=spec)
        started.raise_for_status()
    first, second = await wait_for_proposals(
        stack.slack_stand_in_url or "", 2, channel_id=CHANNEL, wait_s=60
    )
    secret = stack.settings.slack_signing_secret.get_secret_value()

    # One connection pool, as Slack keeps its connections to an app open.
    http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=CONCURRENT))

    def reviewer(user: str) -> SimulatedReviewer:
        return SimulatedReviewer(stack.gateway_url, secret, user, client=http)

    async def click(user: str, message: dict[str, Any]) -> tuple[float, str]:
        person = reviewer(user)
        body = person.encode(person.block_actions_payload(message, "accept", channel_id=CHANNEL))
        began = time.perf_counter()
        response = await person.send_raw(body)
        return time.perf_counter() - began, str(response.json().get("outcome"))

    # -- fifty at once ------------------------------------------------------------
    answers = await asyncio.gather(*(click(user, first) for user in crowd))
    acks = [seconds for seconds, _ in answers]
    outcomes = [outcome for _, outcome in answers]
    deadline = time.monotonic() + 120
    while len(await bench.ledger.decisions(round_id)) < CONCURRENT:
        if time.monotonic() > deadline:
            raise RuntimeError("not every concurrent vote reached the ledger")
        await asyncio.sleep(0.1)

    # -- one at a time, against a raw update round trip -----------------------------
    line = iter(queue)
    async with Worker(
        temporal,
        task_queue=f"bench-noop-{uuid.uuid4().hex[:6]}",
        workflows=[NoopWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ) as worker:
        noop: WorkflowHandle[Any, Any] = await temporal.start_workflow(
            NoopWorkflow.run,
            id=f"bench-noop-{uuid.uuid4().hex[:6]}",
            task_queue=worker.task_queue,
            execution_timeout=timedelta(minutes=10),
        )

        async def decide(_: int) -> None:
            _seconds, outcome = await click(next(line), second)
            if outcome != "taken":
                raise RuntimeError(f"a single click was answered {outcome!r}")

        async def raw_update(i: int) -> None:
            await noop.execute_update(NoopWorkflow.touch, i)

        ours, floor = await alternating(decide, raw_update, SEQUENTIAL, rounds=5, warmup=2)
        await noop.signal(NoopWorkflow.finish)
    await temporal.get_workflow_handle(f"round-{round_id}").cancel()
    await http.aclose()

    ack = Timings(tuple(acks))
    pending = outcomes.count("pending")
    taken = outcomes.count("taken")
    return [
        Figure(
            f"decisions: click-to-ack, {CONCURRENT} concurrent clicks (p50)",
            ack.median_ms,
            "ms",
            note=f"{taken} answered taken, {pending} answered 'being recorded' at the "
            f"1.5 s ack budget; all {CONCURRENT} votes reached the ledger",
        ),
        Figure(
            f"decisions: click-to-ack, {CONCURRENT} concurrent clicks (p99)",
            percentile(acks, 99) * 1000,
            "ms",
            note="Slack's deadline is 3000 ms",
        ),
        Figure(
            "decisions: click-to-decision-in-ledger (p50)",
            ours.median_ms,
            "ms",
            floor.median_ms,
            "raw Temporal update round trip, no-op workflow",
            at_most(3),
            note=f"p99 {ours.p99_ms:.1f} ms vs raw {floor.p99_ms:.1f} ms; one click at a "
            "time: signature check, update, validator, ledger write, message update",
        ),
    ]
