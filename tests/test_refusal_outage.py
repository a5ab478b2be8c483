"""A refused decision met with the ledger away is not lost: the reviewer is told
it will be recorded, Temporal keeps it, and a worker writes it once."""

from __future__ import annotations

from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.testing import WorkflowEnvironment

from constitution import DecisionKind
from constitution.models import DecisionRequest
from gateway.deps import GatewayConfig, Services
from gateway.metrics import GatewayMetrics
from gateway.slack import SlackInteractions
from ledger.dashboards import Dashboards
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.reviewer import wait_for_proposals
from tests.conftest import StackFactory, start_round
from workflows.refusal import refusal_workflow_id
from workflows.round import TrainingRoundWorkflow

MALLORY = "U0MALLORY"  # not a reviewer of the round: refused


async def test_a_refusal_the_ledger_cannot_take_is_recorded_once_it_is_back(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger, database_url: str
) -> None:
    async with stack_on(dev_server) as stack:
        await start_round(stack, "ledger-away", max_proposals=1)
        await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
        status = await dev_server.client.get_workflow_handle("round-ledger-away").query(
            TrainingRoundWorkflow.state
        )
        [item] = status.proposals
        # A gateway whose database is away: its pool cannot give a connection.
        away = await create_pool(database_url, max_size=1)
        await away.close()
        gateway = SlackInteractions(
            Services(
                config=GatewayConfig(
                    signing_secret=SecretStr("unused"),
                    task_queue=stack.settings.temporal_task_queue,
                    database_url=SecretStr(database_url),
                    slack=AsyncWebClient(base_url=f"{stack.slack_stand_in_url}/api/"),
                ),
                temporal=dev_server.client,
                ledger=Ledger(away),
                dashboards=Dashboards(away),
                metrics=GatewayMetrics(),
            )
        )
        request = DecisionRequest(
            proposal_id=item.proposal.id, kind=DecisionKind.accept, reviewer=MALLORY
        )
        for _ in range(2):  # Slack retries the click: one refusal all the same
            answer = await gateway._decide("round-ledger-away", request, "click-1")
            assert answer.outcome == "refused"
            assert "not a reviewer" in answer.message
            assert "will be recorded when it is back" in answer.message
        kept = dev_server.client.get_workflow_handle(refusal_workflow_id("click-1"))
        await kept.result()

    [attempt] = await ledger.decision_attempts("ledger-away")
    assert attempt.reviewer == MALLORY and attempt.outcome == "refused"
    assert "not a reviewer" in attempt.reason
