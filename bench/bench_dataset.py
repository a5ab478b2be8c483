"""Dataset generation at scale, as a deployment runs it: shards on `amend
worker` processes, one worker and then two, against a model server of fixed
capacity; worker memory and history size as the set grows.

The stand-in model runs in the benchmark's process with a latency and a
concurrency limit, so its capacity is `limit / latency` completions a second;
each worker is given `AMEND_MODEL_CONCURRENCY` equal to the limit it is meant
to fill. The dataset stage is driven exactly as the round drives it
(`bench.sharded_dataset`, `workflows.dataset`). Figures:

- throughput of one worker against the server's capacity (target 0.9);
- two workers against a server of twice the capacity, against one worker's
  throughput (target 1.8): the work leaves one machine by adding workers;
- the worker's peak RSS on a set four times as large, against the smaller
  set's (it must not grow with the prompt count), with a fast model so the
  larger set stays short;
- the history of a 100,000-prompt generation, from the events and bytes per
  shard measured here times the 100 shards such a set is cut into, against
  Temporal's continue-as-new suggestion.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.fleet import running_fleet
from bench.harness import (
    SUGGEST_BYTES,
    SUGGEST_EVENTS,
    BenchEnv,
    Figure,
    at_least,
    at_most,
    history_bytes,
    value_at_most,
)
from bench.sharded_dataset import GenerateDatasetInShards, ShardedDatasetRequest
from constitution import RoundSpec, TrainingSpec
from constitution.contracts import DatasetInput
from constitution.samples import sample_constitution
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.model.config import ScriptedModelConfig
from worker.settings import Settings
from workflows.dataset import MAX_SHARDS, dataset_shards

LATENCY_S = 0.1
LIMIT = 8  # completions at once per worker's share of the server
CALLS_PER_EXAMPLE = 3  # answer, critique, revision
PER_WORKER = 480  # prompts per worker in the throughput runs: about 18 s at capacity
SHARD = 40
SHARDS_PER_WORKER = Settings.model_fields["dataset_shards_per_worker"].default
SMALL, LARGE = 600, 2_400  # prompts in the memory runs
FAST = ScriptedModelConfig(latency_s=0.005, max_concurrency=32)
AT_SCALE = 100_000


@dataclass
class Run:
    seconds: float
    completions: int
    peak_rss_mib: float
    events: int
    bytes: int
    shards: int
    busy: float  # of the machine's cores, while it ran
    spread: str  # how the shards fell to the workers, from the history

    @property
    def throughput(self) -> float:
        return self.completions / self.seconds


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def _spread(history: WorkflowHistory) -> str:
    """Activities each worker took (by its identity), and when it finished
    its last, in seconds from the history's first event: what the two-worker
    figure's note shows beside the throughput."""
    started: dict[int, str] = {}  # started event id -> the worker's identity
    shards: Counter[str] = Counter()
    last: dict[str, float] = {}
    first = history.events[0].event_time.ToDatetime().timestamp()
    for event in history.events:
        if event.HasField("activity_task_started_event_attributes"):
            identity = event.activity_task_started_event_attributes.identity
            started[event.event_id] = identity
            shards[identity] += 1
        elif event.HasField("activity_task_completed_event_attributes"):
            identity = started[event.activity_task_completed_event_attributes.started_event_id]
            last[identity] = event.event_time.ToDatetime().timestamp() - first
    return ", ".join(f"{shards[w]} (last done at {last.get(w, 0.0):.1f} s)" for w in sorted(shards))


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _generate(
    env: BenchEnv, workers: int, prompts: int, model: ScriptedModelConfig, concurrency: int
) -> Run:
    """`prompts` generated in shards by `workers` worker processes; the last
    worker's peak RSS."""
    url = await env.database()
    pool = await create_pool(url, max_size=2)
    ledger = Ledger(pool)
    queue = f"amend-bench-data-{uuid.uuid4().hex[:8]}"
    round_id = f"data-{workers}-{prompts}"
    await ledger.open_round(RoundSpec(round_id=round_id, reviewers=["U0BENCH"]), 1)
    training = TrainingSpec(
        prompt_count=prompts,
        critique_passes=1,
        dataset_shard_size=SHARD,
        dataset_shards_at_once=8 * workers,
    )
    request = DatasetInput(round_id=round_id, constitution=sample_constitution(), training=training)
    client = env.temporal
    try:
        async with (
            running_fleet(
                client.service_client.config.target_host,
                ledger,
                url,
                queue,
                env.workdir / queue,
                workers=workers,
                gateways=0,
                model=model,
                model_concurrency=str(concurrency),
            ) as fleet,
            Worker(
                client,
                task_queue=f"{queue}-driver",
                workflows=[GenerateDatasetInShards],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ),
        ):
            ticks = _cpu_ticks()
            started = time.perf_counter()
            handle = await client.start_workflow(
                GenerateDatasetInShards.run,
                ShardedDatasetRequest(dataset=request, queue=queue),
                id=f"bench-{queue}",
                task_queue=f"{queue}-driver",
            )
            dataset = await handle.result()
            seconds = time.perf_counter() - started
            busy, total = (
                after - before for after, before in zip(_cpu_ticks(), ticks, strict=True)
            )
            peak = max(_peak_rss_mib(w.process.pid) for w in fleet.workers)
            history = await handle.fetch_history()
    finally:
        await pool.close()
    if dataset.examples != prompts:
        raise RuntimeError(f"{dataset.examples} examples of {prompts}")
    return Run(
        seconds=seconds,
        completions=prompts * CALLS_PER_EXAMPLE,
        peak_rss_mib=peak,
        events=len(history.events),
        bytes=history_bytes(history),
        shards=len(dataset_shards(request)),
        busy=busy / total if total else 0.0,
        spread=_spread(history),
    )


async def run(env: BenchEnv) -> list[Figure]:
    capacity = LIMIT / LATENCY_S
    server = ScriptedModelConfig(latency_s=LATENCY_S, max_concurrency=LIMIT)
    double = ScriptedModelConfig(latency_s=LATENCY_S, max_concurrency=2 * LIMIT)
    one = await _generate(env, 1, PER_WORKER, server, LIMIT)
    two = await _generate(env, 2, 2 * PER_WORKER, double, LIMIT)
    small = await _generate(env, 1, SMALL, FAST, 32)
    large = await _generate(env, 1, LARGE, FAST, 32)
    # Events and bytes grow with the shards, not with the prompts in them.
    per_shard_events = large.events / (large.shards + 1)
    per_shard_bytes = large.bytes / (large.shards + 1)
    scale_events = per_shard_events * (MAX_SHARDS + 1)
    scale_bytes = per_shard_bytes * (MAX_SHARDS + 1)
    at_scale_minutes = AT_SCALE * CALLS_PER_EXAMPLE / one.throughput / 60
    return [
        Figure(
            "dataset: one worker process, shards against the model server",
            one.throughput,
            "completions/s",
            floor=capacity,
            floor_name=f"model server capacity ({LIMIT} at once, {LATENCY_S * 1000:.0f} ms each)",
            target=at_least(0.9),
            note=f"{PER_WORKER} prompts in shards of {SHARD}, {CALLS_PER_EXAMPLE} completions "
            f"each, AMEND_MODEL_CONCURRENCY={LIMIT}; {one.seconds:.1f} s. "
            f"{AT_SCALE:,} prompts at this rate: {at_scale_minutes:.0f} min, not run in the "
            "bench (memory and history at scale: below)",
        ),
        Figure(
            "dataset: two worker processes, server of twice the capacity",
            two.throughput,
            "completions/s",
            floor=one.throughput,
            floor_name="one worker process",
            target=at_least(1.8),
            note=f"{2 * PER_WORKER} prompts; server {2 * LIMIT} at once; "
            f"{2 * capacity:.0f} completions/s of capacity; {two.seconds:.1f} s; the machine's "
            f"two cores {two.busy:.0%} busy (two workers, the stand-in model, Temporal and "
            f"PostgreSQL); activities per worker (the shards, and the assembly on one): "
            f"{two.spread}; each worker takes {SHARDS_PER_WORKER} shards at a time from the "
            "shards' queue, so neither is left holding shards the other could run",
        ),
        Figure(
            f"dataset: worker peak RSS, {LARGE:,} prompts",
            large.peak_rss_mib,
            "MiB",
            floor=small.peak_rss_mib,
            floor_name=f"the same worker on {SMALL} prompts",
            target=at_most(1.1),
            note=f"VmHWM of the `amend worker` process; model stand-in at "
            f"{FAST.latency_s * 1000:.0f} ms, {FAST.max_concurrency} at once; "
            f"{large.throughput:.0f} completions/s (CPU-bound on 2 cores)",
        ),
        Figure(
            f"dataset: history events of a {AT_SCALE:,}-prompt generation",
            scale_events / SUGGEST_EVENTS,
            "fraction",
            target=value_at_most(0.25),
            note=f"{MAX_SHARDS} shards (the most a set is cut into) x {per_shard_events:.1f} "
            f"events per shard measured on {LARGE:,} prompts ({large.shards} shards, "
            f"{large.events} events) = {scale_events:.0f} events of Temporal's "
            f"{SUGGEST_EVENTS} suggestion",
        ),
        Figure(
            f"dataset: history bytes of a {AT_SCALE:,}-prompt generation",
            scale_bytes / SUGGEST_BYTES,
            "fraction",
            target=value_at_most(0.25),
            note=f"{per_shard_bytes / 1024:.1f} KiB per shard x {MAX_SHARDS} = "
            f"{scale_bytes / 1024:.0f} KiB",
        ),
    ]
