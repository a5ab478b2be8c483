"""Slack interactions: a reviewer's click or modal becomes a decision.

Requests are verified on the raw body before anything else; a forged or stale
one gets 401 and touches nothing. A decision becomes the workflow's `decide`
update with an id derived from the interaction, so Slack's retries of one
click are taken once, and the workflow's validator answers at once whether it
was taken, already made or not allowed. Refusals never reach Temporal's
history, so they are recorded in the ledger as attempts.

`SlackInteractions` is built once per app; the HTTP route below and the
Socket Mode receiver both hand it verified payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from slack_sdk.errors import SlackApiError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from constitution import (
    DecisionKind,
    DecisionOutcome,
    DecisionRequest,
    Principle,
    RoundState,
    round_id_of,
)
from constitution.contracts import DecisionAttemptInput, ProposalStatus, RoundStatus
from gateway.deps import NotStarted, Services
from gateway.refusals import refusals
from gateway.signing import SignedRequestVerifier, slack_verifier
from review.messages import (
    DECISION_CALLBACKS,
    modify_view,
    parse_action_value,
    parse_view_metadata,
    reject_view,
)
from workflows.client import CLOSED_ROUND, refusal_reason
from workflows.refusal import RecordRefusalWorkflow, refusal_workflow_id
from workflows.round import TrainingRoundWorkflow

log = logging.getLogger(__name__)

# Slack wants an answer within 3 s; what the round has not answered by then
# is told to the reviewer later. The margin covers a busy event loop.
ACK_BUDGET_S = 1.5
T = TypeVar("T")


# What a write meets while PostgreSQL is away (stopped, restarting, unreachable,
# or the pool closed), as opposed to a write the ledger refuses.
LEDGER_AWAY = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class InteractionAnswer(BaseModel):
    """What the gateway makes of an interaction; Slack ignores the body of a
    block_actions answer, the simulated reviewer and the tests read it."""

    outcome: str  # taken | refused | pending | opened
    message: str
    proposal_id: str | None = None


class SlackInteractions:
    """Verified interactions to decisions, and their outcomes to reviewers."""

    def __init__(self, services: Services, verifier: SignedRequestVerifier | None = None) -> None:
        self.services = services
        self.slack = services.config.slack
        self.verifier = verifier or slack_verifier(
            services.config.signing_secret.get_secret_value()
        )
        # Work that must not hold up Slack's answer, kept referenced until done.
        self._background: set[asyncio.Task[Any]] = set()

    async def handle(self, payload: dict[str, Any]) -> Response:
        """A verified interaction, from the HTTP endpoint or Socket Mode."""
        kind = payload.get("type")
        if kind == "block_actions":
            return await self._block_actions(payload)
        if kind == "view_submission":
            return await self._view_submission(payload)
        return Response(status_code=200)

    async def _block_actions(self, payload: dict[str, Any]) -> Response:
        user = str(payload.get("user", {}).get("id", ""))
        channel = str(
            payload.get("container", {}).get("channel_id")
            or payload.get("channel", {}).get("id", "")
        )
        answers = []
        for action in payload.get("actions", []):
            try:
                workflow_id, proposal_id = parse_action_value(str(action.get("value", "")))
            except ValueError:
                continue
            action_id = action.get("action_id")
            if action_id in ("modify", "reject"):
                answer = await self._open_decision_view(
                    payload, action_id, workflow_id, proposal_id, user, channel
                )
            elif action_id == "accept":
                request = DecisionRequest(
                    proposal_id=proposal_id, kind=DecisionKind(action_id), reviewer=user
                )
                update_id = f"slack:{action.get('action_ts')}:{user}:{proposal_id}:{action_id}"
                answer = await self._decide_within_ack(workflow_id, request, update_id, channel)
            else:
                continue
            answers.append(answer)
        if not answers:
            return JSONResponse({"error": "no amend action in the payload"}, status_code=400)
        return JSONResponse(answers[0].model_dump())

    async def _view_submission(self, payload: dict[str, Any]) -> Response:
        view = payload.get("view", {})
        kind = DECISION_CALLBACKS.get(str(view.get("callback_id")))
        if kind is None:
            return Response(status_code=200)
        user = str(payload.get("user", {}).get("id", ""))
        try:
            workflow_id, proposal_id, channel, _ts = parse_view_metadata(
                str(view.get("private_metadata", ""))
            )
        except ValueError:
            return JSONResponse({"error": "modal metadata is not amend's"}, status_code=400)
        values = view.get("state", {}).get("values", {})
        text = (values.get("text", {}).get("text", {}) or {}).get("value")
        comment = (values.get("comment", {}).get("comment", {}) or {}).get("value")
        # The block an error is shown under: the text for a modify, else the reason.
        field = "text" if kind == "modify" else "comment"
        try:
            request = DecisionRequest(
                proposal_id=proposal_id,
                kind=DecisionKind(kind),
                reviewer=user,
                text=text if kind == "modify" else None,
                comment=comment,
            )
        except ValidationError as error:
            return JSONResponse(
                {"response_action": "errors", "errors": {field: error.errors()[0]["msg"]}}
            )
        update_id = f"slack:{view.get('id')}:{view.get('hash')}:{user}:{proposal_id}:{kind}"
        answer = await self._decide_within_ack(workflow_id, request, update_id, channel)
        if answer.outcome == "refused":
            return JSONResponse({"response_action": "errors", "errors": {field: answer.message}})
        return JSONResponse({"response_action": "clear"})

    async def _decide_within_ack(
        self, workflow_id: str, request: DecisionRequest, update_id: str, channel: str
    ) -> InteractionAnswer:
        """Decide, telling the reviewer the outcome; answer Slack in time even
        when the round is slow to respond."""
        task = self._in_background(self._decide(workflow_id, request, update_id))
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), ACK_BUDGET_S)
        except TimeoutError:
            task.add_done_callback(lambda t: self._tell_later(t, channel, request.reviewer))
            return InteractionAnswer(
                outcome="pending",
                proposal_id=request.proposal_id,
                message="Your decision is being recorded.",
            )
        self._in_background(self._tell(channel, request.reviewer, answer.message))
        return answer

    async def drain(self, timeout_s: float) -> None:
        """Wait, up to `timeout_s`, for the work behind interactions already
        acknowledged: a decision Slack was told is being recorded is seen
        through and its reviewer told, even when the gateway is stopping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # Finishing a decision may start the message that tells its reviewer.
        while self._background and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._background), timeout=left)
        if self._background:
            log.warning(
                "stopped with %d interaction(s) unanswered after %g s",
                len(self._background),
                timeout_s,
            )

    def _in_background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _tell_later(self, task: asyncio.Task[InteractionAnswer], channel: str, user: str) -> None:
        if task.cancelled() or task.exception():
            return
        self._in_background(self._tell(channel, user, task.result().message))

    async def _tell(self, channel: str, user: str, text: str) -> None:
        if not channel or not user:
            return
        try:
            await self.slack.chat_postEphemeral(channel=channel, user=user, text=text)
        except SlackApiError as error:
            log.warning("could not tell %s the outcome: %s", user, error.response.get("error"))

    async def _decide(
        self, workflow_id: str, request: DecisionRequest, update_id: str
    ) -> InteractionAnswer:
        round_id = round_id_of(workflow_id) or workflow_id
        try:
            outcome: DecisionOutcome = await self.services.temporal.get_workflow_handle(
                workflow_id
            ).execute_update(TrainingRoundWorkflow.decide, request, id=update_id)
        except WorkflowUpdateFailedError as error:
            reason = refusal_reason(error)
        except RPCError as error:
            if error.status not in CLOSED_ROUND:
                raise
            reason = await self._round_over(round_id)
        else:
            self.services.metrics.decisions.labels("taken").inc()
            return InteractionAnswer(
                outcome="taken", message=outcome.message, proposal_id=request.proposal_id
            )
        self.services.metrics.decisions.labels("refused").inc()
        log.info(
            "refused %s on %s: %s",
            request.kind.value,
            request.proposal_id,
            reason,
            extra={"round_id": round_id, "proposal_id": request.proposal_id},
        )
        attempt = DecisionAttemptInput(
            round_id=round_id,
            proposal_id=request.proposal_id,
            reviewer=request.reviewer,
            kind=request.kind.value,
            outcome="refused",
            reason=reason,
            source="slack",
        )
        message = f"Not recorded: {reason}"
        try:
            await self.services.ledger.record_decision_attempt(**attempt.model_dump())
        except LEDGER_AWAY as error:
            # The ledger is away: Temporal keeps the refusal and a worker writes
            # it once the database answers (workflows.refusal).
            log.warning("refusal of %s kept for later: %s", request.proposal_id, error)
            await self._keep_refusal(attempt, update_id)
            message += " (the ledger is unavailable; this refusal will be recorded when it is back)"
        return InteractionAnswer(
            outcome="refused", message=message, proposal_id=request.proposal_id
        )

    async def _keep_refusal(self, attempt: DecisionAttemptInput, update_id: str) -> None:
        """Hand the refusal to Temporal, once however often Slack retries the click."""
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self.services.temporal.start_workflow(
                RecordRefusalWorkflow.run,
                attempt,
                id=refusal_workflow_id(update_id),
                task_queue=self.services.config.task_queue,
            )

    async def _round_over(self, round_id: str) -> str:
        """Why a round's buttons no longer do anything, from the ledger."""
        row = await self.services.ledger.get_round(round_id)
        ended = f" ({row.state})" if row is not None else ""
        return f"round {round_id} is no longer running{ended}; this button no longer decides"

    async def _current(self, status: RoundStatus, item: ProposalStatus) -> Principle | None:
        """The principle a proposal changes, as the round's base version has it."""
        target = item.proposal.draft.target
        version = await self.services.ledger.get_version(status.base_version)
        return version.principle(target) if version is not None and target else None

    async def _open_decision_view(
        self,
        payload: dict[str, Any],
        kind: str,
        workflow_id: str,
        proposal_id: str,
        user: str,
        channel: str,
    ) -> InteractionAnswer:
        """Open the modify or reject modal; a stale button gets a clear answer instead."""
        round_id = round_id_of(workflow_id) or workflow_id
        message: str | None = None
        try:
            status = await self.services.temporal.get_workflow_handle(workflow_id).query(
                TrainingRoundWorkflow.state
            )
        except RPCError:
            message = f"Not recorded: {await self._round_over(round_id)}"
        else:
            item = status.find(proposal_id)
            if status.state not in (RoundState.proposing, RoundState.in_review):
                message = (
                    f"Not recorded: round {round_id} is {status.state.value}, no longer in "
                    "review; this button no longer decides"
                )
            elif item is None:
                message = f"Not recorded: unknown proposal {proposal_id}"
            elif item.settled:
                message = f"Not recorded: proposal {proposal_id} is already {item.state.value}"
        if message is not None:
            await self._tell(channel, user, message)
            return InteractionAnswer(outcome="refused", message=message, proposal_id=proposal_id)
        assert item is not None
        ts = str(payload.get("container", {}).get("message_ts", ""))
        if kind == "modify":
            view = modify_view(workflow_id, item, channel, ts, await self._current(status, item))
        else:
            view = reject_view(workflow_id, item, channel, ts)
        try:
            await self.slack.views_open(trigger_id=payload.get("trigger_id"), view=view)
        except SlackApiError as error:
            return InteractionAnswer(
                outcome="refused",
                proposal_id=proposal_id,
                message=f"Slack would not open the editor: {error.response.get('error')}",
            )
        return InteractionAnswer(outcome="opened", message="editor opened", proposal_id=proposal_id)


def slack_interactions(request: Request) -> SlackInteractions:
    """The app's one interaction handler, built with its services."""
    found = getattr(request.app.state, "slack_interactions", None)
    if not isinstance(found, SlackInteractions):
        raise NotStarted("the gateway has not started: its Slack handler is not built yet")
    return found


router = APIRouter(tags=["slack"])


@router.post("/slack/interactions", responses=refusals(413, callers=(400, 401)))
async def interactions_endpoint(
    request: Request, interactions: Annotated[SlackInteractions, Depends(slack_interactions)]
) -> Response:
    """Slack's Interactivity request URL: button clicks and modal submissions."""
    body = await request.body()
    refused = interactions.verifier.refusal(request.headers, body)
    if refused is not None:
        log.warning("Slack request refused: %s", refused)
        return JSONResponse({"error": "invalid or stale Slack signature"}, status_code=401)
    retry = request.headers.get("x-slack-retry-num")
    if retry:
        # A retry carries the same payload, so the same update id: taken once.
        log.info("Slack retry %s (%s)", retry, request.headers.get("x-slack-retry-reason"))
    # The form is parsed (python-multipart) from the body already read and verified.
    field = (await request.form()).get("payload")
    try:
        payload = json.loads(field) if isinstance(field, str) else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return JSONResponse({"error": "no interaction payload"}, status_code=400)
    return await interactions.handle(payload)
