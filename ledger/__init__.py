"""The ledger: the durable, queryable record of every round in PostgreSQL.

One concern per module, so that what must never change (the hash chain's
canonical form) and the one place that writes are easy to find:

- `pool`: `create_pool`, the connection pool with the jsonb codec COPY needs.
- `errors`: `LedgerError`, a write the ledger refused.
- `chain`: the hash chain of a round's transitions (hash, append, verify).
- `store`: `Ledger`, the one writer; it has every read too.
- `reads`: `LedgerReads` and the typed rows it returns.
- `dashboards`: aggregations and pages for operators and dashboards.
- `migrate`: the versioned SQL migrations.

Nothing is re-exported here: each name has one home, and importing
`ledger.migrate` does not load the rest.
"""
