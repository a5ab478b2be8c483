"""The faults, one function each, and the log of what was injected when.

Each fault acts on the running processes (`bench.chaos.services`) or on a
stand-in's control API the way the real thing would fail: a worker or the
gateway SIGKILLed, Temporal and PostgreSQL stopped and started on their data,
the Slack and model services unreachable for a while and then answering 429
and 5xx, a message deleted by a person. The scenario decides when.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from bench.chaos.services import Postgres, Service


@dataclass(frozen=True)
class Injected:
    kind: str
    at: float  # wall clock
    detail: str


@dataclass
class FaultLog:
    """Every fault injected, in order."""

    entries: list[Injected] = field(default_factory=list)

    def add(self, kind: str, detail: str) -> None:
        self.entries.append(Injected(kind, time.time(), detail))
        print(f"  fault: {kind}: {detail}", flush=True)

    def counts(self) -> Counter[str]:
        return Counter(e.kind for e in self.entries)


async def kill_workers(
    workers: list[Service],
    log: FaultLog,
    rng: random.Random,
    count: int,
    gap_s: tuple[float, float],
    stop: asyncio.Event,
) -> None:
    """SIGKILL a worker chosen at random, `count` times, a random gap apart;
    each is started again by its supervisor a second later."""
    killed = 0
    while killed < count and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), rng.uniform(*gap_s))
            return
        except TimeoutError:
            pass
        running = [w for w in workers if w.process is not None and w.process.returncode is None]
        if not running:
            continue
        victim = rng.choice(running)
        pid = victim.pid
        if victim.kill():
            killed += 1
            log.add("worker SIGKILL", f"{victim.name} (pid {pid}), {killed} of {count}")


async def restart_temporal(temporal: Service, log: FaultLog, during: str) -> None:
    """Stop the Temporal dev server (SIGTERM) and start it again on its SQLite file."""
    started = time.monotonic()
    await temporal.down(signal.SIGTERM)
    await temporal.up()
    log.add(f"Temporal restart {during}", f"down {time.monotonic() - started:.0f} s")


async def postgres_outage(
    postgres: Postgres, log: FaultLog, seconds: float, during: Awaitable[object] | None = None
) -> None:
    """PostgreSQL stopped for `seconds`, then started on its data; `during`
    runs while it is down (clicks that must still be answered)."""
    await postgres.down()
    log.add("PostgreSQL stopped", f"for {seconds:g} s")
    pending = asyncio.ensure_future(during) if during is not None else None
    await asyncio.sleep(seconds)
    await postgres.up()
    if pending is not None:
        await pending


async def standin_outage(standin: Service, log: FaultLog, seconds: float) -> None:
    """A stand-in unreachable for `seconds` (stopped; its state kept in its file)."""
    await standin.down()
    log.add(f"{standin.name} down", f"for {seconds:g} s")
    await asyncio.sleep(seconds)
    await standin.up()


async def slack_errors(slack_url: str, log: FaultLog, count: int) -> None:
    """The next `count` Slack Web API calls answer 429 (Retry-After 1) or 500, alternately."""
    faults = [
        {"kind": "rate_limited", "retry_after": 1} if i % 2 == 0 else {"kind": "server_error"}
        for i in range(count)
    ]
    async with httpx.AsyncClient(timeout=10) as http:
        (
            await http.post(f"{slack_url}/_standin/faults", json={"faults": faults})
        ).raise_for_status()
    log.add("Slack 429/5xx", f"next {count} Web API calls")


async def model_errors(model_url: str, log: FaultLog, count: int) -> None:
    """The next `count` chat completions answer 429 or 500, alternately."""
    faults = ["rate_limit" if i % 2 == 0 else "server_error" for i in range(count)]
    async with httpx.AsyncClient(timeout=10) as http:
        (
            await http.post(
                f"{model_url}/_standin/faults", json={"faults": faults, "retry_after": 1}
            )
        ).raise_for_status()
    log.add("model 429/5xx", f"next {count} completions")


async def delete_message(slack_url: str, log: FaultLog, channel: str, ts: str, what: str) -> None:
    """A person deletes a message in the channel."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = (
            await http.post(f"{slack_url}/_chaos/delete", json={"channel": channel, "ts": ts})
        ).json()
    log.add(
        "Slack message deleted", f"{what} (ts {ts}){'' if answer['deleted'] else ': not found'}"
    )


async def kill_gateway_with_clicks_in_flight(
    gateway: Service, log: FaultLog, clicks: Callable[[], Awaitable[object]], after_s: float = 0.3
) -> None:
    """Start `clicks`, SIGKILL the gateway `after_s` later (its supervisor
    starts it again), and wait for the clicks and Slack's retries to end."""
    task = asyncio.ensure_future(clicks())
    await asyncio.sleep(after_s)
    pid = gateway.pid
    if gateway.kill():
        log.add("gateway SIGKILL", f"pid {pid} with clicks in flight")
    await task
