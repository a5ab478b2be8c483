"""Dashboard reads with one million transitions in the ledger.

The ledger is bulk-loaded with COPY (20,000 rounds of 50 transitions, states
and start times spread over a year), then the two reads every dashboard page
makes are timed: a round's timeline and a page of the round list (newest
first, optionally by state, with its total). Each is compared with the same
SQL run raw through asyncpg, so the ratio is what the read models add
(pydantic rows, the filter clause, the count for pagination).

The loaded rows carry placeholder hashes: chains are not what is measured
here (`amend audit verify` and bench_ledger cover them).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.harness import BenchEnv, Figure, alternating, at_most, value_at_most
from constitution import RoundState
from ledger.chain import TRANSITION_COLUMNS
from ledger.dashboards import Dashboards
from ledger.pool import create_pool
from ledger.reads import ROUND_SELECT, LedgerReads

ROUNDS = 20_000
PER_ROUND = 50
CHUNK = 100_000
SAMPLES = 300
COLUMNS = TRANSITION_COLUMNS.split(", ")
STATES = [s.value for s in RoundState]


async def run(env: BenchEnv) -> list[Figure]:
    url = await env.database()
    pool = await create_pool(url, max_size=2)
    try:
        loaded_s = await _load(pool)
        figures = await _measure(pool)
    finally:
        await pool.close()
    total = ROUNDS * PER_ROUND
    return [
        Figure(
            f"dashboards: COPY {total:,} transitions",
            total / loaded_s,
            "rows/s",
            note=f"{ROUNDS:,} rounds of {PER_ROUND}; the setup of the figures below",
        ),
        *figures,
    ]


async def _load(pool: asyncpg.Pool) -> float:
    started = time.perf_counter()
    now = datetime.now(UTC)
    rng = random.Random(6)
    rounds = []
    for n in range(ROUNDS):
        created = now - timedelta(minutes=rng.randrange(365 * 24 * 60))
        rounds.append(
            (
                f"r{n:05d}",
                f"round-r{n:05d}",
                rng.choice(STATES),
                1,
                None,
                {"round_id": f"r{n:05d}", "reviewers": ["U0BENCH"]},
                PER_ROUND,
                f"{n:064x}",
                created,
                created + timedelta(hours=1),
            )
        )
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "rounds",
            records=rounds,
            columns=[
                "round_id",
                "workflow_id",
                "state",
                "base_version",
                "result_version",
                "spec",
                "last_sequence",
                "last_hash",
                "created_at",
                "updated_at",
            ],
        )
        batch: list[tuple[Any, ...]] = []
        data = {"bench": True}
        for n, row in enumerate(rounds):
            round_id, created = row[0], row[8]
            for seq in range(1, PER_ROUND + 1):
                batch.append(
                    (
                        f"round-{round_id}:{seq}",
                        round_id,
                        seq,
                        "round" if seq % 5 == 0 else f"proposal:{round_id}-p{seq % 5}",
                        "posted",
                        "accepted",
                        "U0BENCH",
                        "",
                        data,
                        created + timedelta(seconds=seq),
                        None,
                        f"{n:056x}{seq:08x}",
                    )
                )
            if len(batch) >= CHUNK:
                await conn.copy_records_to_table("transitions", records=batch, columns=COLUMNS)
                batch = []
        if batch:
            await conn.copy_records_to_table("transitions", records=batch, columns=COLUMNS)
        await conn.execute("ANALYZE rounds; ANALYZE transitions")
    return time.perf_counter() - started


async def _measure(pool: asyncpg.Pool) -> list[Figure]:
    ledger, dashboards = LedgerReads(pool), Dashboards(pool)
    rng = random.Random(60)
    picks = [f"r{rng.randrange(ROUNDS):05d}" for _ in range(SAMPLES * 2 + 20)]
    timeline_sql = "SELECT * FROM transitions WHERE round_id = $1 ORDER BY sequence"

    async def timeline(i: int) -> None:
        rows = await ledger.timeline(picks[i])
        assert len(rows) == PER_ROUND

    async def timeline_raw(i: int) -> None:
        await pool.fetch(timeline_sql, picks[-1 - i])

    ours_t, raw_t = await alternating(timeline, timeline_raw, SAMPLES)

    offsets = [rng.randrange(0, 2_000) for _ in range(SAMPLES + 10)]
    by_state = [rng.choice(STATES) for _ in range(SAMPLES + 10)]
    list_sql = f"{ROUND_SELECT} ORDER BY created_at DESC, round_id LIMIT 50 OFFSET $1"

    async def round_list(i: int) -> None:
        page = await dashboards.rounds(state=by_state[i], limit=50, offset=offsets[i] // 20)
        assert page.total > 0

    async def round_list_raw(i: int) -> None:
        await pool.fetch(list_sql, offsets[i])

    ours_l, raw_l = await alternating(round_list, round_list_raw, SAMPLES)
    samples = f"{SAMPLES} reads each, interleaved with the raw query"
    return [
        Figure(
            "dashboards: round timeline (p50)",
            ours_t.median_ms,
            "ms",
            raw_t.median_ms,
            "the same SELECT, raw asyncpg",
            at_most(3),
            note=f"{PER_ROUND} rows of a random round; {samples}",
        ),
        Figure(
            "dashboards: round timeline (p99)",
            ours_t.p99_ms,
            "ms",
            raw_t.p99_ms,
            "the same SELECT, raw asyncpg",
            value_at_most(50),
        ),
        Figure(
            "dashboards: round list page (p50)",
            ours_l.median_ms,
            "ms",
            raw_l.median_ms,
            "a raw page of rounds, no filter or total",
            at_most(4),
            note=f"50 rounds of one state with the total, random offsets; {samples}",
        ),
        Figure(
            "dashboards: round list page (p99)",
            ours_l.p99_ms,
            "ms",
            raw_l.p99_ms,
            "a raw page of rounds, no filter or total",
            value_at_most(100),
        ),
    ]
