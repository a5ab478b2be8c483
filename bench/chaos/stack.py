"""The stack under test: PostgreSQL, Temporal, the stand-ins, two workers and
a gateway, each a process of its own on ports fixed for the whole run."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.chaos.clicks import SIGNING_SECRET
from bench.chaos.services import (
    Postgres,
    Service,
    amend_service,
    standin_service,
    stop_all,
    temporal_service,
)
from bench.chaos.standins import BOT_TOKEN, CHANNEL
from bench.harness import SMALL_EVAL_SET
from constitution.samples import sample_constitution
from ledger.migrate import migrate_url
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.serving import free_port
from worker.database import ensure_database

DATABASE = "amend_chaos"
TASK_QUEUE = "amend-chaos"


@dataclass
class ChaosStack:
    workdir: Path
    postgres: Postgres
    temporal: Service
    slack: Service
    model: Service
    workers: list[Service]
    gateway: Service
    database_url: str
    temporal_address: str
    slack_url: str
    model_url: str
    gateway_url: str
    token: str

    @property
    def services(self) -> list[Service]:
        return [self.temporal, self.slack, self.model, *self.workers, self.gateway]

    def amend_env(self) -> dict[str, str]:
        return amend_env(
            self.database_url, self.temporal_address, self.slack_url, self.model_url, self.workdir
        )

    async def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One operator API call through the gateway (raises httpx errors)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(
            base_url=self.gateway_url, headers=headers, timeout=10
        ) as http:
            return await http.request(method, f"/api{path}", **kwargs)

    async def stop(self) -> None:
        await stop_all(self.services)
        await self.postgres.down()


def amend_env(
    database_url: str, temporal: str, slack_url: str, model_url: str, workdir: Path
) -> dict[str, str]:
    """What every `amend` process of the suite is configured with (nothing
    inherited from the caller's AMEND_* settings)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AMEND_")}
    return {
        **inherited,
        "AMEND_DATABASE_URL": database_url,
        "AMEND_TEMPORAL_ADDRESS": temporal,
        "AMEND_TEMPORAL_TASK_QUEUE": TASK_QUEUE,
        "AMEND_MODEL_BASE_URL": f"{model_url}/v1",
        "AMEND_SLACK_API_URL": slack_url,
        "AMEND_SLACK_BOT_TOKEN": BOT_TOKEN,
        "AMEND_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "AMEND_SLACK_REVIEW_CHANNEL": CHANNEL,
        "AMEND_SLACK_POST_INTERVAL_S": "0.05",
        # One artifact store, as workers share a volume in a deployment.
        "AMEND_DATA_DIR": str(workdir / "shared"),
        "AMEND_WORKER_GRACEFUL_SHUTDOWN_S": "5",
        "AMEND_GATEWAY_GRACEFUL_SHUTDOWN_S": "5",
        # The faults are the subject here, not the gate: the 55-prompt evaluation set the
        # tests use keeps each round's evaluation to a few hundred model calls.
        "AMEND_EVAL_PROMPT_FILE": str(SMALL_EVAL_SET),
    }


async def start_stack(workdir: Path, continue_as_new_events: int) -> ChaosStack:
    """Start everything, each piece ready before the next that needs it.

    Whatever fails (or stops it: SIGTERM, Ctrl-C) part way, what was already
    started is stopped before the error goes on.
    """
    postgres = Postgres(workdir)
    temporal_port, slack_port, model_port, gateway_port = (free_port() for _ in range(4))
    temporal = temporal_service(workdir, temporal_port, continue_as_new_events)
    slack = standin_service("slack", workdir, slack_port)
    model = standin_service("model", workdir, model_port)
    temporal_address = f"127.0.0.1:{temporal_port}"
    slack_url, model_url = f"http://127.0.0.1:{slack_port}", f"http://127.0.0.1:{model_port}"
    stack = ChaosStack(
        workdir,
        postgres,
        temporal,
        slack,
        model,
        [],
        gateway=amend_service("gateway", 1, workdir, gateway_port, {}),
        database_url="",
        temporal_address=temporal_address,
        slack_url=slack_url,
        model_url=model_url,
        gateway_url=f"http://127.0.0.1:{gateway_port}",
        token="",
    )
    try:
        await postgres.up()
        await ensure_database(postgres.admin_url, DATABASE)
        stack.database_url = postgres.url(DATABASE)
        await migrate_url(stack.database_url)
        stack.token = await _seed(stack.database_url)
        await temporal.up()
        await slack.up()
        await model.up()
        env = stack.amend_env()
        stack.workers = [amend_service("worker", n, workdir, free_port(), env) for n in (1, 2)]
        stack.gateway = amend_service("gateway", 1, workdir, gateway_port, env)
        for service in [*stack.workers, stack.gateway]:
            await service.up()
    except BaseException:
        await stack.stop()
        raise
    return stack


async def _seed(database_url: str) -> str:
    """The sample constitution as v1, and an operator token for the suite."""
    pool = await create_pool(database_url, max_size=1)
    try:
        ledger = Ledger(pool)
        await ledger.save_version(sample_constitution())
        _, token = await ledger.create_token(f"chaos-{uuid.uuid4().hex[:6]}", "operator")
    finally:
        await pool.close()
    return token
