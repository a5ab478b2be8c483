"""The round's dataset stage alone, on the `amend worker` processes of a fleet:
what the dataset benchmark and the scale-out test of generation drive.

`GenerateDatasetInShards` runs on a queue of its own in the calling process and
sends each shard to the fleet's task queue exactly as the round does
(`workflows.dataset`): the workers cannot tell it from a round.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

from constitution.contracts import Dataset, DatasetInput, DatasetShard, DatasetShardInput
from workflows.activities import TrainingActivities
from workflows.dataset import dataset_shards, generate_in_shards, shard_queue


class ShardedDatasetRequest(BaseModel):
    dataset: DatasetInput
    queue: str  # the fleet's task queue


@workflow.defn(sandboxed=False)
class GenerateDatasetInShards:
    """Bench and test harness: the round's dataset stage, shard by shard on the fleet."""

    @workflow.run
    async def run(self, request: ShardedDatasetRequest) -> Dataset:
        options: dict[str, Any] = {
            "task_queue": request.queue,
            "start_to_close_timeout": timedelta(hours=1),
            "heartbeat_timeout": request.dataset.training.heartbeat_timeout,
            "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=200)),
        }

        on_shards_queue = {**options, "task_queue": shard_queue(request.queue)}

        async def generate(shard: DatasetShardInput) -> DatasetShard:
            return await workflow.execute_activity_method(
                TrainingActivities.generate_dataset_shard, shard, **on_shards_queue
            )

        training = request.dataset.training
        await generate_in_shards(
            dataset_shards(request.dataset), training.dataset_shards_at_once, generate
        )
        return await workflow.execute_activity_method(
            TrainingActivities.assemble_dataset, request.dataset, **options
        )
