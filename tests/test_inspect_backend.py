"""The evaluation run as an Inspect AI task, on the dev stack against the stand-in model.

Needs the `inspect` extra (part of `test`); skipped without it. A round whose
gate asks for `evaluation_backend: inspect` is answered and graded by an
Inspect task against the stand-in's OpenAI-compatible endpoint, its figures
are read from the Inspect logs kept under the round's artifacts, and the gate
judges them as it judges the built-in evaluator's. The stand-in draws every
answer from the model's lineage, the prompt and the seed, so on the same seeds
both backends see the same answers and reach the same verdict with the same
figures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from constitution import RoundState
from constitution.gate import evaluation_details
from ledger.store import Ledger
from tests.conftest import StackFactory, accepted_round, operator_api, standin
from worker.stack import Stack
from workflows.client import round_status

inspect_log = pytest.importorskip("inspect_ai.log")


async def read_logs(log_dir: Path) -> list[Any]:
    """Every Inspect log in the folder, read by Inspect's own reader."""
    paths = await asyncio.to_thread(lambda: sorted(log_dir.glob("*.eval")))
    return [await inspect_log.read_eval_log_async(str(path)) for path in paths]


def nested_asyncio() -> bool:
    """Whether nest_asyncio has patched asyncio in this process (Inspect's sync
    readers do it when called on a running loop, for every loop after): it
    replaces `asyncio.run` with its own, and marks the module."""
    return asyncio.run.__module__ != "asyncio.runners" or hasattr(asyncio, "_nest_patched")


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(dev_server) as running:
        yield running


async def test_a_round_evaluated_as_an_inspect_task_reads_the_gate_from_its_log_and_judges_alike(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    built_in = await accepted_round(stack, dev_server, "twin-builtin")
    assert (await built_in.result()).state is RoundState.completed
    inspected = await accepted_round(
        stack,
        dev_server,
        "twin-inspect",
        gate={"evaluation_backend": "inspect"},
    )
    assert (await inspected.result()).state is RoundState.completed
    # The worker (in this process) read the logs without patching its event loop.
    assert not nested_asyncio()

    before = (await round_status(dev_server.client, "twin-builtin")).evaluation
    after = (await round_status(dev_server.client, "twin-inspect")).evaluation
    assert before is not None and after is not None
    assert before.evaluation_backend == "builtin" and before.inspect_log is None
    assert after.evaluation_backend == "inspect" and after.inspect_log is not None

    # The Inspect logs are kept with the round's artifacts: one per model, each
    # with every framed request (40 red-team prompts plainly and under 3 cue
    # styles, 15 benign), which Inspect's own reader opens.
    log_dir = Path(after.inspect_log)
    assert log_dir == (stack.settings.artifacts_root / "inspect" / "twin-inspect").resolve()
    logs = await read_logs(log_dir)
    assert len(logs) == 2
    models = set()
    for log in logs:
        assert log.status == "success"
        assert log.samples is not None and len(log.samples) == 40 * 4 + 15
        assert {s.metadata["style"] for s in log.samples} == {
            "",
            "explicit",
            "benchmark",
            "deployment",
        }
        models.add(log.eval.model.removeprefix("openai-api/amend/"))
    assert models == {after.candidate.model, after.baseline.model}

    # The same answers on the same seeds: the same verdict, figures and tests.
    assert after.verdict == before.verdict == "passed"
    for mine, theirs in ((after.candidate, before.candidate), (after.baseline, before.baseline)):
        assert mine.harm == theirs.harm and mine.overrefusal == theirs.overrefusal
        assert mine.cue_gaps == theirs.cue_gaps and mine.categories == theirs.categories
    assert [t.model_dump() for t in after.tests] == [t.model_dump() for t in before.tests]

    stored = await ledger.evaluation("twin-inspect")
    assert stored is not None and stored.verdict == "passed"
    assert stored.settings["inspect_log"] == after.inspect_log
    assert stored.settings["evaluation_backend"] == "inspect"
    shown = "\n".join(evaluation_details(after))
    assert f"Inspect log: {log_dir} (open with `inspect view --log-dir {log_dir}`)" in shown
    async with operator_api(stack) as http:
        page = (await http.get("/rounds/twin-inspect")).text
    assert 'id="inspect-log"' in page and f"inspect view --log-dir {log_dir}" in page


async def test_a_grader_that_returns_garbage_under_inspect_fails_the_round_as_it_does_built_in(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    handle = await accepted_round(
        stack, dev_server, "inspect-bad-grader", gate={"evaluation_backend": "inspect"}
    )
    # Every grade from here on comes back in the wrong shape: Inspect would keep
    # only the scorer's error text, the activity raises the grader's error as it was.
    await standin(stack, "/_standin/faults", {"faults": ["wrong_shape"] * 2000, "task": "Grade"})
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    [failed] = [
        t
        for t in await ledger.timeline("inspect-bad-grader")
        if t.entity == "round" and t.to_state == "failed"
    ]
    assert "the grader" in failed.reason and "did not return a grade" in failed.reason
    assert await ledger.evaluation("inspect-bad-grader") is None
