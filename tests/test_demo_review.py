"""`amend demo`'s simulated reviewer (a stand-in) decides every proposal the
model made, however many that is, so a demo never leaves a round in review."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from constitution import RoundState
from constitution.contracts import RoundResult
from ledger.store import Ledger
from standins.reviewer import SIMULATED_REVIEWER
from tests.conftest import StackFactory, start_round
from worker.demo import simulate_review


@pytest.mark.parametrize("max_proposals", [1, 5])
async def test_the_demo_reviewer_decides_every_proposal_however_many_were_made(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger, max_proposals: int
) -> None:
    async with stack_on(dev_server) as stack:
        round_id = f"demo-review-{max_proposals}"
        await start_round(
            stack,
            round_id,
            reviewers=[SIMULATED_REVIEWER],
            max_proposals=max_proposals,
            training={"prompt_count": 2, "poll_interval": "PT0.2S"},
        )
        handle = dev_server.client.get_workflow_handle(f"round-{round_id}", result_type=RoundResult)
        said = io.StringIO()
        await simulate_review(
            handle,
            stack.slack_stand_in_url or "",
            stack.gateway_url,
            stack.settings,
            Console(file=said),
        )
        async with asyncio.timeout(300):  # a round left in review would never end
            result = await handle.result()
    assert result.state in (RoundState.completed, RoundState.gate_failed)
    decided = await ledger.decisions(round_id)
    assert len(decided) == said.getvalue().count("simulated reviewer:")
    if max_proposals == 1:
        assert len(decided) == 1
    else:
        assert len(decided) > 3  # more than the script's three decisions
