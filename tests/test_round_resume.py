"""`amend round resume` and `POST /api/rounds/{id}/resume`, through real rounds:
the Temporal dev server, real PostgreSQL, the gateway, the Slack stand-in and the
scripted stand-in model, whose fine-tuning and grading are made to fail once.

A failed round is resumed at the stage after its last completed one; the
reviewers' decisions, the new version, the dataset and a succeeded fine-tune
job are kept, and nobody is asked again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from constitution import RoundState
from constitution.contracts import RoundResult
from ledger.store import Ledger
from tests.conftest import (
    StackFactory,
    accepted_round,
    eventually,
    operator_api,
    run_cli,
    stack_cli_env,
    standin,
    start_round,
)
from worker.stack import Stack
from workflows.client import round_status


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(dev_server) as running:
        yield running


async def slack_messages(stack: Stack) -> list[Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{stack.slack_stand_in_url}/_standin/messages")
    messages: list[Any] = response.json()
    return messages


async def round_moves(ledger: Ledger, round_id: str) -> list[tuple[str | None, str, str]]:
    return [
        (t.from_state, t.to_state, t.actor)
        for t in await ledger.timeline(round_id)
        if t.entity == "round"
    ]


async def resume(stack: Stack, round_id: str, reason: str = "the fault is fixed") -> httpx.Response:
    async with operator_api(stack) as http:
        return await http.post(f"/api/rounds/{round_id}/resume", json={"reason": reason})


async def ended(env: WorkflowEnvironment, round_id: str) -> RoundResult:
    handle = env.client.get_workflow_handle(f"round-{round_id}", result_type=RoundResult)
    result: RoundResult = await handle.result()
    return result


async def test_a_round_whose_fine_tune_failed_resumes_at_training_without_asking_reviewers_again(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger, database_url: str
) -> None:
    await standin(stack, "/_standin/fine_tuning", {"outcomes": ["fail"]})
    handle = await accepted_round(stack, dev_server, "ft-resumed")
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    failed = await round_status(dev_server.client, "ft-resumed")
    assert failed.state is RoundState.failed and failed.result_version == 2
    posted = await slack_messages(stack)
    before = await ledger.timeline("ft-resumed")

    # Two clicks at once: one run starts, the other is refused as already running.
    first, second = await asyncio.gather(resume(stack, "ft-resumed"), resume(stack, "ft-resumed"))
    assert sorted([first.status_code, second.status_code]) == [202, 409], (first, second)
    started, refused = (first, second) if first.status_code == 202 else (second, first)
    assert started.json()["stage"] == "training"
    assert "ft-resumed" in refused.json()["detail"]

    result = await ended(dev_server, "ft-resumed")
    assert result.state is RoundState.completed and result.passed_gate is True
    assert result.result_version == 2  # the version adopted before the failure, not another

    # Nobody was asked again: one decision, and not one Slack message more.
    assert len(await ledger.decided_proposals("ft-resumed") or []) == 1
    assert await slack_messages(stack) == posted
    # The failed job stays on the record; one new job succeeded.
    stats = await standin(stack, "/_standin/stats")
    assert stats["fine_tuning_jobs_by_status"] == {"failed": 1, "succeeded": 1}
    job = await ledger.training_job_for_round("ft-resumed")
    assert job is not None and job.status == "succeeded"
    status = await round_status(dev_server.client, "ft-resumed")
    assert status.fine_tune_job == job.job_id and status.error is None
    [resumption] = status.resumptions
    assert resumption.stage is RoundState.training and resumption.actor == "operator:dev-stack"
    assert "loss became NaN" in (resumption.failed_with or "")
    env = stack_cli_env(stack, dev_server, database_url)
    shown = await run_cli(env, "round", "show", "ft-resumed")
    assert shown.exit_code == 0, shown.output
    assert "resumed at training by operator:dev-stack" in shown.output

    # The failed run's rows stay as they were; the resume is one move, by the operator.
    timeline = await ledger.timeline("ft-resumed")
    assert timeline[: len(before)] == before
    assert (await round_moves(ledger, "ft-resumed"))[-4:] == [
        ("training", "failed", "workflow"),
        ("failed", "training", "operator:dev-stack"),
        ("training", "evaluating", "workflow"),
        ("evaluating", "completed", "workflow"),
    ]
    [resumed] = [t for t in timeline if t.from_state == "failed"]
    assert resumed.reason == "resumed at training: the fault is fixed"
    assert await ledger.verify_chain("ft-resumed") == []

    # The round's page shows the resume in its timeline.
    _, token = await ledger.create_token("reader", "viewer")
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, cookies={"amend_token": token}
    ) as http:
        page = (await http.get("/rounds/ft-resumed")).text
    assert "resumed at training: the fault is fixed" in page

    # A round that did not fail is not resumed, and nothing changes.
    again = await resume(stack, "ft-resumed")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        "round ft-resumed is completed; only a failed round can be resumed"
    )
    cli = await run_cli(env, "round", "resume", "ft-resumed")
    assert cli.exit_code == 1, cli.output
    assert "only a failed round can be resumed" in cli.output
    assert await ledger.timeline("ft-resumed") == timeline


async def test_a_round_that_failed_at_evaluation_resumes_there_with_its_one_fine_tune_job(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger, database_url: str
) -> None:
    handle = await accepted_round(stack, dev_server, "eval-resumed")
    # From here on the grader answers garbage: the evaluation fails the round.
    # More faults than the evaluation has grades (many are asked at once, each tried twice).
    await standin(stack, "/_standin/faults", {"faults": ["wrong_shape"] * 2000, "task": "Grade"})
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    moves = await round_moves(ledger, "eval-resumed")
    assert moves[-1][:2] == ("evaluating", "failed")
    await standin(stack, "/_standin/reset", {})

    cli = await run_cli(
        stack_cli_env(stack, dev_server, database_url),
        "round",
        "resume",
        "eval-resumed",
        "--reason",
        "the grader answers again",
        "--json",
    )
    assert cli.exit_code == 0, cli.output
    assert '"stage": "evaluating"' in cli.output
    result = await ended(dev_server, "eval-resumed")
    assert result.state is RoundState.completed

    # The candidate made before the failure was evaluated: no job was started again.
    jobs_started = await ledger.pool.fetch(
        "SELECT status FROM training_jobs WHERE round_id = $1", "eval-resumed"
    )
    assert [row["status"] for row in jobs_started] == ["succeeded"]
    jobs = [t for t in await ledger.timeline("eval-resumed") if t.entity.startswith("job:")]
    assert [t.to_state for t in jobs][-1] == "succeeded" and len({t.entity for t in jobs}) == 1
    assert (await round_moves(ledger, "eval-resumed"))[len(moves) :] == [
        ("failed", "evaluating", "operator:ops-oliver"),
        ("evaluating", "completed", "workflow"),
    ]
    assert await ledger.verify_chain("eval-resumed") == []


async def test_a_round_that_failed_generating_data_resumes_there_under_the_same_version(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    # Every preference judgement of the dataset comes back garbage, each retry too.
    await standin(
        stack, "/_standin/faults", {"faults": ["wrong_shape"] * 2000, "task": "PreferenceJudgement"}
    )
    handle = await accepted_round(stack, dev_server, "data-resumed", method="dpo", prompt_count=6)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    moves = await round_moves(ledger, "data-resumed")
    assert moves[-1][:2] == ("generating_data", "failed")
    await standin(stack, "/_standin/reset", {})

    started = await resume(stack, "data-resumed")
    assert started.status_code == 202 and started.json()["stage"] == "generating_data"
    result = await ended(dev_server, "data-resumed")
    assert result.state is RoundState.completed and result.result_version == 2
    assert await ledger.get_version(3) is None  # the adopted version, not a second one
    # Each prompt's example was kept once, whichever run made it.
    examples = await ledger.dataset_examples("data-resumed")
    assert [e.position for e in examples] == list(range(6))
    assert (await round_moves(ledger, "data-resumed"))[len(moves) :] == [
        ("failed", "generating_data", "operator:dev-stack"),
        ("generating_data", "training", "workflow"),
        ("training", "evaluating", "workflow"),
        ("evaluating", "completed", "workflow"),
    ]
    assert await ledger.verify_chain("data-resumed") == []


async def test_resume_is_refused_with_the_reason_where_there_is_nothing_to_resume(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger, database_url: str
) -> None:
    # A round that fails before review: its evidence file does not exist.
    await start_round(stack, "no-review", evidence_files=["/nonexistent/evidence.jsonl"])

    async def failed() -> bool:
        row = await ledger.get_round("no-review")
        return row is not None and row.state == "failed"

    await eventually(failed, "the round to fail on its evidence")
    timeline = await ledger.timeline("no-review")

    nothing = await resume(stack, "no-review")
    assert nothing.status_code == 409
    assert nothing.json()["detail"] == (
        "round no-review failed before its review adopted any amendment, so there is "
        "nothing to resume; start a new round"
    )
    unknown = await resume(stack, "no-such-round")
    assert unknown.status_code == 404

    # A viewer may read the round, not resume it; without a token nobody may.
    _, viewer = await ledger.create_token("vera", "viewer")
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        as_viewer = await http.post(
            "/api/rounds/no-review/resume",
            json={},
            headers={"Authorization": f"Bearer {viewer}"},
        )
        anonymous = await http.post("/api/rounds/no-review/resume", json={})
    assert as_viewer.status_code == 403 and anonymous.status_code == 401

    env = stack_cli_env(stack, dev_server, database_url)
    cli = await run_cli(env, "round", "resume", "no-review")
    assert cli.exit_code == 1 and "start a new round" in cli.output, cli.output
    cli = await run_cli(env, "round", "resume", "no-such-round")
    assert cli.exit_code == 1 and "no round no-such-round" in cli.output, cli.output
    assert await ledger.timeline("no-review") == timeline
    assert (await round_status(dev_server.client, "no-review")).state is RoundState.failed
