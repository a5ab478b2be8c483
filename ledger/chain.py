"""The hash chain of a round's transitions.

Every transition of a round is a row whose hash covers its content and the
previous row's hash, so an edited, inserted or deleted row is found later by
recomputing the chain (`amend audit verify`). What the hash covers, and how
it is written, must never change: rows written by any earlier release must
still verify. That canonical form, the appending of rows after a round's head,
and the check of a stored chain live here together so the three cannot drift
apart.

Appending is a write; `TransitionChain` is driven only by the ledger writer
(`ledger.store.Ledger.record_transitions`), which stays the one way anything
is written. Reading a chain back and checking it is `ledger.reads`' job with
`first_break` from here, so an audit needs no writer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import BaseModel

from constitution import TransitionRecord
from ledger.errors import LedgerError

TRANSITION_COLUMNS = (
    "transition_id, round_id, sequence, entity, from_state, to_state, actor, reason, data, at,"
    " prev_hash, hash"
)
# Heads remembered per writer: enough for every round a worker drives at once,
# bounded so a long-lived worker does not keep every round it ever saw.
KNOWN_HEADS = 10_000


class Chained(Protocol):
    """What a transition's hash covers; both the record written and the row read have it.

    Each member names the key it takes in the canonical form of `transition_hash`.
    """

    @property
    def transition_id(self) -> str:
        """Hashed as `id`."""
        ...

    @property
    def round_id(self) -> str:
        """Hashed as `round`."""
        ...

    @property
    def sequence(self) -> int:
        """Hashed as `seq`."""
        ...

    @property
    def entity(self) -> str:
        """Hashed as `entity`."""
        ...

    @property
    def from_state(self) -> str | None:
        """Hashed as `from`; null for an entity's first state."""
        ...

    @property
    def to_state(self) -> str:
        """Hashed as `to`."""
        ...

    @property
    def actor(self) -> str:
        """Hashed as `actor`."""
        ...

    @property
    def reason(self) -> str:
        """Hashed as `reason`."""
        ...

    @property
    def data(self) -> dict[str, Any]:
        """Hashed as `data`, its keys sorted."""
        ...

    @property
    def at(self) -> datetime:
        """Hashed as `at`, in UTC and ISO 8601, whatever zone it was given in."""
        ...


class TransitionRow(BaseModel):
    """One link of a round's chain as stored: the transition and both hashes.

    The dashboard API serves these as they are, so operators can recompute a
    chain without the service.
    """

    transition_id: str
    round_id: str
    sequence: int
    entity: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    data: dict[str, Any]
    at: datetime
    prev_hash: str | None
    hash: str


class ChainBreak(BaseModel):
    """Where a round's chain stops verifying, and why: what an audit reports."""

    round_id: str
    transition_id: str
    sequence: int
    problem: str


def transition_hash(prev_hash: str | None, row: Chained) -> str:
    """The hash a transition is stored with, chained to the one before it.

    The canonical form (sorted keys, no spaces, UTC time) is fixed for good:
    changing it would make every stored chain fail to verify.

    Args:
        prev_hash: The hash of the round's previous transition; None for its first.
        row: The transition, as a record about to be written or a row read back.

    Returns:
        The SHA-256 hex digest.
    """
    canonical = json.dumps(
        {
            "id": row.transition_id,
            "round": row.round_id,
            "seq": row.sequence,
            "entity": row.entity,
            "from": row.from_state,
            "to": row.to_state,
            "actor": row.actor,
            "reason": row.reason,
            "data": row.data,
            "at": row.at.astimezone(UTC).isoformat(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(f"{prev_hash or ''}|{canonical}".encode()).hexdigest()


def transition_row(record: TransitionRecord, prev_hash: str | None, digest: str) -> tuple[Any, ...]:
    """A record as the values of `TRANSITION_COLUMNS`, in order.

    One tuple serves both the single-row INSERT and COPY, so the two paths
    cannot store a transition differently.
    """
    return (
        record.transition_id,
        record.round_id,
        record.sequence,
        record.entity,
        record.from_state,
        record.to_state,
        record.actor,
        record.reason,
        record.data,
        record.at,
        prev_hash,
        digest,
    )


def first_break(
    round_id: str,
    rows: Sequence[TransitionRow],
    head: tuple[int, str | None] | None = None,
) -> ChainBreak | None:
    """The first row of a round's chain that does not verify, if any.

    Only the first is reported: every row after a break chains to it, so they
    would all fail for the same reason.

    Args:
        round_id: The round the rows belong to.
        rows: The round's transitions in sequence order.
        head: The sequence and hash the round's row says its chain ends at;
            without it, rows deleted from the end of the chain go unseen.

    Returns:
        The break, or None when the chain is intact.
    """
    prev: str | None = None
    expected_sequence = 1
    for row in rows:
        problem = None
        if row.sequence != expected_sequence:
            problem = f"sequence {expected_sequence} is missing"
        elif row.prev_hash != prev:
            problem = "prev_hash does not match the previous row"
        elif row.hash != transition_hash(prev, row):
            problem = "content does not match its hash"
        if problem:
            return ChainBreak(
                round_id=round_id,
                transition_id=row.transition_id,
                sequence=row.sequence,
                problem=problem,
            )
        prev = row.hash
        expected_sequence += 1
    if head is not None and (head[0] != expected_sequence - 1 or head[1] != prev):
        last = rows[-1] if rows else None
        return ChainBreak(
            round_id=round_id,
            transition_id=last.transition_id if last else f"(round {round_id})",
            sequence=head[0],
            problem=f"the chain ends at sequence {expected_sequence - 1} but the round's "
            f"head is sequence {head[0]}",
        )
    return None


def _is_proposal(record: TransitionRecord) -> bool:
    return record.entity.startswith("proposal:")


class TransitionChain:
    """Appends transitions to their rounds' chains, once each.

    A writer keeps the head (sequence and hash) of each round it wrote last,
    so the common case, the next transition of a round this worker drives, is
    one statement; the cache is only a hint that the statement checks against
    the row, so two writers on one round never fork its chain.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        """Start with no known heads: the first write of each round takes the locked path."""
        self.pool = pool
        self._heads: dict[str, tuple[int, str | None]] = {}

    async def append(self, records: Sequence[TransitionRecord]) -> int:
        """Append transitions to their round's chain; return how many were new.

        Rows already present (an activity retried after it committed) are
        skipped, so each transition is written once. A lone transition whose
        round head this process wrote last is written in one statement that
        moves the head only if nobody else did; anything else (a batch, a
        retry, a head another process moved) takes the locked path.

        Raises:
            LedgerError: A round is not in the ledger, or a transition would
                leave a gap or arrive after its sequence was taken by another.
        """
        if len(records) == 1 and await self._append_after_known_head(records[0]):
            return 1
        written = 0
        async with self.pool.acquire() as conn, conn.transaction():
            by_round: dict[str, list[TransitionRecord]] = {}
            for record in sorted(records, key=lambda r: (r.round_id, r.sequence)):
                by_round.setdefault(record.round_id, []).append(record)
            for round_id, chain in by_round.items():
                written += await self._append_locked(conn, round_id, chain)
        return written

    async def _append_after_known_head(self, record: TransitionRecord) -> bool:
        head = self._heads.get(record.round_id)
        if head is None or head[0] != record.sequence - 1:
            return False
        digest = transition_hash(head[1], record)
        proposal = record.entity.removeprefix("proposal:") if _is_proposal(record) else None
        written = await self.pool.fetchval(
            f"""WITH head AS (
                   UPDATE rounds SET last_sequence = $3, last_hash = $12, updated_at = now(),
                          state = CASE WHEN $4 = 'round' THEN $6 ELSE state END
                   WHERE round_id = $2 AND last_sequence = $3 - 1
                         AND last_hash IS NOT DISTINCT FROM $11
                   RETURNING round_id
               ), row AS (
                   INSERT INTO transitions ({TRANSITION_COLUMNS})
                   SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM head
                   RETURNING transition_id
               ), proposal AS (
                   UPDATE proposals SET state = $6
                   WHERE proposal_id = $13 AND EXISTS (SELECT 1 FROM row)
               )
               SELECT count(*) FROM row""",
            *transition_row(record, head[1], digest),
            proposal,
        )
        if not written:
            self._heads.pop(record.round_id, None)
            return False
        self._remember_head(record.round_id, record.sequence, digest)
        return True

    async def _append_locked(
        self, conn: PoolConnectionProxy, round_id: str, chain: list[TransitionRecord]
    ) -> int:
        head = await conn.fetchrow(
            "SELECT last_sequence, last_hash FROM rounds WHERE round_id = $1 FOR UPDATE",
            round_id,
        )
        if head is None:
            raise LedgerError(f"round {round_id} is not in the ledger")
        last_sequence, last_hash = head["last_sequence"], head["last_hash"]
        seen = [r.transition_id for r in chain if r.sequence <= last_sequence]
        present = set()
        if seen:
            present = {
                row["transition_id"]
                for row in await conn.fetch(
                    "SELECT transition_id FROM transitions WHERE transition_id = ANY($1::text[])",
                    seen,
                )
            }
        rows = []
        round_state: str | None = None
        proposal_states: dict[str, str] = {}
        for record in chain:
            if record.sequence <= last_sequence:
                if record.transition_id in present:
                    continue
                raise LedgerError(
                    f"transition {record.transition_id} arrived after sequence {last_sequence}"
                )
            if record.sequence != last_sequence + 1:
                raise LedgerError(
                    f"transition {record.transition_id} would leave a gap after sequence "
                    f"{last_sequence}"
                )
            digest = transition_hash(last_hash, record)
            rows.append(transition_row(record, last_hash, digest))
            last_sequence, last_hash = record.sequence, digest
            if record.entity == "round":
                round_state = record.to_state
            elif _is_proposal(record):
                proposal_states[record.entity.removeprefix("proposal:")] = record.to_state
        if not rows:
            self._remember_head(round_id, last_sequence, last_hash)
            return 0
        await conn.copy_records_to_table(
            "transitions", records=rows, columns=TRANSITION_COLUMNS.split(", ")
        )
        await conn.execute(
            """UPDATE rounds SET last_sequence = $2, last_hash = $3, updated_at = now(),
                   state = coalesce($4, state)
               WHERE round_id = $1""",
            round_id,
            last_sequence,
            last_hash,
            round_state,
        )
        if proposal_states:
            await conn.execute(
                """UPDATE proposals SET state = moved.state
                   FROM unnest($1::text[], $2::text[]) AS moved (proposal_id, state)
                   WHERE proposals.proposal_id = moved.proposal_id""",
                list(proposal_states),
                list(proposal_states.values()),
            )
        self._remember_head(round_id, last_sequence, last_hash)
        return len(rows)

    def _remember_head(self, round_id: str, sequence: int, digest: str | None) -> None:
        """Only a hint for the one-statement path, which checks it against the row.

        Bounded so a long-lived worker does not keep every round.
        """
        self._heads.pop(round_id, None)
        self._heads[round_id] = (sequence, digest)
        while len(self._heads) > KNOWN_HEADS:
            self._heads.pop(next(iter(self._heads)))
