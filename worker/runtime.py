"""Wiring: the Temporal client, the worker and its activities, built once.

Clients and pools are made here and handed to the activity classes, so every
activity of a worker shares one connection pool, one model client and one
Slack client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from openai import AsyncOpenAI
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
from workflows.refusal import RecordRefusalWorkflow
from workflows.round import TrainingRoundWorkflow


def model_client(settings: Settings, base_url: str | None = None) -> AsyncOpenAI:
    # max_retries=0: Temporal owns retries (one retry layer).
    return AsyncOpenAI(
        base_url=base_url or settings.model_base_url,
        api_key=settings.model_api_key.get_secret_value(),
        max_retries=0,
        timeout=settings.model_timeout_s,
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


def build_worker(client: Client, settings: Settings, ledger: Ledger) -> Worker:
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[TrainingRoundWorkflow, RecordRefusalWorkflow],
        activities=build_activities(settings, ledger).all(),
        workflow_runner=workflow_runner(),
        # Heartbeats carry the progress watchers see (`amend round show`): send
        # them within seconds, not the default minute.
        max_heartbeat_throttle_interval=timedelta(seconds=2),
        # On SIGTERM: stop polling, let activities in flight finish this long,
        # then cancel them (Temporal retries them on another worker).
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_s),
    )


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
        worker = build_worker(temporal, settings, Ledger(pool))
        async with worker, AsyncExitStack() as health:
            if settings.worker_health_bind:
                host, _, port = settings.worker_health_bind.rpartition(":")
                probes = {
                    "worker": worker_probe(worker, settings.temporal_task_queue),
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
