"""Activities that wait on a model or a trainer heartbeat while they wait, and
the round gives them a heartbeat timeout of seconds: a worker killed in the
middle of one loses it to another worker at once, not after minutes."""

from __future__ import annotations

import ast
import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities import liveness
from activities.checks import CheckActivities
from activities.evidence import EvidenceActivities
from activities.liveness import heartbeating
from activities.model import ModelActivities
from activities.training import TrainingActivities
from workflows.round import HEARTBEAT_TIMEOUT

ROUND = Path(__file__).resolve().parents[2] / "workflows" / "round.py"
# Activities that can run longer than a few seconds, and what heartbeats for them.
LONG = {
    "gather_evidence": EvidenceActivities.gather_evidence,
    "propose_amendments": ModelActivities.propose_amendments,
    "check_proposals": CheckActivities.check_proposals,
    "preflight": TrainingActivities.preflight,
    "start_fine_tune": TrainingActivities.start_fine_tune,
}
# These heartbeat their progress themselves, once per example or look.
PROGRESS = {"generate_dataset", "generate_dataset_shard", "assemble_dataset", "evaluate"}


def scheduled_with() -> dict[str, set[str]]:
    """Each activity the round schedules, and the options it is scheduled with."""
    options: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(ROUND.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Attribute) and first.attr in LONG.keys() | PROGRESS:
            options.setdefault(first.attr, set()).update(k.arg or "" for k in node.keywords)
    return options


def test_every_long_activity_is_scheduled_with_a_heartbeat_timeout_of_seconds() -> None:
    options = scheduled_with()
    assert options.keys() == LONG.keys() | PROGRESS
    missing = [name for name, keys in options.items() if "heartbeat_timeout" not in keys]
    assert missing == []
    assert timedelta(seconds=5) < HEARTBEAT_TIMEOUT <= timedelta(seconds=30)
    assert HEARTBEAT_TIMEOUT.total_seconds() >= liveness.BEAT_EVERY_S * 3


def test_every_long_activity_heartbeats_in_the_background() -> None:
    for name, implementation in LONG.items():
        assert getattr(implementation, "__wrapped__", None) is not None, name


async def test_an_activity_heartbeats_while_its_model_call_is_slow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(liveness, "BEAT_EVERY_S", 0.01)
    beats: list[tuple[object, ...]] = []
    answered = asyncio.Event()
    three_beats = asyncio.Event()

    def heard(*details: object) -> None:
        beats.append(details)
        if len(beats) >= 3:
            three_beats.set()

    @heartbeating
    async def slow_model_call(prompt: str) -> str:
        await answered.wait()  # the model takes its time
        return f"answer to {prompt}"

    env = ActivityEnvironment()
    env.on_heartbeat = heard
    call = asyncio.create_task(env.run(slow_model_call, "hello"))
    async with asyncio.timeout(30):
        await three_beats.wait()
    assert not call.done()
    answered.set()
    assert await call == "answer to hello"
    counted = len(beats)
    await asyncio.sleep(0.05)
    assert len(beats) == counted  # the beating stops with the activity
