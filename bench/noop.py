"""The floor for round throughput: a workflow with a round's shape and none of
its work. It runs the same number of activities as a measured round, each a
no-op, and takes the same number of updates (the reviewers' decisions) between
its first and second half, on the same sandboxed runner and data converter.

Kept apart from the benchmark module so the workflow sandbox imports nothing
but temporalio here.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow


class NoOpRoundInput(BaseModel):
    activities: int
    updates: int


@activity.defn(name="bench_noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BenchNoOpRound")
class NoOpRound:
    def __init__(self) -> None:
        self.decided = 0

    @workflow.run
    async def run(self, spec: NoOpRoundInput) -> int:
        before = spec.activities // 2
        for step in range(before):
            await self._step(step)
        await workflow.wait_condition(lambda: self.decided >= spec.updates)
        for step in range(before, spec.activities):
            await self._step(step)
        return self.decided

    async def _step(self, step: int) -> None:
        await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=30))

    @workflow.update
    async def decide(self, proposal: str) -> str:
        self.decided += 1
        return proposal
