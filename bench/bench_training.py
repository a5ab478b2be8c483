"""Dataset generation against the model server's own capacity, and what a kill
costs.

The scripted model stand-in is given a fixed latency and a concurrency limit,
so its capacity is exactly `max_concurrency / latency_s` completions a second:
the floor. Generation runs the real `generate_dataset` activity (in Temporal's
activity environment, heartbeats and all) with the worker's model concurrency
set to the server's limit; the figure is completions a second while it runs.
Then a generation is stopped abruptly half-way (its task cancelled, in-flight
examples dropped, as a killed worker drops them) and run again: examples lost
must be 0, and examples redone at most the ones that were in flight.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from openai import AsyncOpenAI
from temporalio.testing import ActivityEnvironment

from activities.model import Model
from activities.training import FileArtifactStore, TrainingActivities
from bench.harness import BenchEnv, Figure, at_least, kill_figures, kill_when
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
EXAMPLES = 120
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
            throughput = await _throughput(training, Ledger(pool), stats)
            lost, redone = await _kill_and_resume(training, Ledger(pool), stats)
    finally:
        await pool.close()
    capacity = LIMIT / LATENCY_S
    notes = (
        f"generation of {KILL_EXAMPLES} stopped half-way, then resumed",
        f"completions paid twice, in examples; at most the {2 * LIMIT} examples under way at "
        "the kill may be started again",
    )
    return [
        Figure(
            "dataset generation throughput",
            throughput,
            "completions/s",
            floor=capacity,
            floor_name=f"model server capacity ({LIMIT} at once, {LATENCY_S * 1000:.0f} ms each)",
            target=at_least(0.8),
            note=f"{EXAMPLES} supervised examples, {CALLS_PER_EXAMPLE} completions each",
        ),
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


async def _throughput(
    training: TrainingActivities, ledger: Ledger, stats: ModelServerState
) -> float:
    await _open(ledger, "bench-throughput")
    before = stats.tasks["text"]
    started = time.perf_counter()
    await ActivityEnvironment().run(
        training.generate_dataset, _request("bench-throughput", EXAMPLES)
    )
    elapsed = time.perf_counter() - started
    return (stats.tasks["text"] - before) / elapsed


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
