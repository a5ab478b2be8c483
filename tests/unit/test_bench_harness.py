"""The benchmark harness: how a figure is judged against its floor and written.

The benchmarks themselves run only under `make bench`; a test never asserts a
wall-clock time. What is tested here is the arithmetic and the files that the
figures are reported in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import available, render_markdown
from bench.harness import Figure, at_least, at_most, percentile, value_at_most


def test_a_cost_meets_its_target_when_within_the_ratio_of_its_floor() -> None:
    assert Figure("write", 1.4, "ms", 1.0, target=at_most(2)).met is True
    assert Figure("write", 2.5, "ms", 1.0, target=at_most(2)).met is False


def test_a_throughput_meets_its_target_when_at_least_the_fraction_of_its_floor() -> None:
    figure = Figure("bulk", 600, "rows/s", 1000, target=at_least(0.5))
    assert figure.ratio == pytest.approx(0.6)
    assert figure.met is True
    assert Figure("bulk", 400, "rows/s", 1000, target=at_least(0.5)).met is False


def test_a_figure_without_a_floor_is_judged_on_its_value() -> None:
    assert Figure("p99 ack", 120, "ms", target=value_at_most(3000)).met is True
    assert Figure("p99 ack", 3100, "ms", target=value_at_most(3000)).met is False
    assert Figure("startup", 9, "s").met is None


def test_p99_is_an_observed_sample_not_an_interpolation() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 50) == 50.0
    assert percentile([7.0], 99) == 7.0


def test_results_name_every_figure_and_list_the_missed_targets_with_reasons(
    tmp_path: Path,
) -> None:
    figures = [
        Figure("ok", 1.0, "ms", 1.0, "raw", at_most(2)),
        Figure("slow", 5.0, "ms", 1.0, "raw", at_most(2), note="two round trips more"),
    ]
    text = render_markdown(figures, {"broken": "RuntimeError: x"}, {"cores": "2"}, {"ok": 1.0})
    assert "| ok | 1.00 | ms | 1.00 (raw) | 1.00 | ratio <= 2 | yes |" in text
    missed = text.split("## Targets missed")[1]
    assert "**slow**: two round trips more" in missed and "**ok**" not in missed
    assert "`broken`: RuntimeError: x" in text
    record = json.loads(json.dumps([f.as_json() for f in figures]))[1]
    assert set(record) >= {"name", "value", "unit", "floor", "ratio", "target", "met"}
    assert record["ratio"] == 5.0 and record["met"] is False


def test_every_benchmark_module_defines_run() -> None:
    import importlib

    names = available()
    assert "ledger" in names
    for name in names:
        assert callable(importlib.import_module(f"bench.bench_{name}").run)
