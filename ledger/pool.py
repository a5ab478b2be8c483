"""The connection pool every ledger reader and writer shares.

Its connections exchange jsonb in PostgreSQL's binary format rather than as
text, because the writer puts rows in with COPY (a round's transitions, its
evidence), and COPY speaks only the binary format. Readers get the same codec,
so a JSON column always comes back as the Python value that was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from ledger.errors import DATABASE_AWAY, LedgerError, LedgerUnavailable

log = logging.getLogger(__name__)

# What making a pool meets while the server is away: a refused, reset or
# timed-out connection (OSError), or a server starting up or shutting down.
UNREACHABLE: tuple[type[Exception], ...] = (OSError, *DATABASE_AWAY)
# Pauses between attempts while waiting for the database: doubling, up to the last.
FIRST_PAUSE_S = 1.0
LONGEST_PAUSE_S = 30.0


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode()  # jsonb's binary format: version 1, then text


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


async def _init_connection(connection: asyncpg.Connection) -> None:
    """Exchange jsonb in its binary format, so rows can also be written with COPY."""
    await connection.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )


def database_address(dsn: str) -> str:
    """HOST:PORT of the server a URL names, for messages (never its credentials).

    A host given in the query (`?host=/run/postgresql`, a Unix socket) wins,
    as it does for asyncpg and libpq.
    """
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = (query.get("host") or [parts.hostname or "localhost"])[0]
    try:
        port = parts.port or int((query.get("port") or ["5432"])[0])
    except ValueError:
        port = 5432
    return f"{host}:{port}"


def _reporting_unavailable(address: str) -> Any:
    """The driver's connect, raising `LedgerUnavailable` when the server cannot be reached.

    A refused, reset or timed-out connection is an `OSError`, which would
    otherwise be indistinguishable from any other.
    """

    async def connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(*args, **kwargs)
        except OSError as error:
            raise LedgerUnavailable(address, error) from error

    return connect


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout_s: float = 60.0,
    report_unavailable: bool = False,
) -> asyncpg.Pool:
    """Open the pool a process builds once and hands to its ledger objects.

    Args:
        dsn: The ledger database's URL.
        min_size: Connections kept open while idle; 0 opens none until one is
            needed, so the pool is made even while the database is down.
        max_size: Connections at most; activities and requests beyond it wait.
        connect_timeout_s: How long one connection attempt may take.
        report_unavailable: Raise `LedgerUnavailable` when a connection cannot
            be made (the gateway answers it with 503); else asyncpg's own error,
            whose type name the round reads to say it waits on the database.

    Returns:
        A pool whose connections carry the jsonb codec COPY needs.

    Raises:
        LedgerError: asyncpg gave no pool (its types allow it; awaited, it never does).
    """
    extra: dict[str, Any] = {"timeout": connect_timeout_s}
    if report_unavailable:
        extra["connect"] = _reporting_unavailable(database_address(dsn))
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, **extra
    )
    if pool is None:  # asyncpg types allow it; it never happens when awaited
        raise LedgerError("could not create a connection pool")
    return pool


async def create_pool_when_reachable(
    dsn: str,
    stopped: asyncio.Event,
    *,
    first_pause_s: float = FIRST_PAUSE_S,
    longest_pause_s: float = LONGEST_PAUSE_S,
    **pool: Any,
) -> asyncpg.Pool | None:
    """`create_pool`, tried again with backoff for as long as the database is away.

    A process started while PostgreSQL is down (a deployment brought up in any
    order, a database restarting) waits for it, saying so on each attempt,
    instead of exiting at once. What retrying cannot fix (a wrong password, a
    missing database) is raised at once.

    Args:
        dsn: The ledger database's URL.
        stopped: Set (Ctrl-C, SIGTERM) to give up waiting; an attempt in
            flight is abandoned, so stopping is prompt.
        first_pause_s: Pause after the first failed attempt; it doubles after each.
        longest_pause_s: The longest pause.
        pool: `create_pool`'s other arguments.

    Returns:
        The pool, or None when `stopped` was set before the database answered.
    """
    address = database_address(dsn)
    pause = first_pause_s
    while not stopped.is_set():
        attempt = asyncio.ensure_future(create_pool(dsn, **pool))
        stopping = asyncio.ensure_future(stopped.wait())
        await asyncio.wait({attempt, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not attempt.done():
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError, *UNREACHABLE):
                await attempt
            return None
        try:
            return attempt.result()
        except UNREACHABLE as error:
            log.warning(
                "ledger database at %s unavailable; retrying in %gs (%s)",
                address,
                pause,
                error or type(error).__name__,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), pause)
        pause = min(pause * 2, longest_pause_s)
    return None
