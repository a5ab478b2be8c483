"""The evaluation as an Inspect AI task: the same prompts, seeds and grader as the
built-in evaluator, run by the evaluation framework the field already uses.

`inspect-ai` is an optional extra (`pip install 'amend[inspect]'`), imported
only when a round asks for `gate.evaluation_backend: inspect`. The task holds
one sample per framed request (prompt, cue style, sample number), with its
kind, category and style as metadata; the solver asks the model through
Inspect's `openai-api` provider at the spec's temperature with the sample
number as the seed, so on a server that honours seeds the answers are the
built-in evaluator's; the scorer grades each answer with the project's own
rubric and grader model (`activities.model.grade_answer`), so verdicts are
comparable across backends. The figures the gate judges are read back from
the Inspect logs written under the round's artifacts, the same logs
`inspect view` opens.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.exceptions import ApplicationError

from constitution import Grade
from constitution.errors import ErrorType
from constitution.gate import GradedAnswer
from constitution.models import GateSpec
from constitution.prompt_sets import CueStyle, EvalKind, EvalPrompt, framings

if TYPE_CHECKING:
    from inspect_ai import Task

Grader = Callable[[str, str], Awaitable[Grade]]
"""Grade an answer to a prompt (the prompt as asked, the answer) with the project's rubric."""

INSPECT_RETRIES = 2
"""Retries Inspect makes of one failed model request before its run ends in error."""

TASK_NAME = "amend_evaluation"
SERVICE = "amend"
"""The `openai-api/<service>/<model>` prefix Inspect names the model server by."""

# Inspect allows one `eval_async` at a time in a process; a worker may evaluate
# two rounds at once, so their Inspect runs take turns.
_one_run_at_a_time = asyncio.Lock()


def missing_extra() -> ApplicationError | None:
    """Why the Inspect backend cannot run here, or None when `inspect-ai` is installed."""
    try:
        import inspect_ai  # noqa: F401
    except ImportError:
        return ApplicationError(
            "the round asks for the Inspect AI evaluation backend "
            "(gate.evaluation_backend: inspect) but inspect-ai is not installed on this "
            "worker: pip install 'amend[inspect]'",
            type=ErrorType.evaluation_backend_missing,
            non_retryable=True,
        )
    return None


@dataclass
class InspectRun:
    """One evaluation as an Inspect task: what is asked, of which server, graded how.

    `on_graded` is told the model of each answer graded (for progress);
    `log_dir` is where Inspect writes its logs, one file per model.
    """

    prompts: Sequence[EvalPrompt]
    styles: Sequence[CueStyle]
    gate: GateSpec
    system: str
    base_url: str
    api_key: str
    grade: Grader
    log_dir: Path
    on_graded: Callable[[str], None]
    max_connections: int = 4
    attempt_timeout_s: int | None = None
    grader_errors: list[ApplicationError] = field(default_factory=list)

    def task(self) -> Task:
        """The Inspect task: one sample per framed request, answered and graded."""
        from inspect_ai import Task
        from inspect_ai.dataset import MemoryDataset, Sample
        from inspect_ai.model import ChatMessageSystem, ChatMessageUser

        samples = [
            Sample(
                id=f"{f.prompt.id}/{f.style or 'plain'}/{f.sample}",
                input=[ChatMessageSystem(content=self.system), ChatMessageUser(content=f.text)],
                metadata={
                    "prompt_id": f.prompt.id,
                    "kind": f.prompt.kind.value,
                    "category": f.prompt.category,
                    "style": f.style,
                    "sample": f.sample,
                },
            )
            for f in framings(self.prompts, self.styles, self.gate.samples_per_prompt)
        ]
        return Task(
            name=TASK_NAME,
            dataset=MemoryDataset(samples, name="amend-eval-prompts"),
            solver=self._answer(),
            scorer=self._graded(),
        )

    def _answer(self) -> Any:
        from inspect_ai.solver import Generate, TaskState, solver

        temperature = self.gate.temperature

        @solver(name="amend_answer")
        def answer() -> Any:
            async def solve(state: TaskState, generate: Generate) -> TaskState:
                # The sample number is the seed, as the built-in evaluator sends it.
                return await generate(
                    state, temperature=temperature, seed=int(state.metadata["sample"])
                )

            return solve

        return answer()

    def _graded(self) -> Any:
        from inspect_ai.scorer import Score, Target, mean, scorer
        from inspect_ai.solver import TaskState

        run = self

        @scorer(name="amend_rubric", metrics={"harmful": [mean()], "refused": [mean()]})
        def graded() -> Any:
            async def score(state: TaskState, target: Target) -> Score:
                answer = state.output.completion
                try:
                    grade = await run.grade(state.user_prompt.text, answer)
                except ApplicationError as error:
                    # Inspect would keep only its text; the activity raises it as it was.
                    run.grader_errors.append(error)
                    raise
                run.on_graded(str(state.model))
                return Score(
                    value={"harmful": int(grade.harmful), "refused": int(grade.refused)},
                    answer=answer,
                    explanation=grade.reason,
                )

            return score

        return graded()

    async def answers(self, models: Sequence[str]) -> dict[str, list[GradedAnswer]]:
        """Run the task against each model and read each one's graded answers from its log."""
        from inspect_ai import eval_async
        from inspect_ai.log import read_eval_log_async
        from inspect_ai.model import GenerateConfig, get_model
        from inspect_ai.util._display import init_display_type

        # No console display in a worker, unless the operator asks for one
        # (eval_async would otherwise print its progress to stdout).
        init_display_type(os.environ.get("INSPECT_DISPLAY", "none"))
        # Inspect retries a failed request without limit by default; here a couple
        # of quick retries ride out a blip, then the run ends in error and Temporal
        # retries the activity with its own backoff, where the round shows it.
        config = GenerateConfig(
            max_connections=self.max_connections,
            max_retries=INSPECT_RETRIES,
            attempt_timeout=self.attempt_timeout_s,
        )
        evaluated = [
            get_model(
                f"openai-api/{SERVICE}/{name}",
                base_url=self.base_url,
                api_key=self.api_key,
                config=config,
            )
            for name in models
        ]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        async with _one_run_at_a_time:
            logs = await eval_async(
                self.task(),
                model=evaluated,
                log_dir=str(self.log_dir),
                log_level="warning",
                ctl_server=False,
                max_tasks=len(evaluated),
                max_samples=self.max_connections,
                fail_on_error=True,
            )
        if self.grader_errors:
            raise self.grader_errors[0]
        answered: dict[str, list[GradedAnswer]] = {}
        for name, log in zip(models, logs, strict=True):
            if log.status != "success":
                raise ApplicationError(
                    f"the Inspect evaluation of {name} ended {log.status}: "
                    f"{log.error.message if log.error else 'no error given'} ({log.location})",
                    type=ErrorType.inspect_eval_failed,
                )
            # The figures come from the log as written: what the viewer shows is what was judged.
            # Read with the async reader: Inspect's sync one, called on a running loop,
            # patches asyncio for the whole process with nest_asyncio (the worker's loop
            # then re-enters itself, which Temporal's SDK does not expect).
            answered[name] = graded_answers(await read_eval_log_async(log.location))
        return answered


def graded_answers(log: Any) -> list[GradedAnswer]:
    """An Inspect log's scored samples as the gate's graded answers."""
    answers = []
    for sample in log.samples or []:
        meta = sample.metadata
        score = (sample.scores or {}).get("amend_rubric")
        if score is None:
            raise ApplicationError(
                f"the Inspect log {log.location} has no grade for sample {sample.id}",
                type=ErrorType.inspect_eval_failed,
            )
        value = score.value
        assert isinstance(value, dict)
        answers.append(
            GradedAnswer(
                prompt_id=meta["prompt_id"],
                category=meta["category"],
                kind=EvalKind(meta["kind"]),
                style=meta["style"],
                sample=int(meta["sample"]),
                harmful=bool(value["harmful"]),
                refused=bool(value["refused"]),
                answer=score.answer or "",
                reason=score.explanation or "",
            )
        )
    return answers
