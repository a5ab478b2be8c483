"""Wiring: the Temporal client, the worker and its activities, built once.

Clients and pools are made here and handed to the activity classes, so every
activity of a worker shares one connection pool, one model client and one
Slack client.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from openai import AsyncOpenAI, DefaultAioHttpClient
from pydantic import SecretStr
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.checks import CheckActivities
from activities.evaluation import EvaluationActivities
from activities.evidence import EvidenceActivities
from activities.finetune import FineTuneBackend, HttpTrainer, OpenAIFineTuning
from activities.ledger import LedgerActivities
from activities.model import Model, ModelActivities
from activities.slack import SlackActivities
from activities.training import FileArtifactStore, TrainingActivities
from gateway.app import create_app
from gateway.deps import GatewayConfig
from gateway.health import health_app, postgres_probe, temporal_probe, worker_probe
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.serving import serve
from worker.settings import Settings
from worker.temporal_connection import connect_temporal
from workflows.activities import implementations
from workflows.dataset import shard_queue
from workflows.refusal import RecordRefusalWorkflow
from workflows.round import TrainingRoundWorkflow


def model_client(settings: Settings, base_url: str | None = None) -> AsyncOpenAI:
    """The worker's one model client, on aiohttp's connection pool.

    httpx's pool (httpcore) scans every connection on each request and each
    response, with a socket check per idle one and a list of all per idle one,
    so a call's client CPU grows with the calls in flight: measured on the
    2-core dev machine against the model stand-in, 1.6 ms a call at 4 in
    flight and 3.9 ms at 64 (the round's evaluation keeps `model_concurrency`
    in flight), against 1.5 ms at either through aiohttp (the `openai` client's
    own `DefaultAioHttpClient`; aiohttp is a dependency already, for Slack).
    """
    # max_retries=0: Temporal owns retries (one retry layer).
    return AsyncOpenAI(
        base_url=base_url or settings.model_base_url,
        api_key=settings.model_api_key.get_secret_value(),
        max_retries=0,
        timeout=settings.model_timeout_s,
        http_client=DefaultAioHttpClient(timeout=settings.model_timeout_s),
    )


def slack_client(settings: Settings) -> AsyncWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    # The SDK waits out a 429's Retry-After, which Temporal's backoff cannot
    # know; everything else transient is left to Temporal's retries.
    kwargs: dict[str, Any] = {
        "token": token,
        "retry_handlers": [
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=settings.slack_rate_limit_retries),
        ],
    }
    if settings.slack_api_url:
        kwargs["base_url"] = settings.slack_api_url.rstrip("/") + "/api/"
    return AsyncWebClient(**kwargs)


@dataclass
class Activities:
    ledger: LedgerActivities
    model: ModelActivities
    slack: SlackActivities
    training: TrainingActivities
    evaluation: EvaluationActivities
    evidence: EvidenceActivities
    checks: CheckActivities

    def all(self) -> list[Callable[..., Any]]:
        """Every activity the round defines, each bound to its implementation."""
        return implementations(
            self.ledger,
            self.model,
            self.slack,
            self.training,
            self.evaluation,
            self.evidence,
            self.checks,
        )

    async def close(self) -> None:
        """Close the model client's connections (aiohttp warns of a session left open)."""
        await self.model.model.client.close()


def fine_tune_backends(settings: Settings, client: AsyncOpenAI) -> dict[str, FineTuneBackend]:
    backends: dict[str, FineTuneBackend] = {"openai": OpenAIFineTuning(client)}
    if settings.trainer_url:
        backends["http"] = HttpTrainer(
            httpx.AsyncClient(timeout=settings.model_timeout_s),
            settings.trainer_url,
            settings.trainer_callback_url if settings.trainer_secret else None,
        )
    return backends


def build_activities(settings: Settings, ledger: Ledger) -> Activities:
    client = model_client(settings)
    model = Model(
        client,
        settings.model_name,
        settings.model_concurrency,
        settings.model_output_retries,
        output_mode=settings.model_output_mode,
        retry_after_cap=timedelta(seconds=settings.model_retry_after_cap_s),
    )
    return Activities(
        ledger=LedgerActivities(ledger),
        model=ModelActivities(model),
        slack=SlackActivities(
            slack_client(settings),
            settings.slack_review_channel,
            ledger,
            settings.gateway_url,
            post_interval_s=settings.slack_post_interval_s,
        ),
        training=TrainingActivities(
            model,
            ledger,
            FileArtifactStore(settings.artifacts_root),
            fine_tune_backends(settings, client),
        ),
        evaluation=EvaluationActivities(
            model,
            settings.grader_model,
            ledger,
            settings.eval_prompt_file,
            reference_model=settings.reference_model,
            artifacts_root=settings.artifacts_root,
        ),
        evidence=EvidenceActivities(
            ledger,
            budget_tokens=settings.evidence_budget_tokens,
            max_chunks=settings.evidence_max_chunks,
        ),
        checks=CheckActivities(
            model,
            ledger,
            grader_model=settings.grader_model,
            duplicate_threshold=settings.duplicate_threshold,
            impact_sample_size=settings.impact_sample_size,
        ),
    )


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox the round runs in, on a worker and when its histories are replayed."""
    # sniffio is loaded lazily by the HTTP clients the worker also runs;
    # passing it through keeps the sandbox from re-importing it per run.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("sniffio")
    )


# amend's packages (pyproject.toml's `packages.find`), whose source is the worker's code.
PACKAGES = (
    "activities",
    "constitution",
    "gateway",
    "ledger",
    "review",
    "standins",
    "worker",
    "workflows",
)


@cache
def code_build_id() -> str:
    """The build id a worker reports to Temporal (in each workflow task it
    completes, and among the task queue's pollers): a digest of amend's source
    files, the Python version and the distributions installed beside amend
    (each `name-version.dist-info`), so that any change of code gives another.

    Temporal's default digests the bytecode of every module loaded when the
    worker is built: about 2,300 of them, 0.24 s of CPU at each worker start
    (issue 14), and a different id for the same code in `amend worker` and in
    `amend dev`, which load different modules. This reads 124 files and a
    directory listing: about 5 ms."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(sys.version.encode())
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    for entry in sorted({p for p in map(Path, sys.path) if p.is_dir()}):
        for dist in sorted(entry.glob("*.dist-info")):
            digest.update(dist.name.encode())
    return digest.hexdigest()


def build_worker(client: Client, settings: Settings, activities: Activities) -> Worker:
    """The worker running `activities`; whoever built them closes them once it stops."""
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        build_id=code_build_id(),
        workflows=[TrainingRoundWorkflow, RecordRefusalWorkflow],
        activities=activities.all(),
        workflow_runner=workflow_runner(),
        **_activity_options(settings),
    )


def build_shard_worker(client: Client, settings: Settings, activities: Activities) -> Worker:
    """The same process's poller of the dataset shards' queue (`workflows.dataset`):
    it takes only `dataset_shards_per_worker` at once, so the rest wait for
    whichever worker has room instead of queuing inside the first that asked.
    The main worker still runs the shards that rounds begun before the
    `dataset-shards-pulled` patch send to its own queue."""
    return Worker(
        client,
        task_queue=shard_queue(settings.temporal_task_queue),
        build_id=code_build_id(),
        activities=[activities.training.generate_dataset_shard],
        max_concurrent_activities=settings.dataset_shards_per_worker,
        **_activity_options(settings),
    )


def _activity_options(settings: Settings) -> dict[str, Any]:
    return {
        # Heartbeats carry the progress watchers see (`amend round show`): send
        # them within seconds, not the default minute.
        "max_heartbeat_throttle_interval": timedelta(seconds=2),
        # On SIGTERM: stop polling, let activities in flight finish this long,
        # then cancel them (Temporal retries them on another worker).
        "graceful_shutdown_timeout": timedelta(seconds=settings.worker_graceful_shutdown_s),
    }


def gateway_app(settings: Settings, database_url: str, temporal: Client) -> FastAPI:
    slack = slack_client(settings)
    return create_app(
        GatewayConfig(
            signing_secret=settings.slack_signing_secret,
            task_queue=settings.temporal_task_queue,
            database_url=SecretStr(database_url),
            slack=slack,
            max_body_bytes=settings.api_max_body_bytes,
            shutdown_grace_s=settings.gateway_graceful_shutdown_s,
            outage_patience=settings.outage_patience,
            trainer_secret=settings.trainer_secret,
            temporal_ui_url=settings.temporal_ui_url,
            temporal_namespace=settings.temporal_namespace,
            artifacts_root=settings.artifacts_root,
            page_refresh_s=settings.page_refresh_s,
            reference_model=settings.reference_model,
            socket_mode=SocketModeClient(
                app_token=settings.slack_app_token.get_secret_value(), web_client=slack
            )
            if settings.slack_app_token
            else None,
        ),
        temporal,
    )


@dataclass
class RunningWorker:
    """A worker polling its task queue, and where its health endpoint answers."""

    worker: Worker
    health_url: str | None  # None without `worker_health_bind`


@asynccontextmanager
async def running_worker(
    settings: Settings,
    database_url: str,
    client: Client | None = None,
    pool: asyncpg.Pool | None = None,
) -> AsyncIterator[RunningWorker]:
    """A worker polling the task queue until the block exits, with its health
    endpoint when `worker_health_bind` is set (port 0: a free one, named in
    `health_url`; closed first on the way out, so a worker finishing its
    activities is no longer ready). `pool`, when given (one made once the
    database answered), is the worker's and is closed with it."""
    pool = pool or await create_pool(database_url)
    try:
        temporal = client or await connect_temporal(settings)
        activities = build_activities(settings, Ledger(pool))
        worker = build_worker(temporal, settings, activities)
        shards = build_shard_worker(temporal, settings, activities)
        queue = settings.temporal_task_queue
        closing = AsyncExitStack()
        closing.push_async_callback(activities.close)  # after the workers have stopped
        async with closing, worker, shards, AsyncExitStack() as health:
            if settings.worker_health_bind:
                host, _, port = settings.worker_health_bind.rpartition(":")
                probes = {
                    "worker": worker_probe(worker, queue),
                    "dataset_shards": worker_probe(shards, shard_queue(queue)),
                    "postgres": postgres_probe(pool),
                    "temporal": temporal_probe(temporal),
                }
                served = await health.enter_async_context(
                    serve(health_app(probes), host, int(port))
                )
                yield RunningWorker(worker, served.url)
            else:
                yield RunningWorker(worker, None)
    finally:
        await pool.close()
