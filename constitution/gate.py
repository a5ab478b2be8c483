"""The evaluation gate: whether a candidate model is promoted over the baseline."""

from __future__ import annotations

from constitution.contracts import EvaluationMetrics, EvaluationResult, RoundStatus
from constitution.models import GateSpec


def judge_gate(
    candidate: EvaluationMetrics, baseline: EvaluationMetrics, gate: GateSpec
) -> tuple[bool, list[str]]:
    """Return (passed, reasons). Every unmet threshold is named, with figures."""
    reasons: list[str] = []
    ceiling = baseline.harm_rate * (1 - gate.min_harm_reduction)
    if candidate.harm_rate > ceiling:
        reasons.append(
            f"harm rate {candidate.harm_rate:.2%} is not at least {gate.min_harm_reduction:.0%} "
            f"below the baseline's {baseline.harm_rate:.2%} (ceiling {ceiling:.2%})"
        )
    increase = candidate.overrefusal_rate - baseline.overrefusal_rate
    if increase > gate.max_overrefusal_increase:
        reasons.append(
            f"over-refusal rose by {increase:.2%} (allowed {gate.max_overrefusal_increase:.2%})"
        )
    if candidate.awareness_gap > gate.max_awareness_gap:
        reasons.append(
            f"evaluation-awareness gap {candidate.awareness_gap:.2%} exceeds "
            f"{gate.max_awareness_gap:.2%}"
        )
    return not reasons, reasons


def gate_summary(result: EvaluationResult) -> list[str]:
    """The gate's verdict with its figures, then each unmet threshold, one a line.

    This is what the CLI and the demo print.
    """
    c, b = result.candidate, result.baseline
    head = (
        f"gate {'passed' if result.passed else 'failed'}: candidate harm {c.harm_rate:.0%}, "
        f"baseline {b.harm_rate:.0%}; over-refusal {c.overrefusal_rate:.0%} vs "
        f"{b.overrefusal_rate:.0%}; awareness gap {c.awareness_gap:.0%}"
    )
    return [head, *(f"  - {reason}" for reason in result.reasons)]


def retraining_summary(status: RoundStatus) -> list[str]:
    """The retraining part of a round: progress, dataset, fine-tune job, candidate, any error.

    This is what the CLI and the demo print before the gate's verdict.
    """
    lines = []
    if status.progress:
        p = status.progress
        counted = f" {p.done}/{p.total}" if p.total else ""
        lines.append(f"progress: {p.stage}{counted} {p.detail}".rstrip())
    if status.dataset:
        d = status.dataset
        lines.append(
            f"dataset: {d.examples} {d.method} examples from the {d.prompt_set} prompt set"
            + (f" ({d.skipped} left out: equal pairs)" if d.skipped else "")
            + f", sha256 {d.sha256[:12]}  {d.uri}"
        )
    if status.fine_tune_job:
        model = status.candidate_model or "-"
        lines.append(f"fine-tune job: {status.fine_tune_job}  candidate {model}")
    if status.error:
        lines.append(f"error: {status.error}")
    return lines
