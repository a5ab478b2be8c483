"""The one way an operator starts a round or reads its state, shared by the
HTTP API and the CLI."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from constitution import RoundSpec
from constitution.contracts import RoundInput, RoundStatus
from workflows.round import TrainingRoundWorkflow


class RoundExists(Exception):
    """A round with this id was started before; ids are never reused."""


class RoundNotFound(Exception):
    """No workflow for this round id."""


async def start_round(client: Client, spec: RoundSpec, task_queue: str) -> None:
    try:
        await client.start_workflow(
            TrainingRoundWorkflow.run,
            RoundInput(spec=spec),
            id=spec.workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError as error:
        raise RoundExists(f"round {spec.round_id} already exists") from error


async def round_status(client: Client, round_id: str) -> RoundStatus:
    """The round's full state from its workflow (running or closed)."""
    try:
        return await client.get_workflow_handle(f"round-{round_id}").query(
            TrainingRoundWorkflow.state
        )
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise RoundNotFound(f"no round {round_id}") from error
        raise
