"""`amend worker` and `amend gateway` started while PostgreSQL is down, as a
deployment brought up in any order starts them: neither exits. The worker says
which database it waits for and tries again with backoff until it answers,
then polls (and SIGTERM stops it promptly meanwhile); the gateway serves at
once, answering 503 until the database is back.

Each runs as the process it is in a deployment; the real PostgreSQL is
reached through a relay the test cuts and mends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from ledger.store import Ledger
from standins.serving import free_port
from tests.conftest import eventually
from tests.relay import Relay, address_of, relay

AMEND = str(Path(sys.executable).parent / "amend")


@asynccontextmanager
async def amend_process(
    kind: str, line: Relay, database_url: str, task_queue: str, temporal: str, log: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`amend worker` or `amend gateway` on the relay; its health (or gateway) URL."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AMEND_")},
        "AMEND_DATABASE_URL": line.carrying(database_url),
        "AMEND_TEMPORAL_ADDRESS": temporal,
        "AMEND_TEMPORAL_TASK_QUEUE": task_queue,
        "AMEND_GATEWAY_PORT": str(port),
        "AMEND_WORKER_HEALTH_BIND": f"127.0.0.1:{port}",
        "AMEND_DATA_DIR": str(log.parent / "data"),
    }
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            AMEND, kind, env=env, stdout=output, stderr=output
        )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def said(log: Path, words: str, wait_s: float = 30) -> None:
    """Wait until the process's output holds `words`."""
    deadline = time.monotonic() + wait_s
    while words not in (output := await asyncio.to_thread(log.read_text)):
        assert time.monotonic() < deadline, f"no {words!r} in {log.name}:\n{output}"
        await asyncio.sleep(0.1)


async def answers(url: str, status: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(url)).status_code == status
    except httpx.TransportError:
        return False


async def test_a_worker_started_while_the_ledger_is_down_waits_for_it_then_polls(
    dev_server: WorkflowEnvironment, database_url: str, task_queue: str, tmp_path: Path
) -> None:
    temporal = dev_server.client.service_client.config.target_host
    async with relay(address_of(database_url)) as line:
        line.cut()
        log = tmp_path / "worker.log"
        async with amend_process("worker", line, database_url, task_queue, temporal, log) as (
            worker,
            health,
        ):
            await said(log, f"ledger database at {line.address} unavailable; retrying in 1s")
            await said(log, "retrying in 2s")  # and again, backing off
            assert worker.returncode is None
            line.mend()
            await said(log, f"worker polling {task_queue}")
            await eventually(lambda: answers(f"{health}/readyz", 200), "the worker ready")
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(worker.wait(), 30) == 0


async def test_a_worker_waiting_for_the_ledger_stops_at_once_on_sigterm(
    dev_server: WorkflowEnvironment, database_url: str, task_queue: str, tmp_path: Path
) -> None:
    temporal = dev_server.client.service_client.config.target_host
    async with relay(address_of(database_url)) as line:
        line.cut()
        log = tmp_path / "worker.log"
        async with amend_process("worker", line, database_url, task_queue, temporal, log) as (
            worker,
            _,
        ):
            await said(log, "retrying in 2s")
            sent = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(worker.wait(), 10) == 0
            assert time.monotonic() - sent < 3, log.read_text()
            assert "stopped before the ledger database answered" in log.read_text()


async def test_a_gateway_started_while_the_ledger_is_down_serves_and_answers_once_it_is_back(
    dev_server: WorkflowEnvironment,
    ledger: Ledger,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    _, token = await ledger.create_token("waiting", "viewer")
    temporal = dev_server.client.service_client.config.target_host
    async with relay(address_of(database_url)) as line:
        line.cut()
        log = tmp_path / "gateway.log"
        async with amend_process("gateway", line, database_url, task_queue, temporal, log) as (
            gateway,
            url,
        ):
            await eventually(lambda: answers(f"{url}/healthz", 200), "the gateway serving")
            await said(log, f"ledger database at {line.address} unavailable")
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
                away = await http.get("/api/rounds")
                assert away.status_code == 503 and away.headers["Retry-After"] == "5"
                assert (await http.get("/readyz")).status_code == 503
                line.mend()
                assert (await http.get("/api/rounds")).status_code == 200
                assert (await http.get("/readyz")).status_code == 200
            gateway.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(gateway.wait(), 30) == 0
