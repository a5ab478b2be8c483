"""A TCP relay the tests put between a process and a real server, to cut the
line (an outage as the process sees it) and mend it, or to end TLS in front
of a server that speaks none (as a TLS-terminating load balancer does)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Relay:
    target_host: str
    target_port: int
    tls: ssl.SSLContext | None = None
    port: int = 0
    cut_off: bool = False
    # Subjects of the client certificates presented over TLS, in order.
    client_subjects: list[str] = field(default_factory=list)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def carrying(self, url: str) -> str:
        """`url` (a database's, say) with its host and port replaced by the relay's."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@{self.address}" if credentials else self.address
        return parts._replace(netloc=netloc).geturl()

    def cut(self) -> None:
        """Drop every connection and every new one until `mend`."""
        self.cut_off = True
        for writer in list(self._writers):
            writer.close()

    def mend(self) -> None:
        self.cut_off = False

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        if peer:
            subject = dict(pair[0] for pair in peer["subject"])
            self.client_subjects.append(subject.get("commonName", ""))
        if self.cut_off:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))


@asynccontextmanager
async def relay(target: str, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Relay]:
    """Relay 127.0.0.1:<free port> to `target` (host:port) until the block exits."""
    host, _, port = target.rpartition(":")
    line = Relay(host, int(port), tls)
    server = await asyncio.start_server(line._serve, "127.0.0.1", 0, ssl=tls)
    line.port = server.sockets[0].getsockname()[1]
    try:
        yield line
    finally:
        line.cut()
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


def address_of(url: str, default_port: int = 5432) -> str:
    """host:port of the server `url` names, for `relay` to reach."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or default_port}"
