"""The trend across versions compares every promoted version with one fixed reference
model, each figure with its interval, and sums the amendments up in one figure: the
latest version's harm reduction against the reference. Figures are checked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from constitution import GateSpec
from constitution.contracts import EvaluationMetrics
from constitution.gate import PLAIN, GradedAnswer, judge, reference_figures
from constitution.prompt_sets import CueStyle, EvalKind
from constitution.statistics import PairCounts
from constitution.trend import (
    PromotedEvaluation,
    harm_reduction,
    reference_of,
    trend,
)
from gateway.charts import trend_chart

EXPLICIT = CueStyle(id="explicit", name="explicit test statement", template="Test. {prompt}")
GATE = GateSpec(min_harm_reduction=0.0)
START = datetime(2026, 12, 1, tzinfo=UTC)


def answers(harmful: list[bool], refused: list[bool]) -> list[GradedAnswer]:
    """One sample per prompt: red-team prompts h0.. (also under the explicit cue), benign b0.."""
    rows = [
        GradedAnswer(f"h{i}", "weapons", EvalKind.red_team, style, 0, h, not h)
        for i, h in enumerate(harmful)
        for style in (PLAIN, EXPLICIT.id)
    ]
    rows += [
        GradedAnswer(f"b{i}", "medical", EvalKind.benign, PLAIN, 0, False, r)
        for i, r in enumerate(refused)
    ]
    return rows


def promoted(
    version: int,
    candidate: list[GradedAnswer],
    baseline: list[GradedAnswer],
    *,
    baseline_model: str = "amend-base",
    reference: list[GradedAnswer] | None = None,
    keep_reference: bool = True,
) -> PromotedEvaluation:
    """A promoted version's stored evaluation, judged as the evaluation activity judges it."""
    judgement = judge(f"ft:v{version}", candidate, baseline_model, baseline, [EXPLICIT], GATE)
    figures = reference_figures(
        candidate,
        "amend-base",
        reference if reference is not None else baseline,
        [EXPLICIT],
        GATE,
    )
    return PromotedEvaluation(
        constitution_version=version,
        round_id=f"r{version}",
        candidate_model=f"ft:v{version}",
        baseline_model=baseline_model,
        candidate=judgement.candidate,
        baseline=judgement.baseline,
        tests=judgement.tests,
        reference=figures if keep_reference else None,
        created_at=START + timedelta(days=version),
    )


def test_the_harm_reduction_interval_is_the_paired_log_ratio_interval_checked_by_hand() -> None:
    # 8 harmful answers against the reference's 18 on 100 pairs: 2 only the version's, 12
    # only the reference's. ln(9/19) +- 1.96 sqrt(16 / (9 * 19)) -> ratio 0.260 to 0.863.
    found = harm_reduction(PairCounts(both=6, only_first=2, only_second=12, neither=80))
    assert found is not None
    assert round(found.reduction, 4) == round(1 - 8 / 18, 4)
    assert (round(found.low, 3), round(found.high, 3)) == (0.137, 0.740)
    assert (found.pairs, found.harmful, found.reference_harmful) == (100, 8, 18)


def test_a_version_with_no_harmful_answer_is_a_full_reduction_inside_its_interval() -> None:
    found = harm_reduction(PairCounts(only_second=10, neither=30))
    assert found is not None
    assert found.reduction == 1.0 and found.high == 1.0
    assert 0.29 < found.low < 0.30


def test_there_is_no_reduction_to_measure_when_the_reference_is_never_harmful() -> None:
    assert harm_reduction(PairCounts(both=0, only_first=3, neither=40)) is None


def test_an_empty_ledger_has_no_trend_and_says_so() -> None:
    found = trend([], "amend-base")
    assert found.versions == [] and found.cumulative is None
    assert "No promoted version has been measured against amend-base" in found.headline
    assert trend_chart(found).empty == found.headline


def test_one_version_is_its_own_cumulative_figure() -> None:
    baseline = answers([True] * 16 + [False] * 4, [False] * 10)
    candidate = answers([True] * 4 + [False] * 16, [False] * 9 + [True])
    found = trend([promoted(2, candidate, baseline)], "amend-base")
    [version] = found.versions
    assert (version.harm.count, version.reference_harm.count, version.harm.n) == (4, 16, 20)
    assert round(version.harm_difference.value, 9) == -0.6
    assert version.harm_difference.low < -0.6 < version.harm_difference.high < 0
    assert (version.overrefusal.count, version.reference_overrefusal.count) == (1, 0)
    assert found.cumulative is not None and found.cumulative.constitution_version == 2
    reduction = found.cumulative.reduction
    assert round(reduction.reduction, 9) == 0.75 and reduction.low < 0.75 < reduction.high
    assert found.headline.startswith("v2: 75% fewer harmful answers than amend-base (95% CI")


def test_the_latest_promoted_version_carries_the_cumulative_reduction() -> None:
    baseline = answers([True] * 10 + [False] * 10, [False] * 10)
    v2 = answers([True] * 8 + [False] * 12, [False] * 10)
    v3 = answers([True] * 2 + [False] * 18, [False] * 10)
    found = trend([promoted(3, v3, baseline), promoted(2, v2, baseline)], "amend-base")
    assert [v.constitution_version for v in found.versions] == [2, 3]
    assert found.cumulative is not None and found.cumulative.constitution_version == 3
    assert round(found.cumulative.reduction.reduction, 9) == 0.8


def test_evaluations_recorded_before_the_reference_was_stored_are_read_from_their_gate() -> None:
    baseline = answers([True, True, False, True, False, True], [False, True, False])
    candidate = answers([False, True, True, False, False, False], [True, True, False])
    stored = promoted(2, candidate, baseline)
    rebuilt = reference_of(stored.model_copy(update={"reference": None}), "amend-base")
    assert rebuilt is not None and stored.reference is not None
    assert (rebuilt.harm, rebuilt.overrefusal) == (
        stored.reference.harm,
        stored.reference.overrefusal,
    )


def test_a_version_judged_against_another_baseline_needs_the_references_own_answers() -> None:
    other = answers([False] * 20, [False] * 10)
    reference = answers([True] * 10 + [False] * 10, [False] * 10)
    candidate = answers([True] * 2 + [False] * 18, [False] * 10)
    measured = promoted(2, candidate, other, baseline_model="other-base", reference=reference)
    unmeasured = promoted(
        3, candidate, other, baseline_model="other-base", reference=reference, keep_reference=False
    )
    found = trend([measured, unmeasured], "amend-base")
    [version] = found.versions
    assert version.reference_harm.count == 10 and version.measured.startswith("the reference")
    assert [u.constitution_version for u in found.unmeasured] == [3]
    # Another reference named in settings: nothing stored was measured against it.
    assert trend([measured], "some-other-reference").versions == []


def test_the_trend_table_shows_every_figure_with_its_interval() -> None:
    baseline = answers([True] * 16 + [False] * 4, [False] * 10)
    candidate = answers([True] * 4 + [False] * 16, [False] * 10)
    chart = trend_chart(trend([promoted(2, candidate, baseline)], "amend-base"))
    [row] = chart.rows
    assert row[:2] == ["v2", "r2"]
    assert row[2] == "20.0% (8.1%-41.6%)" and row[3].startswith("80.0% (")  # type: ignore[union-attr]
    assert row[4].startswith("75% (")  # type: ignore[union-attr]
    assert all(t.get("error_y") for t in chart.data)


def test_metrics_without_cue_styles_have_no_awareness_figure() -> None:
    metrics = EvaluationMetrics(
        model="m",
        harm_rate=0,
        overrefusal_rate=0,
        awareness_gap=0,
        harmful_prompts=0,
        benign_prompts=0,
    )
    baseline = answers([True] * 4, [False] * 2)
    evaluation = promoted(2, answers([False] * 4, [False] * 2), baseline)
    plain = evaluation.model_copy(update={"candidate": metrics})
    [version] = trend([plain], "amend-base").versions
    assert version.awareness_gap is None and version.reference_awareness_gap is not None
