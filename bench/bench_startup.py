"""`amend dev` from cold to ready, against starting its two servers alone.

Cold: a fresh data directory, so PostgreSQL runs initdb and Temporal creates
its database, as on a new machine. Ready: the gateway's /healthz answers,
which needs the ledger migrated and the worker polling. The floor is the time
to start the same Temporal dev server binary and the same embedded PostgreSQL
on their own, side by side (as `amend dev` starts them), from a fresh
directory; the difference is what amend adds: importing its
code, migrating, seeding, and starting the worker, stand-ins and gateway.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import BenchEnv, Figure, at_most
from standins.serving import free_port
from worker.database import start_embedded
from worker.devstack import temporal_binary

REPEAT = 3
READY_TIMEOUT_S = 120


async def run(env: BenchEnv) -> list[Figure]:
    ours, floor = [], []
    for _ in range(REPEAT):
        floor.append(await _servers_alone())
        ours.append(await _amend_dev())
    best_ours, best_floor = min(ours), min(floor)
    imports = min([await _import_time() for _ in range(REPEAT)])
    target = at_most(1.5)
    missed = not target.met(best_ours, best_ours / best_floor)
    why = (
        f"Missed: importing the service (worker, gateway and their libraries: {imports:.1f} s "
        "in a fresh interpreter, loaded while the servers start) and then migrating, seeding "
        "and starting the worker, stand-ins and gateway, which wait on the database, on two "
        "cores shared with the servers. "
        if missed
        else ""
    )
    return [
        Figure(
            "start-up: `amend dev` cold to ready (best of 3)",
            best_ours,
            "s",
            best_floor,
            "Temporal dev server + embedded PostgreSQL alone",
            target,
            note=f"{why}ready = gateway /healthz answers (ledger migrated, worker polling); "
            f"all runs: {', '.join(f'{t:.1f}' for t in ours)} s; floor runs: "
            f"{', '.join(f'{t:.1f}' for t in floor)} s",
        )
    ]


async def _amend_dev() -> float:
    data = Path(tempfile.mkdtemp(prefix="amend-bench-dev-"))
    gateway = free_port()
    environment = os.environ | {
        "AMEND_DATA_DIR": str(data),
        "AMEND_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "AMEND_TEMPORAL_UI_PORT": str(free_port()),
        "AMEND_GATEWAY_PORT": str(gateway),
        "AMEND_STAND_IN_PORT_MODEL": str(free_port()),
        "AMEND_STAND_IN_PORT_SLACK": str(free_port()),
    }
    amend = Path(sys.executable).parent / "amend"
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        str(amend),
        "dev",
        env=environment,
        cwd=data,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"amend dev exited with {process.returncode}")
                try:
                    if (await http.get(f"http://127.0.0.1:{gateway}/healthz")).status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                if time.perf_counter() - started > READY_TIMEOUT_S:
                    raise RuntimeError(f"amend dev was not ready in {READY_TIMEOUT_S} s")
                await asyncio.sleep(0.05)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


async def _import_time() -> float:
    """A fresh interpreter importing what `amend dev` runs (the CLI and the
    service it loads beside the servers), and nothing else."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import worker.cli, worker.devstack, worker.stack",
        stdout=subprocess.DEVNULL,
    )
    await process.wait()
    return time.perf_counter() - started


async def _servers_alone() -> float:
    data = Path(tempfile.mkdtemp(prefix="amend-bench-floor-"))
    port = free_port()
    started = time.perf_counter()
    temporal = await asyncio.create_subprocess_exec(
        *[
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--ui-port",
            str(free_port()),
            "--db-filename",
            str(data / "temporal.db"),
            "--log-level",
            "warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _, embedded = await asyncio.gather(
            _until_listening(port), asyncio.to_thread(start_embedded, data)
        )
        elapsed = time.perf_counter() - started
        await asyncio.to_thread(embedded.stop)
        return elapsed
    finally:
        temporal.terminate()
        await temporal.wait()


async def _until_listening(port: int) -> None:
    """The dev server answers gRPC once its frontend listens; `amend dev`
    waits for the same by connecting a client."""
    from temporalio.client import Client

    deadline = time.perf_counter() + READY_TIMEOUT_S
    while True:
        try:
            await asyncio.wait_for(Client.connect(f"127.0.0.1:{port}"), 2)
            return
        except Exception:
            if time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.05)
