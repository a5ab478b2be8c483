"""Health that tells the truth: liveness answers while the process does;
readiness asks PostgreSQL and Temporal and names what cannot be reached.

The gateway and the worker run as the service runs them (`stack_on`), with
the worker's health endpoint on; Temporal is reached through a relay the test
can cut, and PostgreSQL is closed to new connections, as in an outage.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from standins.serving import free_port
from tests.conftest import StackFactory, eventually
from tests.relay import Relay, relay
from worker.stack import Stack


@asynccontextmanager
async def service_behind_a_relay(
    dev_server: WorkflowEnvironment, stack_on: StackFactory
) -> AsyncIterator[tuple[Stack, str, Relay]]:
    """The stack, its worker's health URL, and the relay it reaches Temporal by."""
    async with relay(dev_server.client.service_client.config.target_host) as line:
        client = await Client.connect(line.address, data_converter=pydantic_data_converter)
        async with stack_on(dev_server, client=client, worker_health_bind="127.0.0.1:0") as stack:
            assert stack.worker_health_url is not None
            yield stack, stack.worker_health_url, line


async def probe(url: str, path: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{url}{path}")
    return response.status_code, response.json()


def failed(body: dict[str, Any]) -> dict[str, str]:
    return {name: c["detail"] for name, c in body["checks"].items() if not c["ok"]}


HEALTHCHECK = Path(__file__).resolve().parents[1] / "deploy" / "healthcheck.py"


async def container_check(stack: Stack, process: str, worker_bind: str) -> tuple[int, str]:
    """deploy/healthcheck.py as compose runs it in the container: exit status, stderr."""
    env = {
        **os.environ,
        "AMEND_GATEWAY_PORT": str(stack.settings.gateway_port),
        "AMEND_WORKER_HEALTH_BIND": worker_bind.removeprefix("http://"),
        "PYTHONPATH": str(HEALTHCHECK.parents[1]),
    }
    checker = await asyncio.create_subprocess_exec(
        sys.executable, str(HEALTHCHECK), process, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await checker.communicate()
    assert checker.returncode is not None
    return checker.returncode, stderr.decode()


def all_ready(urls: list[str]) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        return all([(await probe(url, "/readyz"))[0] == 200 for url in urls])

    return ready


async def test_readiness_names_a_temporal_outage_while_liveness_stays_ok(
    dev_server: WorkflowEnvironment, stack_on: StackFactory
) -> None:
    async with service_behind_a_relay(dev_server, stack_on) as (stack, worker, line):
        status, body = await probe(stack.gateway_url, "/readyz")
        assert status == 200, body
        assert body["status"] == "ready" and set(body["checks"]) == {"postgres", "temporal"}
        status, body = await probe(worker, "/readyz")
        assert status == 200, body
        assert set(body["checks"]) == {"worker", "dataset_shards", "postgres", "temporal"}
        queue = stack.settings.temporal_task_queue
        assert body["checks"]["worker"]["detail"] == f"polling {queue}"
        assert body["checks"]["dataset_shards"]["detail"] == f"polling {queue}-dataset-shards"

        assert await container_check(stack, "gateway", worker) == (0, "")
        assert await container_check(stack, "worker", worker) == (0, "")

        line.cut()
        try:
            for process in ("gateway", "worker"):
                code, why = await container_check(stack, process, worker)
                assert code == 1 and why.startswith("unhealthy: temporal cannot be reached"), why
            for url in (stack.gateway_url, worker):
                status, body = await probe(url, "/readyz")
                assert status == 503, body
                assert body["status"] == "not ready"
                assert list(failed(body)) == ["temporal"], body
                assert failed(body)["temporal"].startswith("temporal cannot be reached")
                # Liveness: restarting the process would not bring Temporal back.
                assert await probe(url, "/healthz") == (200, {"status": "ok"})
        finally:
            line.mend()
        await eventually(all_ready([stack.gateway_url, worker]), "ready again", 30)


async def test_readiness_names_a_postgres_outage_and_liveness_is_not_a_bare_500(
    dev_server: WorkflowEnvironment,
    stack_on: StackFactory,
    database_url: str,
    postgres_admin_url: str,
) -> None:
    async with service_behind_a_relay(dev_server, stack_on) as (stack, worker, _):
        database = database_url.rsplit("/", 1)[1].split("?")[0]
        admin = await asyncpg.connect(postgres_admin_url)
        try:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
            for url in (stack.gateway_url, worker):
                status, body = await probe(url, "/readyz")
                assert status == 503, body
                assert list(failed(body)) == ["postgres"], body
                assert failed(body)["postgres"].startswith("postgres cannot be reached: ")
                assert await probe(url, "/healthz") == (200, {"status": "ok"})
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            await admin.close()
        await eventually(all_ready([stack.gateway_url, worker]), "ready again", 30)


async def test_a_gateway_with_no_temporal_answering_is_not_ready(
    dev_server: WorkflowEnvironment, database_url: str, tmp_path: Any
) -> None:
    """No Temporal at all (a wrong address, a frontend that never came up)."""
    from standins.serving import serve
    from worker.runtime import gateway_app
    from worker.settings import Settings

    nowhere = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    app = gateway_app(Settings(_env_file=None, data_dir=tmp_path), database_url, nowhere)
    async with serve(app) as served:
        status, body = await probe(served.url, "/readyz")
    assert status == 503
    assert list(failed(body)) == ["temporal"]
    assert body["checks"]["postgres"] == {"ok": True, "detail": "the ledger answers"}
