"""Evaluation of a candidate against the baseline, graded against the new
constitution by a grader model, and the gate that promotes or holds it.

Every prompt is answered `samples_per_prompt` times by each model at the
spec's temperature (the sample number is the request's seed), and each
red-team prompt also under every cue style (`constitution/data/cue_styles.json`):
a model that is only safe when it knows it is watched shows up as an
evaluation-awareness gap. The gate (`constitution.gate.judge`) tests the
paired answers. Then each adopted amendment's own effect is measured on the
baseline with the constitution in context, with and without it.

The fixed reference model (`AMEND_REFERENCE_MODEL`) is measured on the same
pairs for the trend across versions: from the baseline's answers when it is
the baseline (no extra calls), else by answering beside the two. What the
candidate got wrong is stored with the evaluation as its failures
(`constitution.failures`), the evidence a later round can start from.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.inspect_eval import InspectRun, missing_extra
from activities.liveness import beat, heartbeating
from activities.model import Model, grade_answer
from activities.prompts import Prompt
from activities.training import ANSWER_SYSTEM
from constitution import ConstitutionVersion, Grade
from constitution.contracts import (
    AmendmentEffect,
    EvaluateInput,
    EvaluationResult,
    Progress,
)
from constitution.errors import ErrorType
from constitution.failures import evaluation_failures
from constitution.gate import GradedAnswer, judge, pair, points, reference_figures
from constitution.models import EvaluationBackend, GateSpec
from constitution.prompt_sets import (
    CueStyle,
    EvalKind,
    EvalPrompt,
    PromptSetError,
    framings,
    load_cue_styles,
    load_eval_prompts,
)
from constitution.statistics import paired_difference, two_sided_sign_test
from ledger.store import Ledger
from workflows import activities as defined

Answerer = Callable[[str, str, int], Awaitable[tuple[str, Grade]]]
"""Answer a prompt (with the given system message and sample number): the answer and its grade."""

RUBRIC = "grade.v2"


class EvaluationActivities(defined.EvaluationActivities):
    def __init__(
        self,
        model: Model,
        grader_model: str,
        ledger: Ledger,
        default_prompt_file: str | None = None,
        reference_model: str | None = None,
        artifacts_root: Path = Path(".amend/artifacts"),
    ) -> None:
        """`reference_model` unset: each round's baseline is its own reference;
        `artifacts_root` holds the Inspect logs of rounds evaluated with Inspect."""
        self.model = model
        self.artifacts_root = artifacts_root
        self.reference_model = reference_model
        self.grader_model = grader_model
        self.ledger = ledger
        self.default_prompt_file = default_prompt_file
        self.rubric = Prompt.load(RUBRIC)
        self.in_context = Prompt.load("impact_answer.v1")
        self.styles = load_cue_styles()

    @activity.defn
    @heartbeating
    async def evaluate(self, request: EvaluateInput) -> EvaluationResult:
        if request.gate.evaluation_backend is EvaluationBackend.inspect:
            missing = missing_extra()
            if missing is not None:
                raise missing
        prompt_file = request.prompt_file or self.default_prompt_file
        try:
            prompts = load_eval_prompts(prompt_file)
        except PromptSetError as error:
            raise ApplicationError(
                str(error), type=ErrorType.prompt_set_error, non_retryable=True
            ) from error
        gate = request.gate
        constitution = _principles_json(request.constitution)
        base = await self._parent(request.constitution)
        changes = _changes(base, request.constitution) if base is not None else []
        per_model = gate.samples_per_prompt * (
            len(prompts) + len(self.styles) * sum(p.kind is EvalKind.red_team for p in prompts)
        )
        in_context = gate.samples_per_prompt * len(prompts) * (1 + len(changes)) if changes else 0
        reference_model = self.reference_model or request.baseline_model
        separate_reference = reference_model != request.baseline_model
        total = (3 if separate_reference else 2) * per_model + in_context
        graded = 0

        def counted(model: str) -> None:
            nonlocal graded
            graded += 1
            beat(Progress(stage="evaluating", done=graded, total=total, detail=f"graded {model}"))

        def answerer(model: str, system: str) -> Answerer:
            async def answer(prompt: str, rubric_context: str, sample: int) -> tuple[str, Grade]:
                result = await self._grade(
                    model, system, prompt, rubric_context, sample, gate.temperature
                )
                counted(model)
                return result

            return answer

        models = [request.candidate_model, request.baseline_model]
        if separate_reference:
            models.append(reference_model)
        inspect_log: str | None = None
        if gate.evaluation_backend is EvaluationBackend.inspect:
            log_dir = self.artifacts_root / "inspect" / request.round_id
            answered = await self._inspect_answers(
                prompts, models, constitution, gate, log_dir, counted
            )
            inspect_log = str(log_dir.resolve())
        else:
            # The models at once: the model's concurrency bound keeps the server busy.
            answered = await asyncio.gather(
                *(
                    self._answers(prompts, answerer(model, ANSWER_SYSTEM), constitution, gate)
                    for model in models
                )
            )
        candidate, baseline = answered[0], answered[1]
        judgement = judge(
            request.candidate_model,
            candidate,
            request.baseline_model,
            baseline,
            self.styles,
            gate,
        )
        attribution = []
        if base is not None and changes:
            attribution = await self._attribute(
                request, base, changes, prompts, answerer, constitution
            )
        reference = reference_figures(
            candidate,
            reference_model,
            answered[2] if separate_reference else baseline,
            self.styles,
            gate,
        )
        failures = evaluation_failures(
            request.round_id,
            request.candidate_model,
            candidate,
            prompts,
            self.styles,
            {p.id for p in request.constitution.principles},
        )
        passed = judgement.outcome == "passed"
        await self.ledger.record_evaluation(
            round_id=request.round_id,
            constitution_version=request.constitution.number,
            candidate_model=request.candidate_model,
            baseline_model=request.baseline_model,
            candidate=judgement.candidate.model_dump(),
            baseline=judgement.baseline.model_dump(),
            passed=passed,
            reasons=judgement.reasons,
            rubric_version=self.rubric.name,
            prompt_set=prompt_file or "shipped",
            outcome=judgement.outcome,
            tests=[t.model_dump() for t in judgement.tests],
            attribution=[e.model_dump() for e in attribution],
            settings={
                "samples_per_prompt": gate.samples_per_prompt,
                "temperature": gate.temperature,
                "significance": gate.significance,
                "attribution_model": request.baseline_model if attribution else None,
                "evaluation_backend": gate.evaluation_backend.value,
                "inspect_log": inspect_log,
            },
            reference=reference,
            failures=failures,
        )
        return EvaluationResult(
            candidate=judgement.candidate,
            baseline=judgement.baseline,
            passed=passed,
            reasons=judgement.reasons,
            rubric_version=self.rubric.name,
            outcome=judgement.outcome,
            tests=judgement.tests,
            samples_per_prompt=gate.samples_per_prompt,
            temperature=gate.temperature,
            significance=gate.significance,
            attribution=attribution,
            attribution_model=request.baseline_model if attribution else None,
            evaluation_backend=gate.evaluation_backend.value,
            inspect_log=inspect_log,
        )

    async def _inspect_answers(
        self,
        prompts: Sequence[EvalPrompt],
        models: Sequence[str],
        constitution: str,
        gate: GateSpec,
        log_dir: Path,
        counted: Callable[[str], None],
    ) -> list[list[GradedAnswer]]:
        """Each model's graded answers, from an Inspect AI task run against the model
        server and graded by the same rubric and grader as the built-in path."""

        async def grade(prompt: str, answer: str) -> Grade:
            return await self._grade_answer(prompt, answer, constitution)

        client = self.model.client
        run = InspectRun(
            prompts=prompts,
            styles=self.styles,
            gate=gate,
            system=ANSWER_SYSTEM,
            base_url=str(client.base_url),
            api_key=client.api_key,
            grade=grade,
            log_dir=log_dir,
            on_graded=counted,
            max_connections=self.model.concurrency,
            attempt_timeout_s=(
                max(1, round(client.timeout)) if isinstance(client.timeout, int | float) else None
            ),
        )
        answered = await run.answers(models)
        return [answered[model] for model in models]

    async def _answers(
        self,
        prompts: Sequence[EvalPrompt],
        answer: Answerer,
        constitution: str,
        gate: GateSpec,
        styles: Sequence[CueStyle] | None = None,
    ) -> list[GradedAnswer]:
        """Every prompt, sample and (red-team) cue style answered and graded."""
        framed = framings(
            prompts, self.styles if styles is None else styles, gate.samples_per_prompt
        )
        grades = await asyncio.gather(
            *(answer(text, constitution, sample) for _, _, text, sample in framed)
        )
        return [
            GradedAnswer(
                p.id, p.category, p.kind, style, sample, g.harmful, g.refused, text, g.reason
            )
            for (p, style, _, sample), (text, g) in zip(framed, grades, strict=True)
        ]

    async def _attribute(
        self,
        request: EvaluateInput,
        base: ConstitutionVersion,
        changes: list[tuple[str, str]],
        prompts: Sequence[EvalPrompt],
        answerer: Callable[[str, str], Answerer],
        constitution: str,
    ) -> list[AmendmentEffect]:
        """Each amendment's own effect: the baseline answers with the constitution in
        context, with and without that one amendment (no retraining), graded alike."""
        gate = request.gate
        proposals = await self._proposals_by_target(request.round_id)

        def system_for(version: ConstitutionVersion) -> str:
            return (
                f"{self.in_context.text}\n<constitution>{_principles_json(version)}</constitution>"
            )

        model = request.baseline_model
        with_all = await self._answers(
            prompts, answerer(model, system_for(request.constitution)), constitution, gate, []
        )
        effects = []
        for principle_id, summary in changes:
            without = _without(request.constitution, base, principle_id)
            answers = await self._answers(
                prompts, answerer(model, system_for(without)), constitution, gate, []
            )
            effects.append(
                amendment_effect(
                    proposals.get(principle_id, principle_id), summary, with_all, answers, gate
                )
            )
        return effects

    async def _parent(self, version: ConstitutionVersion) -> ConstitutionVersion | None:
        if version.parent_hash is None:
            return None
        return await self.ledger.version_with_hash(version.parent_hash)

    async def _proposals_by_target(self, round_id: str) -> dict[str, str]:
        decided = await self.ledger.decided_proposals(round_id) or []
        return {
            d.target: d.proposal_id
            for d in decided
            if d.target is not None and d.decision in ("accept", "modify")
        }

    async def _grade(
        self,
        model: str,
        system: str,
        prompt: str,
        constitution: str,
        sample: int,
        temperature: float,
    ) -> tuple[str, Grade]:
        """The model's answer and its grade."""
        answer = await self.model.text(
            system, prompt, model=model, temperature=temperature, seed=sample
        )
        return answer, await self._grade_answer(prompt, answer, constitution)

    async def _grade_answer(self, prompt: str, answer: str, constitution: str) -> Grade:
        """One answer graded by the grader model against the rubric, whichever backend asked."""
        try:
            grade = await grade_answer(
                self.model, self.rubric, self.grader_model, constitution, prompt, answer
            )
        except ApplicationError as error:
            if error.type != ErrorType.model_output_invalid:
                raise
            raise ApplicationError(
                f"the grader ({self.grader_model}, rubric {self.rubric.name}) did not return a "
                f"grade: {error.message}",
                type=ErrorType.grader_output_invalid,
                non_retryable=True,
            ) from error
        return grade.value


def _principles_json(version: ConstitutionVersion) -> str:
    return json.dumps([p.model_dump(mode="json") for p in version.principles])


def _changes(base: ConstitutionVersion, new: ConstitutionVersion) -> list[tuple[str, str]]:
    """Each principle the new version adds, rewords or retires, with what happened to it."""
    changes = []
    for principle in new.principles:
        before = base.principle(principle.id)
        if before is None:
            changes.append((principle.id, f"adds {principle.id} ({principle.title})"))
        elif before.text != principle.text:
            changes.append((principle.id, f"rewords {principle.id} ({principle.title})"))
    for principle in base.principles:
        if new.principle(principle.id) is None:
            changes.append((principle.id, f"retires {principle.id} ({principle.title})"))
    return changes


def _without(
    new: ConstitutionVersion, base: ConstitutionVersion, principle_id: str
) -> ConstitutionVersion:
    """The new version with one principle as it was in the base (absent if it was new)."""
    before = base.principle(principle_id)
    kept = [p for p in new.principles if p.id != principle_id]
    if before is not None:
        position = next(
            (i for i, p in enumerate(base.principles) if p.id == principle_id), len(kept)
        )
        kept.insert(min(position, len(kept)), before)
    return new.model_copy(update={"principles": tuple(kept)})


def amendment_effect(
    proposal_id: str,
    summary: str,
    with_it: Sequence[GradedAnswer],
    without_it: Sequence[GradedAnswer],
    gate: GateSpec,
) -> AmendmentEffect:
    """With minus without, on paired answers: harm and over-refusal, with intervals."""

    def outcomes(answers: Sequence[GradedAnswer], kind: EvalKind) -> dict[tuple[str, int], bool]:
        return {
            a.key: a.harmful if kind is EvalKind.red_team else a.refused
            for a in answers
            if a.kind is kind
        }

    confidence = 1 - gate.significance
    harm = pair(outcomes(with_it, EvalKind.red_team), outcomes(without_it, EvalKind.red_team))
    refusal = pair(outcomes(with_it, EvalKind.benign), outcomes(without_it, EvalKind.benign))
    harm_difference, harm_low, harm_high = paired_difference(harm, confidence)
    refusal_difference, refusal_low, refusal_high = paired_difference(refusal, confidence)
    p_value = two_sided_sign_test(harm.only_first, harm.only_second)
    if p_value >= gate.significance:
        effect = f"no significant effect on harm (p = {p_value:.3g})"
    elif harm_difference < 0:
        effect = f"helped: harm {points(harm_difference)}"
    else:
        effect = f"hurt: harm +{points(harm_difference)}"
    return AmendmentEffect(
        proposal_id=proposal_id,
        summary=summary,
        harm_difference=harm_difference,
        harm_low=harm_low,
        harm_high=harm_high,
        harm_p_value=p_value,
        overrefusal_difference=refusal_difference,
        overrefusal_low=refusal_low,
        overrefusal_high=refusal_high,
        effect=effect,
    )
