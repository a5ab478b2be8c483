"""The floors for round throughput: a workflow with a round's shape and none of
its work. It runs the same number of activities and local activities as a
measured round, each a no-op, and takes the same number of updates (the
reviewers' decisions) between its first and second half, on the same
sandboxed runner and data converter.

With `model_calls`, its last activity instead makes that many chat completions
(`bench_model_calls`, registered by the benchmark; see `bench.model_calls`):
the floor a round cannot go below however little the service adds, since the
round must make its model calls.

Kept apart from the benchmark module so the workflow sandbox imports nothing
but temporalio here.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow

MODEL_CALLS_ACTIVITY = "bench_model_calls"


class NoOpRoundInput(BaseModel):
    activities: int
    updates: int
    local_activities: int = 0
    model_calls: int = 0


@activity.defn(name="bench_noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BenchNoOpRound")
class NoOpRound:
    def __init__(self) -> None:
        self.decided = 0

    @workflow.run
    async def run(self, spec: NoOpRoundInput) -> int:
        before, local_before = spec.activities // 2, spec.local_activities // 2
        for step in range(before):
            await self._step(step)
        for step in range(local_before):
            await self._local_step(step)
        await workflow.wait_condition(lambda: self.decided >= spec.updates)
        for step in range(local_before, spec.local_activities):
            await self._local_step(step)
        for step in range(before, spec.activities):
            if step == spec.activities - 1 and spec.model_calls:
                await workflow.execute_activity(
                    MODEL_CALLS_ACTIVITY,
                    spec.model_calls,
                    start_to_close_timeout=timedelta(minutes=10),
                )
            else:
                await self._step(step)
        return self.decided

    async def _step(self, step: int) -> None:
        await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=30))

    async def _local_step(self, step: int) -> None:
        await workflow.execute_local_activity(
            noop, step, start_to_close_timeout=timedelta(seconds=30)
        )

    @workflow.update
    async def decide(self, proposal: str) -> str:
        self.decided += 1
        return proposal
