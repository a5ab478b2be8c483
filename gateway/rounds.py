"""The one way an operator starts a round or reads its state, shared by the
HTTP API and the CLI."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from constitution import RoundSpec
from constitution.contracts import Progress, RoundInput, RoundStatus
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
    """The round's full state from its workflow (running or closed), with the
    progress its long-running activity last heartbeated."""
    handle = client.get_workflow_handle(f"round-{round_id}")
    try:
        status = await handle.query(TrainingRoundWorkflow.state)
        if status.progress is not None:
            status.progress = await heartbeat_progress(client, handle) or status.progress
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise RoundNotFound(f"no round {round_id}") from error
        raise
    return status


async def heartbeat_progress(client: Client, handle: WorkflowHandle[Any, Any]) -> Progress | None:
    """Workflows cannot see heartbeats; Temporal keeps the last one on the
    pending activity, where a describe finds it."""
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        if pending.heartbeat_details.payloads:
            try:
                # The first detail is the progress; others (a checkpoint) are the activity's own.
                [progress] = await client.data_converter.decode(
                    pending.heartbeat_details.payloads[:1], [Progress]
                )
            except Exception:  # details of another shape: not a progress report
                continue
            if isinstance(progress, Progress):
                return progress
    return None
