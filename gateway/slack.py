"""Slack interactions: a reviewer's click or modal becomes a decision.

Requests are verified on the raw body before anything else; a forged or stale
one gets 401 and touches nothing. A decision is first kept in the decision
inbox (`gateway.inbox`: one row in PostgreSQL, keyed by the interaction, so
Slack's retries of one click are kept once) and Slack is answered then: an
acknowledged click survives the gateway. The inbox's dispatcher sends it to
the round as the workflow's `decide` update with the same id, whose validator
answers whether it was taken, already made or not allowed, and the reviewer is
told that answer in an ephemeral message, once. A button's click is answered
"being recorded" as soon as the inbox holds it: Slack ignores the body of a
block_actions answer, so waiting for the round would only delay the ack. A
submitted modal still waits for the round's answer (within the ack budget),
since Slack shows a refusal under the modal's field. Refusals never reach
Temporal's history, so they are recorded in the ledger as attempts.

`SlackInteractions` is built once per app; the HTTP route below and the
Socket Mode receiver both hand it verified payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Annotated, Any, Literal, TypeVar

import aiohttp
import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk.errors import SlackApiError
from slack_sdk.models.views import View
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from constitution import (
    TERMINAL_ROUND_STATES,
    DecisionKind,
    DecisionOutcome,
    DecisionRequest,
    Principle,
    RoundSpec,
    RoundState,
    round_id_of,
)
from constitution.contracts import DecisionAttemptInput
from constitution.review import not_a_reviewer
from gateway.deps import NotStarted, Services
from gateway.inbox import DecisionInbox, InboxClick
from gateway.refusals import refusals
from gateway.signing import SignedRequestVerifier, slack_verifier
from ledger.reads import ProposalInReview
from review.messages import (
    DECISION_CALLBACKS,
    modify_view,
    parse_action_value,
    parse_view_metadata,
    reject_view,
)
from workflows.client import CLOSED_ROUND, refusal_reason, refused_by_round
from workflows.refusal import RecordRefusalWorkflow, refusal_workflow_id
from workflows.round import TrainingRoundWorkflow

log = logging.getLogger(__name__)

# Slack wants an answer within 3 s; what the round has not answered by then
# is told to the reviewer later. The margin covers a busy event loop.
ACK_BUDGET_S = 1.5
# Of which keeping the click in the decision inbox may take this much; past
# it the click goes to the round directly.
INBOX_BUDGET_S = 0.75
# Slack expires a click's trigger id 3 s after the click: a modal is opened,
# and opened again after Slack's 429 or 5xx, only this long after the click
# arrived, so that the answer still reaches Slack within its 3 s.
TRIGGER_LIFE_S = 2.5
# After a 5xx (a 429 waits out its Retry-After in the SDK's retry handler).
VIEW_RETRY_PAUSE_S = 0.1
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


def button_click_key(action_ts: str | None, user: str, proposal_id: str, action_id: str) -> str:
    """The key a button's click is kept under in the decision inbox and sent
    to the round with as its update id: Slack's retries of one click carry the
    same `action_ts`, so they share it."""
    return f"slack:{action_ts}:{user}:{proposal_id}:{action_id}"


class InteractionAnswer(BaseModel):
    """What the gateway makes of an interaction. Slack ignores the body of a
    block_actions answer (the reviewer reads the ephemeral message); of a
    modal's it shows a refusal under the field."""

    outcome: str  # taken | refused | pending | opened | unavailable
    message: str
    proposal_id: str | None = None
    # False when an earlier delivery of the same interaction already told the
    # reviewer (a Slack retry): the answer is given again, never told again.
    first: bool = Field(default=True, exclude=True)


# -- the payloads, parsed at the edge ------------------------------------------------
# Only the fields amend reads, each of the type Slack sends; the rest is
# ignored. Strict: a number where Slack sends text is a malformed payload.


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class SlackUser(_Payload):
    id: str = Field(min_length=1, max_length=255)


class MessageContainer(_Payload):
    channel_id: str | None = Field(default=None, max_length=255)
    message_ts: str | None = Field(default=None, max_length=64)


class SlackChannel(_Payload):
    id: str | None = Field(default=None, max_length=255)


class BlockAction(_Payload):
    action_id: str = Field(max_length=255)
    value: str | None = Field(default=None, max_length=2000)
    action_ts: str | None = Field(default=None, max_length=64)


class BlockActions(_Payload):
    """A button pressed on a message."""

    type: Literal["block_actions"]
    user: SlackUser
    container: MessageContainer = Field(default_factory=MessageContainer)
    channel: SlackChannel | None = None
    trigger_id: str | None = Field(default=None, max_length=255)
    actions: list[BlockAction] = Field(default_factory=list)

    @property
    def channel_id(self) -> str:
        """The channel of the message clicked on, where the reviewer is answered."""
        return self.container.channel_id or (self.channel.id if self.channel else None) or ""


class InputState(_Payload):
    value: str | None = None


class ViewState(_Payload):
    values: dict[str, dict[str, InputState]] = Field(default_factory=dict)


class SubmittedView(_Payload):
    id: str | None = Field(default=None, max_length=255)
    hash: str | None = Field(default=None, max_length=255)
    callback_id: str = ""
    private_metadata: str = Field(default="", max_length=3000)
    state: ViewState = Field(default_factory=ViewState)

    def typed(self, block: str) -> str | None:
        """What the reviewer typed into the input `block` (its element has the same id)."""
        return self.state.values.get(block, {}).get(block, InputState()).value


class ViewSubmission(_Payload):
    """A modal submitted."""

    type: Literal["view_submission"]
    user: SlackUser
    view: SubmittedView


class MalformedInteraction(ValueError):
    """A verified payload amend cannot read: answered 400 with the reason, nothing changed."""


INTERACTIONS: dict[str, type[BlockActions] | type[ViewSubmission]] = {
    "block_actions": BlockActions,
    "view_submission": ViewSubmission,
}


def parse_interaction(payload: object) -> BlockActions | ViewSubmission | None:
    """The interaction a payload holds; None for kinds amend does not act on.

    Raises:
        MalformedInteraction: not an object, or a field of the wrong type or missing.
    """
    if not isinstance(payload, dict):
        raise MalformedInteraction("the interaction payload is not a JSON object")
    kind = payload.get("type")
    model = INTERACTIONS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return None
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        issue = error.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in issue["loc"]) or "payload"
        raise MalformedInteraction(f"malformed {kind} payload: {where}: {issue['msg']}") from None


# Errors of a ledger that cannot be read now (down, restarting, pool closed).
LEDGER_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
NO_LONGER_DECIDES = "this button no longer decides"
# Interactions remembered per gateway, so a redelivery awaits the first's answer.
REMEMBERED = 10_000


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
        # The work behind recent interactions, by interaction key.
        self._recent: OrderedDict[str, asyncio.Task[InteractionAnswer]] = OrderedDict()
        self.inbox: DecisionInbox[InteractionAnswer] = DecisionInbox(
            services.ledger, self._deliver, self._in_background
        )

    def start(self) -> None:
        """Send what the decision inbox holds that no gateway sends, now and periodically."""
        self.inbox.start()

    async def close(self) -> None:
        """Stop sending; what is not sent yet stays in the inbox for another gateway."""
        await self.inbox.stop()

    async def handle(self, payload: object, *, redelivery: bool = False) -> Response:
        """A verified interaction, from the HTTP endpoint or Socket Mode.

        `redelivery`: Slack sends it again (it missed the first answer).
        """
        try:
            interaction = parse_interaction(payload)
        except MalformedInteraction as error:
            log.warning("Slack interaction refused: %s", error)
            return JSONResponse({"error": str(error)}, status_code=400)
        if isinstance(interaction, BlockActions):
            return await self._block_actions(interaction, redelivery)
        if isinstance(interaction, ViewSubmission):
            return await self._view_submission(interaction, redelivery)
        return Response(status_code=200)

    def _earlier(self, key: str) -> asyncio.Task[InteractionAnswer] | None:
        """The work of an earlier delivery of this interaction, unless it failed."""
        task = self._recent.get(key)
        if task is not None and task.done() and (task.cancelled() or task.exception()):
            del self._recent[key]  # it failed: this delivery does the work again
            return None
        return task

    def _remember(self, key: str, task: asyncio.Task[InteractionAnswer]) -> None:
        self._recent[key] = task
        while len(self._recent) > REMEMBERED:
            self._recent.popitem(last=False)

    async def _again(self, task: asyncio.Task[InteractionAnswer]) -> InteractionAnswer:
        """A redelivery's answer: the first delivery's, told to nobody again."""
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), ACK_BUDGET_S)
        except TimeoutError:
            return InteractionAnswer(
                outcome="pending", message="Your decision is being recorded.", first=False
            )
        return answer.model_copy(update={"first": False})

    async def _block_actions(self, interaction: BlockActions, redelivery: bool) -> Response:
        user = interaction.user.id
        channel = interaction.channel_id
        answers = []
        for action in interaction.actions:
            try:
                workflow_id, proposal_id = parse_action_value(action.value or "")
            except ValueError:
                continue
            action_id = action.action_id
            if action_id not in ("modify", "reject", "accept"):
                continue
            key = button_click_key(action.action_ts, user, proposal_id, action_id)
            earlier = self._earlier(key)
            if earlier is not None:
                answers.append(await self._again(earlier))
                continue
            if action_id in ("modify", "reject"):
                opening = self._in_background(
                    self._open_decision_view(
                        interaction, action_id, workflow_id, proposal_id, key, redelivery
                    )
                )
                self._remember(key, opening)
                answer = await opening
            else:
                request = DecisionRequest(
                    proposal_id=proposal_id, kind=DecisionKind.accept, reviewer=user
                )
                answer = await self._take(workflow_id, request, key, channel, redelivery)
            answers.append(answer)
        if not answers:
            return JSONResponse({"error": "no amend action in the payload"}, status_code=400)
        return JSONResponse(answers[0].model_dump())

    async def _view_submission(self, interaction: ViewSubmission, redelivery: bool) -> Response:
        view = interaction.view
        kind = DECISION_CALLBACKS.get(view.callback_id)
        if kind is None:
            return Response(status_code=200)
        user = interaction.user.id
        try:
            workflow_id, proposal_id, channel, _ts = parse_view_metadata(view.private_metadata)
        except ValueError:
            return JSONResponse({"error": "modal metadata is not amend's"}, status_code=400)
        text = view.typed("text")
        comment = view.typed("comment")
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
        update_id = f"slack:{view.id}:{view.hash}:{user}:{proposal_id}:{kind}"
        earlier = self._earlier(update_id)
        if earlier is not None:
            answer = await self._again(earlier)
        else:
            # The modal shows a refusal under its field, so this waits for the round.
            answer = await self._take(
                workflow_id, request, update_id, channel, redelivery, modal=True
            )
        if answer.outcome == "refused":
            return JSONResponse({"response_action": "errors", "errors": {field: answer.message}})
        return JSONResponse({"response_action": "clear"})

    async def _take(
        self,
        workflow_id: str,
        request: DecisionRequest,
        key: str,
        channel: str,
        redelivery: bool,
        *,
        modal: bool = False,
    ) -> InteractionAnswer:
        """Keep the click in the inbox and send it to the round; answer Slack
        at once for a button, with the round's answer for a modal.

        Slack ignores the body of a button's answer: the reviewer learns the
        outcome from the ephemeral message, so waiting for the round would
        only delay the ack (issue 14). A modal shows a refusal under its
        field, so its answer waits for the round's, within the ack budget.
        Slack's redelivery of a button's click is answered from the inbox
        (`_kept_before`). A ledger that cannot keep the click sends it to the
        round directly, as before the inbox.
        """
        loop = asyncio.get_running_loop()
        began = loop.time()
        click = InboxClick(
            interaction_key=key,
            workflow_id=workflow_id,
            round_id=round_id_of(workflow_id) or workflow_id,
            request=request,
            channel=channel,
        )
        try:
            kept = await asyncio.wait_for(self.inbox.receive(click), INBOX_BUDGET_S)
        except LEDGER_UNAVAILABLE as error:
            log.warning("the decision inbox cannot keep %s, sent directly: %r", key, error)
            budget = max(ACK_BUDGET_S - (loop.time() - began), 0.1)
            return await self._decide_within_ack(
                workflow_id, request, key, channel, redelivery, budget
            )
        if not kept:
            return await self._kept_before(key, request)
        task = self.inbox.dispatch(click)
        if modal:
            # A resubmission on this gateway waits for the same answer.
            self._remember(key, task)
            left = max(ACK_BUDGET_S - (loop.time() - began), 0.0)
            # Past the budget, or the sending failed (the sweep sends it again).
            with contextlib.suppress(Exception):
                return await asyncio.wait_for(asyncio.shield(task), left)
        return InteractionAnswer(
            outcome="pending",
            proposal_id=request.proposal_id,
            message="Your decision is being recorded.",
        )

    async def _kept_before(self, key: str, request: DecisionRequest) -> InteractionAnswer:
        """A click the inbox holds already (Slack's retry, perhaps to another
        replica): the round's answer when it has one, told to nobody again."""
        try:
            entry = await self.services.ledger.inbox_entry(key)
        except LEDGER_UNAVAILABLE:
            entry = None
        if entry is None or entry.outcome is None:
            return InteractionAnswer(
                outcome="pending",
                proposal_id=request.proposal_id,
                message="Your decision is being recorded.",
                first=False,
            )
        return InteractionAnswer(
            outcome=entry.outcome,
            message=entry.message or "",
            proposal_id=request.proposal_id,
            first=False,
        )

    async def _deliver(self, click: InboxClick, taken_over: bool) -> InteractionAnswer:
        """Send a click from the inbox to its round, note the answer and tell
        the reviewer; only the gateway that notes it tells."""
        request = click.request
        answer = await self._decide(
            click.workflow_id, request, click.interaction_key, redelivery=taken_over
        )
        noted = await self.services.ledger.mark_dispatched(
            click.interaction_key, answer.outcome, answer.message
        )
        if noted:
            self._in_background(self._tell(click.channel, request.reviewer, answer.message))
        return answer.model_copy(update={"first": noted})

    async def _decide_within_ack(
        self,
        workflow_id: str,
        request: DecisionRequest,
        update_id: str,
        channel: str,
        redelivery: bool = False,
        budget_s: float = ACK_BUDGET_S,
    ) -> InteractionAnswer:
        """Decide, telling the reviewer the outcome; answer Slack in time even
        when the round is slow to respond."""
        task = self._in_background(self._decide(workflow_id, request, update_id, redelivery))
        self._remember(update_id, task)
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), budget_s)
        except TimeoutError:
            task.add_done_callback(lambda t: self._tell_later(t, channel, request.reviewer))
            return InteractionAnswer(
                outcome="pending",
                proposal_id=request.proposal_id,
                message="Your decision is being recorded.",
            )
        if answer.first:
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
        if task.cancelled() or task.exception() or not task.result().first:
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
        self, workflow_id: str, request: DecisionRequest, update_id: str, redelivery: bool = False
    ) -> InteractionAnswer:
        round_id = round_id_of(workflow_id) or workflow_id
        if redelivery and await self._already_voted(round_id, request):
            # An earlier delivery (perhaps to another gateway) took it and told the reviewer.
            return InteractionAnswer(
                outcome="taken",
                message=f"{request.kind.value} recorded for {request.proposal_id}",
                proposal_id=request.proposal_id,
                first=False,
            )
        try:
            outcome: DecisionOutcome = await self.services.temporal.get_workflow_handle(
                workflow_id
            ).execute_update(TrainingRoundWorkflow.decide, request, id=update_id)
        except WorkflowUpdateFailedError as error:
            if not refused_by_round(error):
                # Not an answer: the inbox sends the click again, to the run that follows.
                raise
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
        return await self._refused(
            round_id, request.proposal_id, request.reviewer, request.kind.value, reason, update_id
        )

    async def _already_voted(self, round_id: str, request: DecisionRequest) -> bool:
        """Whether the reviewer's vote of this kind on the proposal is in the ledger."""
        try:
            votes = await self.services.ledger.decisions(round_id)
        except LEDGER_UNAVAILABLE:
            return False  # the round's own validator judges it
        return any(
            v.proposal_id == request.proposal_id
            and v.reviewer == request.reviewer
            and v.kind == request.kind.value
            for v in votes
        )

    async def _refused(
        self,
        round_id: str,
        proposal_id: str,
        reviewer: str,
        kind: str,
        reason: str,
        interaction_key: str,
    ) -> InteractionAnswer:
        """Record a refusal once per interaction; the answer says whether it is new."""
        self.services.metrics.decisions.labels("refused").inc()
        log.info(
            "refused %s on %s: %s",
            kind,
            proposal_id,
            reason,
            extra={"round_id": round_id, "proposal_id": proposal_id},
        )
        attempt = DecisionAttemptInput(
            round_id=round_id,
            proposal_id=proposal_id,
            reviewer=reviewer,
            kind=kind,
            outcome="refused",
            reason=reason,
            source="slack",
            interaction_key=interaction_key,
        )
        message = f"Not recorded: {reason}"
        try:
            first = await self.services.ledger.record_decision_attempt(**attempt.model_dump())
        except LEDGER_AWAY as error:
            # The ledger is away: Temporal keeps the refusal and a worker writes
            # it once the database answers (workflows.refusal).
            log.warning("refusal of %s kept for later: %s", proposal_id, error)
            await self._keep_refusal(attempt, interaction_key)
            first = True
            message += " (the ledger is unavailable; this refusal will be recorded when it is back)"
        return InteractionAnswer(
            outcome="refused", message=message, proposal_id=proposal_id, first=first
        )

    async def _keep_refusal(self, attempt: DecisionAttemptInput, interaction_key: str) -> None:
        """Hand the refusal to Temporal, once however often Slack retries the click."""
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self.services.temporal.start_workflow(
                RecordRefusalWorkflow.run,
                attempt,
                id=refusal_workflow_id(interaction_key),
                task_queue=self.services.config.task_queue,
            )

    async def _round_over(self, round_id: str) -> str:
        """Why a round's buttons no longer do anything, from the ledger."""
        row = await self.services.ledger.get_round(round_id)
        ended = f" ({row.state})" if row is not None else ""
        return f"round {round_id} is no longer running{ended}; this button no longer decides"

    async def _open_decision_view(
        self,
        interaction: BlockActions,
        kind: str,
        workflow_id: str,
        proposal_id: str,
        key: str,
        redelivery: bool,
    ) -> InteractionAnswer:
        """Open the modify or reject modal; a stale button or an outsider gets a clear answer.

        Read from the ledger, not the round's workflow: a query waits for a
        worker, and Slack's trigger id expires after 3 s. What the ledger has
        not caught up with yet the round's validator refuses on submit.
        """
        user, channel = interaction.user.id, interaction.channel_id
        round_id = round_id_of(workflow_id) or workflow_id
        trigger_expires = asyncio.get_running_loop().time() + TRIGGER_LIFE_S
        try:
            found, current = await asyncio.wait_for(
                self._proposal_and_principle(round_id, proposal_id, kind), ACK_BUDGET_S
            )
            eligible = found is None or await asyncio.wait_for(
                self._may_decide(found, user), ACK_BUDGET_S
            )
        except LEDGER_UNAVAILABLE as error:
            log.warning("could not read round %s to open a modal: %r", round_id, error)
            message = f"Round {round_id} cannot be read right now; try again in a moment."
            await self._tell(channel, user, message)
            return InteractionAnswer(
                outcome="unavailable", message=message, proposal_id=proposal_id
            )
        reason = self._opening_refusal(found, round_id, proposal_id, user, eligible)
        if reason is not None:
            try:
                answer = await self._refused(round_id, proposal_id, user, kind, reason, key)
            except LEDGER_UNAVAILABLE as error:
                log.warning("could not record a refused opening on %s: %r", proposal_id, error)
                answer = InteractionAnswer(
                    outcome="refused", message=f"Not recorded: {reason}", proposal_id=proposal_id
                )
            if answer.first:
                await self._tell(channel, user, answer.message)
            return answer
        assert found is not None
        ts = interaction.container.message_ts or ""
        if kind == "modify":
            view = modify_view(workflow_id, found.status, channel, ts, current)
        else:
            view = reject_view(workflow_id, found.status, channel, ts)
        try:
            await self._open_view(interaction.trigger_id, view, trigger_expires)
        except SlackApiError as error:
            message = f"Slack would not open the editor: {error.response.get('error')}"
        except (TimeoutError, aiohttp.ClientError) as error:
            log.warning("could not open a modal on %s in time: %r", proposal_id, error)
            message = "Slack did not open the editor in time (it is busy or unreachable)"
        else:
            return InteractionAnswer(
                outcome="opened", message="editor opened", proposal_id=proposal_id
            )
        # Slack shows nothing for a click whose modal did not open: say so.
        message += f"; click {kind.capitalize()}… again. Nothing was recorded."
        self._in_background(self._tell(channel, user, message))
        return InteractionAnswer(outcome="unavailable", proposal_id=proposal_id, message=message)

    async def _open_view(self, trigger_id: str | None, view: View, expires: float) -> None:
        """Open a modal, again after Slack's 429 or 5xx, while the click's trigger id lives.

        Raises the SlackApiError that retrying cannot fix, and TimeoutError
        once the trigger id has expired (Slack would refuse it anyway).
        """
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout_at(expires):
                    await self.slack.views_open(trigger_id=trigger_id, view=view)
                return
            except SlackApiError as error:
                status = error.response.status_code
                if status != 429 and status < 500:
                    raise
                if loop.time() + VIEW_RETRY_PAUSE_S >= expires:
                    raise TimeoutError("the trigger id expired while Slack refused") from error
                log.info("Slack answered %s to views.open; opening again", status)
            await asyncio.sleep(VIEW_RETRY_PAUSE_S)

    async def _proposal_and_principle(
        self, round_id: str, proposal_id: str, kind: str
    ) -> tuple[ProposalInReview | None, Principle | None]:
        """The proposal as the ledger has it, and for a modify the principle it changes."""
        found = await self.services.ledger.proposal_in_review(round_id, proposal_id)
        target = found.status.proposal.draft.target if found is not None else None
        if found is None or kind != "modify" or target is None:
            return found, None
        base = found.round.base_version
        version = await self.services.ledger.get_version(base) if base is not None else None
        return found, version.principle(target) if version is not None else None

    async def _may_decide(self, found: ProposalInReview, user: str) -> bool:
        """Whether `user` is a reviewer of the round: named, or in one of its groups.

        Groups are asked of Slack; when Slack does not answer, the round's
        validator judges on submit.
        """
        spec = RoundSpec.model_validate(found.round.spec)
        if user in spec.reviewers:
            return True
        for group in spec.reviewer_groups:
            try:
                members = await self.slack.usergroups_users_list(usergroup=group)
            except SlackApiError as error:
                log.warning("could not read group %s: %s", group, error.response.get("error"))
                return True
            if user in (members.get("users") or []):
                return True
        return False

    @staticmethod
    def _opening_refusal(
        found: ProposalInReview | None,
        round_id: str,
        proposal_id: str,
        user: str,
        eligible: bool,
    ) -> str | None:
        """Why the click may not open a decision modal, in the round validator's words."""
        if found is None:
            return f"unknown proposal {proposal_id}"
        state = found.round.state
        if state in {s.value for s in TERMINAL_ROUND_STATES}:
            return f"round {round_id} is no longer running ({state}); this button no longer decides"
        if state not in (RoundState.proposing.value, RoundState.in_review.value):
            return (
                f"round {round_id} is {state}, no longer in review; this button no longer decides"
            )
        if not eligible:
            return not_a_reviewer(RoundSpec.model_validate(found.round.spec), user)
        item = found.status
        if item.settled:
            decided = item.final_decision
            who = f" by {decided.reviewer}" if decided else ""
            return f"proposal {proposal_id} is already {item.state.value}{who}"
        earlier = item.voted(user)
        if earlier is not None:
            return (
                f"you already decided {earlier.kind.value} on proposal {proposal_id}; "
                "each reviewer has one vote"
            )
        return None


async def slack_interactions(request: Request) -> SlackInteractions:
    """The app's one interaction handler, built with its services.

    A coroutine: FastAPI runs a plain function dependency in a worker thread,
    a hop per click that a burst of clicks queues behind (py-spy, issue 14).
    """
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
        # A retry carries the same payload: answered from the first delivery's work.
        log.info("Slack retry %s (%s)", retry, request.headers.get("x-slack-retry-reason"))
    # The form is parsed (python-multipart) from the body already read and verified.
    try:
        field = (await request.form()).get("payload")
    except (HTTPException, ValueError) as error:
        return JSONResponse({"error": f"the form cannot be read: {error}"}, status_code=400)
    try:
        payload = json.loads(field) if isinstance(field, str) else None
    except (ValueError, RecursionError):
        return JSONResponse({"error": "the payload field is not JSON"}, status_code=400)
    if payload is None:
        return JSONResponse({"error": "no interaction payload"}, status_code=400)
    return await interactions.handle(payload, redelivery=bool(retry))
