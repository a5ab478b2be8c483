"""Rounds wait for weeks: a worker with new code must replay the histories of
rounds that started on the old code. Every recorded history in
`tests/histories/` (one per scenario and run, written by
`python -m tests.histories.record`, and the kept histories of released
shapes under `released/`) is replayed here against today's workflow with
Temporal's `Replayer`; a change that would break a round in flight fails.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from tests.histories.record import SCENARIOS
from worker.runtime import workflow_runner
from workflows.round import (
    FINE_TUNE_WAITS_OUT_OUTAGES,
    LEDGER_LOCALLY,
    MESSAGES_TOGETHER,
    RECORD_CONTINUE_AS_NEW,
    RECORD_LOCALLY,
    SHARD_DATASET,
    SHARDS_PULLED,
    TrainingRoundWorkflow,
)

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
RECORDED = sorted(HISTORIES.rglob("*.json"))
RUN = re.compile(r"^(?P<scenario>[a-z_]+)(\.run(?P<run>\d+))?\.json$")


def history(path: Path) -> WorkflowHistory:
    scenario = RUN.match(path.name)
    assert scenario is not None, f"{path.name} is not <scenario>[.run<N>].json"
    workflow_id = "round-" + scenario["scenario"].replace("_", "-")
    return WorkflowHistory.from_json(workflow_id, path.read_text())


def replayer(*workflows: type) -> Replayer:
    return Replayer(
        workflows=list(workflows or [TrainingRoundWorkflow]),
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )


def test_every_scenario_the_recorder_knows_has_its_histories() -> None:
    recorded = {
        m["scenario"] for p in RECORDED if (m := RUN.match(p.name)) and p.parent == HISTORIES
    }
    assert recorded == set(SCENARIOS), "run `make histories`"
    # The long review's scenario really continued as new, twice.
    assert len(list(HISTORIES.glob("continued_as_new.run*.json"))) >= 3


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: str(p.relative_to(HISTORIES)))
async def test_a_recorded_round_replays_on_todays_workflow(path: Path) -> None:
    await replayer().replay_workflow(history(path))


def test_the_histories_hold_no_secret() -> None:
    for path in RECORDED:
        text = path.read_text()
        for secret in ("xoxb-", "xapp-", "amend-dev-signing-secret", "Bearer "):
            assert secret not in text, f"{path.name} holds {secret!r}"
        json.loads(text)


def patches(path: Path) -> list[str]:
    """The ids of the `workflow.patched` markers in a recorded history."""
    found = []
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes", {})
        if marker.get("markerName") == "core_patch":
            [payload] = marker["details"]["patch-data"]["payloads"]
            found.append(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


def test_the_patch_example_has_its_history_before_and_after() -> None:
    """Rounds that continued as new before 0.2.0 carry no marker and replay
    without the new transition; rounds since then carry the marker."""
    before = HISTORIES / "released" / "0.1.0" / "continued_as_new.run2.json"
    assert patches(before) == []
    after = sorted(HISTORIES.glob("continued_as_new.run*.json"))
    assert all(RECORD_CONTINUE_AS_NEW in patches(run) for run in after[:-1])
    # The last run ends the round: it does not continue.
    assert RECORD_CONTINUE_AS_NEW not in patches(after[-1])


def test_rounds_started_before_the_fewer_events_patches_are_kept_and_replayed() -> None:
    """0.2.0 wrote each transition, ledger read and Slack message as its own
    activity; the rounds recorded since carry the markers of the patches that
    batch them. Both shapes are replayed above."""
    fewer_events = {
        RECORD_LOCALLY,
        LEDGER_LOCALLY,
        MESSAGES_TOGETHER,
        FINE_TUNE_WAITS_OUT_OUTAGES,
    }
    before = HISTORIES / "released" / "0.2.0" / "all_accepted.json"
    assert fewer_events.isdisjoint(patches(before))
    assert fewer_events <= set(patches(HISTORIES / "all_accepted.json"))


def test_a_round_whose_dataset_went_to_the_shards_queue_is_kept_and_replayed() -> None:
    """Rounds since 0.3.0 send their shards to a queue of their own; the
    rounds before sent them to the round's queue (no recorded history of that
    shape: the shards came with the same release, and a round with them in
    flight replays the unpatched path)."""
    sharded = HISTORIES / "sharded_dataset.json"
    assert {SHARD_DATASET, SHARDS_PULLED} <= set(patches(sharded))
    scheduled = [
        event["activityTaskScheduledEventAttributes"]
        for event in json.loads(sharded.read_text())["events"]
        if "activityTaskScheduledEventAttributes" in event
    ]
    queues = {
        a["taskQueue"]["name"]
        for a in scheduled
        if a["activityType"]["name"] == "generate_dataset_shard"
    }
    assert len(queues) == 1 and queues.pop().endswith("-dataset-shards")


@workflow.defn(name="TrainingRoundWorkflow", sandboxed=False)
class ReorderedRound:
    """The round as a careless change would leave it: a timer where its
    first activity was."""

    @workflow.run
    async def run(self, _: object) -> None:
        await workflow.sleep(timedelta(seconds=1))


async def test_a_change_that_would_break_a_round_in_flight_fails_replay() -> None:
    with pytest.raises(NondeterminismError):
        await replayer(ReorderedRound).replay_workflow(history(HISTORIES / "all_accepted.json"))
