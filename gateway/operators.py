"""The operator API: what `amend round ...`, `amend constitution ...` and
`amend audit verify` do, over HTTP. Reads need a viewer token, writes an
operator token, and every write records the caller as its actor.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from temporalio.client import Client
from temporalio.service import RPCError

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
from constitution.contracts import OperatorRequest, RoundResult, RoundStatus
from constitution.documents import DocumentError, imported_version, parse_markdown
from gateway.auth import Operator, RoundId, Viewer
from gateway.rounds import (
    RoundExists,
    RoundNotFound,
    RoundRefused,
    cancel_round,
    override_decision,
    repost_round,
    retry_slack,
    round_status,
    start_round,
)
from ledger.chain import ChainBreak
from ledger.dashboards import LARGEST_VERSION
from ledger.store import Ledger

router = APIRouter(prefix="/api", tags=["operators"])
T = TypeVar("T")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartedRound(BaseModel):
    round_id: str
    workflow_id: str


class OrderBody(Body):
    reason: str = Field(min_length=1, max_length=2000, description="Recorded with the order.")


class RepostBody(Body):
    reason: str = Field(default="re-posted", min_length=1, max_length=2000)


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


class Imported(BaseModel):
    version: int
    stored: bool


class AuditReport(BaseModel):
    rounds_checked: int
    breaks: list[ChainBreak]


def _temporal(request: Request) -> Client:
    return request.app.state.temporal  # type: ignore[no-any-return]


def _ledger(request: Request) -> Ledger:
    return request.app.state.ledger  # type: ignore[no-any-return]


async def answer(call: Awaitable[T]) -> T:
    """Await an order or read sent to a round, answering its refusals in HTTP:
    404 unknown, 409 refused or already there, 503 Temporal unreachable."""
    try:
        return await call
    except RoundNotFound as error:
        raise HTTPException(404, str(error)) from error
    except (RoundRefused, RoundExists) as error:
        raise HTTPException(409, str(error)) from error
    except RPCError as error:
        raise HTTPException(503, f"Temporal did not answer: {error.message}") from error


@router.post("/rounds", status_code=201)
async def start(request: Request, spec: RoundSpec, caller: Operator) -> StartedRound:
    """Start a round; the caller is recorded as the one who started it."""
    spec = spec.model_copy(update={"requested_by": caller.actor})
    await answer(start_round(_temporal(request), spec, request.app.state.config.task_queue))
    return StartedRound(round_id=spec.round_id, workflow_id=spec.workflow_id)


@router.get("/rounds/{round_id}")
async def show_round(request: Request, round_id: RoundId, _: Viewer) -> RoundStatus:
    """The round's live state from its workflow."""
    return await answer(round_status(_temporal(request), round_id))


@router.post("/rounds/{round_id}/cancel")
async def cancel(
    request: Request, round_id: RoundId, body: OrderBody, caller: Operator
) -> RoundResult:
    """Cancel an active round; pending proposals are withdrawn (409 once it ended)."""
    order = OperatorRequest(actor=caller.actor, reason=body.reason)
    return await answer(cancel_round(_temporal(request), round_id, order))


@router.post("/rounds/{round_id}/repost")
async def repost(
    request: Request, round_id: RoundId, body: RepostBody, caller: Operator
) -> Reposted:
    """Post the round's pending proposals to Slack again."""
    order = OperatorRequest(actor=caller.actor, reason=body.reason)
    return Reposted(reposted=await answer(repost_round(_temporal(request), round_id, order)))


@router.post("/rounds/{round_id}/retry-slack", status_code=202)
async def retry_slack_now(request: Request, round_id: RoundId, _: Operator) -> dict[str, str]:
    """After fixing what blocked Slack posting (a channel, a token): try now."""
    await answer(retry_slack(_temporal(request), round_id))
    return {"round_id": round_id, "status": "retrying Slack"}


@router.post("/rounds/{round_id}/decisions")
async def decide(
    request: Request, round_id: RoundId, body: OverrideBody, caller: Operator
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
    return await answer(override_decision(_temporal(request), round_id, decision))


# -- the constitution --------------------------------------------------------------


async def _version(request: Request, number: int | None) -> ConstitutionVersion:
    version = await _ledger(request).get_version(number)
    if version is None:
        raise HTTPException(404, f"no constitution version {number or ''}".strip())
    return version


@router.get(
    "/constitution/versions/{number}",
    responses={200: {"content": {"text/markdown": {}}}},
    response_model=ConstitutionVersion,
)
async def show_version(
    request: Request,
    number: Annotated[int, Path(ge=1, le=LARGEST_VERSION)],
    _: Viewer,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
) -> ConstitutionVersion | PlainTextResponse:
    version = await _version(request, number)
    if format == "markdown":
        return PlainTextResponse(render_markdown(version), media_type="text/markdown")
    return version


@router.get("/constitution/diff", response_class=PlainTextResponse)
async def diff(
    request: Request,
    _: Viewer,
    old: Annotated[int, Query(alias="from", ge=1, le=LARGEST_VERSION)],
    new: Annotated[int, Query(alias="to", ge=1, le=LARGEST_VERSION)],
) -> str:
    """A unified diff from one version to another."""
    return diff_versions(await _version(request, old), await _version(request, new))


@router.post("/constitution/versions", status_code=201)
async def import_version(request: Request, body: ImportBody, caller: Operator) -> Imported:
    """Store a document as the next version; principles it lacks are retired."""
    if (body.markdown is None) == (body.principles is None):
        raise HTTPException(422, "send either 'markdown' or 'principles'")
    try:
        principles = (
            parse_markdown(body.markdown)
            if body.markdown is not None
            else tuple(body.principles or ())
        )
        ledger = _ledger(request)
        latest = await ledger.get_version()
        version = imported_version(principles, latest)
    except DocumentError as error:
        raise HTTPException(422, str(error)) from error
    if latest is not None and latest.content_hash == version.content_hash:
        return Imported(version=latest.number, stored=False)
    await ledger.import_version(version, caller.actor)
    return Imported(version=version.number, stored=True)


@router.get("/audit/verify")
async def verify(
    request: Request, _: Viewer, round_id: Annotated[str | None, Query(alias="round")] = None
) -> AuditReport:
    """Walk the hash chains; `breaks` names the first bad row of each broken round."""
    ledger = _ledger(request)
    if round_id is not None and await ledger.get_round(round_id) is None:
        raise HTTPException(404, f"no round {round_id}")
    checked = 1 if round_id else await ledger.pool.fetchval("SELECT count(*) FROM rounds")
    return AuditReport(rounds_checked=checked, breaks=await ledger.verify_chain(round_id))
