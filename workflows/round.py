"""TrainingRoundWorkflow: one training round, from proposals to a promoted (or
held back) model.

The workflow owns the round's state and does no I/O; every side effect is an
activity, and every state change goes through the lifecycle tables in
`constitution.lifecycle` and is written to the ledger as a chained transition
numbered by the workflow itself (so a retried write lands once).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from constitution import (
        TERMINAL_ROUND_STATES,
        Decision,
        DecisionKind,
        DecisionOutcome,
        DecisionRequest,
        IllegalTransition,
        ProposalState,
        RoundState,
        advance_proposal,
        advance_round,
        apply_amendments,
    )
    from constitution.contracts import (
        CancelFineTuneInput,
        CheckProposalsInput,
        Dataset,
        DatasetInput,
        EvaluateInput,
        EvaluationResult,
        FineTuneInput,
        FineTuneJob,
        GatherEvidenceInput,
        OpenRoundInput,
        OperatorRequest,
        PostProposalInput,
        Progress,
        ProposalStatus,
        ProposeInput,
        ProposeResult,
        RecordDecisionInput,
        ReminderInput,
        RoundInput,
        RoundResult,
        RoundStatus,
        RoundSummaryInput,
        SaveVersionInput,
        SlackMessageRef,
        UpdateProposalMessageInput,
    )
    from constitution.evidence import EvidenceSelection
    from constitution.models import ConstitutionVersion, TransitionRecord
    from workflows.search import CONSTITUTION_VERSION, PENDING_DECISIONS, ROUND_STATE

QUICK = timedelta(seconds=30)
SLACK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
)
# Failures that retrying cannot fix are raised non-retryable by the activities
# themselves (invalid model output, a bad evidence file, a failed fine-tune).
MODEL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5)

DECISION_TO_STATE = {
    DecisionKind.accept: ProposalState.accepted,
    DecisionKind.modify: ProposalState.modified,
    DecisionKind.reject: ProposalState.rejected,
}


@workflow.defn
class TrainingRoundWorkflow:
    @workflow.init
    def __init__(self, input: RoundInput) -> None:
        self.status = input.carried or RoundStatus(spec=input.spec)
        self.constitution: ConstitutionVersion | None = None
        self._job: FineTuneJob | None = None  # a fine-tune job started and not yet finished
        # One writer at a time: the ledger chain is ordered by sequence.
        self._lock = asyncio.Lock()
        # An operator's cancel order; set by the `cancel` update, which then
        # cancels the lifecycle task so that a wait or activity in flight ends.
        self._cancel_request: OperatorRequest | None = None
        self._lifecycle_task: asyncio.Task[None] | None = None
        # The search attribute values last upserted: an unchanged set is not
        # upserted again, so history grows only when visibility changes.
        self._published: tuple[str, int, int | None] | None = None

    # -- the lifecycle ---------------------------------------------------------

    @workflow.run
    async def run(self, input: RoundInput) -> RoundResult:
        self._lifecycle_task = asyncio.create_task(self._lifecycle(input))
        try:
            await self._lifecycle_task
        except asyncio.CancelledError:
            await self._cancel()
            if self._cancel_request is None:
                raise  # cancelled through Temporal: the workflow ends cancelled
        except (ActivityError, ApplicationError, IllegalTransition) as error:
            if not is_cancelled_exception(error):
                await self._fail(error)
                raise ApplicationError(
                    f"round failed: {self.status.error}", non_retryable=True
                ) from error
            await self._cancel()  # an activity cancelled with the round
            if self._cancel_request is None:
                raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result()

    async def _lifecycle(self, input: RoundInput) -> None:
        if input.carried is None:
            await self._propose()
        else:
            self.constitution = await self._load_version(self.status.base_version)
        if self.status.state is RoundState.in_review:
            await self._review()
        if self.status.state is RoundState.amending:
            await self._retrain()

    async def _propose(self) -> None:
        spec = self.status.spec
        self.constitution = await workflow.execute_activity(
            "open_round",
            OpenRoundInput(spec=spec),
            result_type=ConstitutionVersion,
            start_to_close_timeout=QUICK,
        )
        self.status.base_version = self.constitution.number
        await self._record(
            "round",
            None,
            RoundState.created,
            actor=spec.requested_by or "workflow",
            reason="round started",
            data={"base_version": self.constitution.number},
        )
        await self._move(RoundState.proposing)
        proposed = await self._draft_and_check()
        self.status.proposals = [ProposalStatus(proposal=p) for p in proposed.proposals]
        await workflow.execute_activity(
            "save_proposals", proposed.proposals, start_to_close_timeout=QUICK
        )
        if not self.status.proposals:
            reason = (
                f"the checks dropped all {len(proposed.dropped)} drafts"
                if proposed.dropped
                else "the model proposed nothing"
            )
            await self._move(RoundState.completed_unchanged, reason=reason)
            return
        for item in self.status.proposals:
            item.message = await self._post(item)
            await self._move_proposal(
                item,
                ProposalState.posted,
                actor="workflow",
                data={"channel": item.message.channel, "ts": item.message.ts},
            )
        self.status.review_started_at = workflow.now()
        await self._move(RoundState.in_review, data={"proposals": len(self.status.proposals)})

    async def _draft_and_check(self) -> ProposeResult:
        """Evidence in chunks of bounded size, one model call per chunk (all at
        once; the worker bounds the model's concurrency), then one pass of
        checks over every chunk's drafts."""
        spec = self.status.spec
        assert self.constitution is not None
        selection = await workflow.execute_activity(
            "gather_evidence",
            GatherEvidenceInput(spec=spec, constitution=self.constitution),
            result_type=EvidenceSelection,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=MODEL_RETRY,
        )
        await self._record(
            "evidence",
            None,
            "selected",
            reason=selection.summary,
            data={"chunks": len(selection.chunks), "items": selection.selected_items},
        )
        drafted = await asyncio.gather(
            *(
                workflow.execute_activity(
                    "propose_amendments",
                    ProposeInput(
                        round_id=spec.round_id,
                        constitution=self.constitution,
                        max_proposals=spec.max_proposals,
                        evidence=chunk.items,
                        chunk=chunk.index,
                    ),
                    result_type=ProposeResult,
                    start_to_close_timeout=timedelta(minutes=10),
                    retry_policy=MODEL_RETRY,
                )
                for chunk in selection.chunks
            )
        )
        checked: ProposeResult = await workflow.execute_activity(
            "check_proposals",
            CheckProposalsInput(
                round_id=spec.round_id,
                constitution=self.constitution,
                drafted=list(drafted),
                max_proposals=spec.max_proposals,
                evidence_ids=[e.id for chunk in selection.chunks for e in chunk.items],
                suspicious_ids=selection.suspicious_ids,
            ),
            result_type=ProposeResult,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=5),
            retry_policy=MODEL_RETRY,
        )
        return checked

    async def _review(self) -> None:
        """Wait for every proposal to be settled, however long it takes."""
        spec = self.status.spec
        while self.status.pending:
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(RoundInput(spec=spec, carried=self.status))
            timeout = spec.reminder_interval
            if spec.deadline is not None and self.status.review_started_at is not None:
                left = self.status.review_started_at + spec.deadline - workflow.now()
                if left <= timedelta(0):
                    await self._withdraw_pending("the round's review deadline passed")
                    break
                timeout = min(timeout, left)
            try:
                await workflow.wait_condition(lambda: not self.status.pending, timeout=timeout)
            except TimeoutError:
                if self._deadline_passed():
                    continue  # the loop's top withdraws what is pending
                self.status.reminders_sent += 1
                await workflow.execute_activity(
                    "post_reminder",
                    ReminderInput(
                        round_id=spec.round_id,
                        pending=self.status.pending,
                        reminder_number=self.status.reminders_sent,
                        escalate_to=spec.escalate_to
                        if self.status.reminders_sent >= spec.escalate_after
                        else None,
                    ),
                    start_to_close_timeout=QUICK,
                    retry_policy=SLACK_RETRY,
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.status.adopted:
            await self._move(RoundState.amending, data={"accepted": len(self.status.adopted)})
        else:
            await self._move(RoundState.completed_unchanged, reason="no proposal was accepted")
        await self._summarise()

    async def _retrain(self) -> None:
        spec = self.status.spec
        assert self.constitution is not None
        decided = [
            (p.proposal, p.final_decision)
            for p in self.status.adopted
            if p.final_decision is not None
        ]
        version = apply_amendments(self.constitution, decided, round_id=spec.round_id)
        version = await workflow.execute_activity(
            "save_version",
            SaveVersionInput(round_id=spec.round_id, version=version),
            result_type=ConstitutionVersion,
            start_to_close_timeout=QUICK,
        )
        self.status.result_version = version.number
        await self._record(
            f"version:{version.number}",
            None,
            "created",
            data={"parent": self.constitution.number, "hash": version.content_hash},
        )

        await self._move(RoundState.generating_data)
        training = spec.training
        self.status.progress = Progress(stage="generating_data", total=training.prompt_count)
        dataset = await workflow.execute_activity(
            "generate_dataset",
            DatasetInput(round_id=spec.round_id, constitution=version, training=training),
            result_type=Dataset,
            start_to_close_timeout=timedelta(hours=6),
            heartbeat_timeout=training.heartbeat_timeout,
            retry_policy=MODEL_RETRY,
        )
        self.status.dataset = dataset
        await self._move(
            RoundState.training, data={"dataset": dataset.uri, "examples": dataset.examples}
        )
        self.status.progress = Progress(stage="training", detail=f"{training.backend} backend")
        job = await self._fine_tune(dataset)
        self.status.candidate_model = job.fine_tuned_model

        await self._move(RoundState.evaluating, data={"candidate": job.fine_tuned_model})
        self.status.progress = Progress(stage="evaluating")
        assert job.fine_tuned_model is not None
        result = await workflow.execute_activity(
            "evaluate",
            EvaluateInput(
                round_id=spec.round_id,
                constitution=version,
                candidate_model=job.fine_tuned_model,
                baseline_model=training.base_model,
                gate=spec.gate,
                prompt_file=training.eval_prompt_file,
            ),
            result_type=EvaluationResult,
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=training.heartbeat_timeout,
            retry_policy=MODEL_RETRY,
        )
        self.status.evaluation = result
        self.status.progress = None
        if result.passed:
            await self._move(
                RoundState.completed,
                reason="candidate promoted",
                data={"candidate": job.fine_tuned_model},
            )
        else:
            await self._move(
                RoundState.gate_failed,
                reason="; ".join(result.reasons),
                data={"candidate": job.fine_tuned_model, "held_back": True},
            )

    async def _fine_tune(self, dataset: Dataset) -> FineTuneJob:
        spec = self.status.spec
        training = spec.training
        job = await workflow.execute_activity(
            "start_fine_tune",
            FineTuneInput(round_id=spec.round_id, dataset=dataset, training=training),
            result_type=FineTuneJob,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=MODEL_RETRY,
        )
        self._job = job
        self.status.fine_tune_job = job.job_id
        await self._record(f"job:{job.job_id}", None, job.status, data={"backend": job.backend})
        if job.backend == "http" and job.poll_url is None:
            # The trainer calls the gateway back with this activity's task token:
            # one activity, however many days, and no polling at all.
            options: dict[str, Any] = {
                "start_to_close_timeout": training.training_timeout,
                "schedule_to_close_timeout": training.training_timeout,
                "retry_policy": MODEL_RETRY,  # handing the token over may need a retry
            }
        else:
            # Polled by activity retries, not workflow timers: history stays
            # small however many days training takes.
            options = {
                "start_to_close_timeout": timedelta(minutes=1),
                "schedule_to_close_timeout": training.training_timeout,
                "retry_policy": RetryPolicy(
                    initial_interval=training.poll_interval, backoff_coefficient=1.0
                ),
            }
        try:
            finished: FineTuneJob = await workflow.execute_activity(
                "await_fine_tune", job, result_type=FineTuneJob, **options
            )
            if finished.status != "succeeded" or not finished.fine_tuned_model:
                raise ApplicationError(
                    f"fine-tune job {job.job_id} {finished.status}: "
                    f"{finished.error or 'no model was named'}",
                    type="FineTuneFailed",
                    non_retryable=True,
                )
        except (ActivityError, ApplicationError) as error:
            if is_cancelled_exception(error):
                raise  # the round is being cancelled: it cancels the job
            cause = error.cause if isinstance(error, ActivityError) else None
            timed_out = isinstance(error, ActivityError) and (
                isinstance(cause, TimeoutError) or error.retry_state is RetryState.TIMEOUT
            )
            if timed_out:
                await self._cancel_job()
                raise ApplicationError(
                    f"fine-tune job {job.job_id} did not finish within "
                    f"{training.training_timeout}; it was cancelled",
                    type="FineTuneTimedOut",
                    non_retryable=True,
                ) from error
            await self._record(
                f"job:{job.job_id}", job.status, "failed", reason=str(cause or error)
            )
            self._job = None
            raise
        await self._record(
            f"job:{job.job_id}",
            job.status,
            finished.status,
            data={"model": finished.fine_tuned_model},
        )
        self._job = None
        return finished

    async def _cancel_job(self) -> None:
        """Stop a fine-tune job still running for this round."""
        job, self._job = self._job, None
        if job is None:
            return
        try:
            await workflow.execute_activity(
                "cancel_fine_tune",
                CancelFineTuneInput(
                    round_id=self.status.spec.round_id, job_id=job.job_id, backend=job.backend
                ),
                start_to_close_timeout=QUICK,
                retry_policy=MODEL_RETRY,
            )
        except ActivityError as error:
            # The round still ends; the job that may still run is on the record.
            reason = f"could not cancel the job: {error.cause or error}"
            await self._record(f"job:{job.job_id}", job.status, job.status, reason=reason)
            return
        await self._record(f"job:{job.job_id}", job.status, "cancelled")

    # -- decisions -------------------------------------------------------------

    @workflow.update
    async def decide(self, request: DecisionRequest) -> DecisionOutcome:
        async with self._lock:
            # The round may have moved while this update waited for the lock.
            item = self._check_decision(request)
            decision = Decision(**request.model_dump(), decided_at=workflow.now())
            item.decisions.append(decision)
            target = DECISION_TO_STATE[request.kind]
            await workflow.execute_activity(
                "record_decision",
                RecordDecisionInput(
                    round_id=self.status.spec.round_id,
                    decision_id=f"{workflow.info().workflow_id}:d{self.status.sequence + 1}",
                    decision=decision,
                ),
                start_to_close_timeout=QUICK,
            )
            await self._move_proposal_locked(
                item,
                target,
                actor=request.reviewer,
                reason=request.comment or "",
                data={
                    "kind": request.kind.value,
                    **({"text": request.text} if request.text else {}),
                    **({"override": True} if request.override else {}),
                },
            )
        await self._update_message(item)
        return DecisionOutcome(
            proposal_id=request.proposal_id,
            proposal_state=target.value,
            message=f"{request.kind.value} recorded for {request.proposal_id}",
        )

    @decide.validator
    def _validate_decide(self, request: DecisionRequest) -> None:
        self._check_decision(request)

    def _check_decision(self, request: DecisionRequest) -> ProposalStatus:
        """Refuse what may not be decided; ApplicationError reaches the caller."""
        # Proposals are open from the moment they are posted, even while the
        # rest of the round's proposals are still being posted.
        if self.status.state not in (RoundState.proposing, RoundState.in_review):
            raise ApplicationError(
                f"round {self.status.spec.round_id} is {self.status.state.value}, not in review",
                type="RoundNotInReview",
                non_retryable=True,
            )
        item = self.status.find(request.proposal_id)
        if item is None:
            raise ApplicationError(
                f"unknown proposal {request.proposal_id}",
                type="UnknownProposal",
                non_retryable=True,
            )
        if request.reviewer not in self.status.spec.reviewers and not request.override:
            raise ApplicationError(
                f"{request.reviewer} is not a reviewer of round {self.status.spec.round_id}",
                type="NotAReviewer",
                non_retryable=True,
            )
        if item.state is ProposalState.drafted:
            raise ApplicationError(
                f"proposal {request.proposal_id} is not posted yet",
                type="NotPosted",
                non_retryable=True,
            )
        if item.settled:
            decided = item.final_decision
            who = f" by {decided.reviewer}" if decided else ""
            raise ApplicationError(
                f"proposal {request.proposal_id} is already {item.state.value}{who}",
                type="AlreadySettled",
                non_retryable=True,
            )
        return item

    @workflow.query
    def state(self) -> RoundStatus:
        return self.status

    # -- operators ---------------------------------------------------------------

    @workflow.update
    async def cancel(self, request: OperatorRequest) -> RoundResult:
        """End the round now: pending proposals are withdrawn and their Slack
        messages say so. Answers once the round is cancelled."""
        self._cancel_request = request
        assert self._lifecycle_task is not None
        self._lifecycle_task.cancel()
        await workflow.wait_condition(
            lambda: self.status.state in TERMINAL_ROUND_STATES and not self._lock.locked()
        )
        return self._result()

    @cancel.validator
    def _validate_cancel(self, request: OperatorRequest) -> None:
        if self.status.state in TERMINAL_ROUND_STATES:
            raise ApplicationError(
                f"round {self.status.spec.round_id} is already {self.status.state.value}; "
                "only an active round can be cancelled",
                type="RoundEnded",
                non_retryable=True,
            )
        task = self._lifecycle_task
        if self._cancel_request is not None or task is None or task.done():
            # Already cancelled by another order or through Temporal, or ending.
            raise ApplicationError(
                f"round {self.status.spec.round_id} is already ending",
                type="RoundEnded",
                non_retryable=True,
            )

    @workflow.update
    async def repost(self, request: OperatorRequest) -> list[SlackMessageRef]:
        """Post every pending proposal again (a message was deleted, or the
        reviewers moved channel); decisions on the old messages still count."""
        assert self.constitution is not None
        posted: list[SlackMessageRef] = []
        for item in self.status.pending:
            item.message = await self._post(item, repost=True)
            posted.append(item.message)
            await self._record(
                f"proposal:{item.proposal.id}",
                ProposalState.posted,
                ProposalState.posted,
                actor=request.actor,
                reason=request.reason or "re-posted",
                data={"channel": item.message.channel, "ts": item.message.ts, "repost": True},
            )
        return posted

    @repost.validator
    def _validate_repost(self, request: OperatorRequest) -> None:
        if self.status.state not in (RoundState.proposing, RoundState.in_review):
            raise ApplicationError(
                f"round {self.status.spec.round_id} is {self.status.state.value}, not in review",
                type="RoundNotInReview",
                non_retryable=True,
            )
        if not self.status.pending or self.constitution is None:
            raise ApplicationError(
                f"round {self.status.spec.round_id} has no pending proposal to re-post",
                type="NothingPending",
                non_retryable=True,
            )

    # -- endings -----------------------------------------------------------------

    async def _cancel(self) -> None:
        order = self._cancel_request
        actor = order.actor if order else "operator"
        reason = f"round cancelled: {order.reason}" if order and order.reason else "round cancelled"
        self.status.progress = None
        await self._cancel_job()
        for item in self.status.proposals:
            if not item.settled:
                await self._move_proposal(item, ProposalState.withdrawn, actor=actor, reason=reason)
                if item.message is not None:
                    await self._update_message(item)
        if self.status.state not in TERMINAL_ROUND_STATES:
            await self._move(RoundState.cancelled, actor=actor, reason=reason)
        await self._summarise()

    async def _fail(self, error: BaseException) -> None:
        cause = error.cause if isinstance(error, ActivityError) and error.cause else error
        self.status.error = str(cause)
        self.status.progress = None
        try:
            await self._move(RoundState.failed, reason=self.status.error)
        except Exception:  # the ledger itself may be what failed
            workflow.logger.exception("could not record the failure of the round")

    async def _withdraw_pending(self, reason: str) -> None:
        for item in self.status.pending:
            await self._move_proposal(
                item, ProposalState.withdrawn, actor="workflow", reason=reason
            )

    def _deadline_passed(self) -> bool:
        spec = self.status.spec
        started = self.status.review_started_at
        return bool(spec.deadline and started and workflow.now() >= started + spec.deadline)

    async def _summarise(self) -> None:
        await workflow.execute_activity(
            "post_round_summary",
            RoundSummaryInput(
                round_id=self.status.spec.round_id,
                state=self.status.state,
                proposals=self.status.proposals,
                result_version=self.status.result_version,
            ),
            start_to_close_timeout=QUICK,
            retry_policy=SLACK_RETRY,
        )

    def _result(self) -> RoundResult:
        return RoundResult(
            round_id=self.status.spec.round_id,
            state=self.status.state,
            base_version=self.status.base_version,
            result_version=self.status.result_version,
            candidate_model=self.status.candidate_model,
            passed_gate=self.status.evaluation.passed if self.status.evaluation else None,
        )

    # -- the one way state changes -------------------------------------------------

    async def _move(
        self,
        target: RoundState,
        *,
        actor: str = "workflow",
        reason: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        current = self.status.state
        self.status.state = advance_round(current, target)
        await self._record("round", current, target, actor=actor, reason=reason, data=data)

    async def _move_proposal(
        self,
        item: ProposalStatus,
        target: ProposalState,
        *,
        actor: str,
        reason: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        async with self._lock:
            await self._move_proposal_locked(item, target, actor=actor, reason=reason, data=data)

    async def _move_proposal_locked(
        self,
        item: ProposalStatus,
        target: ProposalState,
        *,
        actor: str,
        reason: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        current = item.state
        item.state = advance_proposal(current, target)
        await self._write(f"proposal:{item.proposal.id}", current, target, actor, reason, data)

    async def _record(
        self,
        entity: str,
        current: str | None,
        target: str,
        *,
        actor: str = "workflow",
        reason: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        async with self._lock:
            await self._write(entity, current, target, actor, reason, data)

    async def _write(
        self,
        entity: str,
        current: str | None,
        target: str,
        actor: str,
        reason: str,
        data: dict[str, Any] | None,
    ) -> None:
        self.status.sequence += 1
        record = TransitionRecord(
            workflow_id=workflow.info().workflow_id,
            sequence=self.status.sequence,
            round_id=self.status.spec.round_id,
            entity=entity,
            from_state=current,
            to_state=target,
            actor=actor,
            reason=reason,
            data=data or {},
            at=workflow.now(),
        )
        # A cancel arriving mid-write waits for the write: the chain must not
        # be left unsure whether this sequence number landed.
        write = workflow.start_activity(
            "record_transitions", [record], start_to_close_timeout=QUICK
        )
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await write
            raise
        self._publish()

    def _publish(self) -> None:
        """Keep the round's search attributes current, where it was started with them."""
        attributes = workflow.info().typed_search_attributes
        if attributes.get(ROUND_STATE) is None:
            return
        version = self.status.result_version or self.status.base_version
        current = (self.status.state.value, len(self.status.pending), version)
        if current == self._published:
            return
        self._published = current
        updates: list[SearchAttributeUpdate[Any]] = [
            ROUND_STATE.value_set(current[0]),
            PENDING_DECISIONS.value_set(current[1]),
        ]
        if version is not None:
            updates.append(CONSTITUTION_VERSION.value_set(version))
        workflow.upsert_search_attributes(updates)

    async def _post(self, item: ProposalStatus, *, repost: bool = False) -> SlackMessageRef:
        assert self.constitution is not None
        message: SlackMessageRef = await workflow.execute_activity(
            "post_proposal",
            PostProposalInput(
                workflow_id=workflow.info().workflow_id,
                status=item,
                constitution=self.constitution,
                repost=repost,
            ),
            result_type=SlackMessageRef,
            start_to_close_timeout=QUICK,
            retry_policy=SLACK_RETRY,
        )
        return message

    async def _update_message(self, item: ProposalStatus) -> None:
        """Rewrite the proposal's Slack message to show its new state."""
        assert self.constitution is not None
        await workflow.execute_activity(
            "update_proposal_message",
            UpdateProposalMessageInput(
                workflow_id=workflow.info().workflow_id, status=item, constitution=self.constitution
            ),
            start_to_close_timeout=QUICK,
            retry_policy=SLACK_RETRY,
        )

    async def _load_version(self, number: int | None) -> ConstitutionVersion:
        version: ConstitutionVersion = await workflow.execute_activity(
            "load_version",
            number,
            result_type=ConstitutionVersion,
            start_to_close_timeout=QUICK,
        )
        return version
