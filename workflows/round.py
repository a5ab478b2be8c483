"""TrainingRoundWorkflow: one training round, from proposals to a promoted (or held back) model.

The workflow owns the round's state and does no I/O; every side effect is an
activity, and every state change goes through the lifecycle tables in
`constitution.lifecycle` and is written to the ledger as a chained transition
numbered by the workflow itself (so a retried write lands once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NamedTuple, TypeVar

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
        RETRAINING_STAGES,
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
        resume_round,
    )
    from constitution.contracts import (
        CancelFineTuneInput,
        CheckProposalsInput,
        Dataset,
        DatasetInput,
        DatasetShard,
        DatasetShardInput,
        DigestInput,
        EvaluateInput,
        FineTuneInput,
        FineTuneJob,
        GatherEvidenceInput,
        OpenRoundInput,
        OperatorRequest,
        PostProposalInput,
        PreflightInput,
        Progress,
        ProposalMessage,
        ProposalMessagesInput,
        ProposalStatus,
        ProposeInput,
        ProposeResult,
        RateLimitWait,
        RecordDecisionInput,
        ReminderInput,
        ResolveGroupsInput,
        Resumption,
        RoundInput,
        RoundResult,
        RoundStatus,
        RoundSummaryInput,
        SaveVersionInput,
        SlackMessageRef,
        UpdateProposalMessageInput,
        Voters,
        Waiting,
        Withdrawal,
    )
    from constitution.errors import ErrorType
    from constitution.models import ConstitutionVersion, TransitionRecord
    from constitution.review import (
        eligible_reviewers,
        not_a_reviewer,
        policy_for,
        required_accepts,
        settle,
        tally,
    )
    from workflows.activities import (
        CheckActivities,
        EvaluationActivities,
        EvidenceActivities,
        LedgerActivities,
        ModelActivities,
        SlackActivities,
        TrainingActivities,
    )
    from workflows.dataset import dataset_shards, generate_in_shards, shard_queue
    from workflows.search import CONSTITUTION_VERSION, PENDING_DECISIONS, ROUND_STATE

T = TypeVar("T")
A = TypeVar("A")

QUICK = timedelta(seconds=30)
# Activities that wait on a model or a trainer heartbeat every few seconds
# (`activities.liveness.heartbeating`): one silent this long ran on a worker
# that died, and Temporal retries it on another at once, not after its
# start-to-close timeout.
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
SLACK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
)
# A cancelled round's summary is tried a few times, not waited for.
SUMMARY_ON_CANCEL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
# Each run of a long review stays under a quarter of the events at which
# Temporal suggests continuing as new (4 Ki by default), whose own suggestion
# (is_continue_as_new_suggested) may come first; a loop turn adds a few dozen.
HISTORY_EVENTS_PER_RUN = 960
# Failures that retrying cannot fix are raised non-retryable by the activities
# themselves (invalid model output, a bad evidence file, a failed fine-tune).
# A rate limit is not retried by Temporal: the round waits for it where
# everyone can see (`_model`), as long as the server asked, up to the cap.
MODEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_attempts=5,
    non_retryable_error_types=[ErrorType.model_rate_limited],
)

# Patches: each guards a change to the commands the round issues, so rounds
# that started before it replay as they ran (deploy/UPGRADING.md says how to
# add one and when to deprecate it).
# A transition records each continue-as-new (added in 0.2.0).
RECORD_CONTINUE_AS_NEW = "record-continue-as-new"
# A round checks its training backend before proposing (added in 0.2.0).
PREFLIGHT = "preflight-before-proposing"
# The preflight is told the gate, so a worker without the evaluation backend
# the round asks for refuses it at start (added with the Inspect AI backend).
PREFLIGHT_GATE = "preflight-checks-the-evaluation-backend"
# An operator's cancel that Temporal let an activity's result win stops the
# round at its next step (added in 0.2.0).
CANCEL_AT_NEXT_STEP = "cancel-at-next-step"
# A model call that failed all its quick retries on a transient fault waits
# the outage out, visibly, up to the spec's outage_patience (added in 0.2.0).
WAIT_OUT_OUTAGES = "wait-out-outages"
# How long the round sleeps between tries while it waits out an outage.
OUTAGE_PAUSES = (timedelta(seconds=15), timedelta(minutes=5))
# Failure types of the database client: an outage of the ledger, not of the model.
DATABASE_AWAY = frozenset(
    {
        "CannotConnectNowError",
        "ConnectionDoesNotExistError",
        "ConnectionRefusedError",
        "InterfaceError",
        "PostgresConnectionError",
        "TooManyConnectionsError",
        "AdminShutdownError",
    }
)
# Transitions are written by a local activity (0.3.0): a marker event each, not six.
RECORD_LOCALLY = "record-transitions-locally"
# A dataset of more than one shard is generated shard by shard on every worker (0.3.0).
SHARD_DATASET = "shard-dataset"
# A proposal message found deleted is posted again, and that is recorded (added in 0.2.0).
RECORD_LOST_MESSAGE = "record-lost-message"
# Starting the fine-tune job waits out a model server's outage as every model call does
# (0.3.0; before, an outage longer than its five tries failed the round).
FINE_TUNE_WAITS_OUT_OUTAGES = "fine-tune-waits-out-outages"
# The round's quick ledger reads and writes (open the round, save its proposals, load
# and save versions) run as local activities: a marker event each, not six (0.3.0).
LEDGER_LOCALLY = "ledger-activities-locally"
# Dataset shards go to a task queue of their own that each worker takes a few at
# a time from, so a worker never holds shards that another could be running (0.3.0).
SHARDS_PULLED = "dataset-shards-pulled"
# A cancel that met an activity completing stops the round before it waits (0.3.0;
# before, it waited out the wait first: the review loop until its next reminder,
# a day by default, with `round cancel` waiting on it).
CANCEL_BEFORE_WAITING = "cancel-before-waiting"
# Proposals are posted, and stale messages rewritten, several in one activity, and
# their transitions written in one local activity (0.3.0).
MESSAGES_TOGETHER = "slack-messages-together"
# At most this many proposals posted by one activity: a reviewer's click on one
# of them waits (acknowledged) until the round notes the batch posted.
POSTS_AT_ONCE = 10
# A batch of messages waits its turn at Slack's pace (about one post a second
# per channel) behind every round posting to the channel; it heartbeats meanwhile.
SLACK_BATCH = {
    "start_to_close_timeout": timedelta(minutes=15),
    "heartbeat_timeout": HEARTBEAT_TIMEOUT,
}

DECISION_TO_STATE = {
    DecisionKind.accept: ProposalState.accepted,
    DecisionKind.modify: ProposalState.modified,
    DecisionKind.reject: ProposalState.rejected,
}


class Move(NamedTuple):
    """One transition for the ledger, before the round numbers it."""

    entity: str
    current: str | None
    target: str
    actor: str = "workflow"
    reason: str = ""
    data: dict[str, Any] | None = None


def _transient(error: ActivityError) -> bool:
    """Whether an activity gave up on something that retrying may yet fix.

    Connection refused, 5xx, timeouts, the database away: its retries ran out,
    and its last failure was not marked non-retryable (invalid output, a bad request).
    """
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable:
        return False
    return error.retry_state in (RetryState.MAXIMUM_ATTEMPTS_REACHED, RetryState.TIMEOUT)


@workflow.defn
class TrainingRoundWorkflow:
    """One training round, workflow id `round-<round id>`: the owner of the round's state.

    Reviewers' decisions and operators' cancel and re-post orders arrive as
    updates whose validators refuse what may not be done, so the caller learns
    at once; the `state` query answers the whole `RoundStatus`. A long review
    continues as new, carrying that status.
    """

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
        self._retry_slack_now = False
        # The proposals whose messages are being posted: Slack shows them (and a
        # quick reviewer may click one) before the round has noted them as posted.
        self._posting: set[str] = set()
        # Model calls now waiting out a rate limit; the round shows `waiting`
        # from the first until the last of them is answered.
        self._model_waits = 0
        # A run an operator started to resume the failed round (`amend round resume`).
        self._resumed = input.resume is not None

    # -- the lifecycle ---------------------------------------------------------

    @workflow.run
    async def run(self, input: RoundInput) -> RoundResult:
        """Run the round to its end and answer how it ended.

        A failure is recorded on the round and raised as `ErrorType.round_failed`.
        An operator's `cancel` ends the round cancelled, with a result; a cancel
        through Temporal ends the workflow itself cancelled.
        """
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
                    f"round failed: {self.status.error}",
                    type=ErrorType.round_failed,
                    non_retryable=True,
                ) from error
            await self._cancel()  # an activity cancelled with the round
            if self._cancel_request is None:
                raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result()

    async def _lifecycle(self, input: RoundInput) -> None:
        if input.resume is not None:
            await self._resume(input.resume)
        elif input.carried is None:
            await self._propose()
        else:
            self.constitution = await self._load_version(self.status.base_version)
        if self.status.state is RoundState.in_review:
            await self._review()
        # After review a round is `amending`; a resumed one may be further on.
        if self.status.state in RETRAINING_STAGES:
            await self._retrain()

    async def _resume(self, order: OperatorRequest) -> None:
        """Take a failed round back to the retraining stage it had not finished.

        The carried status is the failed run's: the reviewers' decisions, the
        new version, the dataset and the candidate it made are kept, so none is
        made again and no reviewer is asked again. Only a run started with a
        `resume` input comes here, and no earlier history has one, so this
        needs no patch.
        """
        self.constitution = await self._load_version(self.status.base_version)
        failed = self.status.state
        stage = resume_round(failed, self.status.resume_stage or failed)
        self.status.resumptions.append(
            Resumption(
                actor=order.actor,
                at=workflow.now(),
                stage=stage,
                reason=order.reason,
                failed_with=self.status.error,
            )
        )
        self.status.state = stage
        self.status.error = None
        self.status.runs += 1
        await self._record(
            "round",
            failed,
            stage,
            actor=order.actor,
            reason=f"resumed at {stage.value}" + (f": {order.reason}" if order.reason else ""),
            data={"resumed": True, "run_id": workflow.info().run_id},
        )

    def _stop_if_cancelled(self) -> None:
        """Stop the lifecycle at its next step once an operator has cancelled the round.

        Cancelling the lifecycle task cancels the activity it awaits; when that
        activity completed in the same moment, Temporal hands the task the
        result and drops the cancellation (the activity's outcome wins). Without
        this check the round would go on, and the `cancel` order would wait
        for an end that never comes.
        """
        if (
            self._cancel_request is not None
            and asyncio.current_task() is self._lifecycle_task
            and workflow.patched(CANCEL_AT_NEXT_STEP)
        ):
            raise asyncio.CancelledError("the round was cancelled by an operator")

    async def _wait(self, condition: Callable[[], bool], at_most: timedelta) -> None:
        """Wait for `condition`, at most `at_most` (then TimeoutError), if not cancelled.

        Every wait of the lifecycle goes through here or `_sleep`: a wait would
        hold a cancellation Temporal dropped for the activity result just before
        it (`_stop_if_cancelled`) until the wait ended.
        """
        if workflow.patched(CANCEL_BEFORE_WAITING):
            self._stop_if_cancelled()
        await workflow.wait_condition(condition, timeout=at_most)

    async def _sleep(self, duration: timedelta) -> None:
        """Sleep, unless the round was cancelled (see `_wait`)."""
        if workflow.patched(CANCEL_BEFORE_WAITING):
            self._stop_if_cancelled()
        await workflow.sleep(duration)

    async def _propose(self) -> None:
        spec = self.status.spec
        self.constitution = await self._ledger(
            LedgerActivities.open_round, OpenRoundInput(spec=spec)
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
        if workflow.patched(PREFLIGHT):
            await self._preflight()
        await self._move(RoundState.proposing)
        proposed = await self._draft_and_check()
        self.status.proposals = [ProposalStatus(proposal=p) for p in proposed.proposals]
        await self._ledger(LedgerActivities.save_proposals, proposed.proposals)
        if not self.status.proposals:
            reason = (
                f"the checks dropped all {len(proposed.dropped)} drafts"
                if proposed.dropped
                else "the model proposed nothing"
            )
            await self._move(RoundState.completed_unchanged, reason=reason)
            return
        await self._resolve_reviewer_groups()
        if workflow.patched(MESSAGES_TOGETHER):
            await self._post_together()
        else:
            for item in self.status.proposals:
                self._posting = {item.proposal.id}
                item.message = await self._post(item)
                await self._move_proposal(
                    item,
                    ProposalState.posted,
                    actor="workflow",
                    data={"channel": item.message.channel, "ts": item.message.ts},
                )
                self._posting = set()
        self.status.review_started_at = workflow.now()
        await self._move(RoundState.in_review, data={"proposals": len(self.status.proposals)})

    async def _preflight(self) -> None:
        """Refuse to start a round whose training could not run, before anyone's time is spent.

        The result is kept on the status and in the ledger (`preflight`:
        passed, refused, or overridden by the operator who started the round
        with `preflight_override`, with their reason).
        """
        spec = self.status.spec
        result = await self._model(
            TrainingActivities.preflight,
            PreflightInput(
                round_id=spec.round_id,
                training=spec.training,
                # Whether the worker can run the evaluation backend the gate asks for.
                gate=spec.gate if workflow.patched(PREFLIGHT_GATE) else None,
            ),
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
        )
        checked = {"checked": result.checked}
        if result.passed:
            self.status.preflight = result
            await self._record("preflight", None, "passed", reason="; ".join(result.checked))
            return
        problems = "; ".join(result.problems)
        if spec.preflight_override is None:
            self.status.preflight = result
            await self._record("preflight", None, "refused", reason=problems, data=checked)
            raise ApplicationError(
                f"the round cannot start: {problems}",
                type=ErrorType.preflight_refused,
                non_retryable=True,
            )
        operator = spec.requested_by or "operator"
        self.status.preflight = result.model_copy(update={"overridden_by": operator})
        await self._record(
            "preflight",
            None,
            "overridden",
            actor=operator,
            reason=f"{spec.preflight_override} (refused: {problems})",
            data=checked,
        )

    async def _model(self, activity: Callable[[Any, A], Awaitable[T]], arg: A, **options: Any) -> T:
        """Run an activity that calls the model, waiting out its rate limits visibly.

        A 429 comes back as `ModelRateLimited` with how long to wait (the
        server's Retry-After, capped by the worker). The round shows
        `waiting on model until ...` on its status, records `model: ok ->
        waiting` in the ledger, sleeps, and asks again; the first answer after
        records `waiting -> ok`.
        """
        outage_since = None
        pause = OUTAGE_PAUSES[0]
        while True:
            self._stop_if_cancelled()
            try:
                result: T = await workflow.execute_activity_method(
                    activity, arg, retry_policy=MODEL_RETRY, **options
                )
            except ActivityError as error:
                cause = error.cause
                if (
                    isinstance(cause, ApplicationError)
                    and cause.type == ErrorType.model_rate_limited
                    and cause.details
                ):
                    await self._wait_for_model(RateLimitWait.model_validate(cause.details[0]))
                    continue
                if not _transient(error) or not workflow.patched(WAIT_OUT_OUTAGES):
                    raise
                outage_since = outage_since or workflow.now()
                if workflow.now() - outage_since >= self.status.spec.outage_patience:
                    raise
                await self._wait_out_outage(error, pause)
                pause = min(pause * 2, OUTAGE_PAUSES[1])
                continue
            if self.status.waiting is not None and self._model_waits == 0:
                waited = self.status.waiting
                self.status.waiting = None
                answered = (
                    f"the {waited.on} answers again (waited until {waited.until:%H:%M:%S} UTC)"
                )
                await self._record(waited.on, "waiting", "ok", reason=answered)
            return result

    async def _wait_out_outage(self, error: ActivityError, pause: timedelta) -> None:
        """Show the round waiting on what is away, recorded once when the wait begins."""
        cause = error.cause
        kind = cause.type if isinstance(cause, ApplicationError) else None
        on = "database" if kind in DATABASE_AWAY else "model"
        waiting = Waiting(
            on=on,
            until=workflow.now() + pause,
            reason=f"{cause if cause else error}; trying again",
        )
        began = self.status.waiting is None
        self.status.waiting = waiting
        self._model_waits += 1
        try:
            if began:
                await self._record(
                    on, "ok", "waiting", reason=waiting.describe(), data={"error_type": kind}
                )
            await self._sleep(pause)
        finally:
            self._model_waits -= 1

    async def _wait_for_model(self, wait: RateLimitWait) -> None:
        waiting = Waiting(
            on="model",
            until=workflow.now() + timedelta(seconds=wait.wait_s),
            reason=wait.reason,
        )
        before = "ok" if self.status.waiting is None else "waiting"
        self.status.waiting = waiting
        self._model_waits += 1
        try:
            await self._record(
                "model",
                before,
                "waiting",
                reason=waiting.describe(),
                data={"until": waiting.until.isoformat(), **wait.model_dump()},
            )
            await self._sleep(timedelta(seconds=wait.wait_s))
        finally:
            self._model_waits -= 1

    async def _draft_and_check(self) -> ProposeResult:
        """Draft proposals from every chunk of evidence, then check all the drafts in one pass.

        Evidence comes in chunks of bounded size, one model call per chunk (all
        at once; the worker bounds the model's concurrency).
        """
        spec = self.status.spec
        assert self.constitution is not None
        selection = await workflow.execute_activity_method(
            EvidenceActivities.gather_evidence,
            GatherEvidenceInput(spec=spec, constitution=self.constitution),
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
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
                self._model(
                    ModelActivities.propose_amendments,
                    ProposeInput(
                        round_id=spec.round_id,
                        constitution=self.constitution,
                        max_proposals=spec.max_proposals,
                        evidence=chunk.items,
                        chunk=chunk.index,
                    ),
                    start_to_close_timeout=timedelta(minutes=10),
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                )
                for chunk in selection.chunks
            )
        )
        return await self._model(
            CheckActivities.check_proposals,
            CheckProposalsInput(
                round_id=spec.round_id,
                constitution=self.constitution,
                drafted=list(drafted),
                max_proposals=spec.max_proposals,
                evidence_ids=[e.id for chunk in selection.chunks for e in chunk.items],
                suspicious_ids=selection.suspicious_ids,
            ),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
        )

    async def _review(self) -> None:
        """Wait for every proposal to be settled, however long it takes."""
        spec = self.status.spec
        # Reminders keep their rhythm however often a decision wakes the loop.
        next_reminder = workflow.now() + spec.reminder_interval
        while self.status.pending:
            self._stop_if_cancelled()
            info = workflow.info()
            if (
                info.is_continue_as_new_suggested()
                or info.get_current_history_length() > HISTORY_EVENTS_PER_RUN
            ):
                if workflow.patched(RECORD_CONTINUE_AS_NEW):
                    await self._record_continue_as_new(info)
                await workflow.wait_condition(workflow.all_handlers_finished)
                self.status.runs += 1
                workflow.continue_as_new(RoundInput(spec=spec, carried=self.status))
            await self._refresh_messages()
            timeout = next_reminder - workflow.now()
            if spec.deadline is not None and self.status.review_started_at is not None:
                left = self.status.review_started_at + spec.deadline - workflow.now()
                if left <= timedelta(0):
                    await self._withdraw_pending("the round's review deadline passed")
                    break
                timeout = min(timeout, left)
            if timeout > timedelta(0):
                try:
                    await self._wait(
                        lambda: not self.status.pending or bool(self._stale_messages()),
                        timeout,
                    )
                    continue  # a decision: settled, or a message to bring up to date
                except TimeoutError:
                    pass
            if self._deadline_passed():
                continue  # the loop's top withdraws what is pending
            if workflow.now() >= next_reminder:
                await self._remind()
                next_reminder = workflow.now() + spec.reminder_interval
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._refresh_messages()
        if self.status.adopted:
            await self._move(RoundState.amending, data={"accepted": len(self.status.adopted)})
        else:
            await self._move(RoundState.completed_unchanged, reason="no proposal was accepted")
        await self._summarise()

    async def _record_continue_as_new(self, info: workflow.Info) -> None:
        """Put in the round's timeline where its Temporal history goes on in a new run.

        An operator reading the timeline can then find each run in the Temporal
        UI. Added after rounds were in flight, so behind `workflow.patched`.
        """
        await self._record(
            "history",
            f"run {self.status.runs}",
            f"run {self.status.runs + 1}",
            reason="continued as new: the round's history goes on in a new run",
            data={"events": info.get_current_history_length(), "run_id": info.run_id},
        )

    async def _retrain(self) -> None:
        """Retrain under the adopted version, from the round's stage on.

        Each stage is run only while the round stands at it, so a resumed round
        starts at the stage after its last completed one.
        """
        spec = self.status.spec
        version = await self._adopted_version()
        if self.status.state is RoundState.amending:
            await self._move(RoundState.generating_data)
        training = spec.training
        if self.status.state is RoundState.generating_data:
            self.status.progress = Progress(stage="generating_data", total=training.prompt_count)
            dataset = await self._generate_dataset(
                DatasetInput(round_id=spec.round_id, constitution=version, training=training)
            )
            self.status.dataset = dataset
            await self._move(
                RoundState.training, data={"dataset": dataset.uri, "examples": dataset.examples}
            )
        if self.status.state is RoundState.training:
            assert self.status.dataset is not None
            self.status.progress = Progress(stage="training", detail=f"{training.backend} backend")
            job = await self._fine_tune(self.status.dataset)
            self.status.candidate_model = job.fine_tuned_model
            await self._move(RoundState.evaluating, data={"candidate": job.fine_tuned_model})
        candidate = self.status.candidate_model
        self.status.progress = Progress(stage="evaluating")
        assert candidate is not None
        result = await self._model(
            EvaluationActivities.evaluate,
            EvaluateInput(
                round_id=spec.round_id,
                constitution=version,
                candidate_model=candidate,
                baseline_model=training.base_model,
                gate=spec.gate,
                prompt_file=training.eval_prompt_file,
            ),
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=training.heartbeat_timeout,
        )
        self.status.evaluation = result
        self.status.progress = None
        if result.passed:
            await self._move(
                RoundState.completed,
                reason="candidate promoted",
                data={"candidate": candidate},
            )
        else:
            await self._move(
                RoundState.gate_failed,
                reason="; ".join(result.reasons),
                data={"candidate": candidate, "held_back": True},
            )

    async def _generate_dataset(self, request: DatasetInput) -> Dataset:
        """The round's training data, shard by shard on every worker (`workflows.dataset`).

        A set of one shard is generated and assembled in one activity, as
        before shards: small rounds keep their history as it was.
        """
        shards = dataset_shards(request)
        beats = request.training.heartbeat_timeout
        hours = timedelta(hours=6)
        if len(shards) == 1 or not workflow.patched(SHARD_DATASET):
            return await self._model(
                TrainingActivities.generate_dataset,
                request,
                start_to_close_timeout=hours,
                heartbeat_timeout=beats,
            )

        queue = shard_queue(workflow.info().task_queue) if workflow.patched(SHARDS_PULLED) else None

        async def generate(shard: DatasetShardInput) -> DatasetShard:
            done = await self._model(
                TrainingActivities.generate_dataset_shard,
                shard,
                task_queue=queue,
                start_to_close_timeout=hours,
                heartbeat_timeout=beats,
            )
            if self.status.progress is not None:
                self.status.progress.done += done.stop - done.start
            return done

        await generate_in_shards(shards, request.training.dataset_shards_at_once, generate)
        return await self._model(
            TrainingActivities.assemble_dataset,
            request,
            start_to_close_timeout=hours,
            heartbeat_timeout=beats,
        )

    async def _adopted_version(self) -> ConstitutionVersion:
        """The round's new version: stored now, or (a resumed round) as stored before."""
        spec = self.status.spec
        assert self.constitution is not None
        if self.status.result_version is not None:
            return await self._load_version(self.status.result_version)
        decided = [
            (p.proposal, p.final_decision)
            for p in self.status.adopted
            if p.final_decision is not None
        ]
        version = apply_amendments(self.constitution, decided, round_id=spec.round_id)
        version = await self._ledger(
            LedgerActivities.save_version,
            SaveVersionInput(round_id=spec.round_id, version=version),
        )
        self.status.result_version = version.number
        await self._record(
            f"version:{version.number}",
            None,
            "created",
            data={"parent": self.constitution.number, "hash": version.content_hash},
        )
        return version

    async def _fine_tune(self, dataset: Dataset) -> FineTuneJob:
        """Start the round's job (or, resumed, find it again) and wait for its model.

        A resumed round whose job runs or succeeded gets that job back: it is
        not started, nor its start recorded, a second time. One whose job
        failed or was cancelled starts a new one.
        """
        spec = self.status.spec
        training = spec.training
        start = FineTuneInput(
            round_id=spec.round_id,
            dataset=dataset,
            training=training,
            replace_failed=self._resumed,
        )
        if workflow.patched(FINE_TUNE_WAITS_OUT_OUTAGES):
            job = await self._model(
                TrainingActivities.start_fine_tune,
                start,
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
            )
        else:
            job = await workflow.execute_activity_method(
                TrainingActivities.start_fine_tune,
                start,
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=MODEL_RETRY,
            )
        # Only a resumed round can have a job before it starts one.
        known = job.job_id == self.status.fine_tune_job
        self._job = job
        self.status.fine_tune_job = job.job_id
        if not known:
            await self._record(f"job:{job.job_id}", None, job.status, data={"backend": job.backend})
        if job.backend == "http" and job.poll_url is None:
            # The trainer calls the gateway back with this activity's task token:
            # one activity, however many days, and no polling at all.
            each_try = training.training_timeout
            retry = MODEL_RETRY  # handing the token over may need a retry
        else:
            # Polled by activity retries, not workflow timers: history stays
            # small however many days training takes.
            each_try = timedelta(minutes=1)
            retry = RetryPolicy(initial_interval=training.poll_interval, backoff_coefficient=1.0)
        try:
            finished = await workflow.execute_activity_method(
                TrainingActivities.await_fine_tune,
                job,
                start_to_close_timeout=each_try,
                schedule_to_close_timeout=training.training_timeout,
                retry_policy=retry,
            )
            if finished.status != "succeeded" or not finished.fine_tuned_model:
                raise ApplicationError(
                    f"fine-tune job {job.job_id} {finished.status}: "
                    f"{finished.error or 'no model was named'}",
                    type=ErrorType.fine_tune_failed,
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
                    type=ErrorType.fine_tune_timed_out,
                    non_retryable=True,
                ) from error
            await self._record(
                f"job:{job.job_id}", job.status, "failed", reason=str(cause or error)
            )
            self._job = None
            raise
        if not (known and job.status == finished.status):  # its end is recorded already
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
            await workflow.execute_activity_method(
                TrainingActivities.cancel_fine_tune,
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
        """Take a reviewer's decision (or an operator's override) and answer what it did.

        The validator refuses what may not be decided (`_check_decision`) before
        anything is recorded. The answer says whether the proposal is settled or
        waits for more reviewers; its Slack message is brought up to date by the
        review loop, off the reviewer's path.
        """
        spec = self.status.spec
        pending = self._check_decision(request)
        # A click on the message being posted waits until the round notes it.
        await workflow.wait_condition(lambda: pending.state is not ProposalState.drafted)
        async with self._lock:
            # The round may have moved, or this reviewer's other click may have
            # been taken, while this update waited for the lock.
            item = self._check_decision(request)
            decision = Decision(**request.model_dump(), decided_at=workflow.now())
            item.decisions.append(decision)
            # A local activity: one short write on the reviewer's path, without
            # a round trip through the Temporal server to schedule it.
            await workflow.execute_local_activity_method(
                LedgerActivities.record_decision,
                RecordDecisionInput(
                    round_id=spec.round_id,
                    # One vote per reviewer and proposal, in every run of the round.
                    decision_id=f"{workflow.info().workflow_id}:{item.proposal.id}:{request.reviewer}",
                    decision=decision,
                ),
                start_to_close_timeout=QUICK,
            )
            policy = policy_for(spec, item.proposal)
            eligible = len(eligible_reviewers(spec, self.status.group_members))
            # An operator's override decides the proposal outright, recorded as such.
            target = (
                DECISION_TO_STATE[request.kind]
                if request.override
                else settle(policy, item.decisions, eligible)
            )
            if target is not None:
                await self._move_proposal_locked(
                    item,
                    target,
                    actor=request.reviewer,
                    reason=request.comment or "",
                    data={
                        "kind": request.kind.value,
                        "decisions": len(item.decisions),
                        **({"text": request.text} if request.text else {}),
                        **({"override": True} if request.override else {}),
                    },
                )
            # Worded now: other reviewers' votes may land while the message updates.
            recorded = f"{request.kind.value} recorded for {request.proposal_id}"
            if target is None:
                votes = tally(policy, item.decisions, eligible)
                message = f"{recorded} ({votes}); it waits for more reviewers"
            elif target is DECISION_TO_STATE[request.kind]:
                message = recorded
            else:
                message = f"{recorded}; the proposal is {target.value}"
            # The review loop updates the message, off the reviewer's path.
            item.message_stale = True
        return DecisionOutcome(
            proposal_id=request.proposal_id, proposal_state=item.state.value, message=message
        )

    @workflow.signal
    def retry_slack(self) -> None:
        """An operator fixed what blocked Slack posting: try again now."""
        self._retry_slack_now = True

    @decide.validator
    def _validate_decide(self, request: DecisionRequest) -> None:
        self._check_decision(request)

    def _check_decision(self, request: DecisionRequest) -> ProposalStatus:
        """Refuse what may not be decided; ApplicationError reaches the caller."""
        self._require_review()
        item = self.status.find(request.proposal_id)
        if item is None:
            raise ApplicationError(
                f"unknown proposal {request.proposal_id}",
                type=ErrorType.unknown_proposal,
                non_retryable=True,
            )
        spec = self.status.spec
        eligible = eligible_reviewers(spec, self.status.group_members)
        if request.reviewer not in eligible and not request.override:
            raise ApplicationError(
                not_a_reviewer(spec, request.reviewer),
                type=ErrorType.not_a_reviewer,
                non_retryable=True,
            )
        if item.state is ProposalState.drafted and item.proposal.id not in self._posting:
            raise ApplicationError(
                f"proposal {request.proposal_id} is not posted yet",
                type=ErrorType.not_posted,
                non_retryable=True,
            )
        if item.settled:
            decided = item.final_decision
            who = f" by {decided.reviewer}" if decided else ""
            raise ApplicationError(
                f"proposal {request.proposal_id} is already {item.state.value}{who}",
                type=ErrorType.already_settled,
                non_retryable=True,
            )
        earlier = item.voted(request.reviewer)
        if earlier is not None:
            raise ApplicationError(
                f"you already decided {earlier.kind.value} on proposal {request.proposal_id}; "
                "each reviewer has one vote",
                type=ErrorType.already_voted,
                non_retryable=True,
            )
        return item

    def _require_review(self) -> None:
        """Refuse unless the round is in review.

        Proposals are open from the moment they are posted, even while the rest
        are still being posted.
        """
        if self.status.state not in (RoundState.proposing, RoundState.in_review):
            raise ApplicationError(
                f"round {self.status.spec.round_id} is {self.status.state.value}, not in review",
                type=ErrorType.round_not_in_review,
                non_retryable=True,
            )

    @workflow.query
    def state(self) -> RoundStatus:
        """The round's whole state, which `round_status` gives the API and the CLI."""
        return self.status

    # -- operators ---------------------------------------------------------------

    @workflow.update
    async def cancel(self, request: OperatorRequest) -> RoundResult:
        """End the round now, and answer once it is cancelled.

        Pending proposals are withdrawn and their Slack messages say so. Refused
        once the round has ended or is already ending.
        """
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
                type=ErrorType.round_ended,
                non_retryable=True,
            )
        task = self._lifecycle_task
        if self._cancel_request is not None or task is None or task.done():
            # Already cancelled by another order or through Temporal, or ending.
            raise ApplicationError(
                f"round {self.status.spec.round_id} is already ending",
                type=ErrorType.round_ended,
                non_retryable=True,
            )

    @workflow.update
    async def repost(self, request: OperatorRequest) -> list[SlackMessageRef]:
        """Post every pending proposal again, and answer the new messages.

        For when a message was deleted, or the reviewers moved channel; decisions
        on the old messages still count.
        """
        assert self.constitution is not None
        posted: list[SlackMessageRef] = []
        for item in self.status.pending:
            earlier = item.message
            item.message = await self._post(item, repost=True)
            if earlier is not None and earlier != item.message:
                item.earlier_messages.append(earlier)
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
        self._require_review()
        if not self.status.pending or self.constitution is None:
            raise ApplicationError(
                f"round {self.status.spec.round_id} has no pending proposal to re-post",
                type=ErrorType.nothing_pending,
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
                item.withdrawal = Withdrawal(actor=actor, reason=reason, at=workflow.now())
                await self._move_proposal(item, ProposalState.withdrawn, actor=actor, reason=reason)
                if item.message is not None:
                    await self._update_message(item)
        if self.status.state not in TERMINAL_ROUND_STATES:
            await self._move(RoundState.cancelled, actor=actor, reason=reason)
        await self._summarise()

    async def _fail(self, error: BaseException) -> None:
        cause = error.cause if isinstance(error, ActivityError) and error.cause else error
        # An ApplicationError's own words, without its type in front of them.
        self.status.error = cause.message if isinstance(cause, ApplicationError) else str(cause)
        self.status.progress = None
        try:
            await self._move(RoundState.failed, reason=self.status.error)
        except Exception:  # the ledger itself may be what failed
            workflow.logger.exception("could not record the failure of the round")

    async def _withdraw_pending(self, reason: str) -> None:
        for item in self.status.pending:
            item.withdrawal = Withdrawal(actor="workflow", reason=reason, at=workflow.now())
            await self._move_proposal(
                item, ProposalState.withdrawn, actor="workflow", reason=reason
            )
            item.message_stale = True  # its message ends without buttons, saying why

    def _deadline_passed(self) -> bool:
        spec = self.status.spec
        started = self.status.review_started_at
        return bool(spec.deadline and started and workflow.now() >= started + spec.deadline)

    async def _summarise(self) -> None:
        summary = RoundSummaryInput(
            round_id=self.status.spec.round_id,
            state=self.status.state,
            proposals=self.status.proposals,
            result_version=self.status.result_version,
        )
        if self.status.state is not RoundState.cancelled:
            await self._slack(SlackActivities.post_round_summary, summary)
            return
        # A cancelled round ends now; a summary Slack refuses is not worth waiting for.
        try:
            await workflow.execute_activity_method(
                SlackActivities.post_round_summary,
                summary,
                start_to_close_timeout=QUICK,
                retry_policy=SUMMARY_ON_CANCEL_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("the cancelled round's summary could not be posted")

    # -- Slack: reminders, digests, message updates, and being blocked ------------

    async def _remind(self) -> None:
        spec = self.status.spec
        await self._resolve_reviewer_groups()
        self.status.reminders_sent += 1
        number = self.status.reminders_sent
        await self._slack(
            SlackActivities.post_reminder,
            ReminderInput(
                round_id=spec.round_id,
                pending=self.status.pending,
                reminder_number=number,
                escalate_to=spec.escalate_to if number >= spec.escalate_after else None,
            ),
        )
        if self._digest_due():
            self.status.digests_sent += 1
            self.status.last_digest_at = workflow.now()
            await self._slack(
                SlackActivities.post_digest,
                DigestInput(
                    round_id=spec.round_id,
                    pending=self.status.pending,
                    number=self.status.digests_sent,
                ),
            )

    def _digest_due(self) -> bool:
        interval = self.status.spec.digest_interval
        since = self.status.last_digest_at or self.status.review_started_at
        return interval is not None and since is not None and workflow.now() - since >= interval

    async def _resolve_reviewer_groups(self) -> None:
        """Read reviewer groups' members from Slack, and each proposal's accepts needed.

        Group membership is read from Slack when review starts and at each
        reminder, so the validator (which may do no I/O) can check it.
        """
        spec = self.status.spec
        if spec.reviewer_groups:
            self.status.group_members = await self._slack(
                SlackActivities.resolve_reviewer_groups,
                ResolveGroupsInput(groups=spec.reviewer_groups),
            )
        eligible = len(eligible_reviewers(spec, self.status.group_members))
        for item in self.status.proposals:
            item.accepts_needed = required_accepts(policy_for(spec, item.proposal), eligible)

    def _stale_messages(self) -> list[ProposalStatus]:
        return [p for p in self.status.proposals if p.message_stale]

    async def _refresh_messages(self) -> None:
        stale = self._stale_messages()
        if stale and workflow.patched(MESSAGES_TOGETHER):
            await self._update_messages(stale)
            return
        for item in stale:
            await self._update_message(item)

    async def _slack(self, activity: Callable[[Any, A], Awaitable[T]], arg: A, **options: Any) -> T:
        """Run a Slack activity until it succeeds, blocking the round while Slack refuses it.

        Rate limits and server errors are retried by Temporal; what retrying
        cannot fix (a missing channel, a revoked token) blocks the round, visibly
        and in the ledger, and posting is tried again every
        `slack_retry_interval` or at once on `retry_slack`.
        """
        while True:
            self._stop_if_cancelled()
            try:
                result = await workflow.execute_activity_method(
                    activity,
                    arg,
                    retry_policy=SLACK_RETRY,
                    **({"start_to_close_timeout": QUICK} | options),
                )
            except ActivityError as error:
                cause = error.cause
                if not (
                    isinstance(cause, ApplicationError)
                    and cause.type == ErrorType.slack_permanent_error
                ):
                    raise
                await self._block(cause.message)
                self._retry_slack_now = False
                with contextlib.suppress(TimeoutError):
                    await self._wait(
                        lambda: self._retry_slack_now, self.status.spec.slack_retry_interval
                    )
                continue
            if self.status.blocked is not None:
                reason = self.status.blocked
                self.status.blocked = None
                await self._record(
                    "slack", "blocked", "ok", reason=f"Slack answers again ({reason})"
                )
            return result

    async def _block(self, reason: str) -> None:
        if self.status.blocked is None:
            self.status.blocked = reason
            await self._record("slack", "ok", "blocked", reason=reason)

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
        await self._write_all([Move(entity, current, target, actor, reason, data)])

    async def _write_all(self, moves: list[Move]) -> None:
        """Write transitions in order, in one write of the ledger."""
        self._stop_if_cancelled()
        records = []
        for move in moves:
            self.status.sequence += 1
            records.append(
                TransitionRecord(
                    workflow_id=workflow.info().workflow_id,
                    sequence=self.status.sequence,
                    round_id=self.status.spec.round_id,
                    entity=move.entity,
                    from_state=move.current,
                    to_state=move.target,
                    actor=move.actor,
                    reason=move.reason,
                    data=move.data or {},
                    at=workflow.now(),
                )
            )
        # A cancel arriving mid-write waits for the write: the chain must not
        # be left unsure whether this sequence number landed. A local activity:
        # one marker in the history, not six events and a trip through the server.
        if workflow.patched(RECORD_LOCALLY):
            write = workflow.start_local_activity_method(
                LedgerActivities.record_transitions, records, start_to_close_timeout=QUICK
            )
        else:
            write = workflow.start_activity_method(
                LedgerActivities.record_transitions, records, start_to_close_timeout=QUICK
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
        return await self._slack(
            SlackActivities.post_proposal,
            PostProposalInput(
                workflow_id=workflow.info().workflow_id,
                status=item,
                constitution=self.constitution,
                voters=self._voters(item),
                repost=repost,
            ),
        )

    def _voters(self, item: ProposalStatus) -> Voters:
        """Who may decide the proposal, for its message to say."""
        spec = self.status.spec
        return Voters(
            reviewers=sorted(eligible_reviewers(spec, self.status.group_members)),
            groups=spec.reviewer_groups,
            policy=policy_for(spec, item.proposal),
        )

    async def _update_message(self, item: ProposalStatus) -> None:
        """Rewrite the proposal's Slack message to show its new state."""
        assert self.constitution is not None
        fresh = await self._slack(
            SlackActivities.update_proposal_message,
            UpdateProposalMessageInput(
                workflow_id=workflow.info().workflow_id,
                status=item,
                constitution=self.constitution,
                voters=self._voters(item),
            ),
        )
        item.message_stale = False
        if fresh is not None and fresh != item.message:
            await self._note_fresh_message(item, fresh)

    async def _note_fresh_message(self, item: ProposalStatus, fresh: SlackMessageRef) -> None:
        """Its message was gone (deleted in Slack): a fresh one took its place."""
        if item.message is not None:
            item.earlier_messages.append(item.message)
        item.message = fresh
        if workflow.patched(RECORD_LOST_MESSAGE):
            await self._record(
                f"proposal:{item.proposal.id}",
                ProposalState.posted,
                ProposalState.posted,
                reason="its Slack message was gone (deleted); posted again",
                data={"channel": fresh.channel, "ts": fresh.ts, "repost": True},
            )

    def _messages(self, items: list[ProposalStatus]) -> ProposalMessagesInput:
        assert self.constitution is not None
        return ProposalMessagesInput(
            workflow_id=workflow.info().workflow_id,
            constitution=self.constitution,
            messages=[ProposalMessage(status=i, voters=self._voters(i)) for i in items],
        )

    async def _post_together(self) -> None:
        """Post the proposals a batch at a time; each batch is noted posted in one write."""
        proposals = self.status.proposals
        for start in range(0, len(proposals), POSTS_AT_ONCE):
            batch = proposals[start : start + POSTS_AT_ONCE]
            self._posting = {item.proposal.id for item in batch}
            refs = await self._slack(
                SlackActivities.post_proposals, self._messages(batch), **SLACK_BATCH
            )
            async with self._lock:
                moves = []
                for item, ref in zip(batch, refs, strict=True):
                    item.message = ref
                    current = item.state
                    item.state = advance_proposal(current, ProposalState.posted)
                    data = {"channel": ref.channel, "ts": ref.ts}
                    moves.append(
                        Move(f"proposal:{item.proposal.id}", current, item.state, data=data)
                    )
                await self._write_all(moves)
            self._posting = set()

    async def _update_messages(self, items: list[ProposalStatus]) -> None:
        """Rewrite the stale messages in one activity.

        Each is marked fresh as it is read for the activity: a decision taken
        while Slack is being called marks its proposal stale again, and the
        review loop rewrites it once more.
        """
        request = self._messages(items)
        for item in items:
            item.message_stale = False
        fresh = await self._slack(SlackActivities.update_proposal_messages, request, **SLACK_BATCH)
        for item, ref in zip(items, fresh, strict=True):
            if ref is not None and ref != item.message:
                await self._note_fresh_message(item, ref)

    async def _load_version(self, number: int | None) -> ConstitutionVersion:
        return await self._ledger(LedgerActivities.load_version, number)

    async def _ledger(self, activity: Callable[[Any, A], Awaitable[T]], arg: A) -> T:
        """One quick read or write of the ledger.

        A local activity once rounds run this code (a marker in the history);
        an activity in rounds that ran it so.
        """
        if workflow.patched(LEDGER_LOCALLY):
            return await workflow.execute_local_activity_method(
                activity, arg, start_to_close_timeout=QUICK
            )
        return await workflow.execute_activity_method(activity, arg, start_to_close_timeout=QUICK)
