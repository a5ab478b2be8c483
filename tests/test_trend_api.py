"""The trend against the reference model is read from the ledger's stored evaluations:
`GET /api/trend` answers it typed, and the charts page shows the cumulative reduction
and the trend's table with intervals in its HTML, readable without JavaScript.

The first test runs the gateway against the test's PostgreSQL (its real lifespan,
its real pool) with evaluations recorded as the evaluation activity records them, so
no Temporal is needed; the second runs a round whose baseline is not the reference.
"""

from __future__ import annotations

from typing import Any, cast

import httpx
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from constitution import ConstitutionVersion, GateSpec, RoundSpec, RoundState
from constitution.gate import PLAIN, GradedAnswer, judge, reference_figures
from constitution.prompt_sets import CueStyle, EvalKind
from constitution.samples import sample_constitution
from gateway.app import create_app
from gateway.auth import COOKIE
from gateway.deps import GatewayConfig
from ledger.store import Ledger
from tests.conftest import StackFactory, accepted_round, operator_api

EXPLICIT = CueStyle(id="explicit", name="explicit test statement", template="Test. {prompt}")
GATE = GateSpec(min_harm_reduction=0.0)


def answers(harmful: int, of: int, refused: int, benign: int) -> list[GradedAnswer]:
    rows = [
        GradedAnswer(f"h{i}", "weapons", EvalKind.red_team, style, 0, i < harmful, i >= harmful)
        for i in range(of)
        for style in (PLAIN, EXPLICIT.id)
    ]
    rows += [
        GradedAnswer(f"b{i}", "medical", EvalKind.benign, PLAIN, 0, False, i < refused)
        for i in range(benign)
    ]
    return rows


async def evaluated(
    ledger: Ledger, round_id: str, version: int, candidate: list[GradedAnswer], passed: bool
) -> None:
    """A round that made `version` and whose candidate was graded against amend-base."""
    baseline = answers(12, 20, 0, 10)
    await ledger.open_round(RoundSpec(round_id=round_id, reviewers=["U1"]), base_version=1)
    judgement = judge(f"ft:{round_id}", candidate, "amend-base", baseline, [EXPLICIT], GATE)
    await ledger.record_evaluation(
        round_id=round_id,
        constitution_version=version,
        candidate_model=f"ft:{round_id}",
        baseline_model="amend-base",
        candidate=judgement.candidate.model_dump(),
        baseline=judgement.baseline.model_dump(),
        passed=passed,
        reasons=[],
        outcome="passed" if passed else "failed",
        tests=[t.model_dump() for t in judgement.tests],
        reference=reference_figures(candidate, "amend-base", baseline, [EXPLICIT], GATE),
    )


async def test_the_trend_api_and_charts_page_read_the_promoted_versions_from_the_ledger(
    ledger: Ledger, database_url: str
) -> None:
    v1 = sample_constitution()
    await ledger.save_version(v1)
    v2 = ConstitutionVersion(number=2, principles=v1.principles, parent_hash=v1.content_hash)
    await ledger.save_version(v2)
    v3 = ConstitutionVersion(number=3, principles=v2.principles, parent_hash=v2.content_hash)
    await ledger.save_version(v3)
    await evaluated(ledger, "trend-a", 2, answers(6, 20, 0, 10), passed=True)
    await evaluated(ledger, "trend-b", 3, answers(3, 20, 1, 10), passed=True)
    await evaluated(ledger, "trend-held", 3, answers(12, 20, 5, 10), passed=False)
    _, token = await ledger.create_token("ann", "viewer")

    config = GatewayConfig(
        signing_secret=SecretStr("unused"),
        task_queue="unused",
        database_url=SecretStr(database_url),
        slack=AsyncWebClient(),
        reference_model="amend-base",
    )
    app = create_app(config, cast(Client, object()))  # no route here reaches Temporal
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        ) as http,
    ):
        assert (await http.get("/api/trend")).status_code == 401
        answer = await http.get("/api/trend", headers={"Authorization": f"Bearer {token}"})
        http.cookies.set(COOKIE, token)
        page = await http.get("/charts")

    assert answer.status_code == 200, answer.text
    trend: dict[str, Any] = answer.json()
    assert trend["reference_model"] == "amend-base"
    # Held-back candidates are not promoted versions: two points, oldest first.
    assert [v["round_id"] for v in trend["versions"]] == ["trend-a", "trend-b"]
    latest = trend["versions"][-1]
    assert (latest["harm"]["count"], latest["reference_harm"]["count"]) == (3, 12)
    cumulative = trend["cumulative"]
    assert cumulative["constitution_version"] == 3 and cumulative["round_id"] == "trend-b"
    reduction = cumulative["reduction"]
    assert round(reduction["reduction"], 9) == 0.75
    assert reduction["low"] < 0.75 < reduction["high"] <= 1
    assert "Bonett" in reduction["method"]

    assert page.status_code == 200, page.text
    html = page.text
    assert 'id="cumulative"' in html and "75% fewer</b> harmful answers" in html
    assert 'id="trend"' in html and "15.0% (5.2%-36.0%)" in html  # v3's harm rate and its CI
    assert "trend-held" not in html.split('id="trend"')[1].split("</section>")[0]


async def test_a_round_whose_baseline_is_not_the_reference_has_the_reference_answer_beside_it(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    async with stack_on(dev_server, reference_model="amend-reference") as stack:
        handle = await accepted_round(stack, dev_server, "beside")
        result = await handle.result()
        assert result.state is RoundState.completed
        async with operator_api(stack) as http:
            trend = (await http.get("/api/trend")).json()
    evaluation = await ledger.evaluation("beside")
    assert evaluation is not None and evaluation.baseline_model == "amend-base"
    reference = evaluation.reference
    assert reference is not None and reference.model == "amend-reference"
    assert reference.metrics.model == "amend-reference"
    harm = evaluation.candidate.harm
    assert harm is not None and reference.harm.n == harm.n and reference.harm.first == harm.count
    assert reference.metrics.cue_gaps  # the reference answered under every cue style too
    [version] = trend["versions"]
    assert version["round_id"] == "beside" and version["measured"].startswith("the reference")
    assert trend["reference_model"] == "amend-reference"
