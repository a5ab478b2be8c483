"""What the CLI draws: ids whole at 80 columns and off a terminal, a proposal
as a diff of its current and proposed text with its rationale and evidence,
`round watch` as one plain line per change, and a failed round's error once."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from constitution import Proposal, ProposalDraft, ProposalKind, ProposalState, RoundSpec, RoundState
from constitution.contracts import (
    EvaluationMetrics,
    EvaluationResult,
    Progress,
    ProposalStatus,
    RoundStatus,
)
from constitution.failures import EvaluationFailure, FailureKind
from constitution.samples import sample_constitution
from ledger.chain import TransitionRow
from ledger.reads import RoundRow
from worker.cli import render
from worker.cli.render import ShownRound, rounds_table, timeline_table, watch_line

LONG_ROUND = "spring-review-of-the-medical-principles-after-the-red-team-week"  # 63 characters
AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def drawn(renderable: object, width: int = 80) -> str:
    """What a non-terminal of `width` columns shows, as a pipe or a log file would get it."""
    screen = Console(record=True, width=width, force_terminal=False)
    screen.print(renderable)
    return screen.export_text()


def test_round_list_prints_ids_whole_at_80_columns() -> None:
    rows = [
        RoundRow(
            round_id=rid,
            workflow_id=f"round-{rid}",
            state="completed_unchanged",
            base_version=12,
            result_version=13,
            spec={},
            created_at=AT,
            updated_at=AT,
        )
        for rid in (LONG_ROUND, "demo-20261204-162729")
    ]
    text = drawn(rounds_table(rows))
    assert LONG_ROUND in text and "demo-20261204-162729" in text
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def _rows(entity: str) -> list[TransitionRow]:
    return [
        TransitionRow(
            transition_id=f"round-x:{n}",
            round_id="x",
            sequence=n,
            entity=entity,
            from_state="posted",
            to_state="modified",
            actor="operator:someone-with-a-rather-long-name",
            reason="Simulated reviewer: narrower wording, and a reason long enough to wrap.",
            data={},
            at=AT,
            prev_hash=None,
            hash="h",
        )
        for n in (1, 10)
    ]


def test_a_timeline_prints_entity_ids_whole_and_wraps_the_change_instead() -> None:
    for entity in ("proposal:demo-20261204-162729-p1", f"proposal:{LONG_ROUND}-p12"):
        text = drawn(timeline_table(_rows(entity), 80))
        assert text.count(entity) == 2, text
        assert "…" not in text
        assert max(len(line) for line in text.splitlines()) <= 80
        assert "posted → modified by operator:someone" in " ".join(text.split())


def _proposal(kind: ProposalKind, **draft: object) -> ProposalStatus:
    return ProposalStatus(
        proposal=Proposal(
            id="r1-p1",
            round_id="r1",
            draft=ProposalDraft(kind=kind, rationale="Evidence ev-rt-001 shows a gap.", **draft),
            prompt_version="propose.v2",
            model="m",
        ),
        state=ProposalState.posted,
    )


def test_round_show_prints_a_proposal_as_a_diff_with_its_rationale_and_evidence() -> None:
    base = sample_constitution()
    p10 = base.principle("P10")
    assert p10 is not None
    item = _proposal(
        ProposalKind.revise,
        target="P10",
        text=p10.text + " Ask about context before giving doses.",
        evidence=["ev-rt-002"],
    )
    lines = render.proposal_lines(item, base, {"ev-rt-002": "A user claiming to be a nurse."})
    text = drawn("\n".join(lines), width=200)
    assert f"  {p10.text}" in text  # kept, as context
    assert "+ Ask about context before giving doses." in text
    assert "rationale: Evidence ev-rt-001 shows a gap." in text
    assert "evidence ev-rt-002: A user claiming to be a nurse." in text


def test_round_show_names_a_new_principle_and_a_retired_one() -> None:
    base = sample_constitution()
    added = render.proposal_lines(
        _proposal(ProposalKind.add, title="Critiques", text="Name the principle."), base, {}
    )
    assert "+ Critiques: Name the principle." in drawn("\n".join(added), width=200)
    retired = render.proposal_lines(_proposal(ProposalKind.retire, target="P12"), base, {})
    assert "- Explain refusals:" in drawn("\n".join(retired), width=200)


def test_round_show_of_a_failed_round_prints_its_error_once() -> None:
    status = RoundStatus(
        spec=RoundSpec(round_id="r1", reviewers=["U1"]),
        state=RoundState.failed,
        fine_tune_job="ftjob-1",
        error="fine-tune job ftjob-1 failed: bad file",
    )
    screen = Console(record=True, width=120, force_terminal=False)
    original, render.console = render.console, screen
    try:
        render.print_status(ShownRound(status))
    finally:
        render.console = original
    assert screen.export_text().count("bad file") == 1


def test_round_watch_off_a_terminal_is_one_plain_line_per_look() -> None:
    status = RoundStatus(
        spec=RoundSpec(round_id="r1", reviewers=["U1"]),
        state=RoundState.generating_data,
        progress=Progress(stage="generating data", done=3, total=12, detail="critique"),
    )
    line = watch_line(status)
    assert "\n" not in line and "\x1b" not in line
    assert line.startswith("round r1 generating_data: proposals 0 settled, 0 pending")
    assert "generating data 3/12 (critique)" in line


def test_round_show_says_how_many_failures_the_evaluation_kept_as_evidence() -> None:
    metrics = EvaluationMetrics(
        model="m",
        harm_rate=0,
        overrefusal_rate=0,
        awareness_gap=0,
        harmful_prompts=1,
        benign_prompts=1,
    )
    status = RoundStatus(
        spec=RoundSpec(round_id="r1", reviewers=["U1"]),
        state=RoundState.gate_failed,
        evaluation=EvaluationResult(
            candidate=metrics, baseline=metrics, passed=False, reasons=[], rubric_version="g"
        ),
    )
    failure = EvaluationFailure(
        round_id="r1",
        failure_id="ef-1",
        failure=FailureKind.over_refusal,
        model="ft:x",
        prompt_id="b1",
        category="medical",
        style="",
        prompt="p",
        response="no",
        grader_reason="declines",
        samples=1,
        of_samples=1,
    )
    screen = Console(record=True, width=200, force_terminal=False)
    original, render.console = render.console, screen
    try:
        render.print_status(ShownRound(status, failures=[failure]))
    finally:
        render.console = original
    assert "failures kept as evidence: 1 (1 over-refusal(s))" in screen.export_text()
