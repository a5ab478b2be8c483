"""Rounds against model servers that differ from OpenAI the usual ways, played by
the stand-in model's switches on the Temporal dev server and real PostgreSQL:
no structured outputs (refused with a 422, or a 400 that names nothing), JSON
mode only, tool calling only, no fine-tuning API, no `x-request-id`, a long
Retry-After, and a grader that cannot grade an impact preview; and an output
mode fixed by settings, used without probing."""

from __future__ import annotations

import sys

import httpx
import openai
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.model import Model
from constitution import Grade, RoundState
from constitution.capabilities import OutputMode
from constitution.contracts import RoundResult, RoundStatus
from ledger.store import Ledger
from standins.model.app import create_app
from standins.model.config import ScriptedModelConfig
from standins.reviewer import wait_for_proposals
from standins.serving import serve
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
from worker.cli import EXIT_FAILED
from workflows.client import round_status


async def in_review(env: WorkflowEnvironment, round_id: str) -> RoundStatus:
    """The round's status once it is in review: a message shows in Slack a
    moment before the round notes it as posted."""

    async def reviewed() -> RoundStatus | None:
        status = await round_status(env.client, round_id)
        return status if status.state is RoundState.in_review else None

    found: RoundStatus = await eventually(reviewed, f"round {round_id} in review")
    return found


JSON_MODE_ONLY = ScriptedModelConfig(
    structured_outputs=False,
    tool_calling=False,
    refusal_wording="unprocessable",
    request_ids=False,
)
TOOLS_ONLY = ScriptedModelConfig(
    structured_outputs=False, json_mode=False, refusal_wording="plain", request_ids=False
)
NO_FINE_TUNING = ScriptedModelConfig(fine_tuning=False)


@pytest.mark.parametrize(
    ("server", "output_prompt", "method"),
    [
        (JSON_MODE_ONLY, "json_answer.v1", "supervised"),
        (TOOLS_ONLY, "tool_answer.v1", "dpo"),
    ],
    ids=["json-mode-only-422", "tools-only-plain-400"],
)
async def test_a_round_completes_on_a_server_without_structured_outputs(
    dev_server: WorkflowEnvironment,
    stack_on: StackFactory,
    ledger: Ledger,
    server: ScriptedModelConfig,
    output_prompt: str,
    method: str,
) -> None:
    async with stack_on(dev_server, model_stand_in=server, impact_sample_size=1) as stack:
        round_id = f"other-{output_prompt.split('_')[0]}"
        handle = await accepted_round(stack, dev_server, round_id, method=method, prompt_count=4)
        result: RoundResult = await handle.result()
        assert result.state is RoundState.completed and result.result_version == 2
        status = await round_status(dev_server.client, round_id)
        stats = await standin(stack, "/_standin/stats")

    [proposal] = [p.proposal for p in status.proposals]
    # The mode's own prompt is on the record beside the task's (both bumped).
    assert proposal.prompt_versions[:2] == ["propose.v3", output_prompt]
    assert "conflicts.v2" in proposal.prompt_versions and "grade.v2" in proposal.prompt_versions
    assert proposal.impact is not None and proposal.impact.unavailable is None
    # Calls are counted though the server names none: a proposal call, a
    # conflict analysis, an answer and a grade under each of two constitutions.
    assert len(proposal.request_ids) == 1 + 1 + 2 * 2
    assert not any(call.startswith("req_") for call in proposal.request_ids)
    assert len(set(proposal.request_ids)) == len(proposal.request_ids)
    generation = await ledger.proposal_generation(proposal.id)
    assert generation is not None and generation.request_ids == proposal.request_ids
    # json_schema was asked once, by the worker's probe, and never again.
    assert stats["formats"]["json_schema"] == 1


async def test_a_round_on_a_server_without_fine_tuning_is_refused_at_start(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    async with stack_on(dev_server, model_stand_in=NO_FINE_TUNING) as stack:
        await start_round(stack, "no-ft")
        with pytest.raises(WorkflowFailureError):
            await dev_server.client.get_workflow_handle("round-no-ft").result()
        status = await round_status(dev_server.client, "no-ft")
        stats = await standin(stack, "/_standin/stats")
        posted = await standin_slack_posts(stack.slack_stand_in_url or "")

    reason = (
        f"the model server at {stack.settings.model_base_url} has no fine-tuning API "
        "(404 on /v1/fine_tuning/jobs); set training.backend: http, or use a server "
        "with fine-tuning"
    )
    assert status.state is RoundState.failed
    assert status.error == f"the round cannot start: {reason}"
    assert status.preflight is not None and status.preflight.problems == [reason]
    timeline = await ledger.timeline("no-ft")
    assert [(t.entity, t.to_state) for t in timeline] == [
        ("round", "created"),
        ("preflight", "refused"),
        ("round", "failed"),
    ]
    # Refused before anyone's time was spent: no proposal asked for, nothing posted.
    assert "ProposalBatch" not in stats["tasks"]
    assert posted == 0
    assert await ledger.evidence("no-ft") == []


async def test_a_round_asking_for_the_inspect_backend_on_a_worker_without_it_is_refused_at_start(
    dev_server: WorkflowEnvironment,
    stack_on: StackFactory,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker runs in this process: `import inspect_ai` now fails there.
    monkeypatch.setitem(sys.modules, "inspect_ai", None)
    async with stack_on(dev_server) as stack:
        await start_round(stack, "no-inspect", gate={"evaluation_backend": "inspect"})
        with pytest.raises(WorkflowFailureError):
            await dev_server.client.get_workflow_handle("round-no-inspect").result()
        status = await round_status(dev_server.client, "no-inspect")
        stats = await standin(stack, "/_standin/stats")

    assert status.state is RoundState.failed
    assert status.preflight is not None and len(status.preflight.problems) == 1
    [problem] = status.preflight.problems
    assert "inspect-ai is not installed on this worker" in problem
    assert "pip install 'amend[inspect]'" in problem
    assert status.error == f"the round cannot start: {problem}"
    assert "ProposalBatch" not in stats["tasks"]
    assert await ledger.evidence("no-inspect") == []


async def test_the_cli_says_why_a_round_is_refused_and_an_operator_may_override_it_on_record(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger, database_url: str
) -> None:
    async with stack_on(dev_server, model_stand_in=NO_FINE_TUNING) as stack:
        env = stack_cli_env(stack, dev_server, database_url)
        refused = await run_cli(env, "round", "start", "--id", "denied", "--reviewer", "U0ALICE")
        shown = await run_cli(env, "round", "show", "denied")
        forced = await run_cli(
            env,
            "round",
            "start",
            "--id",
            "forced",
            "--reviewer",
            "U0ALICE",
            "--max-proposals",
            "1",
            "--override-preflight",
            "the trainer arrives on Monday",
        )
        await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
        status = await in_review(dev_server, "forced")
        await dev_server.client.get_workflow_handle("round-forced").cancel()

    assert refused.exit_code == EXIT_FAILED
    assert (
        "round denied refused at start: the round cannot start: the model server" in refused.output
    )
    assert "has no fine-tuning API (404 on /v1/fine_tuning/jobs)" in refused.output
    assert "preflight: refused" in shown.output and "state failed" in shown.output
    assert forced.exit_code == 0, forced.output
    assert "preflight overridden by operator:ops-oliver" in forced.output
    assert status.state in (RoundState.proposing, RoundState.in_review)
    assert status.preflight is not None and status.preflight.overridden_by == "operator:ops-oliver"
    [override] = [t for t in await ledger.timeline("forced") if t.entity == "preflight"]
    assert override.to_state == "overridden" and override.actor == "operator:ops-oliver"
    assert override.reason.startswith("the trainer arrives on Monday (refused: the model server")


async def test_a_long_retry_after_is_waited_out_up_to_the_cap_and_shown_on_the_round(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    async with stack_on(dev_server, model_retry_after_cap_s=3, impact_sample_size=0) as stack:
        await standin(stack, "/_standin/faults", {"faults": ["rate_limit"], "retry_after": 600})
        await start_round(stack, "patient", max_proposals=1)

        async def waiting() -> RoundStatus | None:
            status = await round_status(dev_server.client, "patient")
            return status if status.waiting is not None else None

        async def in_review() -> RoundStatus | None:
            status = await round_status(dev_server.client, "patient")
            return status if status.state is RoundState.in_review else None

        async def waiting_page() -> str | None:
            async with operator_api(stack) as http:
                page = (await http.get("/rounds/patient")).text
            return page if "waiting on model until" in page else None

        seen = await eventually(waiting, "the round to show it waits on the model")
        page = await eventually(waiting_page, "the round's page to show the wait")
        after = await eventually(in_review, "the round to go on to review")
        await dev_server.client.get_workflow_handle("round-patient").cancel()

    assert seen.waiting is not None and seen.waiting.on == "model"
    assert "asked to wait 600s, capped at 3s" in page
    assert "asked to wait 600s, capped at 3s" in seen.waiting.describe()
    assert after.waiting is None and after.state is RoundState.in_review
    moves = [t for t in await ledger.timeline("patient") if t.entity == "model"]
    assert [(t.from_state, t.to_state) for t in moves] == [("ok", "waiting"), ("waiting", "ok")]
    assert moves[0].reason == seen.waiting.describe()
    assert moves[0].data["wait_s"] == 3 and moves[0].data["asked_s"] == 600
    waited = moves[1].at - moves[0].at
    assert waited.total_seconds() >= 3, "the round waited the capped time, not less"


async def test_an_impact_preview_that_cannot_be_graded_is_unavailable_and_review_goes_on(
    dev_server: WorkflowEnvironment, stack_on: StackFactory
) -> None:
    async with stack_on(dev_server, impact_sample_size=1) as stack:
        # Every grade comes back in the wrong shape, the second try of each too.
        await standin(stack, "/_standin/faults", {"faults": ["wrong_shape"] * 8, "task": "Grade"})
        await start_round(stack, "blind", max_proposals=1)
        [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
        status = await in_review(dev_server, "blind")
        await dev_server.client.get_workflow_handle("round-blind").cancel()

    [proposal] = [p.proposal for p in status.proposals]
    assert status.state is RoundState.in_review
    assert proposal.impact is not None and proposal.impact.samples == []
    assert proposal.impact.unavailable is not None
    assert "did not match Grade after 2 attempts" in proposal.impact.unavailable
    assert proposal.impact.summary.startswith("Impact preview unavailable: ")
    assert "Impact preview unavailable" in str(message["blocks"])


async def standin_slack_posts(slack_url: str) -> int:
    """How many messages the Slack stand-in was asked to post."""
    async with httpx.AsyncClient(base_url=slack_url) as http:
        calls = (await http.get("/_standin/calls")).json()
    return sum(1 for call in calls if call["method"] == "chat.postMessage")


async def test_an_output_mode_set_in_settings_is_used_without_probing_the_server() -> None:
    async with (
        serve(create_app(ScriptedModelConfig())) as served,
        openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="k", max_retries=0) as client,
    ):
        model = Model(client, "amend-proposer", output_mode=OutputMode.tools)
        found = await model.capabilities.of("amend-proposer")
        answer = await model.structured(Grade, "Grade it.", "<response>ok</response>")
        async with httpx.AsyncClient(base_url=served.url) as http:
            formats = (await http.get("/_standin/stats")).json()["formats"]

    assert found.mode_from_settings and found.output_mode is OutputMode.tools
    assert found.json_schema is found.json_object is found.tools is None  # not probed
    assert answer.mode is OutputMode.tools and isinstance(answer.value, Grade)
    assert formats == {"tools": 1}
