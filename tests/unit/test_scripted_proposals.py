"""The scripted stand-in model proposes from the constitution it is given: a
round on a version that already says what an item would add proposes
something else or nothing, so repeated demos never append a sentence twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from constitution import (
    ConstitutionVersion,
    Decision,
    DecisionKind,
    Proposal,
    ProposalBatch,
    ProposalDraft,
    apply_amendments,
)
from constitution.checks import repeated_sentence
from constitution.samples import load_evidence, sample_constitution
from standins.model.behaviour import script_proposals


def proposals_for(constitution: ConstitutionVersion, limit: int = 10) -> list[ProposalDraft]:
    """What the stand-in answers amend's proposal prompt with, for `constitution`."""
    principles = [p.model_dump(mode="json") for p in constitution.principles]
    items = [e.model_dump(mode="json") for e in load_evidence(None)]
    prompt = (
        f"<constitution>{json.dumps(principles)}</constitution>\n"
        f"<evidence>{json.dumps(items)}</evidence>\n<max_proposals>{limit}</max_proposals>"
    )
    return ProposalBatch.model_validate(script_proposals(prompt)).proposals


def accepted(
    constitution: ConstitutionVersion, drafts: list[ProposalDraft], n: int
) -> ConstitutionVersion:
    """`constitution` with every draft accepted, as a round would make it."""
    decided = [
        (
            Proposal(id=f"r{n}-p{i}", round_id=f"r{n}", draft=d, prompt_version="v", model="m"),
            Decision(
                proposal_id=f"r{n}-p{i}",
                kind=DecisionKind.accept,
                reviewer="U1",
                decided_at=datetime(2026, 1, 1, tzinfo=UTC),
            ),
        )
        for i, d in enumerate(drafts)
    ]
    return apply_amendments(constitution, decided, f"r{n}")


def test_a_second_round_on_the_amended_constitution_repeats_no_sentence() -> None:
    v1 = sample_constitution()
    first = proposals_for(v1)
    v2 = accepted(v1, first, 1)
    second = proposals_for(v2)
    assert second != first
    for draft in second:
        current = v2.principle(draft.target) if draft.target else None
        assert (
            draft.text is None
            or repeated_sentence(draft.text, current.text if current else None) is None
        ), draft
    titles = {p.title for p in v2.principles}
    assert not [d for d in second if d.title in titles], "a principle proposed twice"


def test_rounds_on_their_own_versions_run_out_of_proposals_without_repeating() -> None:
    version = sample_constitution()
    for n in range(1, 20):
        drafts = proposals_for(version)
        if not drafts:
            break
        version = accepted(version, drafts, n)
        for p in version.principles:
            assert repeated_sentence(p.text) is None, (n, p)
    else:
        raise AssertionError("the stand-in kept proposing the same changes")
    assert n > 2  # it did propose for a while
