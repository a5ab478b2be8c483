"""The round benchmark's arithmetic: the shape its floors copy and how its
figures name the model calls. No timing is asserted."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent, MarkerRecordedEventAttributes
from temporalio.client import WorkflowHistory

from bench import reviewing
from bench.bench_rounds import ROUNDS, _figures, _local_activities
from bench.model_calls import ModelCalls
from worker.settings import Settings


def _marker(name: str) -> HistoryEvent:
    return HistoryEvent(
        event_type=EventType.EVENT_TYPE_MARKER_RECORDED,
        marker_recorded_event_attributes=MarkerRecordedEventAttributes(marker_name=name),
    )


def test_local_activities_are_counted_by_their_markers_only() -> None:
    history = WorkflowHistory(
        "round-x",
        [
            _marker("core_local_activity"),
            _marker("core_patch"),
            _marker("core_local_activity"),
            HistoryEvent(event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        ],
    )

    assert _local_activities(history) == 2


def _ours(**changes: Any) -> dict[str, Any]:
    return {
        "elapsed": 40.0,
        "cpu": 6.0 * ROUNDS,
        "rss": 200.0,
        "failed": 0,
        "proposals": 6.0,
        "model_calls": 1_000 * ROUNDS,
        "sampled": 2_000,
        "activities": 24,
        "local_activities": 31,
        "updates": 6,
        "events": 230.0,
        "bytes": 215_000.0,
    } | changes


def test_the_no_op_floor_names_the_model_calls_and_their_cost_per_call() -> None:
    # 0.2 s of CPU per round without the calls, 5.2 s with 1,000 calls a round: 5 ms a call.
    floor = {"elapsed": 3.0, "cpu": 0.2 * ROUNDS}
    with_calls = {"elapsed": 30.0, "cpu": 5.2 * ROUNDS}

    figures = {f.name: f for f in _figures(_ours(), floor, with_calls)}
    noop_cpu = figures["rounds: CPU per round (worker and gateway process)"]
    fair_cpu = figures[
        "rounds: CPU per round against the no-op floor that makes the same model calls"
    ]

    assert noop_cpu.met is False
    assert "1,000 model calls" in noop_cpu.note
    assert "5.00 ms of client CPU per call" in noop_cpu.note
    assert fair_cpu.floor == 5200
    assert fair_cpu.met is True  # 6,000 ms against 5,200 ms: within 2x
    assert f"a uniform sample of 2,000 of the {1_000 * ROUNDS:,}" in fair_cpu.note


def test_the_floor_with_the_calls_carries_the_issue_targets() -> None:
    floor = {"elapsed": 3.0, "cpu": 0.2 * ROUNDS}
    with_calls = {"elapsed": 10.0, "cpu": 2.0 * ROUNDS}

    figures = {f.name: f for f in _figures(_ours(), floor, with_calls)}
    throughput = figures[
        "rounds: throughput against the no-op floor that makes the same model calls"
    ]
    cpu = figures["rounds: CPU per round against the no-op floor that makes the same model calls"]

    assert (str(throughput.target), str(cpu.target)) == ("ratio >= 0.8", "ratio <= 2")
    assert throughput.met is False  # 40 s against 10 s
    # How busy each process was: its CPU over the run's wall time.
    ours_busy, floor_busy = 6.0 * ROUNDS / 40.0, 2.0 * ROUNDS / 10.0
    assert f"busy {ours_busy:.0%} of the run" in throughput.note
    assert f"the floor's {floor_busy:.0%}" in throughput.note
    assert cpu.met is False  # 6,000 ms against 2,000 ms


def test_the_floor_refuses_to_replay_an_empty_sample() -> None:
    """A stand-in started without `request_sample_size` keeps nothing: the
    floor says so rather than dividing by an empty sample mid-run."""
    with pytest.raises(ValueError, match="request bodies to replay"):
        ModelCalls(Settings(_env_file=None), [])


def test_the_simulated_reviewer_process_needs_the_signing_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AMEND_SLACK_SIGNING_SECRET", raising=False)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "bench.reviewing",
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "--user",
            "U0",
            "--channel",
            "C0",
        ],
    )
    with pytest.raises(SystemExit) as exited:
        reviewing.main()
    assert exited.value.code == 2
    assert "set AMEND_SLACK_SIGNING_SECRET" in capsys.readouterr().err
