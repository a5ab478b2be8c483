"""Serve an ASGI app on a loopback port inside the running event loop.

The dev stack, the demo and the tests run the gateway and the stand-ins in one
process; this is the one way they are started and stopped.

Two things differ from `uvicorn.run`. The socket is bound here, before the
server starts, so a port in use is a `PortInUse` the caller can name a setting
for, not uvicorn's `SystemExit` from inside a task. And the servers leave the
process's signals alone: uvicorn would take SIGINT for itself, stop only the
server that caught it and raise the signal again on the way out, so one Ctrl-C
stopped the gateway before the worker and a second one cut the lifespan short
with a traceback. The process that serves (`amend dev`, `amend gateway`)
handles its signals once and stops everything in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import random
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn


@dataclass(frozen=True)
class Served:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


_EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in _EPHEMERAL_PORTS.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a server another process starts later.

    Picked below the kernel's ephemeral range: a port from `bind(0)` lies in
    that range, where every outgoing connection on the machine (a client of
    PostgreSQL, of the Temporal server) may take it in the seconds before the
    server that was handed it binds, and then that server cannot start. Never
    the same port twice in one process.
    """
    low, high = _ephemeral_range()
    candidates = [
        port
        for port in range(10_000, 65_536)
        if not low <= port <= high and port not in _handed_out
    ]
    for port in random.sample(candidates, min(len(candidates), 200)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PortInUse(OSError):
    """Something else listens on the port; nothing was started."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is already in use")
        self.host = host
        self.port = port


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process serving it,
    and says the moment it listens (`listening`)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (0: a free port), as uvicorn would bind it.

    Raises:
        PortInUse: The port is taken.
    """
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle off (TCP_NODELAY) only
    # on connections whose socket says TCP, and uvicorn writes an answer's
    # head and body apart, so with Nagle on the body waited for the client's
    # delayed ACK: 40 ms on every answer (a lone click's 25 ms in the gateway
    # took 67 ms at the client, issue 14).
    sock = socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from None
        raise
    sock.setblocking(False)
    return sock


def port_in_use(host: str, port: int) -> bool:
    """Whether binding `host:port` would fail because something listens there."""
    try:
        listening_socket(host, port).close()
    except PortInUse:
        return True
    return False


@asynccontextmanager
async def serve(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    graceful_shutdown_s: float | None = None,
    sock: socket.socket | None = None,
) -> AsyncIterator[Served]:
    """Run `app` with uvicorn until the block exits. Port 0 picks a free one.

    On exit uvicorn stops accepting connections and answers the requests it
    has, for at most `graceful_shutdown_s` (unset: as long as they take),
    before the app's lifespan ends. `sock`, bound earlier with
    `listening_socket`, serves on a port that had to be known before the app
    was built (no other process can take it meanwhile, as one could a number
    from `free_port`).

    Raises:
        PortInUse: The port is taken; nothing was started.
    """
    if sock is None:
        sock = listening_socket(host, port)
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=None
        if graceful_shutdown_s is None
        else math.ceil(graceful_shutdown_s),
    )
    server = _Server(config)
    with sock:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        # Woken when it listens or stops, not on a timer: polled every 20 ms, the
        # dev stack's three servers (two stand-ins, the gateway) each waited a
        # whole interval for a start-up of a millisecond or two (issue 14).
        listening = asyncio.ensure_future(server.listening.wait())
        try:
            await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
            if not server.started:
                task.result()
                raise RuntimeError(f"server on {host}:{port} stopped before it started")
        except asyncio.CancelledError:
            # Cancelled while starting (a server under the stack died): stop it
            # here, or uvicorn is cut off mid-lifespan at the loop's end and
            # prints a traceback after the one-line reason.
            server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=5)
            raise
        finally:
            listening.cancel()
        try:
            yield Served(host, port)
        finally:
            server.should_exit = True
            await task
