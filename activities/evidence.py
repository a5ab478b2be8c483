"""Gathering a round's evidence: the files it names and, from an earlier round,
its decisions and its evaluation's failures, validated, stored in the ledger and
packed into chunks.

A bad file fails the round at once with every bad line named (retrying cannot
fix a file), and nothing of it is stored: items are written only after every
source has been read and validated.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.liveness import heartbeating
from constitution.contracts import GatherEvidenceInput
from constitution.errors import ErrorType
from constitution.evidence import (
    EvidenceFileError,
    EvidenceSelection,
    parse_evidence,
    select_evidence,
)
from constitution.models import EvidenceItem, EvidenceKind
from constitution.samples import sample_path
from ledger.reads import DecidedProposal
from ledger.store import Ledger
from workflows import activities as defined

DECIDED = {"accept": "accepted", "reject": "rejected", "modify": "edited and accepted"}


def evaluation_source(round_id: str) -> str:
    """Where an evaluation failure came from, as the evidence table records it."""
    return f"round:{round_id}:evaluation"


def feedback_item(round_id: str, decided: DecidedProposal) -> EvidenceItem:
    """A reviewer's decision in an earlier round as evidence: what was rejected
    and why, how accepted text was edited. Its id derives from the decision's,
    so the same decision is the same item in every later round."""
    what = f"{decided.kind} of {decided.target}" if decided.target else f"new {decided.title!r}"
    because = f": {decided.comment}" if decided.comment else ""
    return EvidenceItem(
        id="fb-" + hashlib.sha256(decided.decision_id.encode()).hexdigest()[:16],
        kind=EvidenceKind.reviewer_feedback,
        summary=(
            f"In round {round_id} reviewers {DECIDED[decided.decision]} proposal "
            f"{decided.proposal_id} ({what}){because}"
        )[:4000],
        principles=list(
            dict.fromkeys([*([decided.target] if decided.target else []), *decided.touches])
        ),
        detail={
            "proposal": decided.proposal_id,
            "decision": decided.decision,
            **({"reason": decided.comment} if decided.comment else {}),
            **({"edited_text": decided.edited_text} if decided.edited_text else {}),
        },
    )


def read_evidence_files(
    paths: Sequence[str],
) -> tuple[list[tuple[EvidenceItem, str]], list[str]]:
    """Every item of every file, with the file it came from, and what is wrong with each bad file.

    The worker reads a round's files with this when the round starts; the CLI
    reads them with it before starting one, so a bad file is refused there.
    """
    sourced: list[tuple[EvidenceItem, str]] = []
    problems: list[str] = []
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError as error:
            problems.append(f"{path}: cannot read evidence ({error.strerror})")
            continue
        try:
            items = parse_evidence(text, path)
        except EvidenceFileError as error:
            problems.append(str(error))
            continue
        sourced.extend((item, path) for item in items)
    return sourced, problems


class EvidenceActivities(defined.EvidenceActivities):
    def __init__(self, ledger: Ledger, *, budget_tokens: int, max_chunks: int) -> None:
        self.ledger = ledger
        self.budget_tokens = budget_tokens
        self.max_chunks = max_chunks

    @activity.defn
    @heartbeating
    async def gather_evidence(self, request: GatherEvidenceInput) -> EvidenceSelection:
        spec = request.spec
        try:
            sourced = await self._read(request)
        except EvidenceFileError as error:
            raise ApplicationError(
                f"bad evidence:\n{error}", type=ErrorType.evidence_file_error, non_retryable=True
            ) from error
        # Parsing and packing a large set is CPU work: off the event loop, so
        # the worker's other activities and heartbeats keep running.
        selection, records = await asyncio.to_thread(
            select_evidence,
            sourced,
            request.constitution,
            budget_tokens=self.budget_tokens,
            max_chunks=self.max_chunks,
        )
        await self.ledger.save_evidence(spec.round_id, selection, records)
        activity.logger.info("round %s: %s", spec.round_id, selection.summary)
        return selection

    async def _read(self, request: GatherEvidenceInput) -> list[tuple[EvidenceItem, str]]:
        spec = request.spec
        paths = spec.evidence_paths or (
            [str(sample_path("evidence.jsonl"))] if spec.uses_sample_evidence else []
        )
        sourced, problems = await asyncio.to_thread(read_evidence_files, paths)
        seen: dict[str, str] = {}
        if spec.evidence_from_round is not None:
            earlier = spec.evidence_from_round
            decided = await self.ledger.decided_proposals(earlier)
            if decided is None:
                problems.append(f"round:{earlier}: no such round in the ledger")
            else:
                sourced.extend((feedback_item(earlier, d), f"round:{earlier}") for d in decided)
                # What its evaluation found the candidate still getting wrong (none
                # when the round never reached evaluation).
                failures = await self.ledger.evaluation_failures(earlier)
                sourced.extend((f.as_evidence(), evaluation_source(earlier)) for f in failures)
        for item, source in sourced:
            if item.id in seen and seen[item.id] != source:
                problems.append(f"{source}: evidence id {item.id!r} is also in {seen[item.id]}")
            seen.setdefault(item.id, source)
        if problems:
            raise EvidenceFileError("\n".join(problems))
        return sourced
