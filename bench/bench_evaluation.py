"""Evaluation against the model server's own capacity, what keeping every graded
answer costs, and what a stop half-way costs.

The scripted model stand-in is given a fixed latency and a concurrency limit,
so its capacity is exactly `max_concurrency / latency_s` completions a second;
a graded answer takes two (the answer and its grade), so the floor is half
that in graded answers a second. The real `evaluate` activity runs in
Temporal's activity environment with the worker's model concurrency set to
the server's limit, on the tests' 55-prompt set (40 red-team prompts plain and
under 3 cue styles, 15 benign: 175 framed requests) for a candidate and its
baseline: 350 graded answers, 700 completions an evaluation.

Keeping costs what the same evaluation gains with its answers not written
(the ledger's write of answers made a no-op): the floor of the second figure.
Then an evaluation is stopped abruptly half-way (its task cancelled, answers
under way dropped, as a killed worker drops them) and run again: answers lost
must be 0, answers redone at most the ones under way at the stop, and the
gate's result the same as the uninterrupted run's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from openai import AsyncOpenAI
from temporalio.testing import ActivityEnvironment

from activities.evaluation import EvaluationActivities
from activities.model import Model
from bench.harness import (
    SMALL_EVAL_SET,
    BenchEnv,
    Figure,
    at_least,
    at_most,
    kill_figures,
    kill_when,
)
from constitution import GateSpec, RoundSpec
from constitution.contracts import EvaluateInput, EvaluationResult
from constitution.samples import sample_constitution
from ledger.pool import create_pool
from ledger.reads import EvaluationAnswerRow
from ledger.store import Ledger
from standins.model.app import create_app
from standins.model.config import ScriptedModelConfig
from standins.model.state import ModelServerState
from standins.serving import serve

LATENCY_S = 0.1
LIMIT = 8
ANSWERS = 2 * (40 * 4 + 15)  # candidate and baseline, every framing of the 55 prompts
SHIPPED_ANSWERS_PER_PROMPT = 2 * 850 / 304  # the shipped set: 850 framings of 304 prompts


class CountedLedger(Ledger):
    """The ledger, counting the writes of answers (each a group of them)."""

    writes = 0

    async def record_evaluation_answers(
        self, round_id: str, answers: Sequence[EvaluationAnswerRow]
    ) -> None:
        self.writes += 1
        await super().record_evaluation_answers(round_id, answers)


class UnkeptLedger(Ledger):
    """The ledger with the answers neither written nor read: the floor of keeping."""

    async def record_evaluation_answers(
        self, round_id: str, answers: Sequence[EvaluationAnswerRow]
    ) -> None:
        return None

    async def evaluation_answers(self, round_id: str) -> list[EvaluationAnswerRow]:
        return []


async def run(env: BenchEnv) -> list[Figure]:
    url = await env.database()
    pool = await create_pool(url, max_size=LIMIT + 2)
    stand_in = create_app(ScriptedModelConfig(latency_s=LATENCY_S, max_concurrency=LIMIT))
    try:
        async with serve(stand_in) as server:
            client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="bench", max_retries=0)
            model = Model(client, "amend-proposer", LIMIT)
            stats = stand_in.state.standin
            counted = CountedLedger(pool)
            for round_id in ("bench-unkept", "bench-kept", "bench-stop"):
                await counted.open_round(RoundSpec(round_id=round_id, reviewers=["U0BENCH"]), 1)
            # The stop first: the timed runs after it find the server's capabilities
            # known and the process warm, both alike.
            lost, redone, resumed = await _stop_and_resume(_evaluation(model, counted), stats)
            unkept_s, _, _ = await _timed(_evaluation(model, UnkeptLedger(pool)), "bench-unkept")
            counted.writes = 0
            kept_s, kept_cpu_s, whole = await _timed(_evaluation(model, counted), "bench-kept")
            writes = counted.writes
            if resumed.model_dump() != whole.model_dump():
                raise AssertionError("the resumed evaluation judged otherwise than a whole one")
    finally:
        await pool.close()
    capacity = LIMIT / LATENCY_S / 2
    minutes_for_10k = 10_000 * SHIPPED_ANSWERS_PER_PROMPT / capacity / 60
    notes = (
        f"an evaluation of {ANSWERS} answers stopped half-way (its task cancelled), then "
        "resumed; the gate's result is checked equal to the uninterrupted run's",
        f"answers asked twice; at most the {2 * LIMIT} answers under way at the kill may be "
        "asked again",
    )
    return [
        Figure(
            "evaluation throughput",
            ANSWERS / kept_s,
            "graded answers/s",
            floor=capacity,
            floor_name=f"model server capacity ({LIMIT} at once, {LATENCY_S * 1000:.0f} ms "
            "each, 2 completions an answer)",
            target=at_least(0.8),
            note=f"55 prompts, {ANSWERS} graded answers (candidate and baseline), each kept; "
            f"{writes} ledger writes ({ANSWERS / max(writes, 1):.1f} answers each). The bench "
            f"process (stand-in, client, activity on one event loop) used {kept_cpu_s:.1f} s of "
            f"CPU in {kept_s:.1f} s. 10,000 "
            f"prompts would take ~{minutes_for_10k:.0f} min at this capacity, too long for a bench",
        ),
        Figure(
            "evaluation time with its answers kept",
            kept_s,
            "s",
            floor=unkept_s,
            floor_name="the same evaluation, answers not kept",
            target=at_most(1.1),
            note=f"{ANSWERS} graded answers; writes are group commits beside the model calls",
        ),
        *kill_figures("evaluation answers", "answers", lost, redone, 2 * LIMIT, notes),
    ]


def _evaluation(model: Model, ledger: Ledger) -> EvaluationActivities:
    return EvaluationActivities(model, "amend-grader", ledger, str(SMALL_EVAL_SET))


def _request(round_id: str) -> EvaluateInput:
    return EvaluateInput(
        round_id=round_id,
        constitution=sample_constitution(),
        candidate_model="ft:amend-base:bench",
        baseline_model="amend-base",
        gate=GateSpec(),
    )


async def _timed(
    evaluation: EvaluationActivities, round_id: str
) -> tuple[float, float, EvaluationResult]:
    """Wall and CPU seconds of one evaluation (the CPU of the process, stand-in included)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = await ActivityEnvironment().run(evaluation.evaluate, _request(round_id))
    return time.perf_counter() - started, time.process_time() - cpu, result


async def _stop_and_resume(
    evaluation: EvaluationActivities, stats: ModelServerState
) -> tuple[float, float, EvaluationResult]:
    ledger = evaluation.ledger
    before = stats.tasks["text"]

    async def half_kept() -> bool:
        return len(await ledger.evaluation_answers("bench-stop")) >= ANSWERS // 2

    await kill_when(
        ActivityEnvironment().run(evaluation.evaluate, _request("bench-stop")), half_kept
    )
    resumed = await ActivityEnvironment().run(evaluation.evaluate, _request("bench-stop"))
    lost = ANSWERS - len(await ledger.evaluation_answers("bench-stop"))
    return float(lost), max(0.0, float(stats.tasks["text"] - before - ANSWERS)), resumed
