"""Ledger writes against the database's own floor.

Recording a transition reads the round's chain head, hashes, inserts the row
and moves the head, all in one transaction; the floor is one raw asyncpg
single-row INSERT of the same row into the same table. Bulk recording (a
round's backlog, an import) is compared with `copy_records_to_table`, the
fastest way asyncpg has to put rows in a table.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.harness import BenchEnv, Figure, alternating, at_least, at_most
from constitution.models import RoundSpec, TransitionRecord
from ledger.chain import TRANSITION_COLUMNS, transition_hash, transition_row
from ledger.pool import create_pool
from ledger.store import Ledger

SINGLE = 400
BULK = 5_000
BULK_REPEAT = 5
COLUMNS = TRANSITION_COLUMNS.split(", ")


def _record(round_id: str, sequence: int) -> TransitionRecord:
    return TransitionRecord(
        workflow_id=f"round-{round_id}",
        sequence=sequence,
        round_id=round_id,
        entity=f"proposal:{round_id}-p1" if sequence % 2 else "round",
        from_state="posted",
        to_state="posted",
        actor="bench",
        reason="benchmark transition",
        data={"reviewer": "U0BENCH", "n": sequence},
        at=datetime.now(UTC),
    )


def _row(record: TransitionRecord) -> tuple[Any, ...]:
    return transition_row(record, None, transition_hash(None, record))


async def _open(ledger: Ledger, round_id: str) -> None:
    await ledger.open_round(RoundSpec(round_id=round_id, reviewers=["U0BENCH"]), 1)


async def run(env: BenchEnv) -> list[Figure]:
    url = await env.database()
    pool = await create_pool(url, max_size=2)
    try:
        return await _measure(Ledger(pool), pool)
    finally:
        await pool.close()


async def _measure(ledger: Ledger, pool: asyncpg.Pool) -> list[Figure]:
    ours_round, raw_round = f"bench-{uuid.uuid4().hex[:6]}", f"raw-{uuid.uuid4().hex[:6]}"
    await _open(ledger, ours_round)
    await _open(ledger, raw_round)
    ours_records = [_record(ours_round, i) for i in range(1, SINGLE + 10)]
    raw_rows = [_row(_record(raw_round, i)) for i in range(1, SINGLE + 10)]
    ours_next = iter(ours_records)
    raw_next = iter(raw_rows)
    insert = (
        f"INSERT INTO transitions ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})"
    )

    async def ours(_: int) -> None:
        await ledger.record_transitions([next(ours_next)])

    async def raw(_: int) -> None:
        await pool.execute(insert, *next(raw_next))

    single_ours, single_raw = await alternating(ours, raw, SINGLE)

    bulk_rounds = [f"bulk-{uuid.uuid4().hex[:6]}" for _ in range(BULK_REPEAT + 1)]
    copy_rounds = [f"copy-{uuid.uuid4().hex[:6]}" for _ in range(BULK_REPEAT + 1)]
    for round_id in bulk_rounds + copy_rounds:
        await _open(ledger, round_id)
    bulk_batches = iter([[_record(r, i) for i in range(1, BULK + 1)] for r in bulk_rounds])
    copy_batches = iter([[_row(_record(r, i)) for i in range(1, BULK + 1)] for r in copy_rounds])

    async def bulk(_: int) -> None:
        await ledger.record_transitions(next(bulk_batches))

    async def copy(_: int) -> None:
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "transitions", records=next(copy_batches), columns=COLUMNS
            )

    bulk_ours, bulk_copy = await alternating(bulk, copy, BULK_REPEAT, rounds=BULK_REPEAT, warmup=1)
    ours_rate = BULK / bulk_ours.median
    copy_rate = BULK / bulk_copy.median
    return [
        Figure(
            "ledger: record one transition (p50)",
            single_ours.median_ms,
            "ms",
            single_raw.median_ms,
            "raw asyncpg INSERT",
            at_most(2),
            note=f"p99 {single_ours.p99_ms:.2f} ms vs raw {single_raw.p99_ms:.2f} ms; "
            f"{SINGLE} writes each, interleaved",
        ),
        Figure(
            "ledger: record one transition (p99)",
            single_ours.p99_ms,
            "ms",
            single_raw.p99_ms,
            "raw asyncpg INSERT",
            at_most(2),
        ),
        Figure(
            f"ledger: bulk record {BULK} transitions",
            ours_rate,
            "rows/s",
            copy_rate,
            "copy_records_to_table",
            at_least(0.5),
            note=f"median of {BULK_REPEAT} batches each, one round per batch",
        ),
    ]
