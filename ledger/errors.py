"""The ledger's errors: a write it refuses, and its database being away.

It has a module of its own because every other ledger module raises
`LedgerError` (the chain, the writer, the pool) and callers catch it without
caring which: `activities.ledger` turns it into a non-retryable activity
failure, since a write the ledger refused once is refused again on every
retry. `LedgerUnavailable` and `DATABASE_AWAY` are the opposite case: trying
again later is the answer (the gateway says so with 503 and Retry-After).
"""

from __future__ import annotations

import asyncpg


class LedgerError(RuntimeError):
    """The ledger refused a write that would make it inconsistent.

    Raised instead of writing, so the ledger never holds a forked chain, a gap
    in a round's sequence, or two different constitutions under one number.
    """


class LedgerUnavailable(ConnectionError):
    """The ledger's database cannot be reached now (down, restarting, refusing).

    Unlike `LedgerError`, trying again later may well succeed. A
    `ConnectionError`, so that code which already treats a refused connection
    as the ledger being away treats this the same.
    """

    def __init__(self, address: str, cause: BaseException) -> None:
        super().__init__(
            f"the ledger database at {address} is unavailable: {cause or type(cause).__name__}"
        )
        self.address = address


# What a read or write meets while PostgreSQL is away (stopped, restarting,
# shutting down, the connection cut), as opposed to a statement it refuses.
DATABASE_AWAY: tuple[type[Exception], ...] = (
    LedgerUnavailable,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
