"""Read models for operators and dashboards.

The queries behind the CLI's listings, the dashboard API and the built-in
pages. They only read; every write goes through `ledger.store`. Heavier
aggregations live in the views of migration 0005, which Grafana reads too, so
the pages and Grafana agree.

Lookups the service itself makes (a round, its timeline, its evidence) are in
`ledger.reads`; this module builds on its rows (`RoundRow`, `DecisionRow`)
with filters, pages, joins and statistics that only people look at.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field, ValidationError, computed_field

from constitution.contracts import EvaluationMetrics
from constitution.findings import Conflict, ImpactPreview
from constitution.gate import GateFigure, gate_figures
from constitution.models import GateSpec
from constitution.trend import PromotedEvaluation, Trend, trend
from ledger.reads import ROUND_SELECT, CheckRow, DecisionRow, RoundRow, typed_rows

# Version numbers are PostgreSQL integers; a larger one names no version and
# is refused at the edge rather than overflowing a query.
LARGEST_VERSION = 2**31 - 1
LARGEST_OFFSET = 10_000_000

# What `VersionOrigin` reads of a version row aliased `v`.
ORIGIN_COLUMNS = "v.round_id, v.imported_by, v.source, v.reverts, v.reason"


def _version(entry: LineageEntry) -> int:
    return entry.version


class RoundPage(BaseModel):
    """One page of rounds, with the count of all pages so a client can page on."""

    total: int = Field(description="Rounds matching the filters, all pages together.")
    limit: int
    offset: int
    rounds: list[RoundRow]


class ProposalRow(BaseModel):
    """A proposal as a reviewer's history shows it.

    Its text, when it was posted, and every decision taken on it.
    """

    proposal_id: str
    round_id: str
    position: int
    state: str
    kind: str
    target: str | None
    title: str | None
    text: str | None
    rationale: str
    evidence: list[str]
    touches: list[str]
    posted_at: datetime | None
    decisions: list[DecisionRow]


class ProposalFindings(BaseModel):
    """What the round learned about one proposal before review, for the round page.

    Its check verdicts in the order run, whether it takes the stricter policy,
    the principles it touches or contradicts, and its impact preview.
    """

    proposal_id: str
    strict_review: bool = False
    conflicts: list[Conflict] = Field(default_factory=list)
    impact: ImpactPreview | None = None
    checks: list[CheckRow] = Field(default_factory=list)


class PrincipleShare(BaseModel):
    """How many of a round's training examples were written under one principle."""

    principle_id: str
    examples: int


class LatencyPoint(BaseModel):
    """One decision's wait, a point on the latency chart."""

    round_id: str
    proposal_id: str
    decided_at: datetime
    latency_s: float
    override: bool


class LatencyStats(BaseModel):
    """From a proposal's posting to its first decision, in seconds."""

    decisions: int
    mean_s: float | None
    p50_s: float | None
    p90_s: float | None
    max_s: float | None
    points: list[LatencyPoint] = Field(description="The latest decisions, oldest first.")


class VersionMetrics(BaseModel):
    """A version's evaluation figures beside its baseline's, for the trend chart.

    `gate_figures` judges each figure against the thresholds of the round that
    made the version, so a chart can draw each limit and mark what failed.
    """

    constitution_version: int
    round_id: str
    candidate_model: str
    harm_rate: float
    baseline_harm_rate: float
    overrefusal_rate: float
    baseline_overrefusal_rate: float
    awareness_gap: float
    passed: bool
    created_at: datetime
    gate_figures: list[GateFigure] = Field(default_factory=list)


class VersionOrigin(BaseModel):
    """Who or what made a version: its round, or the person who imported or reverted it.

    The log, the versions page and a principle's lineage all say it the same
    way (`made_by`).
    """

    round_id: str | None
    imported_by: str | None = Field(default=None, description="Who imported or reverted it.")
    source: str | None = Field(default=None, description="The file or API call it came from.")
    reverts: int | None = Field(
        default=None, description="The version whose principles it restores."
    )
    reason: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def made_by(self) -> str:
        """One line: `round r1`, `import by operator:ann from c.md`, `revert to v1 by ...`."""
        if self.round_id:
            return f"round {self.round_id}"
        what = f"revert to v{self.reverts}" if self.reverts else "import"
        line = f"{what} by {self.imported_by or 'an unnamed operator'}"
        if self.source:
            line += f" from {self.source}"
        if self.reason:
            line += f": {self.reason}"
        return line


class VersionSummary(VersionOrigin):
    """A constitution version in the log: where it came from and its size."""

    number: int
    content_hash: str
    principles: int
    created_at: datetime


class LineageEntry(VersionOrigin):
    """One step in a principle's history.

    The version, what changed, and the round, proposal, evidence and reviewers
    behind the change, or who imported or reverted the version that made it.
    """

    version: int
    change: str = Field(description="added, revised, restored, unchanged or retired")
    title: str | None
    text: str | None
    protected: bool
    proposal_id: str | None = None
    proposal_kind: str | None = None
    rationale: str | None = None
    evidence: list[str] = Field(default_factory=list)
    reviewers: list[str] = Field(default_factory=list)


class PendingProposal(BaseModel):
    """A proposal waiting for reviewers, with how long it has waited."""

    round_id: str
    proposal_id: str
    kind: str
    target: str | None
    posted_at: datetime
    age_s: float


class AlertFigures(BaseModel):
    """What the gateway's business gauges report: the figures people are paged on."""

    pending: int = Field(description="Proposals posted and waiting for reviewers.")
    oldest_pending_s: float = Field(description="How long the longest waiting one has; 0: none.")
    rounds_by_state: dict[str, int]
    blocked: int = Field(description="Rounds whose Slack posting is blocked now.")


class Dashboards:
    """The queries behind the dashboard API, the pages and the CLI's listings.

    Apart from `LedgerReads` because nothing in a round's lifecycle depends on
    them, and they may be pointed at a read replica.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        """Read through `pool`."""
        self.pool = pool

    async def rounds(
        self,
        *,
        state: str | None = None,
        since: datetime | None = None,
        version: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RoundPage:
        """Rounds newest first; `version` matches the version amended or made."""
        clause = (
            "($1::text IS NULL OR state = $1)"
            " AND ($2::timestamptz IS NULL OR created_at >= $2)"
            " AND ($3::integer IS NULL OR base_version = $3 OR result_version = $3)"
        )
        args: list[Any] = [state, since, version]
        async with self.pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM rounds WHERE {clause}", *args)
            rows = await conn.fetch(
                f"{ROUND_SELECT} WHERE {clause} ORDER BY created_at DESC, round_id"
                " LIMIT $4 OFFSET $5",
                *args,
                limit,
                offset,
            )
        return RoundPage(total=total, limit=limit, offset=offset, rounds=typed_rows(RoundRow, rows))

    async def proposals(self, round_id: str) -> list[ProposalRow]:
        """The round's proposals in order, each with its decisions (overrides marked)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT p.*, pp.posted_at FROM proposals p
                   LEFT JOIN dash_proposal_posted pp ON pp.proposal_id = p.proposal_id
                   WHERE p.round_id = $1 ORDER BY p.position""",
                round_id,
            )
            decisions = await conn.fetch(
                """SELECT decision_id, proposal_id, kind, reviewer, text, comment, decided_at,
                          override FROM decisions WHERE round_id = $1 ORDER BY decided_at""",
                round_id,
            )
        by_proposal: dict[str, list[DecisionRow]] = {}
        for d in decisions:
            by_proposal.setdefault(d["proposal_id"], []).append(DecisionRow(**dict(d)))
        fields = ProposalRow.model_fields.keys() - {"decisions"}
        return [
            ProposalRow(
                **{k: r[k] for k in fields}, decisions=by_proposal.get(r["proposal_id"], [])
            )
            for r in rows
        ]

    async def proposal_findings(self, round_id: str) -> dict[str, ProposalFindings]:
        """Every proposal's findings in two queries, by proposal id (none before checks ran)."""
        async with self.pool.acquire() as conn:
            generation = await conn.fetch(
                """SELECT g.proposal_id, g.strict_review, g.conflicts, g.impact
                   FROM proposal_generation g JOIN proposals p USING (proposal_id)
                   WHERE p.round_id = $1""",
                round_id,
            )
            checks = await conn.fetch(
                """SELECT subject, check_name, verdict, detail FROM proposal_checks
                   WHERE round_id = $1 ORDER BY subject, position""",
                round_id,
            )
        found = {r["proposal_id"]: ProposalFindings.model_validate(dict(r)) for r in generation}
        for check in checks:
            subject = check["subject"]
            if subject in found:
                found[subject].checks.append(
                    CheckRow(
                        check_name=check["check_name"],
                        verdict=check["verdict"],
                        detail=check["detail"],
                    )
                )
        return found

    async def principle_mix(self, round_id: str) -> list[PrincipleShare]:
        """The principles a round's kept training examples were drawn under, most used first."""
        rows = await self.pool.fetch(
            """SELECT principle_id, count(*)::integer AS examples FROM dataset_examples
               WHERE round_id = $1 AND skipped IS NULL
               GROUP BY principle_id ORDER BY examples DESC, principle_id""",
            round_id,
        )
        return typed_rows(PrincipleShare, rows)

    async def decision_latency(
        self, *, since: datetime | None = None, points: int = 200
    ) -> LatencyStats:
        """How long proposals waited for their first decision.

        Args:
            since: Only decisions taken at or after this time.
            points: How many of the latest decisions to return as points.
        """
        async with self.pool.acquire() as conn:
            stats = await conn.fetchrow(
                """SELECT count(*)::integer AS decisions, avg(latency_s) AS mean_s,
                          percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_s) AS p50_s,
                          percentile_cont(0.9) WITHIN GROUP (ORDER BY latency_s) AS p90_s,
                          max(latency_s) AS max_s
                   FROM dash_decision_latency
                   WHERE $1::timestamptz IS NULL OR decided_at >= $1""",
                since,
            )
            rows = await conn.fetch(
                """SELECT * FROM (
                       SELECT round_id, proposal_id, decided_at, latency_s, override
                       FROM dash_decision_latency
                       WHERE $1::timestamptz IS NULL OR decided_at >= $1
                       ORDER BY decided_at DESC LIMIT $2) latest
                   ORDER BY decided_at""",
                since,
                points,
            )
        assert stats is not None
        return LatencyStats(**dict(stats), points=typed_rows(LatencyPoint, rows))

    async def evaluations(self) -> list[VersionMetrics]:
        """Every evaluation by constitution version, oldest first, judged by its round's gate."""
        rows = await self.pool.fetch(
            """SELECT d.constitution_version, d.round_id, d.candidate_model, d.harm_rate,
                      d.baseline_harm_rate, d.overrefusal_rate, d.baseline_overrefusal_rate,
                      d.awareness_gap, d.passed, d.created_at,
                      e.candidate, e.baseline, r.spec -> 'gate' AS gate
               FROM dash_evaluations d
               JOIN evaluations e ON e.round_id = d.round_id
               JOIN rounds r ON r.round_id = d.round_id
               ORDER BY d.constitution_version, d.created_at"""
        )
        found = []
        for row in rows:
            try:
                gate = GateSpec.model_validate(row["gate"] or {})
            except ValidationError:
                gate = GateSpec()  # a spec of an older shape: judged by today's defaults
            figures = gate_figures(
                EvaluationMetrics.model_validate(row["candidate"]),
                EvaluationMetrics.model_validate(row["baseline"]),
                gate,
            )
            fields = {k: row[k] for k in VersionMetrics.model_fields if k != "gate_figures"}
            found.append(VersionMetrics(**fields, gate_figures=figures))
        return found

    async def trend(self, reference_model: str) -> Trend:
        """Every promoted version (its gate passed) against `reference_model`, oldest first.

        Read from the stored evaluations: the reference's figures kept with
        each, or its round's baseline's where the baseline was the reference.
        """
        rows = await self.pool.fetch(
            """SELECT constitution_version, round_id, candidate_model, baseline_model,
                      candidate, baseline, tests, reference, created_at
               FROM evaluations WHERE passed
               ORDER BY constitution_version, created_at"""
        )
        return trend(typed_rows(PromotedEvaluation, rows), reference_model)

    async def versions(self) -> list[VersionSummary]:
        """Every constitution version, oldest first."""
        rows = await self.pool.fetch(
            f"""SELECT v.number, {ORIGIN_COLUMNS}, v.content_hash, v.created_at,
                      (SELECT count(*) FROM principles p WHERE p.version = v.number)::integer
                          AS principles
               FROM constitution_versions v ORDER BY v.number"""
        )
        return typed_rows(VersionSummary, rows)

    async def alert_figures(self) -> AlertFigures:
        """The current figures behind `/metrics`' gauges, from the views Grafana reads too."""
        async with self.pool.acquire() as conn:
            pending = await conn.fetchrow(
                """SELECT count(*)::integer AS pending, coalesce(max(age_s), 0) AS oldest
                   FROM dash_pending_proposals"""
            )
            states = await conn.fetch("SELECT state, rounds FROM dash_rounds_by_state")
            blocked = await conn.fetchval("SELECT count(*)::integer FROM dash_blocked_rounds")
        assert pending is not None
        return AlertFigures(
            pending=pending["pending"],
            oldest_pending_s=pending["oldest"],
            rounds_by_state={r["state"]: r["rounds"] for r in states},
            blocked=blocked,
        )

    async def pending(self) -> list[PendingProposal]:
        """Proposals waiting for reviewers, the longest waiting first."""
        rows = await self.pool.fetch("SELECT * FROM dash_pending_proposals ORDER BY posted_at")
        return typed_rows(PendingProposal, rows)

    async def lineage(self, principle_id: str) -> list[LineageEntry]:
        """Every version of a principle, oldest first.

        A principle leaves with each retirement and may come back with a
        revert (`restored`); the history is empty when no version ever had it.
        """
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT d.version, d.change, d.title, d.text, d.protected, {ORIGIN_COLUMNS}
                    FROM dash_principle_versions d
                    JOIN constitution_versions v ON v.number = d.version
                    WHERE d.principle_id = $1 ORDER BY d.version""",
                principle_id,
            )
            if not rows:
                return []
            # Versions numbers run without gaps, so a retirement is a version
            # without the principle right after one with it.
            retirements = await conn.fetch(
                f"""SELECT v.number AS version, {ORIGIN_COLUMNS} FROM constitution_versions v
                    WHERE NOT EXISTS (SELECT 1 FROM principles p
                                      WHERE p.version = v.number AND p.principle_id = $1)
                      AND EXISTS (SELECT 1 FROM principles p
                                  WHERE p.version = v.number - 1 AND p.principle_id = $1)""",
                principle_id,
            )
            entries = [LineageEntry.model_validate(dict(r)) for r in rows]
            for entry in entries[1:]:
                if entry.change == "added" and entry.reverts is not None:
                    entry.change = "restored"
            for gone in retirements:
                before = max((e for e in entries if e.version < gone["version"]), key=_version)
                entries.append(
                    LineageEntry.model_validate(
                        {
                            **dict(gone),
                            "change": "retired",
                            "title": before.title,
                            "text": None,
                            "protected": before.protected,
                        }
                    )
                )
            entries.sort(key=_version)
            for entry in entries:
                if entry.change != "unchanged" and entry.round_id is not None:
                    await self._explain(conn, principle_id, entry)
        return entries

    async def _explain(
        self, conn: asyncpg.pool.PoolConnectionProxy, principle_id: str, entry: LineageEntry
    ) -> None:
        """Name the adopted proposal behind a change.

        One that targets the principle, or for an addition, the added one with its title.
        """
        proposal = await conn.fetchrow(
            """SELECT proposal_id, kind, rationale, evidence FROM proposals
               WHERE round_id = $1 AND state IN ('accepted', 'modified')
                 AND (target = $2 OR (kind = 'add' AND $3 = 'added' AND title = $4))
               ORDER BY position LIMIT 1""",
            entry.round_id,
            principle_id,
            entry.change,
            entry.title,
        )
        if proposal is None:
            return
        reviewers = await conn.fetch(
            "SELECT DISTINCT reviewer FROM decisions WHERE proposal_id = $1 ORDER BY reviewer",
            proposal["proposal_id"],
        )
        entry.proposal_id = proposal["proposal_id"]
        entry.proposal_kind = proposal["kind"]
        entry.rationale = proposal["rationale"]
        entry.evidence = list(proposal["evidence"])
        entry.reviewers = [r["reviewer"] for r in reviewers]
