"""What the round learns about a proposal before any person sees it.

Check verdicts, the principles it touches or contradicts, and a preview of its
effect: facts attached to a proposal and shown to reviewers. They import only
pydantic because workflows carry them inside the Temporal sandbox.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from constitution.models import Proposal


class Finding(BaseModel):
    """Base of the facts attached to a proposal: records, so frozen, refusing unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Verdict(StrEnum):
    """What a check made of a draft; only `merge` and `drop` keep it from reviewers."""

    passed = "pass"
    flagged = "flag"
    """Kept, with something a reviewer must see (and possibly a stricter policy)."""
    merged = "merge"
    """Folded into another proposal, which keeps its evidence."""
    dropped = "drop"
    """Never reaches a reviewer."""


class CheckVerdict(Finding):
    """One check's verdict on a proposal and why: reviewers see what was checked, analysts why."""

    check: str = Field(description="schema, grounded, target, protected, duplicate, evidence_data")
    verdict: Verdict
    detail: str = ""


# Relation and Conflict are part of the structured-output schema sent with the
# conflict prompt, and pydantic puts a class's docstring into that schema: a
# docstring added or reworded here changes what the model is asked, so these two
# keep theirs as they were (`conflicts.v2` tells the model what each relation is).
class Relation(StrEnum):  # noqa: D101
    touches = "touches"
    contradicts = "contradicts"


class Conflict(Finding):
    """One existing principle the proposal touches or contradicts, and why the
    model thinks so."""  # noqa: D205, D209

    principle: str = Field(pattern=r"^P[0-9]{1,4}$")
    relation: Relation
    reasoning: str = Field(min_length=1, max_length=1000)


class ConflictAnalysis(BaseModel):
    """Structured output of the conflict prompt."""

    model_config = ConfigDict(extra="forbid")
    conflicts: list[Conflict] = Field(max_length=50)


class ImpactSample(Finding):
    """One held-out prompt answered under the current and the amended constitution, each graded."""

    prompt_id: str
    prompt: str
    current_answer: str
    amended_answer: str
    current_verdict: str
    amended_verdict: str

    @property
    def changed(self) -> bool:
        """The amendment changes how this prompt's answer is graded: what a reviewer looks for."""
        return self.current_verdict != self.amended_verdict


class ImpactPreview(Finding):
    """What the amendment would change on a few held-out prompts, shown before anyone decides."""

    samples: list[ImpactSample]
    summary: str
    unavailable: str | None = Field(
        default=None,
        description="Why no preview could be made (the grader failed); the proposal still "
        "goes to review, and `summary` says so.",
    )

    @classmethod
    def unavailable_because(cls, reason: str) -> ImpactPreview:
        """A preview that could not be made: optional, so it never holds a proposal back."""
        return cls(samples=[], summary=f"Impact preview unavailable: {reason}", unavailable=reason)


def proposal_summary(proposal: Proposal) -> list[str]:
    """What a proposal went through before review, as plain lines for terminals (CLI and demo).

    Callers escape them for their markup.
    """
    draft = proposal.draft
    strict = "  STRICT REVIEW" if proposal.strict_review else ""
    lines = [
        f"{proposal.id} {draft.kind.value} {draft.target or 'new'}{strict}  "
        f"({proposal.prompt_version}, {proposal.model}, {len(proposal.request_ids)} model calls)",
        f"  evidence: {', '.join(draft.evidence) or '-'}",
    ]
    lines += [f"  check {c.check}: {c.verdict.value} - {c.detail}" for c in proposal.checks]
    lines += [f"  {c.relation.value} {c.principle}: {c.reasoning}" for c in proposal.conflicts]
    if proposal.impact is not None:
        lines.append(f"  impact: {proposal.impact.summary}")
    return lines
