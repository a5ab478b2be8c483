"""The ledger: migrations, idempotent writes and the tamper-evident chain."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from constitution import RoundSpec, TransitionRecord
from constitution.samples import sample_constitution
from ledger.errors import LedgerError
from ledger.migrate import migrate, migrate_url, shipped_migrations
from ledger.store import Ledger

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def transition(seq: int, to: str, frm: str | None = None, round_id: str = "r1") -> TransitionRecord:
    return TransitionRecord(
        workflow_id=f"round-{round_id}",
        sequence=seq,
        round_id=round_id,
        entity="round",
        from_state=frm,
        to_state=to,
        actor="workflow",
        data={"n": seq},
        at=T0 + timedelta(seconds=seq),
    )


async def open_round(ledger: Ledger, round_id: str = "r1") -> None:
    await ledger.save_version(sample_constitution())
    await ledger.open_round(RoundSpec(round_id=round_id, reviewers=["U1"]), base_version=1)


async def test_migrations_run_twice_apply_once(empty_database_url: str) -> None:
    first = await migrate_url(empty_database_url)
    second = await migrate_url(empty_database_url)
    assert first == [m.version for m in shipped_migrations()]
    assert second == []


async def test_concurrent_migrations_apply_each_version_once(empty_database_url: str) -> None:
    results = await asyncio.gather(*(migrate_url(empty_database_url) for _ in range(4)))
    applied = [v for r in results for v in r]
    assert sorted(applied) == [m.version for m in shipped_migrations()]
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(applied)
    finally:
        await conn.close()


async def test_an_edited_applied_migration_is_refused(empty_database_url: str) -> None:
    await migrate_url(empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited'")
        with pytest.raises(RuntimeError, match="different content"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_a_retried_transition_write_records_one_row(ledger: Ledger) -> None:
    await open_round(ledger)
    batch = [transition(1, "created"), transition(2, "proposing", "created")]
    assert await ledger.record_transitions(batch) == 2
    assert await ledger.record_transitions(batch) == 0  # the retry after a crash
    rows = await ledger.timeline("r1")
    assert [r.transition_id for r in rows] == ["round-r1:1", "round-r1:2"]
    round_row = await ledger.get_round("r1")
    assert round_row is not None and round_row.state == "proposing"


async def test_transitions_are_chained_and_tampering_is_found(ledger: Ledger) -> None:
    await open_round(ledger)
    await ledger.record_transitions(
        [
            transition(1, "created"),
            transition(2, "proposing", "created"),
            transition(3, "in_review", "proposing"),
        ]
    )
    rows = await ledger.timeline("r1")
    assert rows[0].prev_hash is None
    assert rows[1].prev_hash == rows[0].hash and rows[2].prev_hash == rows[1].hash
    assert await ledger.verify_chain("r1") == []

    await ledger.pool.execute(
        "UPDATE transitions SET actor = 'mallory' WHERE transition_id = 'round-r1:2'"
    )
    breaks = await ledger.verify_chain("r1")
    assert [(b.transition_id, b.problem) for b in breaks] == [
        ("round-r1:2", "content does not match its hash")
    ]


async def test_a_deleted_transition_breaks_the_chain(ledger: Ledger) -> None:
    await open_round(ledger)
    await ledger.record_transitions([transition(i, f"s{i}") for i in range(1, 4)])
    await ledger.pool.execute("DELETE FROM transitions WHERE transition_id = 'round-r1:2'")
    breaks = await ledger.verify_chain()
    assert breaks[0].transition_id == "round-r1:3"
    assert breaks[0].problem == "sequence 2 is missing"


async def test_a_transition_for_an_unknown_round_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="not in the ledger"):
        await ledger.record_transitions([transition(1, "created", round_id="ghost")])


async def test_versions_are_stored_once_and_conflicts_refused(ledger: Ledger) -> None:
    version = sample_constitution()
    await ledger.save_version(version)
    await ledger.save_version(version)
    stored = await ledger.get_version()
    assert stored is not None and stored.content_hash == version.content_hash
    changed = version.model_copy(update={"principles": version.principles[:-1]})
    with pytest.raises(LedgerError, match="different content"):
        await ledger.save_version(changed)


async def test_a_version_keeps_its_retired_ids_through_the_ledger(ledger: Ledger) -> None:
    base = sample_constitution()
    retired = base.model_copy(
        update={
            "number": 2,
            "principles": base.principles[:-1],
            "retired": ("P12",),
            "parent_hash": base.content_hash,
        }
    )
    await ledger.save_version(base)
    await ledger.save_version(retired)
    stored = await ledger.get_version(2)
    assert stored is not None and stored.retired == ("P12",)
    assert stored.next_principle_id() == "P13"


async def test_a_transition_that_would_break_the_sequence_is_refused(ledger: Ledger) -> None:
    await open_round(ledger)
    await ledger.record_transitions([transition(1, "created"), transition(2, "proposing")])
    with pytest.raises(LedgerError, match="would leave a gap"):
        await ledger.record_transitions([transition(4, "in_review")])
    other_run = transition(2, "in_review").model_copy(update={"workflow_id": "round-other"})
    with pytest.raises(LedgerError, match="arrived after sequence 2"):
        await ledger.record_transitions([other_run])
    assert [t.sequence for t in await ledger.timeline("r1")] == [1, 2]
    assert await ledger.verify_chain("r1") == []


async def test_two_writers_on_one_round_keep_one_unbroken_chain(ledger: Ledger) -> None:
    """A writer remembers the head it wrote last; when another process (a second
    worker, the gateway) has moved the head since, the remembered head is stale,
    and the write must notice instead of forking the chain."""
    await open_round(ledger)
    other = Ledger(ledger.pool)
    await ledger.record_transitions([transition(1, "created")])
    await other.record_transitions([transition(2, "proposing", "created")])
    await ledger.record_transitions([transition(2, "proposing", "created")])  # a retry: skipped
    assert await ledger.record_transitions([transition(3, "in_review", "proposing")]) == 1
    assert await other.record_transitions([transition(4, "closing", "in_review")]) == 1
    with pytest.raises(LedgerError, match="arrived after sequence 4"):
        await ledger.record_transitions(
            [transition(4, "cancelled").model_copy(update={"workflow_id": "round-other"})]
        )
    assert [t.sequence for t in await ledger.timeline("r1")] == [1, 2, 3, 4]
    assert await ledger.verify_chain("r1") == []
    round_row = await ledger.get_round("r1")
    assert round_row is not None and round_row.state == "closing"


async def test_concurrent_writers_of_the_same_transition_write_it_once(ledger: Ledger) -> None:
    await open_round(ledger)
    writers = [Ledger(ledger.pool) for _ in range(4)]
    for writer in writers:
        await writer.record_transitions([transition(1, "created")])  # every writer knows head 1
    results = await asyncio.gather(
        *(w.record_transitions([transition(2, "proposing", "created")]) for w in writers)
    )
    assert sorted(results) == [0, 0, 0, 1]
    assert [t.sequence for t in await ledger.timeline("r1")] == [1, 2]
    assert await ledger.verify_chain("r1") == []
