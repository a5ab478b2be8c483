"""The dataset benchmark's note on how the shards fell to the workers, read
from a history. No timing is asserted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskCompletedEventAttributes,
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
)
from temporalio.client import WorkflowHistory

from bench.bench_dataset import _spread

START = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(START + timedelta(seconds=seconds))
    return stamp


def _started(event_id: int, worker: str, seconds: float) -> HistoryEvent:
    return HistoryEvent(
        event_id=event_id,
        event_time=_at(seconds),
        event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
        activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(identity=worker),
    )


def _completed(event_id: int, started: int, seconds: float) -> HistoryEvent:
    return HistoryEvent(
        event_id=event_id,
        event_time=_at(seconds),
        event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        activity_task_completed_event_attributes=ActivityTaskCompletedEventAttributes(
            started_event_id=started
        ),
    )


def test_the_spread_counts_each_workers_activities_and_when_it_finished_its_last() -> None:
    history = WorkflowHistory(
        "bench-data",
        [
            HistoryEvent(event_id=1, event_time=_at(0)),
            _started(2, "b@host", 0.5),
            _started(3, "a@host", 0.5),
            _completed(4, 3, 4.0),
            _started(5, "a@host", 4.1),
            _completed(6, 2, 9.0),
            _completed(7, 5, 12.5),
            _started(8, "b@host", 12.6),  # under way when the history was read
        ],
    )

    assert _spread(history) == "2 (last done at 12.5 s), 2 (last done at 9.0 s)"
