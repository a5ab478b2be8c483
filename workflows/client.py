"""How any client starts, reads, decides and cancels rounds.

The gateway's operator API and Slack interactions, and the CLI, all go through
these functions, so Temporal's answers become the same errors everywhere.

It lives beside the workflow it drives (and the CLI imports it without the
gateway): it names the workflow's updates, queries and signals by reference.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from constitution import (
    TERMINAL_ROUND_STATES,
    DecisionOutcome,
    DecisionRequest,
    RoundSpec,
    RoundState,
    round_workflow_id,
)
from constitution.contracts import (
    OperatorRequest,
    Progress,
    ResumedRound,
    RoundInput,
    RoundResult,
    RoundStatus,
)
from workflows.round import TrainingRoundWorkflow
from workflows.search import CONSTITUTION_VERSION, PENDING_DECISIONS, ROUND_STATE

log = logging.getLogger(__name__)


class RoundExists(Exception):
    """A round with this id was started before; ids are never reused."""


class RoundNotFound(Exception):
    """No workflow for this round id."""


class RoundRefused(Exception):
    """The round refused an operator's order (wrong state, unknown proposal); nothing changed."""


# What Temporal answers an update sent to a round whose workflow has closed.
CLOSED_ROUND = (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)


def refusal_reason(error: WorkflowUpdateFailedError) -> str:
    """Why the round refused an update: its validator's own words."""
    cause = error.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or error)


def refused_by_round(error: WorkflowUpdateFailedError) -> bool:
    """Whether the round itself refused the update, not Temporal.

    The round refuses with an ApplicationError (its validator or handler). The
    server rejects an update that arrived as the run was continuing as new,
    unseen by the round ("Workflow Update is rejected because it wasn't
    processed by worker"); that one, sent again, reaches the run that follows.
    """
    return isinstance(error.cause, ApplicationError)


def _first_search_attributes(
    spec: RoundSpec, state: RoundState = RoundState.created, version: int | None = None
) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(ROUND_STATE, state.value),
        SearchAttributePair(PENDING_DECISIONS, 0),
    ]
    version = version or spec.constitution_version
    if version is not None:
        pairs.append(SearchAttributePair(CONSTITUTION_VERSION, version))
    return TypedSearchAttributes(pairs)


async def start_round(client: Client, spec: RoundSpec, task_queue: str) -> None:
    """Start the round's workflow with its search attributes; `RoundExists` if the id was used."""
    try:
        await _start(
            client,
            RoundInput(spec=spec),
            task_queue,
            _first_search_attributes(spec),
            WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError as error:
        raise RoundExists(f"round {spec.round_id} already exists") from error


async def _start(
    client: Client,
    input: RoundInput,
    task_queue: str,
    attributes: TypedSearchAttributes,
    reuse: WorkflowIDReusePolicy,
) -> str:
    """Start a run of the round's workflow with its search attributes; answers its run id.

    On a Temporal cluster where the attributes are not registered, start it
    without them (the round runs the same, only visibility queries cannot
    filter it) and say so.
    """
    try:
        handle = await client.start_workflow(
            TrainingRoundWorkflow.run,
            input,
            id=input.spec.workflow_id,
            task_queue=task_queue,
            id_reuse_policy=reuse,
            search_attributes=attributes,
        )
    except RPCError as error:
        if error.status is not RPCStatusCode.INVALID_ARGUMENT or "ttribute" not in str(error):
            raise
        log.warning(
            "Temporal has no search attributes %s registered (%s); round %s starts "
            "without them. `amend dev` registers them; see the README for a cluster.",
            ", ".join(pair.key.name for pair in attributes),
            error.message,
            input.spec.round_id,
        )
        handle = await client.start_workflow(
            TrainingRoundWorkflow.run,
            input,
            id=input.spec.workflow_id,
            task_queue=task_queue,
            id_reuse_policy=reuse,
        )
    return handle.result_run_id or ""


async def resume_round(
    client: Client, round_id: str, order: OperatorRequest, task_queue: str
) -> ResumedRound:
    """Re-run a failed round from the retraining stage after its last completed one.

    A new run of the round's workflow carries the failed run's status, so the
    reviewers' decisions, the new version, the dataset and a succeeded
    fine-tune job are kept and nobody is asked again. Refused (`RoundRefused`,
    nothing changes) unless the round failed after its review adopted
    amendments; `RoundNotFound` when there is no such round. Temporal starts
    the run only while the last one is closed and failed, so a second order
    sent at the same time is refused as already running.
    """
    status = await round_status(client, round_id)
    if status.state is not RoundState.failed:
        running = "" if status.state in TERMINAL_ROUND_STATES else " and running"
        raise RoundRefused(
            f"round {round_id} is {status.state.value}{running}; only a failed round can be resumed"
        )
    stage = status.resume_stage
    if stage is None:
        raise RoundRefused(
            f"round {round_id} failed before its review adopted any amendment, so there "
            "is nothing to resume; start a new round"
        )
    try:
        run_id = await _start(
            client,
            RoundInput(spec=status.spec, carried=status, resume=order),
            task_queue,
            _first_search_attributes(
                status.spec, RoundState.failed, status.result_version or status.base_version
            ),
            WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
    except WorkflowAlreadyStartedError as error:
        raise RoundRefused(f"round {round_id} is already running (resumed)") from error
    return ResumedRound(
        round_id=round_id, workflow_id=status.spec.workflow_id, run_id=run_id, stage=stage
    )


async def past_preflight(
    client: Client, round_id: str, wait_s: float = 30, every_s: float = 0.2
) -> RoundStatus | None:
    """The round's status once its preflight has answered, or the round has ended.

    So whoever starts a round learns at once whether it was refused. None when
    it did not answer within `wait_s` (no worker polling the queue, say).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        try:
            status = await asyncio.wait_for(round_status(client, round_id), every_s * 10)
        except (RPCError, TimeoutError):
            status = None
        if status is not None and (
            status.preflight is not None or status.state in TERMINAL_ROUND_STATES
        ):
            return status
        await asyncio.sleep(every_s)
    return None


async def round_status(client: Client, round_id: str) -> RoundStatus:
    """The round's full state from its workflow, running or closed; `RoundNotFound` if none.

    The progress is the one its long-running activity last heartbeated.
    """
    handle = client.get_workflow_handle(round_workflow_id(round_id))
    try:
        status = await handle.query(TrainingRoundWorkflow.state)
        if status.progress is not None:
            status.progress = (
                await heartbeat_progress(client, handle, status.progress) or status.progress
            )
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise RoundNotFound(f"no round {round_id}") from error
        raise
    return status


async def heartbeat_progress(
    client: Client, handle: WorkflowHandle[Any, Any], known: Progress | None = None
) -> Progress | None:
    """The progress the round's pending activities last heartbeated, if any.

    Workflows cannot see heartbeats; Temporal keeps the last one on each
    pending activity, where a describe finds it. A dataset in shards has
    several under way: their counts are added to `known`, what the round
    itself counted (the shards already finished, and the total).
    """
    description = await handle.describe()
    beating: list[Progress] = []
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
                beating.append(progress)
    if not beating:
        return None
    first = beating[0]
    same = [p for p in beating if p.stage == first.stage]
    done = sum(p.done for p in same)
    total = sum(p.total for p in same)
    if known is not None and known.stage == first.stage and known.total:
        done, total = known.done + done, known.total
    return first.model_copy(update={"done": done, "total": total})


async def _send(
    client: Client, round_id: str, update: Any, arg: Any, *, accepted_only: bool = False
) -> Any:
    """Send an operator's order (a workflow update); a refusal is raised as `RoundRefused`.

    Temporal's refusals become the operator's errors: a validator's reason, or
    for a round whose workflow has closed, the state it ended in.
    `accepted_only` returns once the round has accepted the order, without its
    answer.
    """
    handle = client.get_workflow_handle(round_workflow_id(round_id))
    try:
        if accepted_only:
            return await handle.start_update(
                update, arg, wait_for_stage=WorkflowUpdateStage.ACCEPTED
            )
        return await handle.execute_update(update, arg)
    except WorkflowUpdateFailedError as error:
        raise RoundRefused(refusal_reason(error)) from error
    except RPCError as error:
        if error.status not in CLOSED_ROUND:
            raise
        status = await round_status(client, round_id)  # RoundNotFound when there is none
        raise RoundRefused(
            f"round {round_id} has ended ({status.state.value}); it takes no more orders"
        ) from error


async def cancel_round(client: Client, round_id: str, order: OperatorRequest) -> RoundResult:
    """Cancel an active round; refused (RoundRefused) once it has ended.

    The answer is the round's own result: a cancelled round ends with it, and
    waiting for the workflow's end, rather than polling the update's outcome,
    does not depend on the server keeping that outcome after the workflow has
    closed in the same task (the poll was seen to hang there).
    """
    await _send(client, round_id, TrainingRoundWorkflow.cancel, order, accepted_only=True)
    handle = client.get_workflow_handle(round_workflow_id(round_id), result_type=RoundResult)
    try:
        result: RoundResult = await handle.result()
    except WorkflowFailureError as error:
        raise RoundRefused(f"round {round_id} failed while cancelling: {error.cause}") from error
    return result


async def repost_round(client: Client, round_id: str, order: OperatorRequest) -> int:
    """Post the round's pending proposals again; returns how many were posted."""
    posted = await _send(client, round_id, TrainingRoundWorkflow.repost, order)
    return len(posted)


async def retry_slack(client: Client, round_id: str) -> None:
    """Tell a round blocked on Slack to try again now; `RoundNotFound` if it is not running.

    Sent after a channel or token was fixed, so the round need not wait for its
    next `slack_retry_interval`.
    """
    try:
        await client.get_workflow_handle(round_workflow_id(round_id)).signal(
            TrainingRoundWorkflow.retry_slack
        )
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise RoundNotFound(f"no running round {round_id}") from error
        raise


async def override_decision(
    client: Client, round_id: str, request: DecisionRequest
) -> DecisionOutcome:
    """An operator decides a proposal in the reviewers' stead.

    The decision and its transition carry the operator and the override mark.
    """
    outcome: DecisionOutcome = await _send(client, round_id, TrainingRoundWorkflow.decide, request)
    return outcome
