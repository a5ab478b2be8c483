"""A round started through the API or the CLI waits out outages for as long
as the operator's AMEND_OUTAGE_PATIENCE says, unless its spec says otherwise;
the value it runs with is in its spec, in the workflow's history."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from tests.conftest import StackFactory, run_cli, stack_cli_env, start_round
from workflows.round import TrainingRoundWorkflow


async def _patience(env: WorkflowEnvironment, round_id: str) -> timedelta:
    handle = env.client.get_workflow_handle(f"round-{round_id}")
    status = await handle.query(TrainingRoundWorkflow.state)
    await handle.cancel()
    return status.spec.outage_patience


async def test_rounds_started_by_the_api_and_the_cli_take_the_operators_patience(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, database_url: str
) -> None:
    async with stack_on(dev_server, outage_patience=timedelta(minutes=7)) as stack:
        await start_round(stack, "patient-api", max_proposals=1)
        await start_round(stack, "own-patience", max_proposals=1, outage_patience="PT1H")
        env = {**stack_cli_env(stack, dev_server, database_url), "AMEND_OUTAGE_PATIENCE": "1200"}
        started = await run_cli(
            env, "round", "start", "--id", "patient-cli", "--reviewer", "U0ALICE"
        )
        assert started.exit_code == 0, started.output
        assert await _patience(dev_server, "patient-api") == timedelta(minutes=7)
        assert await _patience(dev_server, "own-patience") == timedelta(hours=1)
        assert await _patience(dev_server, "patient-cli") == timedelta(minutes=20)
