"""The one error type of the ledger.

It has a module of its own because every other ledger module raises it (the
chain, the writer, the pool) and callers catch it without caring which:
`activities.ledger` turns it into a non-retryable activity failure, since a
write the ledger refused once is refused again on every retry.
"""

from __future__ import annotations


class LedgerError(RuntimeError):
    """The ledger refused a write that would make it inconsistent.

    Raised instead of writing, so the ledger never holds a forked chain, a gap
    in a round's sequence, or two different constitutions under one number.
    """
