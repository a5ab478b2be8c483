"""What a kill costs dataset generation.

The real `generate_dataset` activity runs in Temporal's activity environment
(heartbeats and all) against the scripted model stand-in, in this process; a
generation is stopped abruptly half-way (its task cancelled, in-flight
examples dropped, as a killed worker drops them) and run again: examples lost
must be 0, and examples redone at most the ones that were in flight.
Throughput against the model server's capacity is `bench_dataset`'s, measured
on `amend worker` processes: here the stand-in shares this process's event
loop with the client, and its own work per request would be counted against
the worker (it took the figure from 0.9 to 0.6 of capacity).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from openai import AsyncOpenAI
from temporalio.testing import ActivityEnvironment

from activities.model import Model
from activities.training import FileArtifactStore, TrainingActivities
from bench.harness import BenchEnv, Figure, kill_figures, kill_when
from constitution import RoundSpec, TrainingSpec
from constitution.contracts import DatasetInput
from constitution.samples import sample_constitution
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.model.app import create_app
from standins.model.config import ScriptedModelConfig
from standins.model.state import ModelServerState
from standins.serving import serve

LATENCY_S = 0.1
LIMIT = 8
KILL_EXAMPLES = 60
CALLS_PER_EXAMPLE = 3  # answer, critique, revision


async def run(env: BenchEnv) -> list[Figure]:
    url = await env.database()
    pool = await create_pool(url, max_size=LIMIT + 2)
    config = ScriptedModelConfig(latency_s=LATENCY_S, max_concurrency=LIMIT)
    stand_in = create_app(config)
    try:
        async with serve(stand_in) as server:
            client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="bench", max_retries=0)
            training = TrainingActivities(
                Model(client, "amend-proposer", LIMIT),
                Ledger(pool),
                FileArtifactStore(env.workdir / "artifacts"),
                backends={},
            )
            stats = stand_in.state.standin
            lost, redone = await _kill_and_resume(training, Ledger(pool), stats)
    finally:
        await pool.close()
    notes = (
        f"generation of {KILL_EXAMPLES} stopped half-way, then resumed",
        f"completions paid twice, in examples; at most the {2 * LIMIT} examples under way at "
        "the kill may be started again",
    )
    return [
        *kill_figures("examples", "examples", lost, redone, 2 * LIMIT, notes),
    ]


def _request(round_id: str, count: int) -> DatasetInput:
    return DatasetInput(
        round_id=round_id,
        constitution=sample_constitution(),
        training=TrainingSpec(prompt_count=count),
    )


def _lines(uri: str) -> list[bytes]:
    return Path(uri.removeprefix("file://")).read_bytes().splitlines()


async def _open(ledger: Ledger, round_id: str) -> None:
    await ledger.open_round(RoundSpec(round_id=round_id, reviewers=["U0BENCH"]), 1)


async def _kill_and_resume(
    training: TrainingActivities, ledger: Ledger, stats: ModelServerState
) -> tuple[float, float]:
    await _open(ledger, "bench-kill")
    request = _request("bench-kill", KILL_EXAMPLES)
    before = stats.tasks["text"]

    async def half_kept() -> bool:
        return len(await ledger.dataset_examples("bench-kill")) >= KILL_EXAMPLES // 2

    await kill_when(ActivityEnvironment().run(training.generate_dataset, request), half_kept)
    dataset = await ActivityEnvironment().run(training.generate_dataset, request)
    kept = {e.position for e in await ledger.dataset_examples("bench-kill")}
    lost = KILL_EXAMPLES - len(kept & set(range(KILL_EXAMPLES)))
    lines = len(await asyncio.to_thread(_lines, dataset.uri))
    lost = max(lost, KILL_EXAMPLES - lines)
    started_examples = (stats.tasks["text"] - before) / CALLS_PER_EXAMPLE
    return float(lost), max(0.0, started_examples - KILL_EXAMPLES)
