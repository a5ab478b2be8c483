"""Closing the loop: what a round's evaluation found its candidate getting wrong is
stored with the round, once, however often the evaluation is retried; the next round
started with `--evidence-from-round` reads those failures as evidence, its proposals
cite them, and its page links each cited failure back to the round that found it; once
adopted, the principle's lineage names the failure beside the proposal, its reviewer
and the version it made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from constitution import GateSpec, RoundState
from constitution.contracts import EvaluateInput, RoundResult
from constitution.models import EvidenceKind
from gateway.auth import COOKIE
from ledger.dashboards import Dashboards
from ledger.store import Ledger
from standins.reviewer import SimulatedReviewer, decide_in_slack, wait_for_proposals
from tests.conftest import (
    REVIEW_CHANNEL,
    StackFactory,
    accepted_round,
    eventually,
    standin,
    start_round,
)
from worker.runtime import build_activities
from worker.stack import Stack


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(dev_server) as running:
        yield running


async def test_a_rounds_evaluation_failures_are_stored_once_and_the_next_round_cites_them(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    # A candidate that refuses benign prompts: its over-refusals are failures for sure.
    await standin(stack, "/_standin/fine_tuning", {"outcomes": ["overcautious"]})
    first = await accepted_round(stack, dev_server, "loop-a")
    result = await first.result()
    assert result.state is RoundState.gate_failed and result.result_version == 2
    failures = await ledger.evaluation_failures("loop-a")
    assert failures and any(f.failure == "over_refusal" for f in failures)
    assert len({f.failure_id for f in failures}) == len(failures)
    evaluation = await ledger.evaluation("loop-a")
    assert evaluation is not None
    assert all(f.model == evaluation.candidate_model for f in failures)

    # The evaluation activity run again, as Temporal retries it: the same failures, once.
    version = await ledger.get_version(2)
    assert version is not None
    activities = build_activities(stack.settings, ledger)
    try:
        await ActivityEnvironment().run(
            activities.evaluation.evaluate,
            EvaluateInput(
                round_id="loop-a",
                constitution=version,
                candidate_model=evaluation.candidate_model,
                baseline_model=evaluation.baseline_model,
                gate=GateSpec(),
            ),
        )
    finally:
        await activities.close()
    again = await ledger.evaluation_failures("loop-a")
    assert [f.failure_id for f in again] == [f.failure_id for f in failures]

    # The next round reads them as evidence and proposes from them.
    await start_round(stack, "loop-b", max_proposals=3, evidence_from_round="loop-a")
    dashboards = Dashboards(ledger.pool)

    async def proposals() -> list[str]:
        return [e for p in await dashboards.proposals("loop-b") for e in p.evidence]

    cited = await eventually(proposals, "loop-b's proposals")
    evidence = {e.evidence_id: e for e in await ledger.evidence("loop-b")}
    read = [e for e in evidence.values() if e.kind == EvidenceKind.evaluation_failure]
    assert {e.evidence_id for e in read} == {f.failure_id for f in failures}
    assert {e.source for e in read} == {"round:loop-a:evaluation"}
    from_failures = [e for e in cited if e in {f.failure_id for f in failures}]
    assert from_failures, f"no proposal of loop-b cites a failure of loop-a: {cited}"

    # Its page links each cited failure to the round whose evaluation found it.
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        http.cookies.set(COOKIE, stack.operator_token)
        page = await http.get("/rounds/loop-b")
        earlier = await http.get("/rounds/loop-a")
        api = await http.get(
            "/api/rounds/loop-a/failures",
            headers={"Authorization": f"Bearer {stack.operator_token}"},
        )
    assert page.status_code == 200 and earlier.status_code == 200
    assert f'href="/rounds/loop-a#failure-{from_failures[0]}"' in page.text
    assert f'id="failure-{from_failures[0]}"' in earlier.text
    assert [f["failure_id"] for f in api.json()] == [f.failure_id for f in failures]

    # Reviewers adopt loop-b's proposals: the lineage runs failure -> proposal -> review -> v3.
    rows = await dashboards.proposals("loop-b")
    slack = stack.slack_stand_in_url or ""
    alice = SimulatedReviewer(
        stack.gateway_url,
        stack.settings.slack_signing_secret.get_secret_value(),
        "U0ALICE",
        slack_api_url=slack,
    )
    for message in await wait_for_proposals(slack, len(rows), round_id="loop-b", wait_s=30):
        decided = await decide_in_slack(alice, slack, message, "accept", channel_id=REVIEW_CHANNEL)
        assert decided.status_code == 200
    handle = dev_server.client.get_workflow_handle("round-loop-b", result_type=RoundResult)
    assert (await handle.result()).result_version == 3
    fixing = next(p for p in rows if from_failures[0] in p.evidence)
    v3 = await ledger.get_version(3)
    assert v3 is not None
    principle = fixing.target or next(p.id for p in v3.principles if p.title == fixing.title)
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        lineage = await http.get(
            f"/api/principles/{principle}/lineage",
            headers={"Authorization": f"Bearer {stack.operator_token}"},
        )
    [made] = [e for e in lineage.json() if e["version"] == 3]
    assert made["proposal_id"] == fixing.proposal_id and made["round_id"] == "loop-b"
    assert from_failures[0] in made["evidence"] and made["reviewers"] == ["U0ALICE"]
