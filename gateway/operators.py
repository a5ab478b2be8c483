"""The operator API: what `amend round ...`, `amend constitution ...` and
`amend audit verify` do, over HTTP. Reads need a viewer token, writes an
operator token, and every write records the caller as its actor.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from constitution import (
    ConstitutionVersion,
    DecisionKind,
    DecisionOutcome,
    DecisionRequest,
    Principle,
    RoundSpec,
    diff_versions,
    render_markdown,
)
from constitution.contracts import OperatorRequest, ResumedRound, RoundResult, RoundStatus
from constitution.documents import DocumentError, Provenance, parse_markdown
from gateway.auth import Operator, RoundId, Viewer
from gateway.deps import ConfigDep, LedgerDep, TemporalDep
from gateway.refusals import ORDER, refusals
from ledger.chain import ChainBreak
from ledger.dashboards import LARGEST_VERSION
from ledger.errors import LedgerError
from ledger.store import Ledger, StoredVersion
from workflows.client import (
    cancel_round,
    override_decision,
    repost_round,
    resume_round,
    retry_slack,
    round_status,
    start_round,
)

router = APIRouter(prefix="/api", tags=["operators"])


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartedRound(BaseModel):
    round_id: str
    workflow_id: str


class OrderBody(Body):
    reason: str = Field(min_length=1, max_length=2000, description="Recorded with the order.")


class RepostBody(Body):
    reason: str = Field(default="re-posted", min_length=1, max_length=2000)


class ResumeBody(Body):
    reason: str = Field(default="", max_length=2000, description="Recorded with the resume.")


class Reposted(BaseModel):
    reposted: int


class OverrideBody(Body):
    proposal_id: str = Field(min_length=1, max_length=200)
    kind: DecisionKind
    reason: str = Field(min_length=1, max_length=2000)
    text: str | None = Field(default=None, max_length=2000, description="Edited text (modify).")


class ImportBody(Body):
    """Either Markdown (as `amend constitution export` writes) or principles."""

    markdown: str | None = Field(default=None, max_length=200_000)
    principles: list[Principle] | None = Field(default=None, max_length=500)
    source: str = Field(
        default="the HTTP API",
        min_length=1,
        max_length=1000,
        description="The file the document came from, recorded with the version.",
    )
    reason: str | None = Field(default=None, min_length=1, max_length=2000)


# An import or revert that finds its principles already latest answers 200, not 201.
NOTHING_STORED: dict[int | str, dict[str, Any]] = {
    200: {"model": StoredVersion, "description": "The latest version already has them."}
}


class RevertBody(Body):
    reason: str = Field(min_length=1, max_length=2000, description="Recorded with the version.")


class AuditReport(BaseModel):
    rounds_checked: int
    breaks: list[ChainBreak]


# Refusals of the round (unknown: 404, refused or already there: 409) and an
# unreachable Temporal (503) are answered by the app's exception handlers.


@router.post("/rounds", status_code=201, responses=refusals(400, 401, 403, 409, 413, 422, 503))
async def start(
    spec: RoundSpec, caller: Operator, temporal: TemporalDep, config: ConfigDep
) -> StartedRound:
    """Start a round; the caller is recorded as the one who started it."""
    spec = spec.with_outage_patience(config.outage_patience)
    spec = spec.model_copy(update={"requested_by": caller.actor})
    await start_round(temporal, spec, config.task_queue)
    return StartedRound(round_id=spec.round_id, workflow_id=spec.workflow_id)


@router.get("/rounds/{round_id}", responses=refusals(401, 404, 422, 503))
async def show_round(round_id: RoundId, _: Viewer, temporal: TemporalDep) -> RoundStatus:
    """The round's live state from its workflow."""
    return await round_status(temporal, round_id)


@router.post("/rounds/{round_id}/cancel", responses=refusals(*ORDER))
async def cancel(
    round_id: RoundId, body: OrderBody, caller: Operator, temporal: TemporalDep
) -> RoundResult:
    """Cancel an active round; pending proposals are withdrawn (409 once it ended)."""
    order = OperatorRequest(actor=caller.actor, reason=body.reason)
    return await cancel_round(temporal, round_id, order)


@router.post("/rounds/{round_id}/repost", responses=refusals(*ORDER))
async def repost(
    round_id: RoundId, body: RepostBody, caller: Operator, temporal: TemporalDep
) -> Reposted:
    """Post the round's pending proposals to Slack again."""
    order = OperatorRequest(actor=caller.actor, reason=body.reason)
    return Reposted(reposted=await repost_round(temporal, round_id, order))


@router.post("/rounds/{round_id}/resume", status_code=202, responses=refusals(*ORDER))
async def resume(
    round_id: RoundId,
    body: ResumeBody,
    caller: Operator,
    temporal: TemporalDep,
    config: ConfigDep,
) -> ResumedRound:
    """Re-run a failed round from the stage after its last completed one (dataset,
    fine-tune, evaluation), without asking reviewers again. 409 unless the round failed
    after its review adopted amendments, or when it is already running again."""
    order = OperatorRequest(actor=caller.actor, reason=body.reason)
    return await resume_round(temporal, round_id, order, config.task_queue)


@router.post(
    "/rounds/{round_id}/retry-slack",
    status_code=202,
    responses=refusals(401, 403, 404, 413, 422, 503),
)
async def retry_slack_now(round_id: RoundId, _: Operator, temporal: TemporalDep) -> dict[str, str]:
    """After fixing what blocked Slack posting (a channel, a token): try now."""
    await retry_slack(temporal, round_id)
    return {"round_id": round_id, "status": "retrying Slack"}


@router.post("/rounds/{round_id}/decisions", responses=refusals(*ORDER))
async def decide(
    round_id: RoundId, body: OverrideBody, caller: Operator, temporal: TemporalDep
) -> DecisionOutcome:
    """Decide a proposal in the reviewers' stead, recorded as an operator override."""
    try:
        decision = DecisionRequest(
            proposal_id=body.proposal_id,
            kind=body.kind,
            reviewer=caller.actor,
            text=body.text,
            comment=body.reason,
            override=True,
        )
    except ValidationError as error:
        raise HTTPException(422, error.errors()[0]["msg"]) from error
    return await override_decision(temporal, round_id, decision)


# -- the constitution --------------------------------------------------------------


async def _version(ledger: Ledger, number: int | None) -> ConstitutionVersion:
    version = await ledger.get_version(number)
    if version is None:
        raise HTTPException(404, f"no constitution version {number or ''}".strip())
    return version


@router.get(
    "/constitution/versions/{number}",
    responses={200: {"content": {"text/markdown": {}}}, **refusals(401, 404, 422)},
    response_model=ConstitutionVersion,
)
async def show_version(
    number: Annotated[int, Path(ge=1, le=LARGEST_VERSION)],
    _: Viewer,
    ledger: LedgerDep,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
) -> ConstitutionVersion | PlainTextResponse:
    """A constitution version, as JSON or as the Markdown `export` writes."""
    version = await _version(ledger, number)
    if format == "markdown":
        return PlainTextResponse(render_markdown(version), media_type="text/markdown")
    return version


@router.get(
    "/constitution/diff", response_class=PlainTextResponse, responses=refusals(401, 404, 422)
)
async def diff(
    _: Viewer,
    ledger: LedgerDep,
    old: Annotated[int, Query(alias="from", ge=1, le=LARGEST_VERSION)],
    new: Annotated[int, Query(alias="to", ge=1, le=LARGEST_VERSION)],
) -> str:
    """A unified diff from one version to another."""
    return diff_versions(await _version(ledger, old), await _version(ledger, new))


@router.post(
    "/constitution/versions",
    status_code=201,
    responses={**NOTHING_STORED, **refusals(400, 401, 403, 409, 413, 422)},
)
async def import_version(
    body: ImportBody, caller: Operator, ledger: LedgerDep, response: Response
) -> StoredVersion:
    """Store a document as the next version, recording the caller and `source`; principles
    it lacks are retired. A document with an earlier version's principles makes a revert to
    that version (`reverts`); one with the latest's stores nothing (200, `stored: false`)."""
    if (body.markdown is None) == (body.principles is None):
        raise HTTPException(422, "send either 'markdown' or 'principles'")
    provenance = Provenance(actor=caller.actor, source=body.source, reason=body.reason)
    try:
        principles = (
            parse_markdown(body.markdown)
            if body.markdown is not None
            else tuple(body.principles or ())
        )
        stored = await ledger.import_document(principles, provenance)
    except DocumentError as error:
        raise HTTPException(422, str(error)) from error
    except LedgerError as error:
        raise HTTPException(409, f"{error}; nothing was stored, try again") from error
    if not stored.stored:
        response.status_code = 200
    return stored


@router.post(
    "/constitution/versions/{number}/revert",
    status_code=201,
    responses={**NOTHING_STORED, **refusals(400, 401, 403, 404, 409, 413, 422)},
)
async def revert_version(
    number: Annotated[int, Path(ge=1, le=LARGEST_VERSION)],
    body: RevertBody,
    caller: Operator,
    ledger: LedgerDep,
    response: Response,
) -> StoredVersion:
    """Roll back: a new version with version `number`'s principles, recorded with the caller
    and the reason. 404 when there is no such version; 200 with `stored: false` when the
    latest version already has those principles."""
    provenance = Provenance(actor=caller.actor, reason=body.reason)
    try:
        stored = await ledger.revert_to(number, provenance)
    except LedgerError as error:
        raise HTTPException(409, f"{error}; nothing was stored, try again") from error
    if stored is None:
        raise HTTPException(404, f"no constitution version {number}")
    if not stored.stored:
        response.status_code = 200
    return stored


@router.get("/audit/verify", responses=refusals(401, 404, 422))
async def verify(
    _: Viewer,
    ledger: LedgerDep,
    round_id: Annotated[str | None, Query(alias="round")] = None,
) -> AuditReport:
    """Walk the hash chains; `breaks` names the first bad row of each broken round."""
    if round_id is not None and await ledger.get_round(round_id) is None:
        raise HTTPException(404, f"no round {round_id}")
    checked = 1 if round_id else await ledger.pool.fetchval("SELECT count(*) FROM rounds")
    return AuditReport(rounds_checked=checked, breaks=await ledger.verify_chain(round_id))
