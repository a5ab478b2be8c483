"""Serve an ASGI app on a loopback port inside the running event loop.

The dev stack, the demo and the tests run the gateway and the stand-ins in one
process; this is the one way they are started and stopped.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass(frozen=True)
class Served:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, graceful_shutdown_s: float | None = None
) -> AsyncIterator[Served]:
    """Run `app` with uvicorn until the block exits. Port 0 picks a free one.

    On exit uvicorn stops accepting connections and answers the requests it
    has, for at most `graceful_shutdown_s` (unset: as long as they take),
    before the app's lifespan ends."""
    if port == 0:
        port = free_port(host)
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
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"server on {host}:{port} stopped before it started")
        await asyncio.sleep(0.02)
    try:
        yield Served(host, port)
    finally:
        server.should_exit = True
        await task
