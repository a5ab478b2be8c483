"""Checks, conflict analysis and impact preview: everything a proposal goes
through between the model drafting it and a reviewer seeing it.

The rule-based checks are pure (`constitution.checks`); this activity adds the
model's view (which principles a proposal touches or contradicts, and how the
answers to held-out prompts change under it) and records the drafts that were
dropped, with their verdicts, in the ledger.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.liveness import beat, heartbeating
from activities.model import Answer, Model, grade_answer
from activities.prompts import Prompt
from constitution import Decision, DecisionKind, Grade, apply_amendments
from constitution.checks import CheckContext, check_proposals
from constitution.contracts import CheckProposalsInput, ProposeResult
from constitution.errors import ErrorType
from constitution.findings import Conflict, ConflictAnalysis, ImpactPreview, ImpactSample
from constitution.models import ConstitutionVersion, Proposal
from constitution.samples import load_prompts
from ledger.store import Ledger
from workflows import activities as defined

OPTIONAL_STEP_FAILURES = frozenset(
    {ErrorType.model_output_invalid, ErrorType.model_request_refused}
)
"""Failures that make an optional step (the impact preview) unavailable rather
than fail the round: what asking again cannot fix."""


class CheckActivities(defined.CheckActivities):
    def __init__(
        self,
        model: Model,
        ledger: Ledger,
        *,
        grader_model: str,
        duplicate_threshold: float,
        impact_sample_size: int,
    ) -> None:
        self.model = model
        self.ledger = ledger
        self.grader_model = grader_model
        self.duplicate_threshold = duplicate_threshold
        self.impact_sample_size = impact_sample_size
        # Read once per worker, not once per proposal.
        self.impact_prompts = load_prompts("eval_prompts.jsonl")[:impact_sample_size]
        self.conflict_prompt = Prompt.load("conflicts.v2")
        self.answer_prompt = Prompt.load("impact_answer.v1")
        self.rubric = Prompt.load("grade.v2")

    @activity.defn
    @heartbeating
    async def check_proposals(self, request: CheckProposalsInput) -> ProposeResult:
        drafted = [p for result in request.drafted for p in result.proposals]
        kept, dropped = check_proposals(
            drafted,
            CheckContext(
                constitution=request.constitution,
                evidence_ids=frozenset(request.evidence_ids),
                suspicious_ids=frozenset(request.suspicious_ids),
                max_proposals=request.max_proposals,
                duplicate_threshold=self.duplicate_threshold,
            ),
        )
        kept, dropped = _number(request.round_id, kept, dropped)
        kept = list(
            await asyncio.gather(*(self._scrutinise(p, request.constitution) for p in kept))
        )
        await self.ledger.record_dropped_drafts(request.round_id, dropped)
        activity.logger.info(
            "round %s: %d drafts, %d kept, %d dropped or merged",
            request.round_id,
            len(drafted),
            len(kept),
            len(dropped),
        )
        return ProposeResult(
            proposals=kept,
            dropped=dropped,
            request_ids=[r for result in request.drafted for r in result.request_ids],
        )

    async def _scrutinise(self, proposal: Proposal, constitution: ConstitutionVersion) -> Proposal:
        (conflicts, conflict_answer), (impact, impact_ids, impact_prompts) = await asyncio.gather(
            self._conflicts(proposal, constitution), self._impact(proposal, constitution)
        )
        beat(proposal.id)
        prompts = [
            *(proposal.prompt_versions or [proposal.prompt_version]),
            self.conflict_prompt.name,
            *conflict_answer.prompts,
            *impact_prompts,
        ]
        return proposal.model_copy(
            update={
                "prompt_versions": list(dict.fromkeys(prompts)),
                "conflicts": conflicts,
                "impact": impact,
                "request_ids": [*proposal.request_ids, *conflict_answer.calls, *impact_ids],
            }
        )

    async def _conflicts(
        self, proposal: Proposal, constitution: ConstitutionVersion
    ) -> tuple[list[Conflict], Answer[ConflictAnalysis]]:
        answer = await self.model.structured(
            ConflictAnalysis,
            self.conflict_prompt.text,
            f"<constitution>{_principles_json(constitution)}</constitution>\n"
            f"<proposal>{proposal.draft.model_dump_json()}</proposal>",
        )
        # Only principles that exist: the model's word is not taken for that.
        known = [
            c for c in answer.value.conflicts if constitution.principle(c.principle) is not None
        ]
        return list({c.principle: c for c in known}.values()), answer

    async def _impact(
        self, proposal: Proposal, constitution: ConstitutionVersion
    ) -> tuple[ImpactPreview | None, list[str], list[str]]:
        """Answer a few held-out prompts under the current and the amended
        constitution and grade each answer; summarise what changed.

        The preview is optional: when the server refuses the calls or the
        grader answers no grade, the proposal goes to review with the preview
        marked unavailable and why. A rate limit or a server error is not such
        a failure: the round waits for it, or Temporal retries the checks.
        """
        if self.impact_sample_size == 0:
            return None, [], []
        try:
            return await self._preview(proposal, constitution)
        except ApplicationError as error:
            if error.type not in OPTIONAL_STEP_FAILURES:
                raise
            activity.logger.warning("impact preview of %s unavailable: %s", proposal.id, error)
            return ImpactPreview.unavailable_because(error.message), [], []

    async def _preview(
        self, proposal: Proposal, constitution: ConstitutionVersion
    ) -> tuple[ImpactPreview, list[str], list[str]]:
        accepted = Decision(
            proposal_id=proposal.id,
            kind=DecisionKind.accept,
            reviewer="impact-preview",
            decided_at=datetime.now(UTC),
        )
        amended = apply_amendments(constitution, [(proposal, accepted)], round_id=proposal.round_id)
        results = await asyncio.gather(
            *(self._sample(row, constitution, amended) for row in self.impact_prompts)
        )
        samples = [sample for sample, _, _ in results]
        request_ids = [r for _, ids, _ in results for r in ids]
        prompts = [self.answer_prompt.name, self.rubric.name]
        prompts += [p for _, _, used in results for p in used]
        preview = ImpactPreview(samples=samples, summary=_impact_summary(samples))
        return preview, request_ids, prompts

    async def _sample(
        self, row: dict[str, str], current: ConstitutionVersion, amended: ConstitutionVersion
    ) -> tuple[ImpactSample, list[str], list[str]]:
        (now, now_ids, now_prompts), (then, then_ids, then_prompts) = await asyncio.gather(
            self._answer_and_grade(row["prompt"], current),
            self._answer_and_grade(row["prompt"], amended),
        )
        sample = ImpactSample(
            prompt_id=row["id"],
            prompt=row["prompt"],
            current_answer=now[0],
            amended_answer=then[0],
            current_verdict=_verdict(now[1]),
            amended_verdict=_verdict(then[1]),
        )
        return sample, [*now_ids, *then_ids], [*now_prompts, *then_prompts]

    async def _answer_and_grade(
        self, prompt: str, constitution: ConstitutionVersion
    ) -> tuple[tuple[str, Grade], list[str], list[str]]:
        principles = _principles_json(constitution)
        answer, answer_id = await self.model.text_with_id(
            f"{self.answer_prompt.text}\n<constitution>{principles}</constitution>", prompt
        )
        grade = await grade_answer(
            self.model, self.rubric, self.grader_model, principles, prompt, answer
        )
        return (answer, grade.value), [answer_id, *grade.calls], grade.prompts


def _principles_json(constitution: ConstitutionVersion) -> str:
    return json.dumps([p.model_dump(mode="json") for p in constitution.principles])


def _verdict(grade: Grade) -> str:
    if grade.harmful:
        return "harmful"
    return "refused" if grade.refused else "helped"


def _impact_summary(samples: list[ImpactSample]) -> str:
    changed = [s for s in samples if s.changed]
    if not changed:
        return f"No change on {len(samples)} held-out prompt(s)."
    moves = "; ".join(f"{s.prompt_id}: {s.current_verdict} -> {s.amended_verdict}" for s in changed)
    return f"{len(changed)} of {len(samples)} held-out prompt(s) change: {moves}."


def _number(
    round_id: str, kept: list[Proposal], dropped: list[Proposal]
) -> tuple[list[Proposal], list[Proposal]]:
    """Kept proposals get the round's ids (`<round>-p1`...); verdicts that
    name a draft id are rewritten to the id reviewers will see."""
    renamed = {p.id: f"{round_id}-p{i}" for i, p in enumerate(kept, start=1)}

    def rename(text: str) -> str:
        for old, new in sorted(renamed.items(), key=lambda pair: -len(pair[0])):
            text = text.replace(old, new)
        return text

    def renamed_checks(p: Proposal) -> Proposal:
        checks = [c.model_copy(update={"detail": rename(c.detail)}) for c in p.checks]
        return p.model_copy(update={"id": renamed.get(p.id, p.id), "checks": checks})

    return [renamed_checks(p) for p in kept], [renamed_checks(p) for p in dropped]
