"""The pure domain of amend: principles, versions, proposals, decisions, rounds, lifecycles.

Imports nothing of the project.

It does no I/O but for reading files, in two modules only and always named
to it: `samples` reads the sample data that ships as package data (the
constitution, evidence and prompt sets; `load_evidence` reads a named
evidence file for the tests, while a round's evidence files are
read by `activities.evidence`); `prompt_sets` reads the training and
evaluation prompt files a round names (or the shipped ones), so a bad file is
refused with its path and line wherever it is loaded. Nothing here writes,
and nothing here talks to a network or a database.
"""

from constitution.amendment import (
    AmendmentConflict,
    apply_amendments,
    diff_versions,
    render_markdown,
)
from constitution.errors import ErrorType
from constitution.lifecycle import (
    PROPOSAL_TRANSITIONS,
    RESUME_TRANSITIONS,
    RETRAINING_STAGES,
    ROUND_TRANSITIONS,
    SETTLED_PROPOSAL_STATES,
    TERMINAL_ROUND_STATES,
    IllegalTransition,
    ProposalState,
    RoundState,
    advance_proposal,
    advance_round,
    resume_round,
)
from constitution.models import (
    ConstitutionVersion,
    Decision,
    DecisionKind,
    DecisionOutcome,
    DecisionRequest,
    EvidenceItem,
    EvidenceKind,
    GateSpec,
    Grade,
    PreferenceJudgement,
    Principle,
    Proposal,
    ProposalBatch,
    ProposalDraft,
    ProposalKind,
    RoundSpec,
    TrainingSpec,
    TransitionRecord,
    is_proposal_of,
    needs_strict_review,
    round_id_of,
    round_workflow_id,
)

__all__ = [
    "PROPOSAL_TRANSITIONS",
    "RESUME_TRANSITIONS",
    "RETRAINING_STAGES",
    "ROUND_TRANSITIONS",
    "SETTLED_PROPOSAL_STATES",
    "TERMINAL_ROUND_STATES",
    "AmendmentConflict",
    "ConstitutionVersion",
    "Decision",
    "DecisionKind",
    "DecisionOutcome",
    "DecisionRequest",
    "ErrorType",
    "EvidenceItem",
    "EvidenceKind",
    "GateSpec",
    "Grade",
    "IllegalTransition",
    "PreferenceJudgement",
    "Principle",
    "Proposal",
    "ProposalBatch",
    "ProposalDraft",
    "ProposalKind",
    "ProposalState",
    "RoundSpec",
    "RoundState",
    "TrainingSpec",
    "TransitionRecord",
    "advance_proposal",
    "advance_round",
    "apply_amendments",
    "diff_versions",
    "is_proposal_of",
    "needs_strict_review",
    "render_markdown",
    "resume_round",
    "round_id_of",
    "round_workflow_id",
]
