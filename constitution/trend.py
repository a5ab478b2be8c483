"""The trend across versions: every promoted version against one fixed reference model.

The gate compares a candidate with its round's baseline, which may change from
round to round. The claim a dynamic constitution has to earn ("co-authored
amendments cut harmful outputs by 40% against an RLHF-only baseline") needs a
fixed yardstick instead: the reference model named by `AMEND_REFERENCE_MODEL`.
For every promoted version this module reports harm, over-refusal and the
evaluation-awareness gap beside the reference's, each with its interval, and
the cumulative harm reduction of the latest promoted version, the figure that
sums up every amendment since v1.

All figures are recomputed at one confidence (`TREND_CONFIDENCE`) from stored
counts, so intervals are comparable across versions whatever significance each
round's gate used. Pure and standard-library only, like `constitution.statistics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from constitution.contracts import CueGap, EvaluationMetrics, PairedTest, Rate, ReferenceFigures
from constitution.statistics import PairCounts, paired_difference, wilson, z_of

TREND_CONFIDENCE = 0.95
"""One level for every interval of the trend, so versions can be compared by eye."""

RATIO_METHOD = (
    "ratio of paired proportions: adjusted (add-one) Wald interval of the log ratio, "
    "after Bonett & Price (2006)"
)


class Interval(BaseModel):
    """A figure with its interval at the trend's confidence."""

    model_config = ConfigDict(frozen=True)

    value: float
    low: float
    high: float


class HarmReduction(BaseModel):
    """How much less often a version answers harmfully than the reference: 1 - its harm ratio.

    0.4 is "40% fewer harmful answers"; negative is more harm than the reference.
    """

    model_config = ConfigDict(frozen=True)

    reduction: float
    low: float
    high: float
    pairs: int = Field(description="Paired red-team answers (prompt x sample) it rests on.")
    harmful: int = Field(description="Harmful answers of the version on those pairs.")
    reference_harmful: int = Field(description="Harmful answers of the reference on them.")
    confidence: float = TREND_CONFIDENCE
    method: str = RATIO_METHOD


def harm_reduction(
    counts: PairCounts, confidence: float = TREND_CONFIDENCE
) -> HarmReduction | None:
    """The relative harm reduction of `first` (a version) against `second` (the reference).

    The interval is the one of the ratio of the two harm rates, turned into a
    reduction (1 - ratio). Why a ratio interval rather than Newcombe's
    interval of the difference divided by the reference's rate: the claim is
    relative ("40% fewer"), and dividing by the reference's rate as if it were
    known would ignore its own sampling error, which dominates when the
    reference is rarely harmful. The rates are paired (same prompts, same
    samples), so the variance of the log ratio is the paired one,
    (b + c) / (n1 * n2) with b and c the discordant pairs and n1, n2 each
    side's harmful answers (delta method); adding one to each count (and two
    to the discordant sum) keeps it finite when a side has no harmful answer,
    which is Bonett and Price's (2006) adjustment. The interval is widened to
    hold the unadjusted point estimate where the adjustment moved its centre
    past it (a version with no harmful answer at all is a 100% reduction).

    None when the reference gave no harmful answer: there is nothing to reduce.
    """
    harmful, reference_harmful = counts.first, counts.second
    if reference_harmful == 0:
        return None
    z = z_of(confidence)
    discordant = counts.only_first + counts.only_second
    centre = math.log((harmful + 1) / (reference_harmful + 1))
    spread = z * math.sqrt((discordant + 2) / ((harmful + 1) * (reference_harmful + 1)))
    reduction = 1 - harmful / reference_harmful
    low = 1 - math.exp(centre + spread)
    high = 1 - math.exp(centre - spread)
    return HarmReduction(
        reduction=reduction,
        low=min(low, reduction),
        high=max(high, reduction),
        pairs=counts.n,
        harmful=harmful,
        reference_harmful=reference_harmful,
        confidence=confidence,
    )


class PromotedEvaluation(BaseModel):
    """What the trend reads of one promoted version's stored evaluation."""

    constitution_version: int
    round_id: str
    candidate_model: str
    baseline_model: str
    candidate: EvaluationMetrics
    baseline: EvaluationMetrics
    tests: list[PairedTest] = Field(default_factory=list)
    reference: ReferenceFigures | None = None
    created_at: datetime


class VersionTrend(BaseModel):
    """One promoted version beside the reference, every figure with its interval.

    Differences are version minus reference, in rate points (Newcombe's
    paired interval); the awareness gaps are each model's largest move of its
    harm rate under a cue style (at its round's confidence, as stored).
    """

    constitution_version: int
    round_id: str
    candidate_model: str
    created_at: datetime
    harm: Rate
    reference_harm: Rate
    harm_difference: Interval
    harm_reduction: HarmReduction | None
    overrefusal: Rate
    reference_overrefusal: Rate
    overrefusal_difference: Interval
    awareness_gap: Interval | None
    awareness_style: str | None
    reference_awareness_gap: Interval | None
    measured: str = Field(description="Whose answers the reference figures are.")


class UnmeasuredVersion(BaseModel):
    """A promoted version the trend cannot place, and why."""

    constitution_version: int
    round_id: str
    why: str


class CumulativeReduction(BaseModel):
    """The headline: the latest promoted version's harm reduction against the reference."""

    constitution_version: int
    round_id: str
    reduction: HarmReduction
    sentence: str


class Trend(BaseModel):
    """Every promoted version against the reference, oldest first, and the headline figure."""

    reference_model: str
    confidence: float = TREND_CONFIDENCE
    versions: list[VersionTrend]
    unmeasured: list[UnmeasuredVersion] = Field(default_factory=list)
    cumulative: CumulativeReduction | None = None
    headline: str = Field(description="The cumulative reduction in one sentence, or why none.")


def _rate(count: int, n: int, confidence: float) -> Rate:
    low, high = wilson(count, n, confidence)
    return Rate(count=count, n=n, low=low, high=high)


def _difference(counts: PairCounts, confidence: float) -> Interval:
    value, low, high = paired_difference(counts, confidence)
    return Interval(value=value, low=low, high=high)


def _worst_gap(metrics: EvaluationMetrics) -> CueGap | None:
    return max(metrics.cue_gaps, key=lambda g: abs(g.difference), default=None)


def _pairs_from_test(test: PairedTest | None, first: Rate | None) -> PairCounts | None:
    """A gate test's pairs rebuilt: it keeps the discordant ones, `first` gives the rest."""
    if test is None or first is None:
        return None
    both = first.count - test.worse
    neither = test.pairs - both - test.worse - test.better
    if both < 0 or neither < 0:
        return None
    return PairCounts(both=both, only_first=test.worse, only_second=test.better, neither=neither)


def reference_of(evaluation: PromotedEvaluation, reference_model: str) -> ReferenceFigures | None:
    """The reference's figures for one evaluation: stored beside it, or its baseline's.

    Evaluations recorded before the reference was stored still count when
    their baseline was the reference: the gate's paired tests keep the
    discordant pairs, and the candidate's counts give the concordant ones.
    """
    if evaluation.reference is not None and evaluation.reference.model == reference_model:
        return evaluation.reference
    if evaluation.baseline_model != reference_model:
        return None
    by_name = {t.name: t for t in evaluation.tests}
    harm = _pairs_from_test(by_name.get("harm rate"), evaluation.candidate.harm)
    refusals = _pairs_from_test(by_name.get("over-refusal"), evaluation.candidate.overrefusal)
    if harm is None or refusals is None:
        return None
    return ReferenceFigures(
        model=reference_model, metrics=evaluation.baseline, harm=harm, overrefusal=refusals
    )


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def describe_reduction(version: int, reference_model: str, reduction: HarmReduction) -> str:
    """`v4: 42% fewer harmful answers than amend-base (95% CI 18% to 60%; 12 vs 21 of 120 ...)`."""
    direction = "fewer" if reduction.reduction >= 0 else "more"
    return (
        f"v{version}: {_percent(abs(reduction.reduction))} {direction} harmful answers than "
        f"{reference_model} ({reduction.confidence:.0%} CI {_percent(reduction.low)} to "
        f"{_percent(reduction.high)}; {reduction.harmful} vs {reduction.reference_harmful} "
        f"harmful of {reduction.pairs} paired red-team answers), all amendments since v1"
    )


def version_trend(
    evaluation: PromotedEvaluation, reference: ReferenceFigures, confidence: float
) -> VersionTrend:
    """One version's figures against the reference, recomputed at `confidence`."""
    harm, refusals = reference.harm, reference.overrefusal
    gap, reference_gap = _worst_gap(evaluation.candidate), _worst_gap(reference.metrics)
    return VersionTrend(
        constitution_version=evaluation.constitution_version,
        round_id=evaluation.round_id,
        candidate_model=evaluation.candidate_model,
        created_at=evaluation.created_at,
        harm=_rate(harm.first, harm.n, confidence),
        reference_harm=_rate(harm.second, harm.n, confidence),
        harm_difference=_difference(harm, confidence),
        harm_reduction=harm_reduction(harm, confidence),
        overrefusal=_rate(refusals.first, refusals.n, confidence),
        reference_overrefusal=_rate(refusals.second, refusals.n, confidence),
        overrefusal_difference=_difference(refusals, confidence),
        awareness_gap=Interval(value=gap.difference, low=gap.low, high=gap.high) if gap else None,
        awareness_style=gap.name if gap else None,
        reference_awareness_gap=Interval(
            value=reference_gap.difference, low=reference_gap.low, high=reference_gap.high
        )
        if reference_gap
        else None,
        measured="the round's baseline"
        if evaluation.baseline_model == reference.model
        else "the reference, answering beside the round",
    )


def trend(
    evaluations: Sequence[PromotedEvaluation],
    reference_model: str,
    confidence: float = TREND_CONFIDENCE,
) -> Trend:
    """Every promoted version against `reference_model`, and the cumulative reduction.

    The cumulative figure is the latest measured version's: it carries every
    amendment adopted since v1, and it is measured on pairs of its own
    evaluation, so it needs no chaining of per-round ratios (which would
    multiply their errors).
    """
    versions: list[VersionTrend] = []
    unmeasured: list[UnmeasuredVersion] = []
    for evaluation in sorted(evaluations, key=lambda e: (e.constitution_version, e.created_at)):
        reference = reference_of(evaluation, reference_model)
        if reference is None:
            unmeasured.append(
                UnmeasuredVersion(
                    constitution_version=evaluation.constitution_version,
                    round_id=evaluation.round_id,
                    why=f"evaluated against {evaluation.baseline_model}; {reference_model} "
                    "did not answer its evaluation set",
                )
            )
            continue
        versions.append(version_trend(evaluation, reference, confidence))
    cumulative = None
    if not versions:
        headline = f"No promoted version has been measured against {reference_model} yet."
    elif versions[-1].harm_reduction is None:
        latest = versions[-1]
        headline = (
            f"v{latest.constitution_version}: {reference_model} gave no harmful answer on its "
            f"{latest.reference_harm.n} red-team answers, so there is no harm to reduce."
        )
    else:
        latest = versions[-1]
        assert latest.harm_reduction is not None
        headline = describe_reduction(
            latest.constitution_version, reference_model, latest.harm_reduction
        )
        cumulative = CumulativeReduction(
            constitution_version=latest.constitution_version,
            round_id=latest.round_id,
            reduction=latest.harm_reduction,
            sentence=headline,
        )
    return Trend(
        reference_model=reference_model,
        confidence=confidence,
        versions=versions,
        unmeasured=unmeasured,
        cumulative=cumulative,
        headline=headline,
    )
