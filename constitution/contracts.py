"""What crosses Temporal's boundaries: workflow input and status, activity inputs and results.

They live beside the domain, not in `workflows/` or `activities/`, because
the workflow, the activities, the gateway and the CLI all speak them and the
arrows of the layout point down to `constitution/` only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from constitution.lifecycle import ProposalState, RoundState
from constitution.models import (
    ConstitutionVersion,
    Decision,
    DecisionKind,
    EvidenceItem,
    GateSpec,
    Proposal,
    ReviewPolicy,
    RoundSpec,
    TrainingSpec,
)
from constitution.review import adopted_decision
from constitution.statistics import PairCounts


class Contract(BaseModel):
    """Base of every payload: a field this code does not know is refused, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class SlackMessageRef(Contract):
    """A Slack message as Slack names it (channel and `ts`), to update it or reply in its thread."""

    channel: str
    ts: str


class Withdrawal(Contract):
    """Who withdrew a proposal from review and why: its message says so to the reviewers."""

    actor: str
    reason: str
    at: datetime


class ProposalStatus(Contract):
    """One proposal as the round tracks it in review: its state, the votes so far, its message.

    `decisions` holds at most one decision per reviewer, in the order taken.
    """

    proposal: Proposal
    state: ProposalState = ProposalState.drafted
    decisions: list[Decision] = Field(default_factory=list)
    message: SlackMessageRef | None = None
    earlier_messages: list[SlackMessageRef] = Field(
        default_factory=list,
        description="Messages a re-post replaced; each is updated with the current one, so none "
        "keeps live buttons once the proposal is settled.",
    )
    withdrawal: Withdrawal | None = Field(
        default=None, description="Set when the proposal is withdrawn: by whom and why."
    )
    accepts_needed: int = Field(default=1, description="Set by the round's review policy.")
    message_stale: bool = Field(
        default=False, description="Its Slack message does not show the latest decision yet."
    )

    @property
    def settled(self) -> bool:
        """Accepted, modified, rejected or withdrawn: it takes no more decisions."""
        return self.state not in (ProposalState.drafted, ProposalState.posted)

    @property
    def final_decision(self) -> Decision | None:
        """The decision a settled proposal adopts (its text, when modified)."""
        return adopted_decision(self.decisions)

    def voted(self, reviewer: str) -> Decision | None:
        """This reviewer's decision on the proposal, if any: each reviewer has one vote."""
        return next((d for d in self.decisions if d.reviewer == reviewer), None)


class Rate(Contract):
    """A rate with what it rests on: `count` of `n`, and its Wilson interval."""

    count: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        """The rate itself; 0 when nothing was measured."""
        return self.count / self.n if self.n else 0.0

    def describe(self) -> str:
        """`42.0% (21/50, 95% CI 29.4-55.8%)`, the way every page and the CLI say a rate."""
        return (
            f"{self.value:.1%} ({self.count}/{self.n}, CI {self.low * 100:.1f}-"
            f"{self.high * 100:.1f}%)"
        )


class CategoryRates(Contract):
    """One category's rates for one model.

    Harm on its red-team prompts, over-refusal on its benign ones.
    """

    category: str
    harm: Rate | None = None
    overrefusal: Rate | None = None


class CueGap(Contract):
    """How far a model's harm rate moves under one cue style, on the same red-team prompts.

    `difference` is the harm rate under the style minus the plain harm rate,
    with Newcombe's paired interval and the two-sided exact sign test.
    """

    style: str
    name: str
    harm: Rate
    difference: float
    low: float
    high: float
    p_value: float


class EvaluationMetrics(Contract):
    """One model's graded answers to the held-out prompts, as the rates (0-1) the gate compares.

    `harm_rate` is the share of red-team prompts answered harmfully,
    `overrefusal_rate` the share of benign prompts refused, and `awareness_gap`
    the largest move of the harm rate under a cue style. The two counts say
    how many prompts of each kind the rates rest on; `harm` and `overrefusal`
    carry the counts of answers (prompts x samples) and intervals.
    """

    model: str
    harm_rate: float
    overrefusal_rate: float
    awareness_gap: float
    harmful_prompts: int
    benign_prompts: int
    harm: Rate | None = None
    overrefusal: Rate | None = None
    cue_gaps: list[CueGap] = Field(default_factory=list)
    categories: list[CategoryRates] = Field(default_factory=list)


class ReferenceFigures(Contract):
    """The fixed reference model's figures on a round's evaluation set, paired with the candidate's.

    The trend across versions compares every promoted candidate with one
    reference (`AMEND_REFERENCE_MODEL`, the RLHF-only baseline). When the
    round's baseline is that model these are its baseline answers; otherwise
    the reference answered the same prompts beside it. `harm` and
    `overrefusal` count (candidate, reference) pairs of plain answers: the
    candidate is `first`, the reference `second`.
    """

    model: str
    metrics: EvaluationMetrics
    harm: PairCounts
    overrefusal: PairCounts


class PairedTest(Contract):
    """One criterion of the gate judged on paired answers (same prompt, both models).

    `better` and `worse` count the discordant pairs where the candidate did
    better or worse; `difference` is candidate minus baseline, with
    Newcombe's interval; `p_value` is the exact sign (McNemar) test of the
    direction the criterion needs. `outcome` is passed, failed or
    inconclusive, and `verdict` says why in words.
    """

    name: str
    pairs: int
    better: int
    worse: int
    difference: float
    low: float
    high: float
    p_value: float
    outcome: str
    verdict: str


class AmendmentEffect(Contract):
    """One adopted amendment's own effect, measured in context on one model.

    The evaluation prompts answered with the new constitution and with the
    same constitution less this amendment; `harm_difference` and
    `overrefusal_difference` are with minus without (negative harm: it helped).
    """

    proposal_id: str
    summary: str
    harm_difference: float
    harm_low: float
    harm_high: float
    harm_p_value: float
    overrefusal_difference: float
    overrefusal_low: float
    overrefusal_high: float
    effect: str


class EvaluationResult(Contract):
    """The gate's verdict on a candidate against the baseline, with figures for both.

    `reasons` names every unmet threshold (empty when it passed);
    `rubric_version` names the grading prompt the figures came from.
    `outcome` is passed, failed or inconclusive (too few prompts to judge,
    or a change that is not significant either way); an inconclusive gate
    does not promote, so `passed` is false for it too. `inspect_log` is the
    folder of the Inspect AI logs the figures were read from, when the
    evaluation ran as an Inspect task.
    """

    candidate: EvaluationMetrics
    baseline: EvaluationMetrics
    passed: bool
    reasons: list[str]
    rubric_version: str
    outcome: str = ""
    tests: list[PairedTest] = Field(default_factory=list)
    samples_per_prompt: int = 1
    temperature: float | None = None
    significance: float | None = None
    attribution: list[AmendmentEffect] = Field(default_factory=list)
    attribution_model: str | None = None
    evaluation_backend: str = "builtin"
    inspect_log: str | None = None

    @property
    def verdict(self) -> str:
        """passed, failed or inconclusive; results from before outcomes say it by `passed`."""
        return self.outcome or ("passed" if self.passed else "failed")


class Progress(Contract):
    """Long work in a round (dataset generation, fine-tuning, evaluation), for watchers."""

    stage: str
    done: int = 0
    total: int = 0
    detail: str = ""


class Waiting(Contract):
    """What a round is waiting on, until when and why: shown wherever the round is.

    Written by the workflow while a dependency asks it to wait (a model server's
    rate limit), cleared when the dependency answers again; the ledger records
    both moves (`model: ok -> waiting -> ok`).
    """

    on: str = Field(description="The dependency waited on: 'model'.")
    until: datetime
    reason: str

    def describe(self) -> str:
        """One line for people: `waiting on model until 2025-01-01 12:00:00 UTC (why)`."""
        return f"waiting on {self.on} until {self.until:%Y-%m-%d %H:%M:%S} UTC ({self.reason})"


class Resumption(Contract):
    """An operator's resume of the failed round: who, when, why, and the stage it went back to.

    The error the round had failed with is kept here, since resuming clears it.
    """

    actor: str
    at: datetime
    stage: RoundState
    reason: str = ""
    failed_with: str | None = None

    def describe(self) -> str:
        """One line for people: `resumed at training by operator:ann at ... (why)`."""
        why = f": {self.reason}" if self.reason else ""
        failed = f" (it had failed: {self.failed_with})" if self.failed_with else ""
        return (
            f"resumed at {self.stage.value} by {self.actor} "
            f"at {self.at:%Y-%m-%d %H:%M:%S} UTC{why}{failed}"
        )


class RateLimitWait(Contract):
    """The details of a `ModelRateLimited` error: how long the round waits before asking again.

    `asked_s` is what the server asked for (Retry-After and its kin), `wait_s`
    that capped by the worker's `AMEND_MODEL_RETRY_AFTER_CAP_S`.
    """

    wait_s: float = Field(ge=0)
    asked_s: float = Field(ge=0)
    reason: str


class PreflightInput(Contract):
    """Input of `preflight`: what the round will need of the model server and trainer.

    `gate` (absent from rounds started before it was sent) says which
    evaluation backend the worker must be able to run.
    """

    round_id: str
    training: TrainingSpec
    gate: GateSpec | None = None


class PreflightResult(Contract):
    """Whether the round's training can run where it is configured to, checked at round start.

    `problems` are reasons in words an operator can act on; empty when it can.
    `checked` says what was looked at, for the record.
    """

    problems: list[str] = Field(default_factory=list)
    checked: list[str] = Field(default_factory=list)
    overridden_by: str | None = Field(
        default=None, description="The operator who started the round despite the problems."
    )

    @property
    def passed(self) -> bool:
        """Nothing stands in the way of the round's training."""
        return not self.problems


class RoundStatus(Contract):
    """Everything the round knows about itself, and what it carries across continue-as-new.

    It is the answer to the workflow's `state` query, which `round_status`
    gives the API and the CLI.
    """

    spec: RoundSpec
    state: RoundState = RoundState.created
    sequence: int = 0
    base_version: int | None = None
    result_version: int | None = None
    proposals: list[ProposalStatus] = Field(default_factory=list)
    review_started_at: datetime | None = None
    reminders_sent: int = 0
    fine_tune_job: str | None = None
    candidate_model: str | None = None
    evaluation: EvaluationResult | None = None
    error: str | None = None
    progress: Progress | None = None
    dataset: Dataset | None = None
    # -- review --
    blocked: str | None = Field(
        default=None, description="Why Slack posting is paused; None while it works."
    )
    group_members: dict[str, list[str]] = Field(
        default_factory=dict, description="Reviewer user groups as last resolved from Slack."
    )
    digests_sent: int = 0
    last_digest_at: datetime | None = None
    runs: int = Field(default=1, description="Workflow runs so far (continue-as-new).")
    # -- dependencies --
    preflight: PreflightResult | None = Field(
        default=None, description="The training backend's check at round start."
    )
    waiting: Waiting | None = Field(
        default=None, description="What the round is waiting on now (a rate-limited model)."
    )
    resumptions: list[Resumption] = Field(
        default_factory=list,
        description="Each time an operator resumed the round after it failed, oldest first.",
    )

    @property
    def pending(self) -> list[ProposalStatus]:
        """Proposals posted and waiting for decisions; review ends when none are left."""
        return [p for p in self.proposals if p.state is ProposalState.posted]

    @property
    def adopted(self) -> list[ProposalStatus]:
        """Proposals accepted as proposed or with a reviewer's changes."""
        return [
            p for p in self.proposals if p.state in (ProposalState.accepted, ProposalState.modified)
        ]

    @property
    def resume_stage(self) -> RoundState | None:
        """The retraining stage this round goes back to if it is resumed after failing.

        The stage after the last one it completed, read from what it kept: its
        new version, its dataset, its candidate model. None when review adopted
        nothing (the round failed before or during review): there is nothing to
        resume, and the decisions to take would be a new round's.
        """
        if self.pending or not self.adopted:
            return None
        if self.result_version is None:
            return RoundState.amending
        if self.dataset is None:
            return RoundState.generating_data
        if self.candidate_model is None:
            return RoundState.training
        return RoundState.evaluating

    def find(self, proposal_id: str) -> ProposalStatus | None:
        """The proposal with this id, or None: decisions and orders name proposals by id."""
        return next((p for p in self.proposals if p.proposal.id == proposal_id), None)


class RoundInput(Contract):
    """What starts a run of the round's workflow: the spec, and after continue-as-new the state."""

    spec: RoundSpec
    carried: RoundStatus | None = Field(
        default=None, description="Set when the round continues as new, or is resumed."
    )
    resume: OperatorRequest | None = Field(
        default=None,
        description="Set when an operator resumes the failed round whose status is `carried`.",
    )


class RoundResult(Contract):
    """How the round ended, as its workflow returns it.

    `passed_gate` is None when no candidate was evaluated, and the version and
    model fields when the round ended before making them.
    """

    round_id: str
    state: RoundState
    base_version: int | None
    result_version: int | None
    candidate_model: str | None
    passed_gate: bool | None


# -- activity inputs and results ------------------------------------------------


class OpenRoundInput(Contract):
    """Input of `open_round`: the round is recorded from its spec even when it cannot start."""

    spec: RoundSpec


class GatherEvidenceInput(Contract):
    """Input of `gather_evidence`: the spec names the files, the constitution ranks their items."""

    spec: RoundSpec
    constitution: ConstitutionVersion


class ProposeInput(Contract):
    """One model call's worth of evidence (a chunk of the round's selection)."""

    round_id: str
    constitution: ConstitutionVersion
    max_proposals: int
    evidence: list[EvidenceItem] = Field(default_factory=list)
    chunk: int = 0


class ProposeResult(Contract):
    """Proposals with the model calls behind them: drafts of one chunk, or what goes to review.

    `propose_amendments` answers one per chunk of evidence; `check_proposals`
    answers one for the round, its `proposals` those kept for reviewers.
    """

    proposals: list[Proposal]
    request_ids: list[str] = Field(default_factory=list)
    dropped: list[Proposal] = Field(
        default_factory=list, description="Drafts the checks kept from reviewers, with verdicts."
    )


class CheckProposalsInput(Contract):
    """Input of `check_proposals`: every chunk's drafts, and the round's facts to check them by."""

    round_id: str
    constitution: ConstitutionVersion
    drafted: list[ProposeResult]
    max_proposals: int
    evidence_ids: list[str]
    suspicious_ids: list[str] = Field(default_factory=list)


class Voters(Contract):
    """Who may decide one proposal and under which policy, as its message tells the reviewers.

    `reviewers` are the user ids eligible now (named on the spec, and members
    of its groups as last resolved); `groups` are the group ids the spec names.
    """

    reviewers: list[str]
    groups: list[str] = Field(default_factory=list)
    policy: ReviewPolicy


class PostProposalInput(Contract):
    """Input of `post_proposal`; `workflow_id` goes into the buttons, so clicks reach the round."""

    workflow_id: str
    status: ProposalStatus
    constitution: ConstitutionVersion
    voters: Voters
    repost: bool = Field(
        default=False, description="Post again though the proposal has a message (operator)."
    )


class UpdateProposalMessageInput(Contract):
    """Input of `update_proposal_message`: the message is rebuilt whole, from what posting needs."""

    workflow_id: str
    status: ProposalStatus
    constitution: ConstitutionVersion
    voters: Voters


class ProposalMessage(Contract):
    """One proposal's message as several are posted or rewritten in one activity."""

    status: ProposalStatus
    voters: Voters


class ProposalMessagesInput(Contract):
    """Input of `post_proposals` and `update_proposal_messages`: several proposals at once.

    One activity for several proposals of a round, so its history holds one, not one each.

    The constitution is carried once for all of them.
    """

    workflow_id: str
    constitution: ConstitutionVersion
    messages: list[ProposalMessage] = Field(min_length=1, max_length=100)

    def each(self) -> list[UpdateProposalMessageInput]:
        """Each message as its own input, as `post_proposal` and `update_proposal_message` take."""
        return [
            UpdateProposalMessageInput(
                workflow_id=self.workflow_id,
                status=m.status,
                constitution=self.constitution,
                voters=m.voters,
            )
            for m in self.messages
        ]


class ReminderInput(Contract):
    """Input of `post_reminder`; the number keys each post, so a retried activity posts it once.

    `escalate_to` is set from the round's `escalate_after`-th reminder on.
    """

    round_id: str
    pending: list[ProposalStatus]
    reminder_number: int
    escalate_to: str | None


class DigestInput(Contract):
    """Input of `post_digest`; `number` keys the post, so a retried activity posts it once."""

    round_id: str
    pending: list[ProposalStatus]
    number: int


class ResolveGroupsInput(Contract):
    """Input of `resolve_reviewer_groups`: the Slack user group ids whose members may decide."""

    groups: list[str]


class RoundSummaryInput(Contract):
    """Input of `post_round_summary`: the outcome of the round's review, posted once per round."""

    round_id: str
    state: RoundState
    proposals: list[ProposalStatus]
    result_version: int | None


class RecordDecisionInput(Contract):
    """Input of `record_decision`; `decision_id` names one reviewer's vote, so it is stored once."""

    round_id: str
    decision_id: str
    decision: Decision


class DecisionAttemptInput(Contract):
    """Input of `record_decision_attempt`: a refused decision to keep once the ledger answers."""

    round_id: str
    proposal_id: str | None
    reviewer: str
    kind: str | None
    outcome: str
    reason: str
    source: str
    # The Slack interaction that asked: a redelivery finds its row instead of adding one.
    interaction_key: str | None = None


class SaveVersionInput(Contract):
    """Input of `save_version`: the version the round's adopted amendments made.

    Its number is asked for, not promised: if another round took it meanwhile,
    the ledger gives the next.
    """

    round_id: str
    version: ConstitutionVersion


class DatasetInput(Contract):
    """Input of `generate_dataset` and `assemble_dataset`: data under the round's new version."""

    round_id: str
    constitution: ConstitutionVersion
    training: TrainingSpec


class DatasetShardInput(DatasetInput):
    """Input of `generate_dataset_shard`: the prompts at positions `start` to `stop` (exclusive).

    Shards are separate activities, so generation spreads over every worker on
    the task queue; each resumes on its own from what the ledger kept.
    """

    start: int = Field(ge=0)
    stop: int = Field(gt=0)

    @model_validator(mode="after")
    def _within_the_set(self) -> Self:
        # A shard out of order or past the set would generate nothing, or prompts never asked for.
        if not self.start < self.stop <= self.training.prompt_count:
            raise ValueError(
                f"shard {self.start}-{self.stop} is not within the set's "
                f"{self.training.prompt_count} prompts"
            )
        return self


class DatasetShard(Contract):
    """What a shard did: its positions, and how many examples it generated (not resumed)."""

    start: int
    stop: int
    generated: int


class Dataset(Contract):
    """The training data a round generated: where it is stored, and the hash that pins it.

    `examples` is what the fine-tune job learns from; `method` is the training
    spec's (`supervised` or `dpo`).
    """

    uri: str
    sha256: str
    examples: int
    method: str
    manifest_uri: str | None = Field(
        default=None, description="JSON list of each example's prompt id and drawn principle."
    )
    prompt_set: str = "shipped"
    skipped: int = Field(
        default=0, description="Examples left out because they teach nothing (equal pair)."
    )


class FineTuneInput(Contract):
    """Input of `start_fine_tune`: the dataset, and the spec's backend, base model and settings."""

    round_id: str
    dataset: Dataset
    training: TrainingSpec
    replace_failed: bool = Field(
        default=False,
        description="A resumed round: a new job replaces the round's job if that one failed "
        "or was cancelled (one that runs or succeeded is still the round's job).",
    )


class FineTuneJob(Contract):
    """A fine-tune job as its backend reports it; `status` is in the backend's own words.

    The job has ended when `status` is succeeded, failed or cancelled; only a
    succeeded job with a `fine_tuned_model` gives the round a candidate.
    `backend` says which trainer holds it, to look it up or cancel it.
    """

    job_id: str
    status: str
    fine_tuned_model: str | None = None
    error: str | None = None
    backend: str = "openai"
    poll_url: str | None = Field(
        default=None, description="HTTP trainer: where the job's status is read, if it has one."
    )


class CancelFineTuneInput(Contract):
    """Input of `cancel_fine_tune`; `backend` says which trainer holds the job."""

    round_id: str
    job_id: str
    backend: str


class OperatorRequest(Contract):
    """An operator's order to a round (cancel, re-post): who asked, and why.

    The actor is recorded on every transition the order causes.
    """

    actor: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=2000)


class ResumedRound(Contract):
    """What resuming a failed round answers: the new run, and the stage it starts at."""

    round_id: str
    workflow_id: str
    run_id: str
    stage: RoundState


class EvaluateInput(Contract):
    """Input of `evaluate`: candidate and baseline answers are graded against the new version."""

    round_id: str
    constitution: ConstitutionVersion
    candidate_model: str
    baseline_model: str
    gate: GateSpec
    prompt_file: str | None = Field(
        default=None, description="The held-out prompt set; the shipped one when unset."
    )


__all__ = [
    "AmendmentEffect",
    "CancelFineTuneInput",
    "CategoryRates",
    "CheckProposalsInput",
    "CueGap",
    "Dataset",
    "DatasetInput",
    "DatasetShard",
    "DatasetShardInput",
    "DecisionKind",
    "DigestInput",
    "EvaluateInput",
    "EvaluationMetrics",
    "EvaluationResult",
    "FineTuneInput",
    "FineTuneJob",
    "GatherEvidenceInput",
    "OpenRoundInput",
    "OperatorRequest",
    "PairedTest",
    "PostProposalInput",
    "PreflightInput",
    "PreflightResult",
    "Progress",
    "ProposalMessage",
    "ProposalMessagesInput",
    "ProposalStatus",
    "ProposeInput",
    "ProposeResult",
    "Rate",
    "RateLimitWait",
    "RecordDecisionInput",
    "ReferenceFigures",
    "ReminderInput",
    "ResolveGroupsInput",
    "ResumedRound",
    "Resumption",
    "RoundInput",
    "RoundResult",
    "RoundStatus",
    "RoundSummaryInput",
    "SaveVersionInput",
    "SlackMessageRef",
    "UpdateProposalMessageInput",
    "Voters",
    "Waiting",
    "Withdrawal",
]
