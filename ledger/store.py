"""The one ledger writer: every INSERT and UPDATE of the service goes through `Ledger`.

Every write is idempotent, because activities are retried: a transition's id
is `<workflow id>:<sequence>`, a decision's `<workflow id>:d<sequence>`, a
proposal's is fixed by the round, and the other rows are keyed by what they
record (ON CONFLICT ... DO NOTHING, or DO UPDATE where a later look carries
news). Transitions go through the round's hash chain (`ledger.chain`).

`Ledger` extends `LedgerReads` instead of wrapping one: activities that read
and write (open a round after reading its version, find a started job before
starting another) get both through the one object the worker builds, and keep
calling `ledger.get_version(...)` beside `ledger.save_version(...)`; a wrapper
would forward every read by hand. The split is by module: `ledger.reads` only
SELECTs, and this module (with the chain it drives) is the only code that
writes. Code that only reads takes a `LedgerReads`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import BaseModel, Field

from constitution import (
    ConstitutionVersion,
    Decision,
    DecisionRequest,
    Principle,
    Proposal,
    RoundSpec,
    TransitionRecord,
)
from constitution.contracts import ReferenceFigures
from constitution.documents import (
    Provenance,
    imported_version,
    principles_hash,
    reverted_version,
)
from constitution.evidence import EvidenceSelection, SelectedItem
from constitution.failures import EvaluationFailure
from ledger.chain import TransitionChain
from ledger.errors import LedgerError
from ledger.reads import (
    ApiToken,
    EvaluationAnswerRow,
    InboxClick,
    InboxEntry,
    LedgerReads,
    read_version,
    token_hash,
    typed_rows,
)

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

# Every writer of constitution versions takes this transaction lock, so two
# imports (or an import and a round) never pick the same next number.
VERSIONS_LOCK_KEY = 0x616D656E6476  # "amendv"


class StoredVersion(BaseModel):
    """What an import or a revert did: the version it made, or the one that already says it."""

    version: int = Field(description="The new version, or the latest when nothing was stored.")
    stored: bool
    reverts: int | None = Field(
        default=None, description="The earlier version whose principles the new one restores."
    )


class Ledger(LedgerReads):
    """The ledger's one writer, with every read of `LedgerReads`.

    Build one per process over the shared pool: it remembers the chain heads
    it wrote last (`TransitionChain`), which makes the next transition of a
    round this worker drives a single statement.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        """Write through `pool`; the chain's head cache starts empty."""
        super().__init__(pool)
        self.chain = TransitionChain(pool)

    # -- constitution versions -------------------------------------------------

    async def save_version(
        self, version: ConstitutionVersion, provenance: Provenance | None = None
    ) -> None:
        """Store a version once; `provenance` names who stored it when no round made it.

        Storing the same one again is a no-op, a different one under the same number is
        refused.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", VERSIONS_LOCK_KEY)
            await _insert_version(conn, version, provenance)

    async def import_document(
        self, principles: tuple[Principle, ...], provenance: Provenance
    ) -> StoredVersion:
        """Store a document an operator imported as the next version.

        A document with the latest version's principles stores nothing; one
        with an earlier version's is a revert to that version (recorded as
        one), since that is what importing an exported old version means.

        Raises:
            DocumentError: The document cannot be the next version (it revives
                a retired id under new text, or repeats an id).
        """
        content_hash = principles_hash(principles)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", VERSIONS_LOCK_KEY)
            latest = await read_version(conn, None)
            if latest is not None and latest.content_hash == content_hash:
                return StoredVersion(version=latest.number, stored=False)
            earlier = await conn.fetchval(
                "SELECT max(number) FROM constitution_versions WHERE content_hash = $1",
                content_hash,
            )
            if latest is not None and earlier is not None:
                restored = await read_version(conn, earlier)
                assert restored is not None
                version = reverted_version(restored, latest)
            else:
                version = imported_version(principles, latest)
            await _insert_version(conn, version, provenance, reverts=earlier)
        return StoredVersion(version=version.number, stored=True, reverts=earlier)

    async def revert_to(self, number: int, provenance: Provenance) -> StoredVersion | None:
        """Make a new version whose principles are version `number`'s (a rollback).

        None when there is no such version; nothing is stored when the latest
        version already has those principles.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", VERSIONS_LOCK_KEY)
            earlier = await read_version(conn, number)
            latest = await read_version(conn, None)
            if earlier is None or latest is None:
                return None
            if latest.content_hash == earlier.content_hash:
                return StoredVersion(version=latest.number, stored=False)
            version = reverted_version(earlier, latest)
            await _insert_version(conn, version, provenance, reverts=number)
        return StoredVersion(version=version.number, stored=True, reverts=number)

    # -- rounds ----------------------------------------------------------------

    async def open_round(self, spec: RoundSpec, base_version: int | None) -> None:
        """Record a round as it starts; a retried start finds it there and writes nothing."""
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
        """Name the version the round made, for dashboards and lineage."""
        await self.pool.execute(
            "UPDATE rounds SET result_version = $2, updated_at = now() WHERE round_id = $1",
            round_id,
            version,
        )

    # -- transitions -----------------------------------------------------------

    async def record_transitions(self, records: Sequence[TransitionRecord]) -> int:
        """Append transitions to their round's chain; return how many were new.

        Rows already present (an activity retried after it committed) are
        skipped, so each transition is written once.

        Raises:
            LedgerError: The chain refused them (unknown round, gap, or a
                sequence another run already took); retrying cannot help.
        """
        return await self.chain.append(records)

    # -- proposals and decisions -----------------------------------------------

    async def save_proposals(self, proposals: Sequence[Proposal]) -> None:
        """Store a round's drafted proposals with what they went through before review.

        A retry writes nothing twice.
        """
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

    async def record_decision(self, round_id: str, decision_id: str, decision: Decision) -> bool:
        """Store a decision under its deterministic id.

        False when it was already stored (an activity retried after it committed).
        """
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
        interaction_key: str | None = None,
    ) -> bool:
        """Keep a refused or failed decision; False when its interaction's was kept before.

        Temporal's history never sees a refused update, so this row is its only
        trace. `interaction_key` names the Slack interaction that asked: Slack
        delivers one again when it missed the answer, and the redelivery finds
        the attempt here instead of recording (and telling) it twice.
        """
        status = await self.pool.execute(
            """INSERT INTO decision_attempts (round_id, proposal_id, reviewer, kind, outcome,
                   reason, source, interaction_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (interaction_key) WHERE interaction_key IS NOT NULL DO NOTHING""",
            round_id,
            proposal_id,
            reviewer,
            kind,
            outcome,
            reason,
            source,
            interaction_key,
        )
        return bool(status.endswith(" 1"))

    # -- the decision inbox ------------------------------------------------------
    # A click is kept here before Slack is answered, and claimed for a while by
    # the gateway sending it to its round; see gateway.inbox.

    async def receive_decision(
        self,
        *,
        interaction_key: str,
        workflow_id: str,
        round_id: str,
        request: dict[str, Any],
        channel: str,
        claimed_by: str,
        lease_s: float,
    ) -> bool:
        """Keep a click, claimed by the gateway that took it.

        False when its interaction is kept already (Slack's retry, or the same
        click delivered to another replica).
        """
        click = InboxClick(
            interaction_key=interaction_key,
            workflow_id=workflow_id,
            round_id=round_id,
            request=DecisionRequest.model_validate(request),
            channel=channel,
        )
        return bool(await self.receive_decisions([click], claimed_by, lease_s))

    async def receive_decisions(
        self, clicks: Sequence[InboxClick], claimed_by: str, lease_s: float
    ) -> set[str]:
        """Keep clicks in one statement, claimed by the gateway that took them.

        Answers the interaction keys kept now. A key kept already (Slack's
        retry, the same click on another replica, or twice in `clicks`) is
        kept once, by its first click here or by the earlier statement. One
        INSERT of many rows: a burst of clicks on a gateway commits once
        instead of once per click, over one connection.
        """
        firsts: dict[str, InboxClick] = {}
        for click in clicks:
            firsts.setdefault(click.interaction_key, click)
        first = list(firsts.values())
        if not first:
            return set()
        rows = await self.pool.fetch(
            """INSERT INTO decision_inbox (interaction_key, workflow_id, round_id, request,
                   channel, claimed_by, claimed_until)
               SELECT k, w, r, q::jsonb, c, $6, now() + make_interval(secs => $7)
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                   WITH ORDINALITY AS t(k, w, r, q, c, n)
               ORDER BY n
               ON CONFLICT (interaction_key) DO NOTHING
               RETURNING interaction_key""",
            [c.interaction_key for c in first],
            [c.workflow_id for c in first],
            [c.round_id for c in first],
            [c.request.model_dump_json() for c in first],
            [c.channel for c in first],
            claimed_by,
            lease_s,
        )
        return {row["interaction_key"] for row in rows}

    async def claim_decisions(
        self, claimed_by: str, lease_s: float, limit: int
    ) -> list[InboxEntry]:
        """Claim undispatched clicks nobody holds, oldest first.

        Nobody holds a click whose claim lapsed (its gateway died) or was given
        back. SKIP LOCKED: two gateways sweeping at once claim different rows.
        """
        rows = await self.pool.fetch(
            """UPDATE decision_inbox SET claimed_by = $1,
                   claimed_until = now() + make_interval(secs => $2)
               WHERE interaction_key IN (
                   SELECT interaction_key FROM decision_inbox
                   WHERE dispatched_at IS NULL
                     AND (claimed_until IS NULL OR claimed_until < now())
                   ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
               RETURNING *""",
            claimed_by,
            lease_s,
            limit,
        )
        return sorted(typed_rows(InboxEntry, rows), key=lambda entry: entry.seq)

    async def renew_claims(self, claimed_by: str, keys: Sequence[str], lease_s: float) -> None:
        """Extend the claim on clicks still being sent, so no one takes them over."""
        await self.pool.execute(
            """UPDATE decision_inbox SET claimed_until = now() + make_interval(secs => $3)
               WHERE claimed_by = $1 AND interaction_key = ANY($2) AND dispatched_at IS NULL""",
            claimed_by,
            list(keys),
            lease_s,
        )

    async def release_claims(
        self, claimed_by: str, keys: Sequence[str] | None = None, after_s: float = 0
    ) -> None:
        """Give back the claim on undispatched clicks, `keys` or all of the gateway's.

        Any gateway may take them after `after_s`.
        """
        await self.pool.execute(
            """UPDATE decision_inbox SET claimed_by = NULL,
                   claimed_until = now() + make_interval(secs => $3)
               WHERE claimed_by = $1 AND dispatched_at IS NULL
                 AND ($2::text[] IS NULL OR interaction_key = ANY($2))""",
            claimed_by,
            list(keys) if keys is not None else None,
            after_s,
        )

    async def mark_dispatched(self, interaction_key: str, outcome: str, message: str) -> bool:
        """Note what the round answered a click, once.

        False when another gateway noted it first: that one told the reviewer.
        """
        status = await self.pool.execute(
            """UPDATE decision_inbox SET dispatched_at = now(), outcome = $2, message = $3,
                   claimed_by = NULL, claimed_until = NULL
               WHERE interaction_key = $1 AND dispatched_at IS NULL""",
            interaction_key,
            outcome,
            message,
        )
        return bool(status.endswith(" 1"))

    # -- Slack -----------------------------------------------------------------

    async def set_proposal_message(self, proposal_id: str, channel: str, ts: str) -> None:
        """Note the Slack message showing the proposal.

        Later updates edit that message instead of posting again.
        """
        await self.pool.execute(
            "UPDATE proposals SET slack_channel = $2, slack_ts = $3 WHERE proposal_id = $1",
            proposal_id,
            channel,
            ts,
        )

    async def record_slack_post(self, post_key: str, round_id: str, channel: str, ts: str) -> None:
        """Note a post under its key.

        A retried activity finds the post by its key instead of posting it twice.
        """
        await self.pool.execute(
            """INSERT INTO slack_posts (post_key, round_id, channel, ts) VALUES ($1, $2, $3, $4)
               ON CONFLICT (post_key) DO NOTHING""",
            post_key,
            round_id,
            channel,
            ts,
        )

    # -- retraining ------------------------------------------------------------

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
        """Keep one finished example.

        False when that position was already kept (a generation that resumed or ran twice
        keeps the first).
        """
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
        """Store the round's assembled dataset once; a re-assembly keeps the first."""
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
        """Store the round's fine-tune job as started.

        A repeat only refreshes its status, model and error.
        """
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
        """Record where a fine-tune job ended (or was cancelled)."""
        await self.pool.execute(
            """UPDATE training_jobs SET status = $2, fine_tuned_model = $3, error = $4,
                   updated_at = now() WHERE job_id = $1""",
            job_id,
            status,
            fine_tuned_model,
            error,
        )

    async def record_job_events(self, job_id: str, events: Sequence[dict[str, Any]]) -> None:
        """Keep a fine-tune job's events.

        Each look reports recent ones again, and those already kept are skipped.
        """
        await self.pool.executemany(
            """INSERT INTO training_job_events (job_id, event_id, level, message, data, at)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
            [
                (job_id, e["id"], e["level"], e["message"], e.get("data") or {}, e["at"])
                for e in events
            ],
        )

    async def record_evaluation_answers(
        self, round_id: str, answers: Sequence[EvaluationAnswerRow]
    ) -> None:
        """Keep graded answers of the round's evaluation, in one statement.

        An answer already kept (two attempts that both asked it) keeps the first.
        """
        await self.pool.executemany(
            """INSERT INTO evaluation_answers (round_id, model, context, prompt_id, style,
                   sample, asked, harmful, refused, answer, reason)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING""",
            [
                (
                    round_id,
                    a.model,
                    a.context,
                    a.prompt_id,
                    a.style,
                    a.sample,
                    a.asked,
                    a.harmful,
                    a.refused,
                    a.answer,
                    a.reason,
                )
                for a in answers
            ],
        )

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
        outcome: str | None = None,
        tests: list[dict[str, Any]] | None = None,
        attribution: list[dict[str, Any]] | None = None,
        settings: dict[str, Any] | None = None,
        reference: ReferenceFigures | None = None,
        failures: Sequence[EvaluationFailure] = (),
    ) -> None:
        """Store the round's evaluation and its failures in one transaction.

        A re-run evaluation (an activity retried) replaces its figures and its
        failures, so each failure is stored once, as the last run found it.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO evaluations (round_id, constitution_version, candidate_model,
                       baseline_model, candidate, baseline, passed, reasons, rubric_version,
                       prompt_set, outcome, tests, attribution, settings, reference)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                   ON CONFLICT (round_id) DO UPDATE SET candidate = EXCLUDED.candidate,
                       baseline = EXCLUDED.baseline, passed = EXCLUDED.passed,
                       reasons = EXCLUDED.reasons, rubric_version = EXCLUDED.rubric_version,
                       prompt_set = EXCLUDED.prompt_set, outcome = EXCLUDED.outcome,
                       tests = EXCLUDED.tests, attribution = EXCLUDED.attribution,
                       settings = EXCLUDED.settings, reference = EXCLUDED.reference""",
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
                outcome,
                tests or [],
                attribution or [],
                settings or {},
                reference.model_dump(mode="json") if reference is not None else None,
            )
            await conn.execute("DELETE FROM evaluation_failures WHERE round_id = $1", round_id)
            await conn.executemany(
                """INSERT INTO evaluation_failures (round_id, failure_id, failure, model,
                       prompt_id, category, style, prompt, response, grader_reason, samples,
                       of_samples, principles, position)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
                [
                    (
                        round_id,
                        f.failure_id,
                        f.failure.value,
                        f.model,
                        f.prompt_id,
                        f.category,
                        f.style,
                        f.prompt,
                        f.response,
                        f.grader_reason,
                        f.samples,
                        f.of_samples,
                        f.principles,
                        position,
                    )
                    for position, f in enumerate(failures)
                ],
            )

    # -- evidence and checks ---------------------------------------------------

    async def save_evidence(
        self, round_id: str, selection: EvidenceSelection, items: Sequence[SelectedItem]
    ) -> bool:
        """Store a round's evidence and its selection in one transaction.

        With COPY, as a round may bring 100k items. The selection row marks the
        work done, so a retried import writes nothing twice.

        Returns:
            Whether it wrote; False when the round's evidence was already stored.
        """
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

    # -- API tokens (operators and dashboards) ---------------------------------

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

    async def revoke_token(self, token_id: str) -> bool:
        """Revoke a live token; False when no live token has this id."""
        status = await self.pool.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL",
            token_id,
        )
        return bool(status.endswith(" 1"))


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
    """What a proposal went through before review, beside its row.

    The model calls behind it, its check verdicts, conflicts, impact and evidence links.
    """
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


async def _insert_version(
    conn: PoolConnectionProxy[asyncpg.Record],
    version: ConstitutionVersion,
    provenance: Provenance | None = None,
    *,
    reverts: int | None = None,
) -> None:
    """Insert a version and its principles; the same version again is a no-op."""
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
               (number, content_hash, parent_hash, round_id, retired, imported_by, source,
                reverts, reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        version.number,
        version.content_hash,
        version.parent_hash,
        version.round_id,
        list(version.retired),
        provenance.actor if provenance else None,
        provenance.source if provenance else None,
        reverts,
        provenance.reason if provenance else None,
    )
    await conn.executemany(
        """INSERT INTO principles (version, position, principle_id, title, text, protected)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [
            (version.number, i, p.id, p.title, p.text, p.protected)
            for i, p in enumerate(version.principles)
        ],
    )
