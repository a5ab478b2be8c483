"""A dataset in shards spreads over every worker on the task queue, each
worker taking only as many as it is set to run at once while the rest wait on
the server for whichever has room, and a worker killed (SIGKILL) in the middle
loses nothing: its shards are taken over by the other worker when their
heartbeats stop, each resuming from what the ledger kept. The file assembled
from the shards is the one a single generation writes: every example once, in
position order, with its manifest.

Two `amend worker` processes; the round's dataset stage is driven by
`bench.sharded_dataset` (the same `workflows.dataset` calls the round makes)
from this process; the scripted model stand-in answers with a little latency.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from pathlib import Path

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.fleet import running_fleet
from bench.sharded_dataset import GenerateDatasetInShards, ShardedDatasetRequest
from constitution import RoundSpec, TrainingSpec
from constitution.contracts import DatasetInput, Progress
from constitution.samples import sample_constitution
from ledger.store import Ledger
from standins.model.config import ScriptedModelConfig
from tests.conftest import eventually
from workflows.client import heartbeat_progress

EXAMPLES = 60
SHARD = 10  # a shard takes about 3 s: long enough to heartbeat its progress (every 2 s)


def read(uri: str) -> bytes:
    return Path(uri.removeprefix("file://")).read_bytes()


async def test_shards_spread_over_two_workers_and_survive_a_killed_one(
    dev_server: WorkflowEnvironment,
    ledger: Ledger,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    await ledger.save_version(sample_constitution())
    await ledger.open_round(RoundSpec(round_id="shards", reviewers=["U0ALICE"]), 1)
    training = TrainingSpec(
        prompt_count=EXAMPLES,
        critique_passes=1,
        dataset_shard_size=SHARD,
        dataset_shards_at_once=4,
        heartbeat_timeout="PT8S",
    )
    request = DatasetInput(round_id="shards", constitution=sample_constitution(), training=training)
    client = dev_server.client
    driver_queue = f"{task_queue}-driver"
    async with (
        running_fleet(
            client.service_client.config.target_host,
            ledger,
            database_url,
            task_queue,
            tmp_path,
            workers=2,
            gateways=0,
            model=ScriptedModelConfig(latency_s=0.2),
            model_concurrency="2",
            dataset_shards_per_worker="1",
        ) as fleet,
        Worker(
            client,
            task_queue=driver_queue,
            workflows=[GenerateDatasetInShards],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
    ):
        handle = await client.start_workflow(
            GenerateDatasetInShards.run,
            ShardedDatasetRequest(dataset=request, queue=task_queue),
            id=f"shards-{uuid.uuid4().hex[:8]}",
            task_queue=driver_queue,
        )
        known = Progress(stage="generating_data", total=EXAMPLES)

        async def several_under_way() -> Progress | None:
            progress = await heartbeat_progress(client, handle, known)
            return progress if progress is not None and progress.done > 0 else None

        # Shards of all their progress, counted against the whole set.
        progress = await eventually(several_under_way, "shards heartbeating", 60)
        assert progress.total == EXAMPLES and 0 < progress.done < EXAMPLES

        async def both_workers_on_shards() -> set[str] | None:
            described = await handle.describe()
            shards = [
                p
                for p in described.raw_description.pending_activities
                if p.activity_type.name == "generate_dataset_shard"
            ]
            running = Counter(
                p.last_worker_identity
                for p in shards
                if p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            )
            held.append(max(running.values(), default=0))
            scheduled = PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
            waiting.append(sum(p.state == scheduled for p in shards))
            seen.update(running)
            return seen if len(seen) == 2 else None

        seen: set[str] = set()
        held: list[int] = []
        waiting: list[int] = []
        # Both workers take shards: the work leaves one process.
        await eventually(both_workers_on_shards, "both workers generating shards", 60)
        assert seen == {w.identity for w in fleet.workers}
        # Each holds one at a time (AMEND_DATASET_SHARDS_PER_WORKER=1); the other
        # two of the four scheduled wait on the server, not inside a worker.
        assert max(held) == 1
        assert max(waiting) > 0
        doomed = fleet.workers[0]
        doomed.process.send_signal(signal.SIGKILL)
        await doomed.process.wait()
        assert len(await ledger.dataset_examples("shards")) < EXAMPLES
        await fleet.set_model_latency(0.005)  # what is left needs no slow model
        dataset = await asyncio.wait_for(handle.result(), 120)

        history = await handle.fetch_history()

    finished_by = {
        e.activity_task_started_event_attributes.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    }
    # The survivor finished what the killed worker left.
    assert fleet.workers[1].identity in finished_by
    examples = await ledger.dataset_examples("shards")
    assert [e.position for e in examples] == list(range(EXAMPLES))
    assert dataset.examples == EXAMPLES
    lines = (await asyncio.to_thread(read, dataset.uri)).decode().splitlines()
    assert [json.loads(line) for line in lines] == [e.example for e in examples]
    manifest = json.loads(await asyncio.to_thread(read, str(dataset.manifest_uri)))
    assert manifest == [
        {"position": e.position, "prompt": e.prompt_id, "principle": e.principle_id}
        for e in examples
    ]
    stored = await ledger.dataset("shards")
    assert stored is not None and stored.sha256 == dataset.sha256
