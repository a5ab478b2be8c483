"""What the round page shows, as one typed view model built from the ledger.

The page is for a reviewer deciding and a manager judging a round without
opening anything else, so the view gathers the round's spec, its proposals
with their findings, evidence and votes, its retraining and evaluation, and
its timeline. The ledger is the source, so the page reads the same for a
round that ended a year ago; a live round adds what only its workflow knows
(group members as last resolved, progress) when the workflow answers in time.

Templates only lay the view out: every decision about what a figure means
(the gate's verdict per figure, who is still awaited) is made here or in
`constitution`, never in markup.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field, ValidationError
from temporalio.service import RPCError

from constitution import (
    TERMINAL_ROUND_STATES,
    ConstitutionVersion,
    Decision,
    GateSpec,
    Principle,
    RoundSpec,
    RoundState,
)
from constitution.contracts import (
    AmendmentEffect,
    EvaluationMetrics,
    PairedTest,
    Progress,
    RoundStatus,
)
from constitution.failures import EvaluationFailure
from constitution.findings import CheckVerdict, Conflict, ImpactPreview, Verdict
from constitution.gate import GateFigure, gate_figures
from constitution.review import awaiting, eligible_reviewers, operator_name
from constitution.wording import WordDiff, word_diff
from gateway.deps import Services
from ledger.chain import TransitionRow
from ledger.dashboards import PrincipleShare, ProposalFindings, ProposalRow
from ledger.reads import DatasetRow, EvaluationRow, EvidenceRow, TrainingJobRow
from workflows.client import RoundNotFound, round_status

log = logging.getLogger(__name__)

# A live round's workflow is asked for what only it knows; the page does not
# wait long for a busy or stopped worker, it shows what the ledger has.
LIVE_QUERY_TIMEOUT_S = 2.0
EXCERPT_CHARS = 280


def person(actor: str) -> str:
    """An actor as people read it: an operator by name, else the id as recorded."""
    name = operator_name(actor)
    return f"operator {name}" if name is not None else actor


def span(delta: timedelta) -> str:
    """A duration in the largest units that read well: '3 d 4 h', '12 min', '40 s'."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


class ReviewSetup(BaseModel):
    """Who decides the round's proposals, and under which policies."""

    reviewers: list[str]
    groups: dict[str, list[str] | None] = Field(
        description="Each group with its members as last resolved; None when not known here."
    )
    policy: str
    strict_policy: str
    reminder_every: str
    deadline: str | None


class Awaited(BaseModel):
    """A proposal still open, and who could still settle it."""

    proposal_id: str
    tally: str
    waiting_for: list[str]
    accepts_short: int
    since: datetime | None
    waited: str | None


class CitedEvidence(BaseModel):
    """An evidence item a proposal rests on, cut to an excerpt; `found` is False when
    the round has no item with that id (the model cited something it was not shown)."""

    evidence_id: str
    found: bool
    kind: str | None = None
    excerpt: str | None = None


class ProposalView(BaseModel):
    """One proposal with everything a reviewer reads before deciding."""

    proposal_id: str
    kind: str
    target: str | None
    title: str | None
    state: str
    current: Principle | None = Field(description="The target as the base version has it.")
    proposed_text: str | None
    diff: WordDiff
    adopted: WordDiff | None = Field(description="Current against the adopted text, if edited.")
    rationale: str
    evidence: list[CitedEvidence]
    checks: list[CheckVerdict]
    strict_review: bool
    protected: bool
    conflicts: list[Conflict]
    impact: ImpactPreview | None
    votes: list[Decision] = Field(description="Every vote, in the order taken.")
    touches: list[str]


class JobView(BaseModel):
    """The fine-tune job as the page shows it."""

    job_id: str
    backend: str
    status: str
    base_model: str
    fine_tuned_model: str | None
    error: str | None
    started_at: datetime
    duration: str
    running: bool


class RetrainingView(BaseModel):
    """The dataset, its principle mix and the fine-tune job, as far as the round got."""

    dataset: DatasetRow | None
    principle_mix: list[PrincipleShare]
    dataset_link: str | None
    job: JobView | None
    progress: Progress | None


class EvaluationView(BaseModel):
    """The candidate's figures against the baseline's, each beside its gate threshold.

    `figures` is a list so that a new figure (a confidence interval, a rate
    per category) is one more entry, laid out by the same template partial.
    """

    candidate_model: str
    baseline_model: str
    passed: bool
    reasons: list[str]
    figures: list[GateFigure]
    harmful_prompts: int
    benign_prompts: int
    rubric_version: str | None
    prompt_set: str | None
    evaluated_at: datetime
    outcome: str = "failed"
    candidate: EvaluationMetrics | None = None
    baseline: EvaluationMetrics | None = None
    tests: list[PairedTest] = []
    attribution: list[AmendmentEffect] = []
    settings: dict[str, Any] = {}


class RoundView(BaseModel):
    """Everything the round page shows."""

    round_id: str
    workflow_id: str
    state: str
    live: bool
    reason: str | None = Field(description="Why it failed, was held back or was cancelled.")
    blocked: str | None = Field(description="Why Slack posting is paused, while it is.")
    waiting: str | None = Field(
        default=None, description="`waiting on model until ...`, while the round waits on it."
    )
    base_version: int | None
    result_version: int | None
    started_by: str
    started_at: datetime
    updated_at: datetime
    temporal_url: str | None
    review: ReviewSetup | None
    awaited: list[Awaited]
    proposals: list[ProposalView]
    retraining: RetrainingView | None
    evaluation: EvaluationView | None
    timeline: list[TransitionRow]
    evidence: list[EvidenceRow] = Field(description="Every item a proposal cites, in full.")
    failures: list[EvaluationFailure] = Field(
        default_factory=list,
        description="What the evaluation found the candidate getting wrong: the evidence a "
        "round started with --evidence-from-round reads.",
    )
    live_status_note: str | None = Field(
        default=None, description="Set when a live round's workflow did not answer."
    )


def _review_setup(spec: RoundSpec, live: RoundStatus | None) -> ReviewSetup:
    members = live.group_members if live is not None else {}
    return ReviewSetup(
        reviewers=spec.reviewers,
        groups={g: members.get(g) for g in spec.reviewer_groups},
        policy=spec.policy.describe(),
        strict_policy=spec.strict_policy.describe(),
        reminder_every=span(spec.reminder_interval),
        deadline=span(spec.deadline) if spec.deadline else None,
    )


def _awaited(
    spec: RoundSpec,
    live: RoundStatus | None,
    proposals: list[ProposalRow],
    findings: dict[str, ProposalFindings],
    now: datetime,
) -> list[Awaited]:
    eligible = eligible_reviewers(spec, live.group_members if live is not None else {})
    open_ = []
    for p in proposals:
        if p.state != "posted":
            continue
        strict = findings[p.proposal_id].strict_review if p.proposal_id in findings else False
        policy = spec.strict_policy if strict else spec.policy
        stand = awaiting(policy, [d.decision() for d in p.decisions], eligible)
        waiting = [person(r) for r in stand.waiting_for]
        # Members of groups not resolved here: the group itself is awaited.
        known = live.group_members if live is not None else {}
        waiting += [f"members of {g}" for g in spec.reviewer_groups if g not in known]
        open_.append(
            Awaited(
                proposal_id=p.proposal_id,
                tally=stand.tally,
                waiting_for=waiting,
                accepts_short=stand.accepts_short,
                since=p.posted_at,
                waited=span(now - p.posted_at) if p.posted_at else None,
            )
        )
    return open_


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _proposal(
    p: ProposalRow,
    base: ConstitutionVersion | None,
    findings: ProposalFindings | None,
    evidence: dict[str, EvidenceRow],
) -> ProposalView:
    current = base.principle(p.target) if base is not None and p.target else None
    adopted_text = next((d.text for d in reversed(p.decisions) if d.text), None)
    return ProposalView(
        proposal_id=p.proposal_id,
        kind=p.kind,
        target=p.target,
        title=p.title,
        state=p.state,
        current=current,
        proposed_text=p.text,
        diff=word_diff(current.text if current else None, p.text),
        adopted=word_diff(current.text if current else None, adopted_text)
        if p.state == "modified" and adopted_text
        else None,
        rationale=p.rationale,
        evidence=[
            CitedEvidence(
                evidence_id=e,
                found=True,
                kind=evidence[e].kind,
                excerpt=_excerpt(evidence[e].summary),
            )
            if e in evidence
            else CitedEvidence(evidence_id=e, found=False)
            for e in p.evidence
        ],
        checks=[
            CheckVerdict(check=c.check_name, verdict=Verdict(c.verdict), detail=c.detail)
            for c in (findings.checks if findings else [])
        ],
        strict_review=findings.strict_review if findings else False,
        protected=current.protected if current else False,
        conflicts=findings.conflicts if findings else [],
        impact=findings.impact if findings else None,
        votes=[d.decision() for d in p.decisions],
        touches=p.touches,
    )


def _job(job: TrainingJobRow, now: datetime) -> JobView:
    running = job.status not in ("succeeded", "failed", "cancelled")
    return JobView(
        job_id=job.job_id,
        backend=job.backend,
        status=job.status,
        base_model=job.base_model,
        fine_tuned_model=job.fine_tuned_model,
        error=job.error,
        started_at=job.created_at,
        duration=span((now if running else job.updated_at) - job.created_at),
        running=running,
    )


def _evaluation(row: EvaluationRow, spec: RoundSpec | None) -> EvaluationView:
    gate = spec.gate if spec is not None else GateSpec()
    return EvaluationView(
        candidate_model=row.candidate_model,
        baseline_model=row.baseline_model,
        passed=row.passed,
        reasons=row.reasons,
        figures=gate_figures(row.candidate, row.baseline, gate),
        harmful_prompts=row.candidate.harmful_prompts,
        benign_prompts=row.candidate.benign_prompts,
        rubric_version=row.rubric_version,
        prompt_set=row.prompt_set,
        evaluated_at=row.created_at,
        outcome=row.verdict,
        candidate=row.candidate,
        baseline=row.baseline,
        tests=row.tests,
        attribution=row.attribution,
        settings=row.settings,
    )


def _ending(timeline: list[TransitionRow], state: str) -> str | None:
    """The reason recorded with the round's move to its current state, if it gave one."""
    for t in reversed(timeline):
        if t.entity == "round" and t.to_state == state:
            return t.reason or None
    return None


def _held(timeline: list[TransitionRow], entity: str, held: str) -> str | None:
    """The reason of the last move of `entity`, while that move was into `held`."""
    last = next((t for t in reversed(timeline) if t.entity == entity), None)
    return last.reason if last is not None and last.to_state == held else None


async def _live_status(services: Services, round_id: str) -> tuple[RoundStatus | None, str | None]:
    try:
        status = await asyncio.wait_for(
            round_status(services.temporal, round_id), LIVE_QUERY_TIMEOUT_S
        )
    except (RPCError, RoundNotFound, TimeoutError) as error:
        log.info("round %s did not answer its query: %s", round_id, error)
        return None, "The round's workflow did not answer just now; this is the ledger's record."
    return status, None


async def build_round_view(services: Services, round_id: str) -> RoundView | None:
    """The round page's view, or None when the ledger has no such round."""
    ledger, dashboards, config = services.ledger, services.dashboards, services.config
    row = await ledger.get_round(round_id)
    if row is None:
        return None
    try:
        spec: RoundSpec | None = RoundSpec.model_validate(row.spec)
    except ValidationError:
        spec = None  # recorded by an older shape of the spec: shown without its review setup
    now = datetime.now(UTC)
    live_round = RoundState(row.state) not in TERMINAL_ROUND_STATES
    live, note = await _live_status(services, round_id) if live_round else (None, None)
    timeline = await ledger.timeline(round_id)
    proposals = await dashboards.proposals(round_id)
    findings = await dashboards.proposal_findings(round_id)
    evidence = {e.evidence_id: e for e in await ledger.evidence(round_id)}
    base = await ledger.get_version(row.base_version) if row.base_version else None
    dataset = await ledger.dataset(round_id)
    job = await ledger.training_job_for_round(round_id)
    evaluation = await ledger.evaluation(round_id)
    retraining = None
    if dataset is not None or job is not None or (live is not None and live.progress):
        retraining = RetrainingView(
            dataset=dataset,
            principle_mix=await dashboards.principle_mix(round_id) if dataset else [],
            dataset_link=f"/rounds/{quote(round_id)}/dataset" if dataset else None,
            job=_job(job, now) if job is not None else None,
            progress=live.progress if live is not None else None,
        )
    first = timeline[0] if timeline else None
    cited = {e for p in proposals for e in p.evidence}
    return RoundView(
        round_id=row.round_id,
        workflow_id=row.workflow_id,
        state=row.state,
        live=live_round,
        reason=_ending(timeline, row.state) if not live_round else None,
        blocked=_held(timeline, "slack", "blocked"),
        waiting=_held(timeline, "model", "waiting") if live_round else None,
        base_version=row.base_version,
        result_version=row.result_version,
        started_by=person(
            (spec.requested_by if spec else None) or (first.actor if first else "workflow")
        ),
        started_at=row.created_at,
        updated_at=row.updated_at,
        temporal_url=(
            f"{config.temporal_ui_url.rstrip('/')}/namespaces/"
            f"{quote(config.temporal_namespace)}/workflows/{quote(row.workflow_id)}"
            if config.temporal_ui_url
            else None
        ),
        review=_review_setup(spec, live) if spec is not None else None,
        awaited=_awaited(spec, live, proposals, findings, now) if spec is not None else [],
        proposals=[_proposal(p, base, findings.get(p.proposal_id), evidence) for p in proposals],
        retraining=retraining,
        evaluation=_evaluation(evaluation, spec) if evaluation is not None else None,
        timeline=timeline,
        evidence=[e for e in evidence.values() if e.evidence_id in cited],
        failures=await ledger.evaluation_failures(round_id) if evaluation is not None else [],
        live_status_note=note,
    )
