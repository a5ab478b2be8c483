"""How a round's prompts are cut into shards: every position in exactly one
shard, in order, and never more than `MAX_SHARDS` whatever the count, so the
history of a generation does not grow with its size."""

from __future__ import annotations

import asyncio

import pytest

from constitution import TrainingSpec
from constitution.contracts import DatasetInput, DatasetShard, DatasetShardInput
from constitution.samples import sample_constitution
from workflows.dataset import MAX_SHARDS, dataset_shards, generate_in_shards


def request(**training: object) -> DatasetInput:
    return DatasetInput(
        round_id="r", constitution=sample_constitution(), training=TrainingSpec(**training)
    )


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [(4, 500, 1), (500, 500, 1), (501, 500, 2), (10, 3, 4), (100_000, 500, MAX_SHARDS)],
)
def test_every_position_is_in_exactly_one_shard_in_order(
    count: int, size: int, expected: int
) -> None:
    shards = dataset_shards(request(prompt_count=count, dataset_shard_size=size))
    assert len(shards) == expected
    positions = [i for s in shards for i in range(s.start, s.stop)]
    assert positions == list(range(count))


def test_a_large_set_has_at_most_max_shards_however_small_the_shard_size() -> None:
    shards = dataset_shards(request(prompt_count=100_000, dataset_shard_size=1))
    assert len(shards) == MAX_SHARDS
    assert {s.stop - s.start for s in shards} == {1_000}


def test_the_batch_api_generates_in_one_shard() -> None:
    shards = dataset_shards(request(prompt_count=2_000, dataset_shard_size=10, use_batch_api=True))
    assert [(s.start, s.stop) for s in shards] == [(0, 2_000)]


async def test_shards_run_at_most_at_once_and_every_one_runs() -> None:
    under_way = 0
    most = 0
    ran: list[int] = []

    async def generate(shard: DatasetShardInput) -> DatasetShard:
        nonlocal under_way, most
        under_way += 1
        most = max(most, under_way)
        await asyncio.sleep(0.001 * (shard.start % 3))
        under_way -= 1
        ran.append(shard.start)
        return DatasetShard(start=shard.start, stop=shard.stop, generated=shard.stop - shard.start)

    shards = dataset_shards(request(prompt_count=20, dataset_shard_size=2))
    done = await generate_in_shards(shards, 3, generate)
    assert most == 3
    assert sorted(ran) == [s.start for s in shards]
    assert [d.start for d in done] == [s.start for s in shards]


async def test_a_failed_shard_cancels_the_others_and_its_error_is_raised() -> None:
    cancelled: list[int] = []

    async def generate(shard: DatasetShardInput) -> DatasetShard:
        if shard.start == 2:
            raise RuntimeError("shard 2 failed")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(shard.start)
            raise
        raise AssertionError("not cancelled")

    shards = dataset_shards(request(prompt_count=8, dataset_shard_size=2))
    with pytest.raises(RuntimeError, match="shard 2 failed"):
        await generate_in_shards(shards, 4, generate)
    assert sorted(cancelled) == [0, 4, 6]


def test_a_shard_size_out_of_bounds_is_refused() -> None:
    with pytest.raises(ValueError, match="dataset_shard_size"):
        TrainingSpec(dataset_shard_size=0)
    with pytest.raises(ValueError, match="dataset_shards_at_once"):
        TrainingSpec(dataset_shards_at_once=0)


@pytest.mark.parametrize(("start", "stop"), [(3, 3), (5, 2), (0, 11)])
def test_a_shard_out_of_order_or_past_the_set_is_refused(start: int, stop: int) -> None:
    whole = request(prompt_count=10)
    with pytest.raises(ValueError, match="not within the set's 10 prompts"):
        DatasetShardInput(
            round_id=whole.round_id,
            constitution=whole.constitution,
            training=whole.training,
            start=start,
            stop=stop,
        )
