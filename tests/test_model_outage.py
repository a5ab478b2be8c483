"""A model outage longer than an activity's quick retries (five tries, about
30 s) no longer fails the round: it waits visibly (`waiting on model`,
recorded once as it begins and once as it ends) and goes on when the model
answers again.

On the time-skipping test server: the retries' backoff and the round's pause
run on its clock, which moves on whenever the test sleeps on it and nothing
else is under way; on the dev server they took 48 s of real time.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from constitution import RoundSpec, RoundState
from constitution.contracts import RoundInput, RoundStatus
from ledger.store import Ledger
from tests.conftest import StackFactory, eventually, standin
from workflows.round import TrainingRoundWorkflow

# One more 500 than MODEL_RETRY's five attempts: the quick retries run out.
OUTAGE = ["server_error"] * 6


async def test_a_model_down_past_its_retries_makes_the_round_wait_then_go_on(
    time_skipping: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    async with stack_on(time_skipping) as stack:
        await standin(stack, "/_standin/faults", {"faults": OUTAGE})
        spec = RoundSpec(round_id="model-outage", reviewers=["U0ALICE"], max_proposals=1)
        handle = await time_skipping.client.start_workflow(
            TrainingRoundWorkflow.run,
            RoundInput(spec=spec),
            id=spec.workflow_id,
            task_queue=stack.settings.temporal_task_queue,
        )

        async def waiting() -> RoundStatus | None:
            await time_skipping.sleep(timedelta(seconds=1))
            status: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
            return status if status.waiting is not None else None

        shown = await eventually(waiting, "the round to show it waits", wait_s=120)
        assert shown.waiting is not None and shown.waiting.on == "model"
        assert "waiting on model" in shown.waiting.describe()

        async def in_review() -> RoundStatus | None:
            await time_skipping.sleep(timedelta(seconds=1))
            status: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
            return status if status.state is RoundState.in_review else None

        status = await eventually(in_review, "the round to go on to review", wait_s=180)
    assert status.waiting is None
    moves = [
        (t.from_state, t.to_state)
        for t in await ledger.timeline("model-outage")
        if t.entity == "model"
    ]
    assert moves == [("ok", "waiting"), ("waiting", "ok")]
