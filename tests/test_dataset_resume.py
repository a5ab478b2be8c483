"""A worker killed (SIGKILL, no goodbye) in the middle of dataset generation:
another worker resumes, nothing finished is generated again, nothing is
written twice, nothing is lost, and progress is visible from heartbeats.

The dataset activity runs in a real `amend worker` process on its own task
queue, driven by a one-step workflow that calls it exactly as the round does
(by name, with a heartbeat timeout and retries); the scripted stand-in model
answers with a little latency so the kill lands mid-way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.model import Model
from activities.training import FileArtifactStore, TrainingActivities
from constitution import RoundSpec, TrainingSpec
from constitution.contracts import Dataset, DatasetInput, Progress
from constitution.samples import sample_constitution
from ledger.store import Ledger
from standins.model.app import create_app
from standins.model.config import ScriptedModelConfig
from standins.serving import serve
from tests.conftest import eventually
from worker.runtime import model_client, running_worker
from worker.settings import Settings
from workflows.client import heartbeat_progress

EXAMPLES = 40
CONCURRENCY = 4
CALLS_PER_EXAMPLE = 3  # answer, critique, revision


class GenerateRequest(BaseModel):
    dataset: DatasetInput
    queue: str


@workflow.defn(sandboxed=False)
class GenerateDatasetOnly:
    """Test harness: the round's dataset step alone, served on another queue."""

    @workflow.run
    async def run(self, request: GenerateRequest) -> Dataset:
        return await workflow.execute_activity_method(
            TrainingActivities.generate_dataset,
            request.dataset,
            task_queue=request.queue,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=request.dataset.training.heartbeat_timeout,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)),
        )


def lines_of(uri: str) -> list[str]:
    return Path(uri.removeprefix("file://")).read_text().splitlines()


async def test_a_worker_killed_mid_generation_is_resumed_without_redoing_or_duplicating(
    dev_server: WorkflowEnvironment,
    ledger: Ledger,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    await ledger.save_version(sample_constitution())
    spec = RoundSpec(round_id="resume", reviewers=["U0ALICE"])
    await ledger.open_round(spec, 1)
    training = TrainingSpec(
        # Short enough to keep the test quick, long enough that a live worker on a
        # busy machine is not taken for dead (heartbeats go out at most every 0.8 of it).
        prompt_count=EXAMPLES,
        heartbeat_timeout=timedelta(seconds=4),
        critique_passes=1,
    )
    request = DatasetInput(round_id="resume", constitution=sample_constitution(), training=training)
    activity_queue = f"{task_queue}-data"
    stand_in = create_app(ScriptedModelConfig(latency_s=0.1))
    client = dev_server.client

    async with serve(stand_in) as model:
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path,
            temporal_task_queue=activity_queue,
            model_base_url=f"{model.url}/v1",
            model_concurrency=CONCURRENCY,
        )
        env = {
            **os.environ,
            "AMEND_DATABASE_URL": database_url,
            "AMEND_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "AMEND_TEMPORAL_TASK_QUEUE": activity_queue,
            "AMEND_MODEL_BASE_URL": f"{model.url}/v1",
            "AMEND_MODEL_CONCURRENCY": str(CONCURRENCY),
            "AMEND_DATA_DIR": str(tmp_path),
        }
        doomed = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "amend"),
            "worker",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with Worker(
                client,
                task_queue=task_queue,
                workflows=[GenerateDatasetOnly],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ):
                handle = await client.start_workflow(
                    GenerateDatasetOnly.run,
                    GenerateRequest(dataset=request, queue=activity_queue),
                    id=f"generate-{uuid.uuid4().hex[:8]}",
                    task_queue=task_queue,
                )

                progress: Progress | None = None

                async def progress_reported() -> bool:
                    nonlocal progress
                    progress = await heartbeat_progress(client, handle)
                    return progress is not None and progress.done > 0

                # Heartbeats are throttled to a fraction of the heartbeat timeout.
                await eventually(progress_reported, "a heartbeat with examples done", 60)
                doomed.send_signal(signal.SIGKILL)
                await doomed.wait()
                kept_at_kill = len(await ledger.dataset_examples("resume"))
                assert 0 < kept_at_kill < EXAMPLES

                # Heartbeats carry the progress a watcher sees.
                assert isinstance(progress, Progress) and progress.stage == "generating_data"
                assert progress.total == EXAMPLES and 0 < progress.done < EXAMPLES

                async with running_worker(settings, database_url, client):
                    dataset = await handle.result()
        finally:
            if doomed.returncode is None:
                doomed.kill()
                await doomed.wait()
        stats = stand_in.state.standin.stats()

    examples = await ledger.dataset_examples("resume")
    # Nothing lost, nothing twice.
    assert [e.position for e in examples] == list(range(EXAMPLES))
    assert dataset.examples == EXAMPLES
    assert len(await asyncio.to_thread(lines_of, dataset.uri)) == EXAMPLES
    # Nothing finished was generated again: at most the examples under way at
    # the kill (twice the model's concurrency) were started twice.
    calls = stats["tasks"]["text"]
    redo = 2 * CONCURRENCY
    assert CALLS_PER_EXAMPLE * EXAMPLES <= calls <= CALLS_PER_EXAMPLE * (EXAMPLES + redo)


async def test_a_batch_generation_resumed_from_its_heartbeat_waits_for_the_same_batch(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Through the Batch API the checkpoint is the batch being waited for and
    the drafts stored after each step: a replacement picks up that batch
    instead of paying for it again. The activity runs in Temporal's activity
    environment; its heartbeats are handed to the replacement as Temporal
    hands over the last attempt's details (decoded JSON)."""
    await ledger.save_version(sample_constitution())
    await ledger.open_round(RoundSpec(round_id="batch-resume", reviewers=["U0ALICE"]), 1)
    training_spec = TrainingSpec(
        prompt_count=6, use_batch_api=True, poll_interval=timedelta(milliseconds=20)
    )
    request = DatasetInput(
        round_id="batch-resume", constitution=sample_constitution(), training=training_spec
    )
    stand_in = create_app(ScriptedModelConfig(latency_s=0.3))
    # The worker's own client (aiohttp's pool, its timeout), as the round runs it.
    async with (
        serve(stand_in) as model,
        model_client(Settings(), base_url=f"{model.url}/v1") as client,
    ):
        training = TrainingActivities(
            Model(client, "amend-proposer", CONCURRENCY),
            ledger,
            FileArtifactStore(tmp_path),
            backends={},
        )
        beats: list[tuple[Any, ...]] = []
        first = ActivityEnvironment()
        first.on_heartbeat = lambda *details: beats.append(details)
        doomed = asyncio.create_task(first.run(training.generate_dataset, request))

        async def waiting_on_the_second_step() -> bool:
            last = beats[-1] if beats else ()
            return len(last) == 2 and last[1].step == 1 and last[1].batch_id is not None

        await eventually(waiting_on_the_second_step, "the second step's batch", 60)
        doomed.cancel()
        await asyncio.gather(doomed, return_exceptions=True)
        waited_for = beats[-1][1].batch_id

        second = ActivityEnvironment()
        second.info = dataclasses.replace(
            second.info, heartbeat_details=[d.model_dump(mode="json") for d in beats[-1]]
        )
        dataset = await second.run(training.generate_dataset, request)
        batches = stand_in.state.standin.batches

    # answer, critique, revise: three batches, none created twice.
    assert len(batches) == 3 and waited_for in batches
    assert dataset.examples == 6
    assert [e.position for e in await ledger.dataset_examples("batch-resume")] == list(range(6))
