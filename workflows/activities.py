"""The activities a round runs, as typed definitions.

The workflow calls these (`workflow.execute_activity_method(
SlackActivities.post_proposal, ...)`); the classes in `activities/` subclass
them and implement each method. mypy checks the workflow's arguments and
results against these signatures and each implementation's override against
them too, so a changed activity signature fails `make lint` on both sides.
Keeping the definitions here, apart from their implementations, lets the
workflow (and every client that imports it: gateway, CLI) name activities
without importing the Slack, OpenAI and PostgreSQL clients they use.

Each method is abstract: a worker cannot be built from a class that leaves
one unimplemented. The activity names are the method names, which recorded
workflow histories refer to; never rename one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from temporalio import activity

from constitution.contracts import (
    CancelFineTuneInput,
    CheckProposalsInput,
    Dataset,
    DatasetInput,
    DatasetShard,
    DatasetShardInput,
    DecisionAttemptInput,
    DigestInput,
    EvaluateInput,
    EvaluationResult,
    FineTuneInput,
    FineTuneJob,
    GatherEvidenceInput,
    OpenRoundInput,
    PostProposalInput,
    PreflightInput,
    PreflightResult,
    ProposalMessagesInput,
    ProposeInput,
    ProposeResult,
    RecordDecisionInput,
    ReminderInput,
    ResolveGroupsInput,
    RoundSummaryInput,
    SaveVersionInput,
    SlackMessageRef,
    UpdateProposalMessageInput,
)
from constitution.evidence import EvidenceSelection
from constitution.models import ConstitutionVersion, Proposal, TransitionRecord


class LedgerActivities(ABC):
    """Writes to the ledger and reads of constitution versions.

    Each write is idempotent, so Temporal may retry any of them.
    """

    @activity.defn
    @abstractmethod
    async def open_round(self, request: OpenRoundInput) -> ConstitutionVersion:
        """Record the round and return the constitution version it amends."""

    @activity.defn
    @abstractmethod
    async def load_version(self, number: int | None) -> ConstitutionVersion:
        """A stored version (the latest when `number` is None)."""

    @activity.defn
    @abstractmethod
    async def record_transitions(self, records: list[TransitionRecord]) -> int:
        """Append transitions to the round's chain; answers how many were new."""

    @activity.defn
    @abstractmethod
    async def save_proposals(self, proposals: list[Proposal]) -> None:
        """Store the proposals that go to review."""

    @activity.defn
    @abstractmethod
    async def record_decision(self, request: RecordDecisionInput) -> bool:
        """Store a reviewer's decision; answers whether it was new."""

    @activity.defn
    @abstractmethod
    async def record_decision_attempt(self, request: DecisionAttemptInput) -> None:
        """Keep a refused decision that the gateway could not write when it was refused."""

    @activity.defn
    @abstractmethod
    async def save_version(self, request: SaveVersionInput) -> ConstitutionVersion:
        """Store the round's new constitution version, numbered in order of creation."""


class EvidenceActivities(ABC):
    """What the model reads before it proposes."""

    @activity.defn
    @abstractmethod
    async def gather_evidence(self, request: GatherEvidenceInput) -> EvidenceSelection:
        """Read, store and select the round's evidence, in chunks of bounded size."""


class ModelActivities(ABC):
    """The model proposing amendments."""

    @activity.defn
    @abstractmethod
    async def propose_amendments(self, request: ProposeInput) -> ProposeResult:
        """Draft proposals from one chunk of evidence."""


class CheckActivities(ABC):
    """Checks that run on every draft before a person sees it."""

    @activity.defn
    @abstractmethod
    async def check_proposals(self, request: CheckProposalsInput) -> ProposeResult:
        """Check all drafts of the round; answers those that go to review."""


class SlackActivities(ABC):
    """Messages to reviewers.

    Errors no retry can fix are raised as `ErrorType.slack_permanent_error`,
    which blocks the round.
    """

    @activity.defn
    @abstractmethod
    async def post_proposal(self, request: PostProposalInput) -> SlackMessageRef:
        """Post a proposal's message, once however often it is retried."""

    @activity.defn
    @abstractmethod
    async def update_proposal_message(
        self, request: UpdateProposalMessageInput
    ) -> SlackMessageRef | None:
        """Rewrite a proposal's message to show its state and votes.

        Answers the fresh message posted in its place when the message (or its
        channel) is gone and the proposal still waits for decisions; None otherwise.
        """

    @activity.defn
    @abstractmethod
    async def post_proposals(self, request: ProposalMessagesInput) -> list[SlackMessageRef]:
        """Post several proposals' messages in order, each once however often it is retried."""

    @activity.defn
    @abstractmethod
    async def update_proposal_messages(
        self, request: ProposalMessagesInput
    ) -> list[SlackMessageRef | None]:
        """Rewrite several proposals' messages; each answer as `update_proposal_message`'s."""

    @activity.defn
    @abstractmethod
    async def post_reminder(self, request: ReminderInput) -> None:
        """Remind reviewers in the thread of each pending proposal."""

    @activity.defn
    @abstractmethod
    async def post_digest(self, request: DigestInput) -> None:
        """Post a digest of what is still pending to the review channel."""

    @activity.defn
    @abstractmethod
    async def post_round_summary(self, request: RoundSummaryInput) -> None:
        """Post the outcome of the round's review."""

    @activity.defn
    @abstractmethod
    async def resolve_reviewer_groups(self, request: ResolveGroupsInput) -> dict[str, list[str]]:
        """Members of each reviewer user group."""


class TrainingActivities(ABC):
    """Retraining under the new version: a dataset, then a fine-tune job."""

    @activity.defn
    @abstractmethod
    async def preflight(self, request: PreflightInput) -> PreflightResult:
        """Whether the round's training backend can run, checked before any proposal."""

    @activity.defn
    @abstractmethod
    async def generate_dataset(self, request: DatasetInput) -> Dataset:
        """Generate the training data under the new version in one activity, and assemble it.

        Rounds whose set is one shard call this; so do rounds recorded before shards.
        """

    @activity.defn
    @abstractmethod
    async def generate_dataset_shard(self, request: DatasetShardInput) -> DatasetShard:
        """Generate one shard of the training data, resuming from what the ledger kept."""

    @activity.defn
    @abstractmethod
    async def assemble_dataset(self, request: DatasetInput) -> Dataset:
        """Write the kept examples to one content-addressed file, streamed from the ledger."""

    @activity.defn
    @abstractmethod
    async def start_fine_tune(self, request: FineTuneInput) -> FineTuneJob:
        """Start the round's fine-tune job, once per round."""

    @activity.defn
    @abstractmethod
    async def await_fine_tune(self, job: FineTuneJob) -> FineTuneJob:
        """The finished job; retried (or completed by a callback) until it ends."""

    @activity.defn
    @abstractmethod
    async def cancel_fine_tune(self, request: CancelFineTuneInput) -> None:
        """Stop a job whose round was cancelled."""


class EvaluationActivities(ABC):
    """The gate between a candidate model and promotion."""

    @activity.defn
    @abstractmethod
    async def evaluate(self, request: EvaluateInput) -> EvaluationResult:
        """Answer and grade the held-out prompts with candidate and baseline."""


DEFINITIONS: tuple[type[ABC], ...] = (
    LedgerActivities,
    EvidenceActivities,
    ModelActivities,
    CheckActivities,
    SlackActivities,
    TrainingActivities,
    EvaluationActivities,
)


def activity_names(definition: type[ABC]) -> Iterator[str]:
    """The activities a definition class declares, by name."""
    for name, member in vars(definition).items():
        if callable(member) and hasattr(member, "__temporal_activity_definition"):
            yield name


def implementations(*instances: object) -> list[Callable[..., Any]]:
    """What a worker registers: the bound activity methods, one per defined activity.

    The instances implement the definitions above. An instance that is not an
    implementation, or a definition left without one, is refused here rather
    than as an activity Temporal cannot find at run time.
    """
    found: dict[type[ABC], object] = {}
    for instance in instances:
        definition = next((d for d in DEFINITIONS if isinstance(instance, d)), None)
        if definition is None:
            raise TypeError(f"{type(instance).__name__} implements no activity definition")
        found[definition] = instance
    missing = [d.__name__ for d in DEFINITIONS if d not in found]
    if missing:
        raise TypeError(f"no implementation of {', '.join(missing)}")
    return [
        getattr(found[definition], name)
        for definition in DEFINITIONS
        for name in activity_names(definition)
    ]
