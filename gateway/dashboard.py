"""The dashboard API: the history of every round, read from the ledger (never
from the worker), with filters and pagination. All of it needs a viewer token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from constitution import RoundState
from constitution.failures import EvaluationFailure
from constitution.trend import Trend
from gateway.auth import PrincipleId, RoundId, Viewer
from gateway.deps import ConfigDep, DashboardsDep, LedgerDep
from gateway.refusals import refusals
from ledger.chain import TransitionRow
from ledger.dashboards import (
    LARGEST_OFFSET,
    LARGEST_VERSION,
    LatencyStats,
    LineageEntry,
    PendingProposal,
    ProposalRow,
    RoundPage,
    VersionMetrics,
    VersionSummary,
)
from ledger.store import Ledger

router = APIRouter(prefix="/api", tags=["dashboards"])


async def _known_round(ledger: Ledger, round_id: str) -> None:
    if await ledger.get_round(round_id) is None:
        raise HTTPException(404, f"no round {round_id}")


@router.get("/rounds", responses=refusals(401, 422))
async def list_rounds(
    _: Viewer,
    dashboards: DashboardsDep,
    state: RoundState | None = None,
    since: Annotated[datetime | None, Query(description="Started at or after.")] = None,
    version: Annotated[
        int | None,
        Query(ge=1, le=LARGEST_VERSION, description="Amending or making this version."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=LARGEST_OFFSET)] = 0,
) -> RoundPage:
    """Rounds newest first; `total` counts every page."""
    return await dashboards.rounds(
        state=state.value if state else None,
        since=since,
        version=version,
        limit=limit,
        offset=offset,
    )


@router.get("/rounds/{round_id}/timeline", responses=refusals(401, 404, 422))
async def timeline(round_id: RoundId, _: Viewer, ledger: LedgerDep) -> list[TransitionRow]:
    """Every transition of the round in order, with its chained hash."""
    await _known_round(ledger, round_id)
    return await ledger.timeline(round_id)


@router.get("/rounds/{round_id}/proposals", responses=refusals(401, 404, 422))
async def proposals(
    round_id: RoundId, _: Viewer, ledger: LedgerDep, dashboards: DashboardsDep
) -> list[ProposalRow]:
    """The round's proposals with their decisions (overrides marked)."""
    await _known_round(ledger, round_id)
    return await dashboards.proposals(round_id)


@router.get("/rounds/{round_id}/evidence", responses=refusals(401, 404, 422))
async def evidence(
    round_id: RoundId, _: Viewer, ledger: LedgerDep, selected: bool = False
) -> dict[str, Any]:
    """The evidence a round read (and left out, with why) and its selection;
    proposals link to items here by id."""
    await _known_round(ledger, round_id)
    return {
        "selection": await ledger.evidence_selection(round_id),
        "items": await ledger.evidence(round_id, selected_only=selected),
        "dropped_drafts": await ledger.dropped_drafts(round_id),
    }


@router.get("/rounds/{round_id}/failures", responses=refusals(401, 404, 422))
async def failures(round_id: RoundId, _: Viewer, ledger: LedgerDep) -> list[EvaluationFailure]:
    """What the round's evaluation found its candidate getting wrong (harmful answers,
    over-refusals, answers that changed with a cue): the evidence a round started with
    `--evidence-from-round` reads, each under its id here."""
    await _known_round(ledger, round_id)
    return await ledger.evaluation_failures(round_id)


@router.get("/dashboard/decision-latency", responses=refusals(401, 422))
async def decision_latency(
    _: Viewer, dashboards: DashboardsDep, since: datetime | None = None
) -> LatencyStats:
    """From posting to first decision: count, mean, p50, p90, max, and the latest points."""
    return await dashboards.decision_latency(since=since)


@router.get("/dashboard/evaluations", responses=refusals(401))
async def evaluations(_: Viewer, dashboards: DashboardsDep) -> list[VersionMetrics]:
    """Harm rate, over-refusal and awareness gap per constitution version."""
    return await dashboards.evaluations()


@router.get("/trend", responses=refusals(401))
async def trend(_: Viewer, dashboards: DashboardsDep, config: ConfigDep) -> Trend:
    """Every promoted version against the reference model (`AMEND_REFERENCE_MODEL`).

    Harm, over-refusal and awareness gap of each, beside the reference's, with
    intervals; `cumulative` is the latest version's relative harm reduction
    (with its interval), the figure behind "N% fewer harmful outputs".
    """
    return await dashboards.trend(config.reference_model)


@router.get("/dashboard/pending", responses=refusals(401))
async def pending(_: Viewer, dashboards: DashboardsDep) -> list[PendingProposal]:
    """Proposals waiting for reviewers, oldest first, with their age."""
    return await dashboards.pending()


@router.get("/constitution/versions", responses=refusals(401))
async def versions(_: Viewer, dashboards: DashboardsDep) -> list[VersionSummary]:
    """Every constitution version, oldest first."""
    return await dashboards.versions()


@router.get("/principles/{principle_id}/lineage", responses=refusals(401, 404, 422))
async def lineage(
    principle_id: PrincipleId, _: Viewer, dashboards: DashboardsDep
) -> list[LineageEntry]:
    """Every version of a principle and the round, proposal, evidence and reviewers behind it."""
    entries = await dashboards.lineage(principle_id)
    if not entries:
        raise HTTPException(404, f"no version has principle {principle_id}")
    return entries
