"""The shapes that cross Temporal's boundaries: workflow input and status,
activity inputs and results.

They live beside the domain, not in `workflows/` or `activities/`, because
the workflow, the activities, the gateway and the CLI all speak them and the
arrows of the layout point down to `constitution/` only.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from constitution.lifecycle import ProposalState, RoundState
from constitution.models import (
    ConstitutionVersion,
    Decision,
    DecisionKind,
    EvidenceItem,
    GateSpec,
    Proposal,
    RoundSpec,
    TrainingSpec,
)
from constitution.review import adopted_decision


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlackMessageRef(Contract):
    channel: str
    ts: str


class ProposalStatus(Contract):
    proposal: Proposal
    state: ProposalState = ProposalState.drafted
    decisions: list[Decision] = Field(default_factory=list)
    message: SlackMessageRef | None = None
    accepts_needed: int = Field(default=1, description="Set by the round's review policy.")
    message_stale: bool = Field(
        default=False, description="Its Slack message does not show the latest decision yet."
    )

    @property
    def settled(self) -> bool:
        return self.state not in (ProposalState.drafted, ProposalState.posted)

    @property
    def final_decision(self) -> Decision | None:
        """The decision a settled proposal adopts (its text, when modified)."""
        return adopted_decision(self.decisions)

    def voted(self, reviewer: str) -> Decision | None:
        return next((d for d in self.decisions if d.reviewer == reviewer), None)


class EvaluationMetrics(Contract):
    model: str
    harm_rate: float
    overrefusal_rate: float
    awareness_gap: float
    harmful_prompts: int
    benign_prompts: int


class EvaluationResult(Contract):
    candidate: EvaluationMetrics
    baseline: EvaluationMetrics
    passed: bool
    reasons: list[str]
    rubric_version: str


class Progress(Contract):
    """Long work in a round (dataset generation, fine-tuning, evaluation), for watchers."""

    stage: str
    done: int = 0
    total: int = 0
    detail: str = ""


class RoundStatus(Contract):
    """Everything the round knows about itself; the `status` query's answer
    and the state carried across continue-as-new."""

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

    @property
    def pending(self) -> list[ProposalStatus]:
        return [p for p in self.proposals if p.state is ProposalState.posted]

    @property
    def adopted(self) -> list[ProposalStatus]:
        """Proposals accepted as proposed or with a reviewer's changes."""
        return [
            p for p in self.proposals if p.state in (ProposalState.accepted, ProposalState.modified)
        ]

    def find(self, proposal_id: str) -> ProposalStatus | None:
        return next((p for p in self.proposals if p.proposal.id == proposal_id), None)


class RoundInput(Contract):
    spec: RoundSpec
    carried: RoundStatus | None = Field(
        default=None, description="Set when the round continues as new."
    )


class RoundResult(Contract):
    round_id: str
    state: RoundState
    base_version: int | None
    result_version: int | None
    candidate_model: str | None
    passed_gate: bool | None


# -- activity inputs and results ------------------------------------------------


class OpenRoundInput(Contract):
    spec: RoundSpec


class GatherEvidenceInput(Contract):
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
    proposals: list[Proposal]
    request_ids: list[str] = Field(default_factory=list)
    dropped: list[Proposal] = Field(
        default_factory=list, description="Drafts the checks kept from reviewers, with verdicts."
    )


class CheckProposalsInput(Contract):
    round_id: str
    constitution: ConstitutionVersion
    drafted: list[ProposeResult]
    max_proposals: int
    evidence_ids: list[str]
    suspicious_ids: list[str] = Field(default_factory=list)


class PostProposalInput(Contract):
    workflow_id: str
    status: ProposalStatus
    constitution: ConstitutionVersion
    repost: bool = Field(
        default=False, description="Post again though the proposal has a message (operator)."
    )


class UpdateProposalMessageInput(Contract):
    workflow_id: str
    status: ProposalStatus
    constitution: ConstitutionVersion


class ReminderInput(Contract):
    round_id: str
    pending: list[ProposalStatus]
    reminder_number: int
    escalate_to: str | None


class DigestInput(Contract):
    round_id: str
    pending: list[ProposalStatus]
    number: int


class ResolveGroupsInput(Contract):
    groups: list[str]


class RoundSummaryInput(Contract):
    round_id: str
    state: RoundState
    proposals: list[ProposalStatus]
    result_version: int | None


class RecordDecisionInput(Contract):
    round_id: str
    decision_id: str
    decision: Decision


class SaveVersionInput(Contract):
    round_id: str
    version: ConstitutionVersion


class DatasetInput(Contract):
    round_id: str
    constitution: ConstitutionVersion
    training: TrainingSpec


class Dataset(Contract):
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
    round_id: str
    dataset: Dataset
    training: TrainingSpec


class FineTuneJob(Contract):
    job_id: str
    status: str
    fine_tuned_model: str | None = None
    error: str | None = None
    backend: str = "openai"
    poll_url: str | None = Field(
        default=None, description="HTTP trainer: where the job's status is read, if it has one."
    )


class CancelFineTuneInput(Contract):
    round_id: str
    job_id: str
    backend: str


class OperatorRequest(Contract):
    """An operator's order to a round (cancel, re-post): who asked, and why.
    The actor is recorded on every transition the order causes."""

    actor: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=2000)


class EvaluateInput(Contract):
    round_id: str
    constitution: ConstitutionVersion
    candidate_model: str
    baseline_model: str
    gate: GateSpec
    prompt_file: str | None = Field(
        default=None, description="The held-out prompt set; the shipped one when unset."
    )


__all__ = [
    "CancelFineTuneInput",
    "CheckProposalsInput",
    "Dataset",
    "DatasetInput",
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
    "PostProposalInput",
    "Progress",
    "ProposalStatus",
    "ProposeInput",
    "ProposeResult",
    "RecordDecisionInput",
    "ReminderInput",
    "ResolveGroupsInput",
    "RoundInput",
    "RoundResult",
    "RoundStatus",
    "RoundSummaryInput",
    "SaveVersionInput",
    "SlackMessageRef",
    "UpdateProposalMessageInput",
]
