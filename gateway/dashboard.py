"""The dashboard API: the history of every round, read from the ledger (never
from the worker), with filters and pagination. All of it needs a viewer token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from constitution import RoundState
from gateway.auth import PrincipleId, RoundId, Viewer
from ledger.chain import TransitionRow
from ledger.dashboards import (
    LARGEST_OFFSET,
    LARGEST_VERSION,
    Dashboards,
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


def _dashboards(request: Request) -> Dashboards:
    return request.app.state.dashboards  # type: ignore[no-any-return]


async def _known_round(request: Request, round_id: str) -> None:
    ledger: Ledger = request.app.state.ledger
    if await ledger.get_round(round_id) is None:
        raise HTTPException(404, f"no round {round_id}")


@router.get("/rounds")
async def list_rounds(
    request: Request,
    _: Viewer,
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
    return await _dashboards(request).rounds(
        state=state.value if state else None,
        since=since,
        version=version,
        limit=limit,
        offset=offset,
    )


@router.get("/rounds/{round_id}/timeline")
async def timeline(request: Request, round_id: RoundId, _: Viewer) -> list[TransitionRow]:
    """Every transition of the round in order, with its chained hash."""
    await _known_round(request, round_id)
    ledger: Ledger = request.app.state.ledger
    return await ledger.timeline(round_id)


@router.get("/rounds/{round_id}/proposals")
async def proposals(request: Request, round_id: RoundId, _: Viewer) -> list[ProposalRow]:
    """The round's proposals with their decisions (overrides marked)."""
    await _known_round(request, round_id)
    return await _dashboards(request).proposals(round_id)


@router.get("/rounds/{round_id}/evidence")
async def evidence(
    request: Request, round_id: RoundId, _: Viewer, selected: bool = False
) -> dict[str, Any]:
    """The evidence a round read (and left out, with why) and its selection;
    proposals link to items here by id."""
    await _known_round(request, round_id)
    ledger: Ledger = request.app.state.ledger
    return {
        "selection": await ledger.evidence_selection(round_id),
        "items": await ledger.evidence(round_id, selected_only=selected),
        "dropped_drafts": await ledger.dropped_drafts(round_id),
    }


@router.get("/dashboard/decision-latency")
async def decision_latency(
    request: Request, _: Viewer, since: datetime | None = None
) -> LatencyStats:
    """From posting to first decision: count, mean, p50, p90, max, and the latest points."""
    return await _dashboards(request).decision_latency(since=since)


@router.get("/dashboard/evaluations")
async def evaluations(request: Request, _: Viewer) -> list[VersionMetrics]:
    """Harm rate, over-refusal and awareness gap per constitution version."""
    return await _dashboards(request).evaluations()


@router.get("/dashboard/pending")
async def pending(request: Request, _: Viewer) -> list[PendingProposal]:
    """Proposals waiting for reviewers, oldest first, with their age."""
    return await _dashboards(request).pending()


@router.get("/constitution/versions")
async def versions(request: Request, _: Viewer) -> list[VersionSummary]:
    """Every constitution version, oldest first."""
    return await _dashboards(request).versions()


@router.get("/principles/{principle_id}/lineage")
async def lineage(request: Request, principle_id: PrincipleId, _: Viewer) -> list[LineageEntry]:
    """Every version of a principle and the round, proposal, evidence and reviewers behind it."""
    entries = await _dashboards(request).lineage(principle_id)
    if not entries:
        raise HTTPException(404, f"no version has principle {principle_id}")
    return entries
