"""Checks every drafted proposal passes before a person sees it.

Each check gives a verdict (pass, flag, merge or drop) that is recorded with the
proposal, so a reviewer sees what was checked and an analyst sees what was
filtered out and why. The checks see only the model's output and the round's
own facts, never instructions: whatever the evidence told the model, its
proposals go through the same checks.

Similarity is rapidfuzz's `token_sort_ratio`: the Indel (insert/delete) edit
similarity of the two texts after lower-casing, dropping punctuation and sorting
their words, scaled 0-100. Sorting makes a reordered sentence match; unlike
`token_set_ratio` it does not score a text as identical to one it merely
contains, so a revision that adds a sentence to its target is not a duplicate.

That leaves one kind of repetition similarity cannot see: a revision that adds
a sentence its principle already has, or any text that says one sentence
twice. The duplicate check flags those sentence by sentence (`repeated_sentence`),
so a reviewer is told before accepting a principle that says a thing twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz, utils

from constitution.amendment import sentences
from constitution.findings import CheckVerdict, Verdict
from constitution.models import (
    ConstitutionVersion,
    Proposal,
    ProposalKind,
    needs_strict_review,
)

DEFAULT_DUPLICATE_THRESHOLD = 90.0


def similarity(a: str, b: str) -> float:
    """How alike two texts are, 0-100, whatever their case, punctuation and word order."""
    return float(fuzz.token_sort_ratio(a, b, processor=utils.default_process))


def _normal(text: str) -> str:
    """Case, punctuation and spacing do not change what a principle says."""
    return " ".join(utils.default_process(text).split())


def repeated_sentence(text: str, current: str | None = None) -> str | None:
    """What a text repeats, as a verdict's detail; None when it says each thing once.

    `current` is the text a revision replaces: a sentence of it said again is
    named as such (the model appended what the principle already said).
    Sentences are compared whatever their case, punctuation and spacing.
    """
    had = {_normal(sentence) for sentence in sentences(current or "")}
    seen: set[str] = set()
    for sentence in sentences(text):
        key = _normal(sentence)
        if not key:
            continue
        if key in seen:
            quoted = sentence if len(sentence) <= 80 else sentence[:79] + "…"
            where = "a sentence the principle already has" if key in had else "a sentence"
            return f"says {where} twice: {quoted!r}"
        seen.add(key)
    return None


@dataclass(frozen=True)
class CheckContext:
    """The round's own facts that the checks judge drafts against.

    `evidence_ids` are the items the round's model calls read: a draft that
    cites none of them is dropped. `suspicious_ids` are those that read like
    instructions to the model. `duplicate_threshold` is on `similarity`'s
    0-100 scale.
    """

    constitution: ConstitutionVersion
    evidence_ids: frozenset[str]
    suspicious_ids: frozenset[str]
    max_proposals: int
    duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD


def _with(proposal: Proposal, verdict: CheckVerdict, **update: object) -> Proposal:
    return proposal.model_copy(update={"checks": [*proposal.checks, verdict], **update})


def _verdict(check: str, verdict: Verdict, detail: str) -> CheckVerdict:
    return CheckVerdict(check=check, verdict=verdict, detail=detail)


def _check_one(proposal: Proposal, ctx: CheckContext) -> Proposal:
    """Checks of a proposal on its own; the last verdict is `drop` if it fails."""
    draft = proposal.draft
    constitution = ctx.constitution
    proposal = _with(
        proposal,
        _verdict("schema", Verdict.passed, f"a well-formed '{draft.kind}' within the size limits"),
    )

    cited = [e for e in draft.evidence if e in ctx.evidence_ids]
    unknown = [e for e in draft.evidence if e not in ctx.evidence_ids]
    if not cited:
        return _with(
            proposal, _verdict("grounded", Verdict.dropped, "cites no evidence of this round")
        )
    if unknown:
        grounded = _verdict(
            "grounded", Verdict.flagged, f"unknown evidence ids removed: {', '.join(unknown)}"
        )
    else:
        grounded = _verdict("grounded", Verdict.passed, f"rests on {', '.join(cited)}")
    known_touches = [p for p in draft.touches if constitution.principle(p) is not None]
    draft = draft.model_copy(update={"evidence": cited, "touches": known_touches})
    proposal = _with(proposal, grounded, draft=draft)

    target = constitution.principle(draft.target) if draft.target else None
    if draft.kind is not ProposalKind.add:
        if target is None:
            return _with(
                proposal,
                _verdict("target", Verdict.dropped, f"no principle {draft.target} to {draft.kind}"),
            )
        if draft.text is not None and _normal(draft.text) == _normal(target.text):
            return _with(
                proposal,
                _verdict("target", Verdict.dropped, f"the new text of {target.id} changes nothing"),
            )
        proposal = _with(proposal, _verdict("target", Verdict.passed, f"{target.id} exists"))
    else:
        proposal = _with(proposal, _verdict("target", Verdict.passed, "adds a new principle"))

    if draft.text is not None:
        others = [p for p in constitution.principles if p.id != draft.target]
        scored = [(similarity(draft.text, p.text), p.id) for p in others]
        score, twin = max(scored, default=(0.0, ""))
        if score >= ctx.duplicate_threshold:
            return _with(
                proposal,
                _verdict(
                    "duplicate",
                    Verdict.dropped,
                    f"its text repeats {twin} (similarity {score:.0f}/100)",
                ),
            )

    if draft.text is not None:
        repeated = repeated_sentence(draft.text, target.text if target else None)
        if repeated is not None:
            proposal = _with(proposal, _verdict("duplicate", Verdict.flagged, repeated))

    if needs_strict_review(draft, constitution):
        proposal = _with(
            proposal,
            _verdict(
                "protected",
                Verdict.flagged,
                f"changes protected principle {draft.target}: the stricter review policy applies",
            ),
            strict_review=True,
        )
    else:
        proposal = _with(proposal, _verdict("protected", Verdict.passed, "no protected principle"))

    hostile = [e for e in cited if e in ctx.suspicious_ids]
    if hostile and len(hostile) == len(cited):
        return _with(
            proposal,
            _verdict(
                "evidence_data",
                Verdict.flagged,
                "rests only on evidence that reads like instructions to the model "
                f"({', '.join(hostile)}): the stricter review policy applies",
            ),
            strict_review=True,
        )
    if hostile:
        return _with(
            proposal,
            _verdict(
                "evidence_data",
                Verdict.flagged,
                f"part of its evidence reads like instructions to the model: {', '.join(hostile)}",
            ),
        )
    return _with(proposal, _verdict("evidence_data", Verdict.passed, "its evidence reads as data"))


def _twin(proposal: Proposal, kept: list[Proposal], threshold: float) -> tuple[int, str] | None:
    """The kept proposal this one repeats, and why."""
    draft = proposal.draft
    for index, other in enumerate(kept):
        if draft.target is not None and other.draft.target == draft.target:
            return index, f"also changes {draft.target}"
        if draft.text and other.draft.text:
            score = similarity(draft.text, other.draft.text)
            if score >= threshold:
                return index, f"its text repeats it (similarity {score:.0f}/100)"
    return None


def check_proposals(
    drafted: list[Proposal], ctx: CheckContext
) -> tuple[list[Proposal], list[Proposal]]:
    """Run every check; return (kept, dropped), both with their verdicts.

    A proposal that repeats an earlier one (same target, or near-identical
    text) is merged into it: the earlier keeps its text and gains the later's
    evidence and touched principles, so the evidence behind both reaches the
    reviewer once.
    """
    kept: list[Proposal] = []
    dropped: list[Proposal] = []
    for proposal in drafted:
        checked = _check_one(proposal, ctx)
        if checked.checks[-1].verdict is Verdict.dropped:
            dropped.append(checked)
            continue
        twin = _twin(checked, kept, ctx.duplicate_threshold)
        if twin is not None:
            index, why = twin
            into = kept[index]
            dropped.append(
                _with(
                    checked, _verdict("duplicate", Verdict.merged, f"merged into {into.id}: {why}")
                )
            )
            merged = into.draft.model_copy(
                update={
                    "evidence": list(
                        dict.fromkeys([*into.draft.evidence, *checked.draft.evidence])
                    ),
                    "touches": list(dict.fromkeys([*into.draft.touches, *checked.draft.touches])),
                }
            )
            kept[index] = into.model_copy(
                update={
                    "draft": merged,
                    "request_ids": list(dict.fromkeys([*into.request_ids, *checked.request_ids])),
                    "checks": [
                        *into.checks,
                        _verdict("duplicate", Verdict.merged, f"absorbed {checked.id}: {why}"),
                    ],
                }
            )
            continue
        kept.append(checked)
    limit = ctx.max_proposals
    for extra in kept[limit:]:
        dropped.append(
            _with(extra, _verdict("limit", Verdict.dropped, f"over the round's limit of {limit}"))
        )
    kept = [
        p
        if any(c.check == "duplicate" for c in p.checks)
        else _with(p, _verdict("duplicate", Verdict.passed, "repeats no principle or proposal"))
        for p in kept[:limit]
    ]
    return kept, dropped
