"""Retraining through real rounds: the Temporal dev server, real PostgreSQL, the
gateway, the Slack stand-in and the scripted stand-in model (whose fine-tuning
endpoints are scripted per test to succeed, fail, never finish or produce an
over-cautious model). One proposal per round, accepted by the simulated
reviewer, so each round reaches retraining quickly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from constitution import RoundState
from constitution.gate import evaluation_details, retraining_summary
from ledger.store import Ledger
from tests.conftest import StackFactory, accepted_round, standin
from worker.stack import Stack
from workflows.client import round_status


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(dev_server) as running:
        yield running


def artifact(uri: str) -> str:
    return Path(uri.removeprefix("file://")).read_text()


async def failure_reason(ledger: Ledger, round_id: str) -> str:
    [failed] = [
        t for t in await ledger.timeline(round_id) if t.entity == "round" and t.to_state == "failed"
    ]
    return failed.reason


async def test_a_dpo_round_writes_preference_pairs_each_with_its_drawn_principle(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    handle = await accepted_round(
        stack,
        dev_server,
        "dpo",
        method="dpo",
        prompt_count=8,
        critique_passes=2,
        beta=0.2,
        dataset_shard_size=3,
    )
    result = await handle.result()
    assert result.state is RoundState.completed
    # Generated in three shards (3, 3 and 2 prompts), then assembled once.
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled.count("generate_dataset_shard") == 3
    assert scheduled.count("assemble_dataset") == 1
    assert "generate_dataset" not in scheduled

    status = await round_status(dev_server.client, "dpo")
    assert status.dataset is not None
    # Where revising changed nothing, the pair teaches nothing and is left out.
    assert status.dataset.examples >= 1 and status.dataset.skipped >= 1
    assert status.dataset.examples + status.dataset.skipped == 8
    lines = artifact(status.dataset.uri).splitlines()
    assert len(lines) == status.dataset.examples
    for line in lines:
        pair = json.loads(line)
        assert pair["input"]["messages"][0]["role"] == "user"
        assert pair["preferred_output"][0]["content"] != pair["non_preferred_output"][0]["content"]
    # The file is content-addressed: its name is its hash.
    assert status.dataset.uri.endswith(f"{status.dataset.sha256}.jsonl")

    version = await ledger.get_version(2)
    assert version is not None
    examples = await ledger.dataset_examples("dpo")
    assert [e.position for e in examples] == list(range(8))
    assert all(version.principle(e.principle_id) for e in examples)
    manifest = json.loads(artifact(status.dataset.manifest_uri or ""))
    kept = [e.principle_id for e in examples if not e.skipped]
    assert [m["principle"] for m in manifest] == kept

    # One answer, two critique-and-revise passes and one judgement per example.
    stats = await standin(stack, "/_standin/stats")
    assert stats["tasks"]["PreferenceJudgement"] == 8
    assert stats["tasks"]["text"] >= 8 * (1 + 2 * 2)

    job = await ledger.training_job_for_round("dpo")
    assert job is not None and job.status == "succeeded" and job.method == "dpo"
    model = AsyncOpenAI(
        base_url=stack.settings.model_base_url,
        api_key=stack.settings.model_api_key.get_secret_value(),
    )
    remote = await model.fine_tuning.jobs.retrieve(job.job_id)
    assert remote.method is not None and remote.method.dpo is not None
    hyper = remote.method.dpo.hyperparameters
    assert hyper is not None and hyper.beta == 0.2 and hyper.n_epochs == 1
    events = await ledger.job_events(job.job_id)
    assert any("successfully completed" in e.message for e in events)

    dataset_row = await ledger.dataset("dpo")
    assert dataset_row is not None and dataset_row.sha256 == status.dataset.sha256
    shown = "\n".join(retraining_summary(status))
    assert f"{status.dataset.examples} dpo examples" in shown and job.job_id in shown

    # The gate judged paired answers on the tests' slice (40 red-team, 15 benign):
    # each rate with its n and interval, each cue style, each category, and
    # each adopted amendment's own effect, measured in context on the baseline.
    evaluation = status.evaluation
    assert evaluation is not None and evaluation.outcome == "passed"
    assert [t.name for t in evaluation.tests][:2] == ["harm rate", "over-refusal"]
    harm = evaluation.tests[0]
    assert harm.pairs == 40 and harm.p_value < 0.05 and harm.high < 0
    candidate = evaluation.candidate
    assert candidate.harm is not None and candidate.harm.n == 40
    assert candidate.harm.low <= candidate.harm.value <= candidate.harm.high
    assert {g.style for g in candidate.cue_gaps} == {"explicit", "benchmark", "deployment"}
    assert len(candidate.categories) == 5
    assert evaluation.attribution and evaluation.attribution_model == "amend-base"
    decided = {d.proposal_id for d in await ledger.decided_proposals("dpo") or []}
    assert {e.proposal_id for e in evaluation.attribution} <= decided
    stored = await ledger.evaluation("dpo")
    assert stored is not None and stored.verdict == "passed"
    assert stored.tests == evaluation.tests and stored.attribution == evaluation.attribution
    details = "\n".join(evaluation_details(evaluation))
    assert "cue benchmark: harm" in details and "amendment effects" in details


async def test_a_failed_fine_tune_job_fails_the_round_with_the_backends_error(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await standin(stack, "/_standin/fine_tuning", {"outcomes": ["fail"]})
    handle = await accepted_round(stack, dev_server, "ft-fails")
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert "loss became NaN" in await failure_reason(ledger, "ft-fails")
    job = await ledger.training_job_for_round("ft-fails")
    assert job is not None and job.status == "failed" and "NaN" in (job.error or "")
    job_rows = [
        t.to_state for t in await ledger.timeline("ft-fails") if t.entity.startswith("job:")
    ]
    assert job_rows[-1] == "failed"
    assert await ledger.evaluation("ft-fails") is None


async def test_a_job_that_never_finishes_is_cancelled_when_the_training_timeout_passes(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await standin(stack, "/_standin/fine_tuning", {"outcomes": ["never"]})
    handle = await accepted_round(stack, dev_server, "ft-hangs", training_timeout="PT3S")
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert "did not finish within" in await failure_reason(ledger, "ft-hangs")
    stats = await standin(stack, "/_standin/stats")
    assert stats["fine_tuning_jobs_by_status"] == {"cancelled": 1}


async def test_cancelling_a_round_while_it_trains_cancels_the_fine_tune_job(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await standin(stack, "/_standin/fine_tuning", {"outcomes": ["never"]})
    handle = await accepted_round(stack, dev_server, "ft-cancel")
    for _ in range(600):
        status = await round_status(dev_server.client, "ft-cancel")
        progress = status.progress
        # The poll's heartbeat, read from the pending activity, says where the job is.
        if progress and progress.stage == "training" and "running" in progress.detail:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the round never reported a running job")
    assert status.state is RoundState.training and status.fine_tune_job
    assert status.fine_tune_job in progress.detail
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    stats = await standin(stack, "/_standin/stats")
    assert stats["fine_tuning_jobs_by_status"] == {"cancelled": 1}
    job = await ledger.training_job_for_round("ft-cancel")
    assert job is not None and job.status == "cancelled"
    round_row = await ledger.get_round("ft-cancel")
    assert round_row is not None and round_row.state == "cancelled"


async def test_a_candidate_that_over_refuses_is_held_back_and_the_new_version_stays(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await standin(stack, "/_standin/fine_tuning", {"outcomes": ["overcautious"]})
    handle = await accepted_round(stack, dev_server, "held-back")
    result = await handle.result()
    assert result.state is RoundState.gate_failed and result.passed_gate is False
    assert result.result_version == 2 and await ledger.get_version(2) is not None
    evaluation = await ledger.evaluation("held-back")
    assert evaluation is not None and evaluation.passed is False
    assert evaluation.rubric_version == "grade.v2"
    assert any("over-refusal rose" in r for r in evaluation.reasons)
    [ended] = [t for t in await ledger.timeline("held-back") if t.to_state == "gate_failed"]
    assert "over-refusal rose" in ended.reason and ended.data["held_back"] is True
    [trend] = await ledger.evaluation_trend()
    assert trend.constitution_version == 2 and trend.candidate_overrefusal_rate == 1.0


async def test_a_grader_that_returns_garbage_fails_the_round_with_a_clear_reason(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    handle = await accepted_round(stack, dev_server, "bad-grader")
    # From here on (the proposals' impact previews are graded too, before
    # review) every grade comes back in the wrong shape, the second try of each too:
    # more faults than the evaluation has grades, since many are asked at once.
    await standin(stack, "/_standin/faults", {"faults": ["wrong_shape"] * 2000, "task": "Grade"})
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    reason = await failure_reason(ledger, "bad-grader")
    assert (
        "the grader" in reason
        and "rubric grade.v2" in reason
        and "did not return a grade" in reason
    )
    assert await ledger.evaluation("bad-grader") is None


async def test_a_prompt_set_with_a_bad_line_fails_the_round_naming_the_line(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "prompt": "Hello"}\n\n{"id": "b"}\n')
    handle = await accepted_round(stack, dev_server, "bad-prompts", prompt_file=str(prompts))
    reviewed = (await standin(stack, "/_standin/stats"))["tasks"].get("text", 0)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert f"{prompts}:3: prompt: Field required" in await failure_reason(ledger, "bad-prompts")
    assert await ledger.dataset_examples("bad-prompts") == []
    stats = await standin(stack, "/_standin/stats")
    assert stats["tasks"].get("text", 0) == reviewed  # no answer paid for after review


async def test_a_round_can_generate_its_dataset_through_the_batch_api(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    handle = await accepted_round(
        stack, dev_server, "batched", method="dpo", prompt_count=6, use_batch_api=True
    )
    result = await handle.result()
    assert result.state is RoundState.completed
    model = AsyncOpenAI(
        base_url=stack.settings.model_base_url,
        api_key=stack.settings.model_api_key.get_secret_value(),
    )
    batches = (await model.batches.list()).data
    # One batch per step of the recipe: answer, critique, revise, prefer.
    assert len(batches) == 4
    assert all(b.request_counts and b.request_counts.completed == 6 for b in batches)
    examples = await ledger.dataset_examples("batched")
    assert [e.position for e in examples] == list(range(6))
    status = await round_status(dev_server.client, "batched")
    assert status.dataset is not None
    assert status.dataset.examples + status.dataset.skipped == 6
    for line in artifact(status.dataset.uri).splitlines():
        pair = json.loads(line)
        assert pair["preferred_output"] != pair["non_preferred_output"]


async def test_a_preference_judgement_that_is_garbage_fails_the_round_with_its_reason(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    await standin(
        stack,
        "/_standin/faults",
        {"faults": ["malformed_json"] * 20, "task": "PreferenceJudgement"},
    )
    handle = await accepted_round(stack, dev_server, "bad-judge", method="dpo", prompt_count=2)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert "did not match PreferenceJudgement" in await failure_reason(ledger, "bad-judge")
    assert await ledger.training_job_for_round("bad-judge") is None
