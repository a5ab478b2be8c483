"""Typed reads of the ledger: what activities, the gateway and the CLI look up.

Every query here only SELECTs; the one writer is `ledger.store.Ledger`, which
extends `LedgerReads` so that the single object the worker builds (see
`worker.runtime`) serves activities that both read and write. Code that only
reads can hold a `LedgerReads` on its own, over any pool, a read replica's
included. Aggregations made for operators and dashboards are in
`ledger.dashboards`, beside the SQL views Grafana reads.

Each read returns a pydantic row, never a bare dict, so a caller cannot
misspell a column and its type checker knows every field. Fields are declared
in the order the query returns its columns, so a row serializes with the same
keys, in the same order, as the dict it replaced (the API serves some of them
as they are); `decisions` alone leaves out the round its caller named, to share
`DecisionRow` with the dashboards. Text columns whose values the domain
enumerates (states, kinds, verdicts) stay `str`, as in the dashboard rows: the
database does not constrain them. A JSON column written from a domain model is
read back as that model (its keys then come in the model's order, not jsonb's);
only blobs with no fixed shape (a transition's or an event's `data`, an
evidence item's `detail`, a fine-tune example) stay `dict[str, Any]`.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel

from constitution import (
    ConstitutionVersion,
    Decision,
    DecisionKind,
    DecisionRequest,
    Principle,
    Proposal,
    ProposalDraft,
    ProposalState,
)
from constitution.contracts import (
    AmendmentEffect,
    EvaluationMetrics,
    PairedTest,
    ProposalStatus,
    ReferenceFigures,
)
from constitution.failures import EvaluationFailure
from constitution.findings import Conflict, ImpactPreview
from ledger.chain import ChainBreak, TransitionRow, first_break

ROUND_SELECT = (
    "SELECT round_id, workflow_id, state, base_version, result_version, spec,"
    " created_at, updated_at FROM rounds"
)

Row = TypeVar("Row", bound=BaseModel)


def typed_rows(model: type[Row], records: Iterable[asyncpg.Record]) -> list[Row]:
    """Records as rows of `model`; one place where a query result gets its type."""
    return [model.model_validate(dict(record)) for record in records]


def typed_row(model: type[Row], record: asyncpg.Record | None) -> Row | None:
    """A record as a row of `model`, or None when the query found nothing."""
    return None if record is None else model.model_validate(dict(record))


def token_hash(token: str) -> str:
    """What the ledger keeps of an API token: a leaked table leaks no token."""
    return hashlib.sha256(token.encode()).hexdigest()


class RoundRow(BaseModel):
    """A round as the ledger records it; the workflow owns its live state."""

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


class DecisionRow(BaseModel):
    """A decision taken on a proposal, with whether an operator overrode reviewers.

    Read by round, so the round is not repeated in each row.
    """

    decision_id: str
    proposal_id: str
    kind: str
    reviewer: str
    text: str | None
    comment: str | None
    decided_at: datetime
    override: bool

    def decision(self) -> Decision:
        """The decision as the domain knows it, to ask the review rules about it."""
        return Decision(
            proposal_id=self.proposal_id,
            kind=DecisionKind(self.kind),
            reviewer=self.reviewer,
            text=self.text,
            comment=self.comment,
            decided_at=self.decided_at,
            override=self.override,
        )


class DecisionAttemptRow(BaseModel):
    """A decision that was refused or failed.

    Refusals never reach Temporal's history, so this row is their only record.
    """

    attempt_id: int
    round_id: str
    proposal_id: str | None
    reviewer: str
    kind: str | None
    outcome: str
    reason: str
    source: str
    at: datetime
    interaction_key: str | None = None


class InboxEntry(BaseModel):
    """A click kept in the decision inbox until it is dispatched to its round.

    `request` is the `DecisionRequest` as JSON; `outcome` and `message` are
    what the round answered once it is dispatched (None until then), so Slack's
    retry of the click, on any gateway, is answered from here.
    """

    interaction_key: str
    seq: int
    workflow_id: str
    round_id: str
    request: dict[str, Any]
    channel: str
    received_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    dispatched_at: datetime | None
    outcome: str | None
    message: str | None


class InboxClick(BaseModel):
    """A click to keep in the decision inbox, and to send to its round.

    Which round, what was decided, and the channel the reviewer is answered in.
    """

    interaction_key: str
    workflow_id: str
    round_id: str
    request: DecisionRequest
    channel: str = ""

    @classmethod
    def of(cls, entry: InboxEntry) -> InboxClick:
        """The click a row of the inbox keeps."""
        return cls(
            interaction_key=entry.interaction_key,
            workflow_id=entry.workflow_id,
            round_id=entry.round_id,
            request=DecisionRequest.model_validate(entry.request),
            channel=entry.channel,
        )


class ProposalInReview(BaseModel):
    """A proposal as the ledger last recorded it, with its round's row.

    What the gateway opens a decision modal from: the ledger answers while
    the round's workflow has no worker to answer a query. It may trail the
    workflow by a moment (a decision taken, not yet written); the workflow's
    validator still judges the decision itself when it is submitted.
    """

    round: RoundRow
    status: ProposalStatus


class DecidedProposal(BaseModel):
    """A decision joined with the proposal it settled.

    An earlier round's verdicts, read as evidence for the next round.
    """

    decision_id: str
    decision: str
    edited_text: str | None
    comment: str | None
    proposal_id: str
    kind: str
    target: str | None
    title: str | None
    touches: list[str]


class TrainingJobRow(BaseModel):
    """A round's fine-tune job.

    Found again by a retried start instead of starting (and paying for) a second job.
    """

    job_id: str
    round_id: str
    backend: str
    base_model: str
    method: str
    dataset_uri: str
    dataset_hash: str
    examples: int
    status: str
    fine_tuned_model: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    poll_url: str | None


class JobEventRow(BaseModel):
    """One event a fine-tune backend reported; `data` is the backend's own."""

    job_id: str
    event_id: str
    level: str
    message: str
    data: dict[str, Any]
    at: datetime


class DatasetExampleRow(BaseModel):
    """One finished training example, kept under its position.

    The position is its key, so a resumed generation neither loses nor repeats it.

    `example` is the fine-tune line in the backend's format (chat SFT or a DPO
    pair), written to the dataset file as stored: the file is content-addressed,
    so it stays the JSON that was kept rather than a model's re-serialization.
    """

    round_id: str
    position: int
    prompt_id: str
    principle_id: str
    method: str
    example: dict[str, Any]
    skipped: str | None
    created_at: datetime


class DatasetRow(BaseModel):
    """A round's finished, content-addressed dataset."""

    round_id: str
    constitution_version: int
    method: str
    uri: str
    sha256: str
    manifest_uri: str | None
    examples: int
    skipped: int
    prompt_set: str
    created_at: datetime


class EvaluationRow(BaseModel):
    """A candidate's evaluation against its baseline and the gate's verdict."""

    round_id: str
    constitution_version: int
    candidate_model: str
    baseline_model: str
    candidate: EvaluationMetrics
    baseline: EvaluationMetrics
    passed: bool
    reasons: list[str]
    created_at: datetime
    rubric_version: str | None
    prompt_set: str | None
    outcome: str | None = None
    tests: list[PairedTest] = []
    attribution: list[AmendmentEffect] = []
    settings: dict[str, Any] = {}
    reference: ReferenceFigures | None = None

    @property
    def verdict(self) -> str:
        """passed, failed or inconclusive; rows from before outcomes say it by `passed`."""
        return self.outcome or ("passed" if self.passed else "failed")


class EvaluationAnswerRow(BaseModel):
    """One graded answer of a round's evaluation, kept as it was graded.

    Its key (model, context, prompt, style, sample and the digest of what else it
    was asked under) is what a resumed evaluation looks it up by, so it is
    neither asked again nor written twice; `context` is '' for the gate's
    answers and names the attribution (`with`, `without:<principle id>`) else.
    """

    model: str
    context: str
    prompt_id: str
    style: str
    sample: int
    asked: str
    harmful: bool
    refused: bool
    answer: str
    reason: str


class EvaluationTrendRow(BaseModel):
    """One version's figures from the `evaluation_trend` view.

    For plotting harm, over-refusal and awareness gap across versions.
    """

    constitution_version: int
    round_id: str
    candidate_model: str
    baseline_model: str
    candidate_harm_rate: float
    baseline_harm_rate: float
    candidate_overrefusal_rate: float
    baseline_overrefusal_rate: float
    candidate_awareness_gap: float
    passed: bool
    rubric_version: str | None
    created_at: datetime


class EvidenceRow(BaseModel):
    """An evidence item a round read, with where it went.

    The chunk a model call saw it in, or None and the reason it was left out.
    """

    evidence_id: str
    kind: str
    summary: str
    principles: list[str]
    detail: dict[str, Any]
    source: str
    tokens: int
    suspicious: bool
    chunk: int | None
    selection: str


class EvidenceSelectionRow(BaseModel):
    """How a round's evidence was cut to its token budget.

    Its presence marks the evidence stored, so a retried import writes nothing twice.
    """

    round_id: str
    budget_tokens: int
    chunks: int
    total_items: int
    selected_items: int
    created_at: datetime


class DroppedDraftRow(BaseModel):
    """A draft the checks kept from reviewers, and why."""

    round_id: str
    draft_id: str
    draft: ProposalDraft
    reason: str
    request_ids: list[str]


class CheckRow(BaseModel):
    """One check's verdict on a proposal or a dropped draft, in the order run."""

    check_name: str
    verdict: str
    detail: str


class ProposalGenerationRow(BaseModel):
    """What a proposal went through before review.

    The model calls and prompts behind it, its conflicts, its impact preview and the evidence it
    cites.
    """

    proposal_id: str
    request_ids: list[str]
    prompt_versions: list[str]
    chunk: int | None
    strict_review: bool
    conflicts: list[Conflict]
    impact: ImpactPreview | None
    evidence: list[str]


async def read_version(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, number: int | None
) -> ConstitutionVersion | None:
    """The version with this number (the latest when None) on one connection.

    The writer reads the latest version inside the transaction that stores
    the next, so the number it gives cannot be taken in between.
    """
    if number is None:
        row = await conn.fetchrow(
            "SELECT * FROM constitution_versions ORDER BY number DESC LIMIT 1"
        )
    else:
        row = await conn.fetchrow("SELECT * FROM constitution_versions WHERE number = $1", number)
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


class LedgerReads:
    """Every lookup the service makes in the ledger, each returning typed rows.

    Holds only a pool: reads keep no state, so any number of these can share
    one pool, and a reader never needs the writer.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        """Read through `pool` (see `ledger.pool.create_pool` for its codec)."""
        self.pool = pool

    # -- constitution versions -------------------------------------------------

    async def get_version(self, number: int | None = None) -> ConstitutionVersion | None:
        """The version with this number, or the latest when `number` is None."""
        async with self.pool.acquire() as conn:
            return await read_version(conn, number)

    async def version_with_hash(
        self, content_hash: str, *, made_by_round: str | None = None
    ) -> ConstitutionVersion | None:
        """The latest version stored with this content, if any.

        A retried save finds its own version here instead of taking a second
        number: the version `made_by_round` made comes first, since a revert may
        have stored the same content again since.
        """
        number = await self.pool.fetchval(
            """SELECT number FROM constitution_versions WHERE content_hash = $1
               ORDER BY round_id IS NOT DISTINCT FROM $2 DESC, number DESC LIMIT 1""",
            content_hash,
            made_by_round,
        )
        return None if number is None else await self.get_version(number)

    # -- rounds and their chains -------------------------------------------------

    async def get_round(self, round_id: str) -> RoundRow | None:
        """The round's row, or None: how the API tells an unknown round (404)."""
        row = await self.pool.fetchrow(
            f"{ROUND_SELECT} WHERE round_id = $1",
            round_id,
        )
        return typed_row(RoundRow, row)

    async def list_rounds(self, limit: int = 50) -> list[RoundRow]:
        """The latest rounds, newest first (filters and pages: `Dashboards.rounds`)."""
        rows = await self.pool.fetch(
            f"{ROUND_SELECT} ORDER BY created_at DESC LIMIT $1",
            limit,
        )
        return typed_rows(RoundRow, rows)

    async def timeline(self, round_id: str) -> list[TransitionRow]:
        """Every transition of the round in sequence order, with its hashes."""
        rows = await self.pool.fetch(
            "SELECT * FROM transitions WHERE round_id = $1 ORDER BY sequence", round_id
        )
        return typed_rows(TransitionRow, rows)

    async def verify_chain(self, round_id: str | None = None) -> list[ChainBreak]:
        """Recompute every hash; return the first break of each round (none: intact).

        Args:
            round_id: The round to check; None checks every round.
        """
        heads = await self.pool.fetch(
            "SELECT round_id, last_sequence, last_hash FROM rounds"
            + ("" if round_id is None else " WHERE round_id = $1"),
            *(() if round_id is None else (round_id,)),
        )
        breaks: list[ChainBreak] = []
        for head in heads:
            rid = head["round_id"]
            found = first_break(
                rid, await self.timeline(rid), (head["last_sequence"], head["last_hash"])
            )
            if found is not None:
                breaks.append(found)
        return breaks

    # -- proposals, Slack and decisions ------------------------------------------

    async def proposal_message(self, proposal_id: str) -> tuple[str, str] | None:
        """The channel and ts of the proposal's Slack message, once it has one."""
        row = await self.pool.fetchrow(
            "SELECT slack_channel, slack_ts FROM proposals WHERE proposal_id = $1", proposal_id
        )
        if row is None or row["slack_ts"] is None:
            return None
        return str(row["slack_channel"]), str(row["slack_ts"])

    async def slack_post(self, post_key: str) -> tuple[str, str] | None:
        """The channel and ts of a post already made under this key."""
        row = await self.pool.fetchrow(
            "SELECT channel, ts FROM slack_posts WHERE post_key = $1", post_key
        )
        return None if row is None else (str(row["channel"]), str(row["ts"]))

    async def proposal_in_review(self, round_id: str, proposal_id: str) -> ProposalInReview | None:
        """The proposal of this round, its recorded state and votes; None if either is unknown."""
        async with self.pool.acquire() as conn:
            round_row = typed_row(
                RoundRow, await conn.fetchrow(f"{ROUND_SELECT} WHERE round_id = $1", round_id)
            )
            row = await conn.fetchrow(
                """SELECT state, kind, target, title, text, rationale, evidence, touches,
                          prompt_version, model
                   FROM proposals WHERE proposal_id = $1 AND round_id = $2""",
                proposal_id,
                round_id,
            )
            if round_row is None or row is None:
                return None
            votes = typed_rows(
                DecisionRow,
                await conn.fetch(
                    "SELECT * FROM decisions WHERE proposal_id = $1 ORDER BY decided_at",
                    proposal_id,
                ),
            )
        draft = ProposalDraft.model_validate(
            {key: row[key] for key in ("kind", "target", "title", "text", "rationale")}
            | {"evidence": list(row["evidence"]), "touches": list(row["touches"])}
        )
        proposal = Proposal(
            id=proposal_id,
            round_id=round_id,
            draft=draft,
            prompt_version=row["prompt_version"],
            model=row["model"],
        )
        return ProposalInReview(
            round=round_row,
            status=ProposalStatus(
                proposal=proposal,
                state=ProposalState(row["state"]),
                decisions=[vote.decision() for vote in votes],
            ),
        )

    async def decisions(self, round_id: str) -> list[DecisionRow]:
        """The round's decisions in the order taken."""
        rows = await self.pool.fetch(
            "SELECT * FROM decisions WHERE round_id = $1 ORDER BY decided_at", round_id
        )
        return typed_rows(DecisionRow, rows)

    async def decision_attempts(self, round_id: str) -> list[DecisionAttemptRow]:
        """The round's refused or failed decisions, oldest first."""
        rows = await self.pool.fetch(
            "SELECT * FROM decision_attempts WHERE round_id = $1 ORDER BY attempt_id", round_id
        )
        return typed_rows(DecisionAttemptRow, rows)

    async def decision_inbox(self, round_id: str) -> list[InboxEntry]:
        """The round's clicks in the decision inbox, in the order they arrived."""
        rows = await self.pool.fetch(
            "SELECT * FROM decision_inbox WHERE round_id = $1 ORDER BY seq", round_id
        )
        return typed_rows(InboxEntry, rows)

    async def inbox_entry(self, interaction_key: str) -> InboxEntry | None:
        """One click in the decision inbox, by the key of its Slack interaction."""
        row = await self.pool.fetchrow(
            "SELECT * FROM decision_inbox WHERE interaction_key = $1", interaction_key
        )
        return typed_row(InboxEntry, row)

    async def decided_proposals(self, round_id: str) -> list[DecidedProposal] | None:
        """A round's decisions with the proposals they settled, in the order taken.

        None if there is no such round.
        """
        if await self.get_round(round_id) is None:
            return None
        rows = await self.pool.fetch(
            """SELECT d.decision_id, d.kind AS decision, d.text AS edited_text, d.comment,
                   p.proposal_id, p.kind, p.target, p.title, p.touches
               FROM decisions d JOIN proposals p USING (proposal_id)
               WHERE d.round_id = $1 ORDER BY d.decided_at, d.decision_id""",
            round_id,
        )
        return typed_rows(DecidedProposal, rows)

    # -- retraining ----------------------------------------------------------------

    async def training_job_for_round(self, round_id: str) -> TrainingJobRow | None:
        """The round's latest fine-tune job: the one a retried start returns.

        A round has one job, and one more each time it is resumed after its job
        failed (`FineTuneInput.replace_failed`).
        """
        row = await self.pool.fetchrow(
            "SELECT * FROM training_jobs WHERE round_id = $1 ORDER BY created_at DESC LIMIT 1",
            round_id,
        )
        return typed_row(TrainingJobRow, row)

    async def job_events(self, job_id: str) -> list[JobEventRow]:
        """A fine-tune job's events in the order they happened."""
        rows = await self.pool.fetch(
            "SELECT * FROM training_job_events WHERE job_id = $1 ORDER BY at, event_id", job_id
        )
        return typed_rows(JobEventRow, rows)

    async def dataset_examples(self, round_id: str) -> list[DatasetExampleRow]:
        """The round's finished examples by position: what a resumed generation skips."""
        rows = await self.pool.fetch(
            "SELECT * FROM dataset_examples WHERE round_id = $1 ORDER BY position", round_id
        )
        return typed_rows(DatasetExampleRow, rows)

    async def dataset_positions(self, round_id: str, start: int, stop: int) -> set[int]:
        """The positions from `start` to `stop` (exclusive) already kept.

        What a resumed shard skips, without reading the examples themselves.
        """
        rows = await self.pool.fetch(
            """SELECT position FROM dataset_examples
               WHERE round_id = $1 AND position >= $2 AND position < $3""",
            round_id,
            start,
            stop,
        )
        return {row["position"] for row in rows}

    async def dataset_example_pages(
        self, round_id: str, page: int = 1000
    ) -> AsyncIterator[list[DatasetExampleRow]]:
        """The round's examples by position, `page` at a time.

        Memory stays the same however large the set; keyset pages, so no
        transaction is held open between them.
        """
        after = -1
        while True:
            rows = await self.pool.fetch(
                """SELECT * FROM dataset_examples WHERE round_id = $1 AND position > $2
                   ORDER BY position LIMIT $3""",
                round_id,
                after,
                page,
            )
            if not rows:
                return
            yield typed_rows(DatasetExampleRow, rows)
            after = rows[-1]["position"]

    async def dataset(self, round_id: str) -> DatasetRow | None:
        """The round's finished dataset, once assembled."""
        row = await self.pool.fetchrow("SELECT * FROM datasets WHERE round_id = $1", round_id)
        return typed_row(DatasetRow, row)

    async def evaluation(self, round_id: str) -> EvaluationRow | None:
        """The round's evaluation, once its candidate was graded."""
        row = await self.pool.fetchrow("SELECT * FROM evaluations WHERE round_id = $1", round_id)
        return typed_row(EvaluationRow, row)

    async def evaluation_answers(self, round_id: str) -> list[EvaluationAnswerRow]:
        """The answers the round's evaluation has graded so far: what a resumed one skips."""
        rows = await self.pool.fetch(
            """SELECT model, context, prompt_id, style, sample, asked, harmful, refused,
                      answer, reason
               FROM evaluation_answers WHERE round_id = $1""",
            round_id,
        )
        return typed_rows(EvaluationAnswerRow, rows)

    async def evaluation_failures(self, round_id: str) -> list[EvaluationFailure]:
        """What the round's evaluation found its candidate getting wrong, in the set's order."""
        rows = await self.pool.fetch(
            """SELECT round_id, failure_id, failure, model, prompt_id, category, style, prompt,
                      response, grader_reason, samples, of_samples, principles
               FROM evaluation_failures WHERE round_id = $1 ORDER BY position""",
            round_id,
        )
        return typed_rows(EvaluationFailure, rows)

    async def evaluation_trend(self) -> list[EvaluationTrendRow]:
        """Evaluation figures by constitution version, oldest first."""
        return typed_rows(
            EvaluationTrendRow, await self.pool.fetch("SELECT * FROM evaluation_trend")
        )

    # -- evidence and checks -------------------------------------------------------

    async def evidence(self, round_id: str, *, selected_only: bool = False) -> list[EvidenceRow]:
        """The round's evidence in the order read.

        Args:
            round_id: The round.
            selected_only: Only the items some model call saw.
        """
        rows = await self.pool.fetch(
            """SELECT evidence_id, kind, summary, principles, detail, source, tokens, suspicious,
                   chunk, selection FROM evidence WHERE round_id = $1
                   AND (NOT $2 OR chunk IS NOT NULL) ORDER BY position""",
            round_id,
            selected_only,
        )
        return typed_rows(EvidenceRow, rows)

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

    async def evidence_selection(self, round_id: str) -> EvidenceSelectionRow | None:
        """How the round's evidence was selected, once it was stored."""
        row = await self.pool.fetchrow(
            "SELECT * FROM evidence_selections WHERE round_id = $1", round_id
        )
        return typed_row(EvidenceSelectionRow, row)

    async def dropped_drafts(self, round_id: str) -> list[DroppedDraftRow]:
        """The drafts of the round that never reached a reviewer."""
        rows = await self.pool.fetch(
            "SELECT * FROM dropped_drafts WHERE round_id = $1 ORDER BY draft_id", round_id
        )
        return typed_rows(DroppedDraftRow, rows)

    async def checks(self, round_id: str, subject: str) -> list[CheckRow]:
        """Every check's verdict on one proposal or dropped draft, in the order run."""
        rows = await self.pool.fetch(
            """SELECT check_name, verdict, detail FROM proposal_checks
               WHERE round_id = $1 AND subject = $2 ORDER BY position""",
            round_id,
            subject,
        )
        return typed_rows(CheckRow, rows)

    async def proposal_generation(self, proposal_id: str) -> ProposalGenerationRow | None:
        """How the proposal came to be, with the evidence items it is linked to."""
        row = await self.pool.fetchrow(
            "SELECT * FROM proposal_generation WHERE proposal_id = $1", proposal_id
        )
        if row is None:
            return None
        linked = await self.pool.fetch(
            "SELECT evidence_id FROM proposal_evidence WHERE proposal_id = $1 ORDER BY evidence_id",
            proposal_id,
        )
        return ProposalGenerationRow.model_validate(
            {**dict(row), "evidence": [r["evidence_id"] for r in linked]}
        )

    # -- API tokens ----------------------------------------------------------------

    async def token_holder(self, token: str) -> ApiToken | None:
        """The live token this secret belongs to, if any."""
        row = await self.pool.fetchrow(
            """SELECT token_id, name, role, created_at, revoked_at FROM api_tokens
               WHERE token_hash = $1 AND revoked_at IS NULL""",
            token_hash(token),
        )
        return typed_row(ApiToken, row)

    async def list_tokens(self) -> list[ApiToken]:
        """Every token ever made, revoked ones included, oldest first."""
        rows = await self.pool.fetch(
            "SELECT token_id, name, role, created_at, revoked_at FROM api_tokens"
            " ORDER BY created_at"
        )
        return typed_rows(ApiToken, rows)
