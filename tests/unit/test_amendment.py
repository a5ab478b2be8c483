"""The domain models and how decided proposals become a new constitution version."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from constitution import (
    AmendmentConflict,
    ConstitutionVersion,
    Decision,
    DecisionKind,
    DecisionRequest,
    Principle,
    Proposal,
    ProposalDraft,
    ProposalKind,
    RoundSpec,
    apply_amendments,
    diff_versions,
    needs_strict_review,
    render_markdown,
)
from constitution.evidence import EvidenceFileError, parse_evidence
from constitution.samples import load_evidence, sample_constitution

ROUND = "r1"


@pytest.fixture
def base() -> ConstitutionVersion:
    return sample_constitution()


def _proposal(number: int, **draft: Any) -> Proposal:
    draft.setdefault("rationale", "evidence shows a gap")
    return Proposal(
        id=f"{ROUND}-p{number}",
        round_id=ROUND,
        draft=ProposalDraft(**draft),
        prompt_version="propose@test",
        model="test-model",
    )


def _decide(proposal: Proposal, kind: DecisionKind, text: str | None = None) -> Decision:
    return Decision(
        proposal_id=proposal.id,
        kind=kind,
        reviewer="U_REVIEWER",
        text=text,
        decided_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


def _accepted(proposal: Proposal) -> tuple[Proposal, Decision]:
    return proposal, _decide(proposal, DecisionKind.accept)


def _highest_number(version: ConstitutionVersion) -> int:
    return max(int(p.id[1:]) for p in version.principles)


# -- versions and their hashes -----------------------------------------------------------


def test_the_sample_constitution_has_twelve_principles_p1_to_p12(
    base: ConstitutionVersion,
) -> None:
    assert [p.id for p in base.principles] == [f"P{n}" for n in range(1, 13)]


def test_the_content_hash_is_stable_across_loads_and_copies(base: ConstitutionVersion) -> None:
    again = sample_constitution()
    copied = ConstitutionVersion.model_validate_json(base.model_dump_json())
    assert base.content_hash == again.content_hash == copied.content_hash
    assert len(base.content_hash) == 64
    int(base.content_hash, 16)


def test_the_content_hash_covers_only_the_principles(base: ConstitutionVersion) -> None:
    renumbered = base.model_copy(update={"number": 7, "round_id": "other", "parent_hash": "x"})
    assert renumbered.content_hash == base.content_hash


@pytest.mark.parametrize("field", ["text", "title", "protected"])
def test_the_content_hash_changes_when_a_principle_changes(
    base: ConstitutionVersion, field: str
) -> None:
    first = base.principles[0]
    new_value = {
        "text": first.text + "!",
        "title": first.title + "!",
        "protected": not first.protected,
    }
    edited = first.model_copy(update={field: new_value[field]})
    changed = base.model_copy(update={"principles": (edited, *base.principles[1:])})
    assert changed.content_hash != base.content_hash


def test_the_content_hash_changes_when_principles_are_reordered(
    base: ConstitutionVersion,
) -> None:
    reordered = base.model_copy(update={"principles": tuple(reversed(base.principles))})
    assert reordered.content_hash != base.content_hash


def test_a_version_refuses_duplicate_principle_ids(base: ConstitutionVersion) -> None:
    with pytest.raises(ValidationError, match="duplicate principle ids: P1"):
        ConstitutionVersion(number=1, principles=(base.principles[0], base.principles[0]))


@pytest.mark.parametrize("bad_id", ["1", "p1", "P", "P12345", "Q1", "P1a"])
def test_a_principle_id_must_look_like_p_and_a_number(bad_id: str) -> None:
    with pytest.raises(ValidationError, match="must look like P1"):
        Principle(id=bad_id, title="t", text="x")


def test_a_new_version_links_to_its_parent_by_hash(base: ConstitutionVersion) -> None:
    p3 = base.principle("P3")
    assert p3 is not None
    proposal = _proposal(1, kind=ProposalKind.clarify, target="P3", text=p3.text + " Really.")
    new = apply_amendments(base, [_accepted(proposal)], ROUND)
    assert new.parent_hash == base.content_hash
    assert new.number == base.number + 1
    assert new.round_id == ROUND

    later = apply_amendments(
        new, [_accepted(_proposal(2, kind=ProposalKind.retire, target="P3"))], "r2"
    )
    assert later.parent_hash == new.content_hash != base.content_hash
    assert later.number == base.number + 2


# -- applying decided proposals ----------------------------------------------------------


def test_an_added_principle_gets_the_next_free_id(base: ConstitutionVersion) -> None:
    assert _highest_number(base) == 12
    proposal = _proposal(1, kind=ProposalKind.add, title="Honesty about limits", text="Say so.")
    new = apply_amendments(base, [_accepted(proposal)], ROUND)
    assert new.principles[-1] == Principle(id="P13", title="Honesty about limits", text="Say so.")
    assert new.principles[:-1] == base.principles


def test_two_added_principles_get_consecutive_ids_in_proposal_order(
    base: ConstitutionVersion,
) -> None:
    first = _proposal(1, kind=ProposalKind.add, title="First", text="one")
    second = _proposal(2, kind=ProposalKind.add, title="Second", text="two")
    new = apply_amendments(base, [_accepted(first), _accepted(second)], ROUND)
    added = [(p.id, p.title) for p in new.principles if base.principle(p.id) is None]
    assert added == [("P13", "First"), ("P14", "Second")]


def test_an_add_takes_the_number_after_the_highest_id_not_a_gap(base: ConstitutionVersion) -> None:
    gapped = base.model_copy(
        update={"principles": tuple(p for p in base.principles if p.id != "P5")}
    )
    proposal = _proposal(1, kind=ProposalKind.add, title="New", text="new text")
    new = apply_amendments(gapped, [_accepted(proposal)], ROUND)
    assert new.principle("P5") is None
    assert new.principles[-1].id == f"P{_highest_number(gapped) + 1}"


@pytest.mark.parametrize("kind", [ProposalKind.revise, ProposalKind.clarify])
def test_revise_and_clarify_replace_the_text_and_keep_the_rest(
    base: ConstitutionVersion, kind: ProposalKind
) -> None:
    old = base.principle("P1")
    assert old is not None and old.protected
    proposal = _proposal(1, kind=kind, target="P1", text="Reworded harm principle.")
    new = apply_amendments(base, [_accepted(proposal)], ROUND)
    assert new.principle("P1") == old.model_copy(update={"text": "Reworded harm principle."})
    assert [p.id for p in new.principles] == [p.id for p in base.principles]
    assert [p for p in new.principles if p.id != "P1"] == [
        p for p in base.principles if p.id != "P1"
    ]


def test_a_modify_decision_applies_the_reviewers_text_not_the_proposed_one(
    base: ConstitutionVersion,
) -> None:
    proposal = _proposal(1, kind=ProposalKind.revise, target="P3", text="model wording")
    decision = _decide(proposal, DecisionKind.modify, text="reviewer wording")
    new = apply_amendments(base, [(proposal, decision)], ROUND)
    p3 = new.principle("P3")
    assert p3 is not None and p3.text == "reviewer wording"


def test_a_modified_add_keeps_the_proposed_title_with_the_reviewers_text(
    base: ConstitutionVersion,
) -> None:
    proposal = _proposal(1, kind=ProposalKind.add, title="Proposed title", text="model wording")
    decision = _decide(proposal, DecisionKind.modify, text="reviewer wording")
    new = apply_amendments(base, [(proposal, decision)], ROUND)
    assert (new.principles[-1].title, new.principles[-1].text) == (
        "Proposed title",
        "reviewer wording",
    )


def test_a_rejected_proposal_changes_nothing(base: ConstitutionVersion) -> None:
    rejected = _proposal(1, kind=ProposalKind.retire, target="P4")
    accepted = _proposal(2, kind=ProposalKind.clarify, target="P5", text="clearer")
    new = apply_amendments(
        base,
        [(rejected, _decide(rejected, DecisionKind.reject)), _accepted(accepted)],
        ROUND,
    )
    assert new.principle("P4") == base.principle("P4")
    p5 = new.principle("P5")
    assert p5 is not None and p5.text == "clearer"


def test_only_rejections_leave_the_principles_as_they_were(base: ConstitutionVersion) -> None:
    proposal = _proposal(1, kind=ProposalKind.add, title="New", text="new")
    new = apply_amendments(base, [(proposal, _decide(proposal, DecisionKind.reject))], ROUND)
    assert new.principles == base.principles
    assert new.content_hash == base.content_hash


def test_retire_removes_the_principle_and_keeps_the_others_in_order(
    base: ConstitutionVersion,
) -> None:
    proposal = _proposal(1, kind=ProposalKind.retire, target="P7")
    new = apply_amendments(base, [_accepted(proposal)], ROUND)
    assert new.principle("P7") is None
    assert new.principles == tuple(p for p in base.principles if p.id != "P7")


def test_an_add_in_the_same_round_as_a_retirement_does_not_reuse_the_retired_id(
    base: ConstitutionVersion,
) -> None:
    last = f"P{_highest_number(base)}"
    retire = _proposal(1, kind=ProposalKind.retire, target=last)
    add = _proposal(2, kind=ProposalKind.add, title="New", text="new")
    new = apply_amendments(base, [_accepted(retire), _accepted(add)], ROUND)
    assert new.principle(last) is None
    assert new.principles[-1].id == f"P{_highest_number(base) + 1}"


def test_a_retired_id_is_never_given_out_again_in_a_later_round(
    base: ConstitutionVersion,
) -> None:
    last = f"P{_highest_number(base)}"
    retire = _proposal(1, kind=ProposalKind.retire, target=last)
    after_retirement = apply_amendments(base, [_accepted(retire)], ROUND)
    assert after_retirement.retired == (last,)
    add = _proposal(2, kind=ProposalKind.add, title="New", text="new")
    later = apply_amendments(after_retirement, [_accepted(add)], "a-later-round")
    assert later.principles[-1].id == f"P{_highest_number(base) + 1}"
    assert later.retired == (last,)


@pytest.mark.parametrize(
    "draft",
    [
        {"kind": ProposalKind.revise, "target": "P99", "text": "x"},
        {"kind": ProposalKind.clarify, "target": "P99", "text": "x"},
        {"kind": ProposalKind.retire, "target": "P99"},
    ],
    ids=lambda d: str(d["kind"]),
)
def test_a_proposal_targeting_a_missing_principle_is_a_conflict(
    base: ConstitutionVersion, draft: dict[str, Any]
) -> None:
    proposal = _proposal(1, **draft)
    with pytest.raises(AmendmentConflict, match=rf"{proposal.id} targets P99"):
        apply_amendments(base, [_accepted(proposal)], ROUND)


def test_revising_a_principle_retired_earlier_in_the_round_is_a_conflict(
    base: ConstitutionVersion,
) -> None:
    retire = _proposal(1, kind=ProposalKind.retire, target="P2")
    revise = _proposal(2, kind=ProposalKind.revise, target="P2", text="too late")
    with pytest.raises(AmendmentConflict, match="P2"):
        apply_amendments(base, [_accepted(retire), _accepted(revise)], ROUND)


# -- showing the change ----------------------------------------------------------------


def test_the_diff_shows_the_old_and_new_text_of_a_revised_principle(
    base: ConstitutionVersion,
) -> None:
    old = base.principle("P3")
    assert old is not None
    proposal = _proposal(1, kind=ProposalKind.revise, target="P3", text="Brand new wording.")
    new = apply_amendments(base, [_accepted(proposal)], ROUND)
    diff = diff_versions(base, new)
    removed = [line for line in diff.splitlines() if line.startswith("-") and "P3." in line]
    added = [line for line in diff.splitlines() if line.startswith("+") and "P3." in line]
    assert len(removed) == len(added) == 1
    assert old.text in removed[0] and "Brand new wording." in added[0]
    assert f"--- v{base.number}" in diff and f"+++ v{new.number}" in diff


def _changed_principle_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines() if line.startswith(("-P", "+P"))]


def test_the_diff_names_only_changed_principles(base: ConstitutionVersion) -> None:
    retire = _proposal(1, kind=ProposalKind.retire, target="P6")
    add = _proposal(2, kind=ProposalKind.add, title="Fresh", text="fresh text")
    new = apply_amendments(base, [_accepted(retire), _accepted(add)], ROUND)
    changed = _changed_principle_lines(diff_versions(base, new))
    assert len(changed) == 2
    assert any(line.startswith("-P6. ") for line in changed)
    assert any(line.startswith("+P13. **Fresh**: fresh text") for line in changed)


def test_the_diff_of_versions_with_the_same_principles_changes_no_principle(
    base: ConstitutionVersion,
) -> None:
    same = base.model_copy(update={"number": base.number + 1})
    diff = diff_versions(base, same)
    assert _changed_principle_lines(diff) == []
    assert f"-# Constitution v{base.number}" in diff


def test_the_markdown_marks_protected_principles(base: ConstitutionVersion) -> None:
    text = render_markdown(base)
    for principle in base.principles:
        line = next(li for li in text.splitlines() if li.startswith(f"{principle.id}. "))
        assert ("(protected)" in line) is principle.protected
        assert principle.text in line


# -- validation of what comes in ---------------------------------------------------------


@pytest.mark.parametrize(
    ("draft", "complaint"),
    [
        ({"kind": "add", "text": "new text"}, "needs a title and text"),
        ({"kind": "add", "title": "New"}, "needs a title and text"),
        ({"kind": "add", "title": "New", "text": "x", "target": "P1"}, "has no target"),
        ({"kind": "retire", "target": "P1", "text": "x"}, "'retire' proposal has no text"),
        ({"kind": "revise", "text": "x"}, "needs a target"),
        ({"kind": "clarify", "text": "x"}, "needs a target"),
        ({"kind": "retire"}, "needs a target"),
        ({"kind": "revise", "target": "P1"}, "needs text"),
        ({"kind": "clarify", "target": "P1", "text": ""}, "needs text"),
        ({"kind": "rewrite", "target": "P1", "text": "x"}, "kind"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else None,
)
def test_a_draft_whose_fields_do_not_fit_its_kind_is_invalid(
    draft: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        ProposalDraft.model_validate({"rationale": "because", **draft})


def test_a_draft_needs_a_rationale() -> None:
    with pytest.raises(ValidationError, match="rationale"):
        ProposalDraft.model_validate({"kind": "retire", "target": "P1"})


def _spec(**fields: Any) -> RoundSpec:
    return RoundSpec.model_validate({"round_id": "r1", "reviewers": ["U1"], **fields})


@pytest.mark.parametrize("round_id", ["a", "2025-q1", "r-1-b", "a" * 63])
def test_a_round_id_of_lower_case_letters_digits_and_dashes_is_accepted(round_id: str) -> None:
    spec = _spec(round_id=round_id)
    assert spec.workflow_id == f"round-{round_id}"


@pytest.mark.parametrize(
    "round_id", ["", "Upper", "-leading-dash", "has space", "under_score", "a" * 64, "r/1", "é"]
)
def test_a_bad_round_id_is_refused(round_id: str) -> None:
    with pytest.raises(ValidationError, match="round id must be"):
        _spec(round_id=round_id)


@pytest.mark.parametrize(
    "interval", [timedelta(0), timedelta(milliseconds=999), timedelta(seconds=-5)]
)
def test_a_reminder_interval_under_a_second_is_refused(interval: timedelta) -> None:
    with pytest.raises(ValidationError, match="at least one second"):
        _spec(reminder_interval=interval)


def test_a_reminder_interval_of_one_second_is_accepted() -> None:
    assert _spec(reminder_interval=timedelta(seconds=1)).reminder_interval == timedelta(seconds=1)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"reviewers": []}, "reviewers"),
        ({"max_proposals": 0}, "max_proposals"),
        ({"max_proposals": 51}, "max_proposals"),
        ({"escalate_after": 0}, "escalate_after"),
        ({"unknown": 1}, "unknown"),
        ({"training": {"method": "rlhf"}}, "method"),
        ({"gate": {"min_harm_reduction": 1.5}}, "min_harm_reduction"),
    ],
)
def test_a_round_spec_with_a_bad_field_names_it(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        _spec(**fields)


def test_a_round_spec_needs_reviewers() -> None:
    with pytest.raises(ValidationError, match="reviewers"):
        RoundSpec.model_validate({"round_id": "r1"})


def test_a_round_spec_has_no_deadline_unless_set() -> None:
    assert _spec().deadline is None


@pytest.mark.parametrize("text", [None, "", "   \n"])
def test_a_modify_decision_without_text_is_refused(text: str | None) -> None:
    with pytest.raises(ValidationError, match="needs the edited text"):
        DecisionRequest(proposal_id="p1", kind=DecisionKind.modify, reviewer="U1", text=text)


def test_a_modify_decision_with_text_is_taken() -> None:
    request = DecisionRequest(proposal_id="p1", kind=DecisionKind.modify, reviewer="U1", text="t")
    assert request.text == "t"


@pytest.mark.parametrize("kind", [DecisionKind.accept, DecisionKind.reject])
def test_accept_and_reject_need_no_text(kind: DecisionKind) -> None:
    assert DecisionRequest(proposal_id="p1", kind=kind, reviewer="U1").text is None


def test_a_decision_needs_a_reviewer() -> None:
    with pytest.raises(ValidationError, match="reviewer"):
        DecisionRequest(proposal_id="p1", kind=DecisionKind.accept, reviewer="")


# -- evidence files ------------------------------------------------------------------------


def _line(**fields: Any) -> str:
    item = {"id": "ev-1", "kind": "red_team", "summary": "went wrong", **fields}
    return json.dumps({k: v for k, v in item.items() if v is not None})


def test_the_sample_evidence_parses_with_unique_ids() -> None:
    items = load_evidence(None)
    assert items
    assert len({item.id for item in items}) == len(items)


def test_good_evidence_parses_in_order_and_blank_lines_are_skipped() -> None:
    text = "\n".join([_line(id="a"), "", "   ", _line(id="b", kind="conflict")]) + "\n"
    items = parse_evidence(text, "ev.jsonl")
    assert [(i.id, i.kind.value) for i in items] == [("a", "red_team"), ("b", "conflict")]


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ('{"id": "ev-2", "kind": ', "not JSON"),
        (_line(id="ev-2", kind="gossip"), "kind:"),
        (_line(id="ev-2", summary=None), "summary:"),
        (_line(id="ev-2", summary=""), "summary:"),
        (_line(id="ev-2", principles="P1"), "principles:"),
        (_line(id="ev-2", extra="x"), "extra:"),
        ("[1, 2]", "item:"),
        (_line(id="ev-1"), "duplicate evidence id 'ev-1'"),
    ],
    ids=[
        "bad-json",
        "unknown-kind",
        "missing-summary",
        "empty-summary",
        "wrong-type",
        "unknown-field",
        "not-an-object",
        "duplicate-id",
    ],
)
def test_a_bad_evidence_line_is_named_by_file_line_and_field(bad_line: str, expected: str) -> None:
    # Line 3 of the file: a blank line counts, as an editor would count it.
    text = "\n".join([_line(id="ev-1"), "", bad_line, "also bad, never reached"])
    with pytest.raises(EvidenceFileError) as caught:
        parse_evidence(text, "round/evidence.jsonl")
    message = str(caught.value)
    assert message.startswith("round/evidence.jsonl:3: ")
    assert expected in message


def test_an_unreadable_evidence_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(EvidenceFileError, match=r"nope\.jsonl: cannot read evidence"):
        load_evidence(str(missing))


def test_changing_a_protected_principle_needs_the_stricter_review(
    base: ConstitutionVersion,
) -> None:
    protected = next(p for p in base.principles if p.protected)
    ordinary = next(p for p in base.principles if not p.protected)
    retire = ProposalDraft(kind=ProposalKind.retire, target=protected.id, rationale="r")
    reword = ProposalDraft(kind=ProposalKind.clarify, target=protected.id, text="t", rationale="r")
    assert needs_strict_review(retire, base)
    assert needs_strict_review(reword, base)
    assert not needs_strict_review(
        ProposalDraft(kind=ProposalKind.retire, target=ordinary.id, rationale="r"), base
    )
    assert not needs_strict_review(
        ProposalDraft(kind=ProposalKind.add, title="New", text="t", rationale="r"), base
    )
