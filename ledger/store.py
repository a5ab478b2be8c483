"""The one ledger writer and reader.

Every write is idempotent, because activities are retried: a transition's id
is `<workflow id>:<sequence>`, a decision's `<workflow id>:d<sequence>`, a
proposal's is fixed by the round. Transitions are chained per round by
`ledger.chain`, so an edited or deleted row is found by `verify_chain`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import BaseModel

from constitution import (
    ConstitutionVersion,
    Decision,
    Principle,
    Proposal,
    RoundSpec,
    TransitionRecord,
)
from constitution.evidence import EvidenceSelection, SelectedItem
from ledger.chain import ChainBreak, TransitionChain, TransitionRow, first_break
from ledger.errors import LedgerError

EVIDENCE_COLUMNS = [
    "round_id",
    "evidence_id",
    "kind",
    "summary",
    "principles",
    "detail",
    "source",
    "tokens",
    "suspicious",
    "chunk",
    "selection",
    "position",
]

ROUND_SELECT = (
    "SELECT round_id, workflow_id, state, base_version, result_version, spec,"
    " created_at, updated_at FROM rounds"
)


class RoundRow(BaseModel):
    round_id: str
    workflow_id: str
    state: str
    base_version: int | None
    result_version: int | None
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ApiToken(BaseModel):
    """A bearer token of the HTTP API, as listed; the secret is never stored."""

    token_id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DecidedProposal(BaseModel):
    decision_id: str
    decision: str
    edited_text: str | None
    comment: str | None
    proposal_id: str
    kind: str
    target: str | None
    title: str | None
    touches: list[str]


class Ledger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.chain = TransitionChain(pool)

    # -- constitution versions -------------------------------------------------

    async def save_version(self, version: ConstitutionVersion) -> None:
        """Store a version once; storing the same one again is a no-op, a
        different one under the same number is refused."""
        async with self.pool.acquire() as conn, conn.transaction():
            existing = await conn.fetchval(
                "SELECT content_hash FROM constitution_versions WHERE number = $1", version.number
            )
            if existing is not None:
                if existing != version.content_hash:
                    raise LedgerError(
                        f"constitution v{version.number} already exists with different content"
                    )
                return
            await conn.execute(
                """INSERT INTO constitution_versions
                       (number, content_hash, parent_hash, round_id, retired)
                   VALUES ($1, $2, $3, $4, $5)""",
                version.number,
                version.content_hash,
                version.parent_hash,
                version.round_id,
                list(version.retired),
            )
            await conn.executemany(
                """INSERT INTO principles (version, position, principle_id, title, text, protected)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                [
                    (version.number, i, p.id, p.title, p.text, p.protected)
                    for i, p in enumerate(version.principles)
                ],
            )

    async def get_version(self, number: int | None = None) -> ConstitutionVersion | None:
        """The version with this number, or the latest when `number` is None."""
        async with self.pool.acquire() as conn:
            if number is None:
                row = await conn.fetchrow(
                    "SELECT * FROM constitution_versions ORDER BY number DESC LIMIT 1"
                )
            else:
                row = await conn.fetchrow(
                    "SELECT * FROM constitution_versions WHERE number = $1", number
                )
            if row is None:
                return None
            principles = await conn.fetch(
                "SELECT * FROM principles WHERE version = $1 ORDER BY position", row["number"]
            )
        return ConstitutionVersion(
            number=row["number"],
            parent_hash=row["parent_hash"],
            round_id=row["round_id"],
            retired=tuple(row["retired"]),
            principles=tuple(
                Principle(
                    id=p["principle_id"], title=p["title"], text=p["text"], protected=p["protected"]
                )
                for p in principles
            ),
        )

    async def version_with_hash(self, content_hash: str) -> ConstitutionVersion | None:
        number = await self.pool.fetchval(
            "SELECT number FROM constitution_versions WHERE content_hash = $1", content_hash
        )
        return None if number is None else await self.get_version(number)

    # -- rounds ----------------------------------------------------------------

    async def open_round(self, spec: RoundSpec, base_version: int | None) -> None:
        await self.pool.execute(
            """INSERT INTO rounds (round_id, workflow_id, state, base_version, spec)
               VALUES ($1, $2, 'created', $3, $4)
               ON CONFLICT (round_id) DO NOTHING""",
            spec.round_id,
            spec.workflow_id,
            base_version,
            spec.model_dump(mode="json"),
        )

    async def set_result_version(self, round_id: str, version: int) -> None:
        await self.pool.execute(
            "UPDATE rounds SET result_version = $2, updated_at = now() WHERE round_id = $1",
            round_id,
            version,
        )

    async def get_round(self, round_id: str) -> RoundRow | None:
        row = await self.pool.fetchrow(
            f"{ROUND_SELECT} WHERE round_id = $1",
            round_id,
        )
        return RoundRow(**dict(row)) if row else None

    async def list_rounds(self, limit: int = 50) -> list[RoundRow]:
        rows = await self.pool.fetch(
            f"{ROUND_SELECT} ORDER BY created_at DESC LIMIT $1",
            limit,
        )
        return [RoundRow(**dict(r)) for r in rows]

    # -- transitions -----------------------------------------------------------

    async def record_transitions(self, records: Sequence[TransitionRecord]) -> int:
        """Append transitions to their round's chain; return how many were new.

        Rows already present (an activity retried after it committed) are
        skipped, so each transition is written once. A lone transition whose
        round head this process wrote last is written in one statement that
        moves the head only if nobody else did; anything else (a batch, a
        retry, a head another process moved) takes the locked path.
        """
        return await self.chain.append(records)

    async def timeline(self, round_id: str) -> list[TransitionRow]:
        rows = await self.pool.fetch(
            "SELECT * FROM transitions WHERE round_id = $1 ORDER BY sequence", round_id
        )
        return [TransitionRow(**dict(r)) for r in rows]

    async def verify_chain(self, round_id: str | None = None) -> list[ChainBreak]:
        """Recompute every hash; return the first break of each round (none: intact)."""
        if round_id is None:
            round_ids = [
                r["round_id"] for r in await self.pool.fetch("SELECT round_id FROM rounds")
            ]
        else:
            round_ids = [round_id]
        breaks: list[ChainBreak] = []
        for rid in round_ids:
            found = first_break(rid, await self.timeline(rid))
            if found is not None:
                breaks.append(found)
        return breaks

    # -- proposals and decisions -----------------------------------------------

    async def save_proposals(self, proposals: Sequence[Proposal]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO proposals (proposal_id, round_id, position, state, kind, target,
                       title, text, rationale, evidence, touches, prompt_version, model)
                   VALUES ($1, $2, $3, 'drafted', $4, $5, $6, $7, $8, $9, $10, $11, $12)
                   ON CONFLICT (proposal_id) DO NOTHING""",
                [
                    (
                        p.id,
                        p.round_id,
                        i,
                        p.draft.kind.value,
                        p.draft.target,
                        p.draft.title,
                        p.draft.text,
                        p.draft.rationale,
                        p.draft.evidence,
                        p.draft.touches,
                        p.prompt_version,
                        p.model,
                    )
                    for i, p in enumerate(proposals)
                ],
            )
            await _save_proposal_facts(conn, proposals)

    async def set_proposal_message(self, proposal_id: str, channel: str, ts: str) -> None:
        await self.pool.execute(
            "UPDATE proposals SET slack_channel = $2, slack_ts = $3 WHERE proposal_id = $1",
            proposal_id,
            channel,
            ts,
        )

    async def proposal_message(self, proposal_id: str) -> tuple[str, str] | None:
        row = await self.pool.fetchrow(
            "SELECT slack_channel, slack_ts FROM proposals WHERE proposal_id = $1", proposal_id
        )
        if row is None or row["slack_ts"] is None:
            return None
        return str(row["slack_channel"]), str(row["slack_ts"])

    async def record_decision(self, round_id: str, decision_id: str, decision: Decision) -> bool:
        status = await self.pool.execute(
            """INSERT INTO decisions (decision_id, proposal_id, round_id, kind, reviewer, text,
                   comment, decided_at, override)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (decision_id) DO NOTHING""",
            decision_id,
            decision.proposal_id,
            round_id,
            decision.kind.value,
            decision.reviewer,
            decision.text,
            decision.comment,
            decision.decided_at,
            decision.override,
        )
        return bool(status.endswith(" 1"))

    async def record_decision_attempt(
        self,
        *,
        round_id: str,
        proposal_id: str | None,
        reviewer: str,
        kind: str | None,
        outcome: str,
        reason: str,
        source: str,
    ) -> None:
        await self.pool.execute(
            """INSERT INTO decision_attempts (round_id, proposal_id, reviewer, kind, outcome,
                   reason, source) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            round_id,
            proposal_id,
            reviewer,
            kind,
            outcome,
            reason,
            source,
        )

    async def slack_post(self, post_key: str) -> tuple[str, str] | None:
        """The channel and ts of a post already made under this key."""
        row = await self.pool.fetchrow(
            "SELECT channel, ts FROM slack_posts WHERE post_key = $1", post_key
        )
        return None if row is None else (str(row["channel"]), str(row["ts"]))

    async def record_slack_post(self, post_key: str, round_id: str, channel: str, ts: str) -> None:
        await self.pool.execute(
            """INSERT INTO slack_posts (post_key, round_id, channel, ts) VALUES ($1, $2, $3, $4)
               ON CONFLICT (post_key) DO NOTHING""",
            post_key,
            round_id,
            channel,
            ts,
        )

    async def decisions(self, round_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM decisions WHERE round_id = $1 ORDER BY decided_at", round_id
        )
        return [dict(r) for r in rows]

    async def decision_attempts(self, round_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM decision_attempts WHERE round_id = $1 ORDER BY attempt_id", round_id
        )
        return [dict(r) for r in rows]

    # -- retraining ------------------------------------------------------------

    async def record_training_job(
        self,
        *,
        job_id: str,
        round_id: str,
        backend: str,
        base_model: str,
        method: str,
        dataset_uri: str,
        dataset_hash: str,
        examples: int,
        status: str,
        fine_tuned_model: str | None = None,
        error: str | None = None,
        poll_url: str | None = None,
    ) -> None:
        await self.pool.execute(
            """INSERT INTO training_jobs (job_id, round_id, backend, base_model, method,
                   dataset_uri, dataset_hash, examples, status, fine_tuned_model, error,
                   poll_url)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (job_id) DO UPDATE SET status = EXCLUDED.status,
                   fine_tuned_model = EXCLUDED.fine_tuned_model, error = EXCLUDED.error,
                   updated_at = now()""",
            job_id,
            round_id,
            backend,
            base_model,
            method,
            dataset_uri,
            dataset_hash,
            examples,
            status,
            fine_tuned_model,
            error,
            poll_url,
        )

    async def update_training_job(
        self, job_id: str, *, status: str, fine_tuned_model: str | None, error: str | None
    ) -> None:
        await self.pool.execute(
            """UPDATE training_jobs SET status = $2, fine_tuned_model = $3, error = $4,
                   updated_at = now() WHERE job_id = $1""",
            job_id,
            status,
            fine_tuned_model,
            error,
        )

    async def training_job_for_round(self, round_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM training_jobs WHERE round_id = $1 ORDER BY created_at LIMIT 1", round_id
        )
        return dict(row) if row else None

    async def record_evaluation(
        self,
        *,
        round_id: str,
        constitution_version: int,
        candidate_model: str,
        baseline_model: str,
        candidate: dict[str, Any],
        baseline: dict[str, Any],
        passed: bool,
        reasons: list[str],
        rubric_version: str | None = None,
        prompt_set: str | None = None,
    ) -> None:
        await self.pool.execute(
            """INSERT INTO evaluations (round_id, constitution_version, candidate_model,
                   baseline_model, candidate, baseline, passed, reasons, rubric_version,
                   prompt_set)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT (round_id) DO UPDATE SET candidate = EXCLUDED.candidate,
                   baseline = EXCLUDED.baseline, passed = EXCLUDED.passed,
                   reasons = EXCLUDED.reasons, rubric_version = EXCLUDED.rubric_version,
                   prompt_set = EXCLUDED.prompt_set""",
            round_id,
            constitution_version,
            candidate_model,
            baseline_model,
            candidate,
            baseline,
            passed,
            reasons,
            rubric_version,
            prompt_set,
        )

    async def import_version(self, version: ConstitutionVersion, actor: str) -> None:
        """Store a version an operator imported, recording who did."""
        await self.save_version(version)
        await self.pool.execute(
            "UPDATE constitution_versions SET imported_by = $2 WHERE number = $1",
            version.number,
            actor,
        )

    # -- API tokens (operators and dashboards) -----------------------------------

    async def create_token(self, name: str, role: str) -> tuple[ApiToken, str]:
        """Make a token; the secret is returned once and only its hash is kept."""
        token_id = secrets.token_hex(4)
        token = f"amend_{token_id}_{secrets.token_urlsafe(24)}"
        row = await self.pool.fetchrow(
            """INSERT INTO api_tokens (token_id, name, role, token_hash) VALUES ($1, $2, $3, $4)
               RETURNING token_id, name, role, created_at, revoked_at""",
            token_id,
            name,
            role,
            token_hash(token),
        )
        assert row is not None
        return ApiToken(**dict(row)), token

    async def token_holder(self, token: str) -> ApiToken | None:
        """The live token this secret belongs to, if any."""
        row = await self.pool.fetchrow(
            """SELECT token_id, name, role, created_at, revoked_at FROM api_tokens
               WHERE token_hash = $1 AND revoked_at IS NULL""",
            token_hash(token),
        )
        return ApiToken(**dict(row)) if row else None

    async def list_tokens(self) -> list[ApiToken]:
        rows = await self.pool.fetch(
            "SELECT token_id, name, role, created_at, revoked_at FROM api_tokens"
            " ORDER BY created_at"
        )
        return [ApiToken(**dict(r)) for r in rows]

    async def revoke_token(self, token_id: str) -> bool:
        status = await self.pool.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL",
            token_id,
        )
        return bool(status.endswith(" 1"))

    async def evaluation(self, round_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM evaluations WHERE round_id = $1", round_id)
        return dict(row) if row else None

    async def evaluation_trend(self) -> list[dict[str, Any]]:
        """Evaluation figures by constitution version, oldest first."""
        return [dict(r) for r in await self.pool.fetch("SELECT * FROM evaluation_trend")]

    async def record_example(
        self,
        *,
        round_id: str,
        position: int,
        prompt_id: str,
        principle_id: str,
        method: str,
        example: dict[str, Any],
        skipped: str | None = None,
    ) -> bool:
        """Keep one finished example; False when that position was already kept
        (a generation that resumed or ran twice keeps the first)."""
        status = await self.pool.execute(
            """INSERT INTO dataset_examples (round_id, position, prompt_id, principle_id,
                   method, example, skipped)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (round_id, position) DO NOTHING""",
            round_id,
            position,
            prompt_id,
            principle_id,
            method,
            example,
            skipped,
        )
        return bool(status == "INSERT 0 1")

    async def dataset_examples(self, round_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM dataset_examples WHERE round_id = $1 ORDER BY position", round_id
        )
        return [dict(r) for r in rows]

    async def record_dataset(
        self,
        *,
        round_id: str,
        constitution_version: int,
        method: str,
        uri: str,
        sha256: str,
        manifest_uri: str | None,
        examples: int,
        skipped: int,
        prompt_set: str,
    ) -> None:
        await self.pool.execute(
            """INSERT INTO datasets (round_id, constitution_version, method, uri, sha256,
                   manifest_uri, examples, skipped, prompt_set)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (round_id) DO NOTHING""",
            round_id,
            constitution_version,
            method,
            uri,
            sha256,
            manifest_uri,
            examples,
            skipped,
            prompt_set,
        )

    async def dataset(self, round_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM datasets WHERE round_id = $1", round_id)
        return dict(row) if row else None

    async def record_job_events(self, job_id: str, events: Sequence[dict[str, Any]]) -> None:
        """Keep a fine-tune job's events; each look reports recent ones again,
        and those already kept are skipped."""
        await self.pool.executemany(
            """INSERT INTO training_job_events (job_id, event_id, level, message, data, at)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
            [
                (job_id, e["id"], e["level"], e["message"], e.get("data") or {}, e["at"])
                for e in events
            ],
        )

    async def job_events(self, job_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM training_job_events WHERE job_id = $1 ORDER BY at, event_id", job_id
        )
        return [dict(r) for r in rows]

    # -- evidence and checks -----------------------------------------------------

    async def save_evidence(
        self, round_id: str, selection: EvidenceSelection, items: Sequence[SelectedItem]
    ) -> bool:
        """Store a round's evidence and its selection in one transaction, with
        COPY (a round may bring 100k items). The selection row marks the work
        done, so a retried import writes nothing twice; returns whether it wrote."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"evidence:{round_id}")
            if await conn.fetchval(
                "SELECT 1 FROM evidence_selections WHERE round_id = $1", round_id
            ):
                return False
            await conn.copy_records_to_table(
                "evidence",
                records=[
                    (
                        round_id,
                        s.item.id,
                        s.item.kind.value,
                        s.item.summary,
                        s.item.principles,
                        s.item.detail,
                        s.source,
                        s.tokens,
                        s.suspicious,
                        s.chunk,
                        s.reason,
                        i,
                    )
                    for i, s in enumerate(items)
                ],
                columns=EVIDENCE_COLUMNS,
            )
            await conn.execute(
                """INSERT INTO evidence_selections (round_id, budget_tokens, chunks, total_items,
                       selected_items) VALUES ($1, $2, $3, $4, $5)""",
                round_id,
                selection.budget_tokens,
                len(selection.chunks),
                selection.total_items,
                selection.selected_items,
            )
            return True

    async def evidence(self, round_id: str, *, selected_only: bool = False) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            """SELECT evidence_id, kind, summary, principles, detail, source, tokens, suspicious,
                   chunk, selection FROM evidence WHERE round_id = $1
                   AND (NOT $2 OR chunk IS NOT NULL) ORDER BY position""",
            round_id,
            selected_only,
        )
        return [dict(r) for r in rows]

    async def evidence_summaries(self, round_id: str, ids: Sequence[str]) -> dict[str, str]:
        """Summaries of the named items, for a proposal's message."""
        if not ids:
            return {}
        rows = await self.pool.fetch(
            """SELECT evidence_id, summary FROM evidence
               WHERE round_id = $1 AND evidence_id = ANY($2::text[])""",
            round_id,
            list(ids),
        )
        return {r["evidence_id"]: r["summary"] for r in rows}

    async def evidence_selection(self, round_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM evidence_selections WHERE round_id = $1", round_id
        )
        return dict(row) if row else None

    async def decided_proposals(self, round_id: str) -> list[DecidedProposal] | None:
        """A round's decisions with the proposals they settled, in the order
        taken; None if there is no such round."""
        if await self.get_round(round_id) is None:
            return None
        rows = await self.pool.fetch(
            """SELECT d.decision_id, d.kind AS decision, d.text AS edited_text, d.comment,
                   p.proposal_id, p.kind, p.target, p.title, p.touches
               FROM decisions d JOIN proposals p USING (proposal_id)
               WHERE d.round_id = $1 ORDER BY d.decided_at, d.decision_id""",
            round_id,
        )
        return [DecidedProposal(**dict(r)) for r in rows]

    async def record_dropped_drafts(self, round_id: str, drafts: Sequence[Proposal]) -> None:
        """Drafts the checks kept from reviewers, with every verdict."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO dropped_drafts (round_id, draft_id, draft, reason, request_ids)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (round_id, draft_id) DO NOTHING""",
                [
                    (
                        round_id,
                        d.id,
                        d.draft.model_dump(mode="json"),
                        d.checks[-1].detail if d.checks else "",
                        d.request_ids,
                    )
                    for d in drafts
                ],
            )
            await _save_checks(conn, round_id, drafts)

    async def dropped_drafts(self, round_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM dropped_drafts WHERE round_id = $1 ORDER BY draft_id", round_id
        )
        return [dict(r) for r in rows]

    async def checks(self, round_id: str, subject: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            """SELECT check_name, verdict, detail FROM proposal_checks
               WHERE round_id = $1 AND subject = $2 ORDER BY position""",
            round_id,
            subject,
        )
        return [dict(r) for r in rows]

    async def proposal_generation(self, proposal_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM proposal_generation WHERE proposal_id = $1", proposal_id
        )
        if row is None:
            return None
        linked = await self.pool.fetch(
            "SELECT evidence_id FROM proposal_evidence WHERE proposal_id = $1 ORDER BY evidence_id",
            proposal_id,
        )
        return {**dict(row), "evidence": [r["evidence_id"] for r in linked]}


async def _save_checks(
    conn: PoolConnectionProxy[asyncpg.Record], round_id: str, subjects: Sequence[Proposal]
) -> None:
    await conn.executemany(
        """INSERT INTO proposal_checks (round_id, subject, position, check_name, verdict, detail)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        [
            (round_id, p.id, i, c.check, c.verdict.value, c.detail)
            for p in subjects
            for i, c in enumerate(p.checks)
        ],
    )


async def _save_proposal_facts(
    conn: PoolConnectionProxy[asyncpg.Record], proposals: Sequence[Proposal]
) -> None:
    """What a proposal went through before review, beside its row: the model
    calls behind it, its check verdicts, conflicts, impact and evidence links."""
    await conn.executemany(
        """INSERT INTO proposal_generation (proposal_id, request_ids, prompt_versions, chunk,
               strict_review, conflicts, impact) VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (proposal_id) DO NOTHING""",
        [
            (
                p.id,
                p.request_ids,
                p.prompt_versions or [p.prompt_version],
                p.chunk,
                p.strict_review,
                [c.model_dump(mode="json") for c in p.conflicts],
                p.impact.model_dump(mode="json") if p.impact else None,
            )
            for p in proposals
        ],
    )
    await conn.executemany(
        """INSERT INTO proposal_evidence (proposal_id, round_id, evidence_id)
           SELECT $1, $2, $3 WHERE EXISTS (
               SELECT 1 FROM evidence WHERE round_id = $2 AND evidence_id = $3)
           ON CONFLICT DO NOTHING""",
        [(p.id, p.round_id, e) for p in proposals for e in p.draft.evidence],
    )
    for round_id in {p.round_id for p in proposals}:
        await _save_checks(conn, round_id, [p for p in proposals if p.round_id == round_id])
