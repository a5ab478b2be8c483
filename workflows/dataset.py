"""Dataset generation cut into shards, so it spreads over every worker on the task queue.

Each shard is its own `generate_dataset_shard` activity on a task queue of
its own (`shard_queue`): a worker takes one, generates its prompts (resuming
from what the ledger kept), and takes the next; adding workers is all it
takes to generate faster. A bounded number are scheduled at once
(`TrainingSpec.dataset_shards_at_once`), so a worker that joins finds shards
to take, and a set of any size is at most `MAX_SHARDS` shards: the history of
the generation stays the same size however many prompts. Then
`assemble_dataset` writes the file from the ledger. Called from the round's
workflow (and the benchmark's); deterministic, no I/O of its own.

Each worker takes at most `dataset_shards_per_worker` shards at once and the
rest wait on the server, so a shard goes to the first worker with room for
it. On the round's own queue a worker took every shard offered while it had
activity slots, each then ran at its share of that worker's model
concurrency, and the worker left with more of them finished seconds after the
other had run out: two workers reached 1.4-1.85x one worker's throughput,
and 2.0x pulling (`python -m bench dataset`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from constitution.contracts import DatasetInput, DatasetShard, DatasetShardInput

MAX_SHARDS = 100


def shard_queue(task_queue: str) -> str:
    """The task queue a round on `task_queue` sends its dataset shards to."""
    return f"{task_queue}-dataset-shards"


def dataset_shards(request: DatasetInput) -> list[DatasetShardInput]:
    """The shards of the round's prompts, in order.

    One shard through the Batch API: the batch is already the unit that a
    server spreads, and one batch per recipe step is what it is priced for.
    """
    training = request.training
    count = training.prompt_count
    size = max(training.dataset_shard_size, -(-count // MAX_SHARDS))
    if training.use_batch_api:
        size = count
    return [
        DatasetShardInput(
            round_id=request.round_id,
            constitution=request.constitution,
            training=training,
            start=start,
            stop=min(start + size, count),
        )
        for start in range(0, count, size)
    ]


async def generate_in_shards(
    shards: list[DatasetShardInput],
    at_once: int,
    generate: Callable[[DatasetShardInput], Awaitable[DatasetShard]],
) -> list[DatasetShard]:
    """Run `generate` on every shard, `at_once` at a time, in order.

    The first shard to fail cancels the others (each has kept what it
    finished in the ledger) and its error is raised.
    """
    slots = asyncio.Semaphore(at_once)

    async def one(shard: DatasetShardInput) -> DatasetShard:
        async with slots:
            return await generate(shard)

    tasks = [asyncio.create_task(one(shard)) for shard in shards]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
