"""The connection pool every ledger reader and writer shares.

Its connections exchange jsonb in PostgreSQL's binary format rather than as
text, because the writer puts rows in with COPY (a round's transitions, its
evidence), and COPY speaks only the binary format. Readers get the same codec,
so a JSON column always comes back as the Python value that was written.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from ledger.errors import LedgerError


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


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open the pool a process builds once and hands to its ledger objects.

    Args:
        dsn: The ledger database's URL.
        min_size: Connections kept open while idle.
        max_size: Connections at most; activities and requests beyond it wait.

    Returns:
        A pool whose connections carry the jsonb codec COPY needs.

    Raises:
        LedgerError: asyncpg gave no pool (its types allow it; awaited, it never does).
    """
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection
    )
    if pool is None:  # asyncpg types allow it; it never happens when awaited
        raise LedgerError("could not create a connection pool")
    return pool
