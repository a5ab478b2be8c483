"""An evaluation stopped part-way resumes like dataset generation does: every
graded answer is kept in the ledger as it is graded, and the retry asks the
model and the grader only for what is missing, loses nothing, writes nothing
twice, and the gate judges exactly what an uninterrupted evaluation judges.

The evaluation activity runs in Temporal's activity environment against real
PostgreSQL and the scripted stand-in model over HTTP (a little latency, so a
stop lands mid-way); a stop is its task cancelled, dropping the answers in
flight as a killed worker drops them. The 55-prompt test set is answered by
the candidate, the baseline and a separate reference model (175 framed
requests each), and the baseline answers it twice more for the attribution
of the one amendment (with it, without it): 635 graded answers, two model
calls each (the answer and its grade).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.evaluation import EvaluationActivities
from activities.model import Model
from bench.harness import SMALL_EVAL_SET
from constitution import ConstitutionVersion, GateSpec, RoundSpec
from constitution.contracts import EvaluateInput, EvaluationResult, Progress
from constitution.samples import sample_constitution
from ledger.store import Ledger
from standins.model.app import create_app
from standins.model.config import ScriptedModelConfig
from standins.model.state import ModelServerState
from standins.serving import serve
from tests.conftest import eventually
from worker.runtime import model_client
from worker.settings import Settings

ANSWERS = 3 * (40 * 4 + 15) + 2 * 55
"""Three models on 40 red-team prompts (plain and under 3 cue styles) and 15
benign ones, and the baseline on all 55 with and without the amendment."""


@dataclass
class Evaluator:
    """The evaluation activity against the stand-in, and the stand-in's counts."""

    ledger: Ledger
    model: Model
    served: ModelServerState
    v2: ConstitutionVersion

    def activities(self, grader: str = "amend-grader") -> EvaluationActivities:
        return EvaluationActivities(
            self.model,
            grader,
            self.ledger,
            str(SMALL_EVAL_SET),
            reference_model="amend-reference",
        )

    def request(self, round_id: str) -> EvaluateInput:
        return EvaluateInput(
            round_id=round_id,
            constitution=self.v2,
            candidate_model="ft:amend-base:candidate",
            baseline_model="amend-base",
            gate=GateSpec(),
        )

    def calls(self) -> dict[str, int]:
        """Answers asked (plain text) and grades asked, so far."""
        return {"answers": self.served.tasks["text"], "grades": self.served.tasks["Grade"]}

    async def open(self, round_id: str) -> None:
        await self.ledger.open_round(RoundSpec(round_id=round_id, reviewers=["U0ALICE"]), 1)

    async def evaluate(
        self, round_id: str, env: ActivityEnvironment | None = None, grader: str = "amend-grader"
    ) -> EvaluationResult:
        environment = env or ActivityEnvironment()
        return await environment.run(self.activities(grader).evaluate, self.request(round_id))


def since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {task: after[task] - before[task] for task in after}


@pytest.fixture
async def evaluator(ledger: Ledger) -> AsyncIterator[Evaluator]:
    v1 = sample_constitution()
    await ledger.save_version(v1)
    first = v1.principles[0]
    reworded = first.model_copy(update={"text": first.text + " Say so plainly when refusing."})
    v2 = ConstitutionVersion(
        number=2, principles=(reworded, *v1.principles[1:]), parent_hash=v1.content_hash
    )
    await ledger.save_version(v2)
    stand_in = create_app(ScriptedModelConfig(latency_s=0.02))
    # The worker's own client (aiohttp's pool, its timeout), as the round runs it.
    async with (
        serve(stand_in) as server,
        model_client(Settings(), base_url=f"{server.url}/v1") as client,
    ):
        yield Evaluator(ledger, Model(client, "amend-proposer", 8), stand_in.state.standin, v2)


async def kept(ledger: Ledger, round_id: str) -> int:
    return len(await ledger.evaluation_answers(round_id))


async def test_an_evaluation_stopped_part_way_asks_only_for_the_missing_answers_and_judges_alike(
    evaluator: Evaluator, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    await evaluator.open("whole")
    before = evaluator.calls()
    whole = await evaluator.evaluate("whole")
    assert since(before, evaluator.calls()) == {"answers": ANSWERS, "grades": ANSWERS}
    assert await kept(ledger, "whole") == ANSWERS
    assert len(whole.attribution) == 1  # the one reworded principle

    # The same evaluation of another round, stopped once half its answers are kept.
    await evaluator.open("stopped")
    before = evaluator.calls()
    doomed = asyncio.create_task(evaluator.evaluate("stopped"))

    async def half_kept() -> bool:
        return await kept(ledger, "stopped") >= ANSWERS // 2

    await eventually(half_kept, "half the answers kept", 60)
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)
    at_stop = await kept(ledger, "stopped")
    asked_before_stop = since(before, evaluator.calls())
    assert ANSWERS // 2 <= at_stop < ANSWERS

    # The retry reports where it resumes, and asks only for what is missing.
    beats: list[Any] = []
    retry = ActivityEnvironment()
    retry.on_heartbeat = lambda *details: beats.append(details)
    before = evaluator.calls()
    # The CLI run in-process by other tests quietens Temporal's loggers: set this one.
    with caplog.at_level(logging.INFO, logger="temporalio.activity"):
        resumed = await evaluator.evaluate("stopped", retry)
    missing = ANSWERS - at_stop
    assert since(before, evaluator.calls()) == {"answers": missing, "grades": missing}
    assert f"resuming evaluation at {at_stop} of {ANSWERS}" in caplog.text
    progress = [details[0] for details in beats if details]
    assert all(isinstance(p, Progress) and p.stage == "evaluating" for p in progress)
    assert (progress[0].done, progress[0].total) == (at_stop, ANSWERS)
    assert (progress[-1].done, progress[-1].total) == (ANSWERS, ANSWERS)
    # What the stop dropped was only what was under way (twice the model's
    # concurrency): an answer is graded and kept soon after it is asked.
    under_way = 2 * evaluator.model.concurrency
    assert asked_before_stop["answers"] - at_stop <= under_way
    assert asked_before_stop["grades"] - at_stop <= under_way

    # None lost, none written twice, and the gate judged exactly the same answers.
    assert await kept(ledger, "stopped") == ANSWERS
    assert resumed.model_dump() == whole.model_dump()
    whole_failures = await ledger.evaluation_failures("whole")
    stopped_failures = await ledger.evaluation_failures("stopped")
    assert [(f.failure, f.prompt_id, f.style, f.response) for f in stopped_failures] == [
        (f.failure, f.prompt_id, f.style, f.response) for f in whole_failures
    ]


async def test_a_finished_evaluation_evaluated_again_asks_the_model_nothing(
    evaluator: Evaluator, ledger: Ledger
) -> None:
    await evaluator.open("done")
    first = await evaluator.evaluate("done")
    before = evaluator.calls()
    # As Temporal retries an attempt whose result was lost after the result was recorded.
    again = await evaluator.evaluate("done")
    assert since(before, evaluator.calls()) == {"answers": 0, "grades": 0}
    assert again.model_dump() == first.model_dump()
    assert await kept(ledger, "done") == ANSWERS


async def test_answers_graded_by_another_grader_are_asked_again_not_reused(
    evaluator: Evaluator, ledger: Ledger
) -> None:
    """A worker redeployed with another grader model between attempts: the
    kept answers were graded against something else, so none is reused."""
    await evaluator.open("regraded")
    await evaluator.evaluate("regraded")
    before = evaluator.calls()
    await evaluator.evaluate("regraded", grader="amend-grader-2")
    assert since(before, evaluator.calls()) == {"answers": ANSWERS, "grades": ANSWERS}
    assert await kept(ledger, "regraded") == 2 * ANSWERS
