"""The dashboard API and the built-in pages over the history of a real round:
one round run end to end (accept, modify, reject by the simulated reviewer),
then read back through the API and rendered in headless Chromium from
Debian's `chromium` package, driven by Playwright (never a downloaded browser).
Screenshots go to $AMEND_TEST_OUTPUT/pages (default test-output/pages).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from constitution import RoundState
from constitution.contracts import RoundResult
from ledger.store import Ledger
from standins.reviewer import SimulatedReviewer, decide_in_slack, wait_for_proposals
from tests.conftest import REVIEW_CHANNEL, StackFactory, operator_api, start_round
from worker.stack import Stack

REVIEWER = "U0ALICE"
CHROMIUM = os.environ.get("AMEND_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAS_CHROMIUM = Path(CHROMIUM).exists()
OUTPUT = Path(os.environ.get("AMEND_TEST_OUTPUT", "test-output")) / "pages"


@dataclass(frozen=True)
class History:
    stack: Stack
    round_id: str


@pytest.fixture
async def history(
    dev_server: WorkflowEnvironment, stack_on: StackFactory
) -> AsyncIterator[History]:
    """A stack whose ledger holds one completed round: v1 -> v2."""
    round_id = f"pages-{uuid.uuid4().hex[:6]}"
    async with stack_on(dev_server) as stack:
        await start_round(stack, round_id)
        slack = stack.slack_stand_in_url or ""
        alice = SimulatedReviewer(
            stack.gateway_url,
            stack.settings.slack_signing_secret.get_secret_value(),
            REVIEWER,
            slack_api_url=slack,
        )
        first, second, third = await wait_for_proposals(slack, 3, wait_s=30)
        await decide_in_slack(alice, slack, first, "accept", channel_id=REVIEW_CHANNEL)
        await decide_in_slack(
            alice,
            slack,
            second,
            "modify",
            channel_id=REVIEW_CHANNEL,
            text="Reviewers' own wording.",
            comment="tighter",
        )
        await decide_in_slack(alice, slack, third, "reject", channel_id=REVIEW_CHANNEL)
        handle = dev_server.client.get_workflow_handle(f"round-{round_id}", result_type=RoundResult)
        result = await handle.result()
        assert result.state is RoundState.completed
        yield History(stack, round_id)


async def test_the_dashboard_api_reads_back_the_history_of_a_round(
    history: History, ledger: Ledger
) -> None:
    rid = history.round_id
    async with operator_api(history.stack) as http:
        rounds = (await http.get("/api/rounds", params={"state": "completed"})).json()
        none = (await http.get("/api/rounds", params={"state": "failed"})).json()
        timeline = (await http.get(f"/api/rounds/{rid}/timeline")).json()
        proposals = (await http.get(f"/api/rounds/{rid}/proposals")).json()
        latency = (await http.get("/api/dashboard/decision-latency")).json()
        metrics = (await http.get("/api/dashboard/evaluations")).json()
        versions = (await http.get("/api/constitution/versions")).json()
        diff = await http.get("/api/constitution/diff", params={"from": 1, "to": 2})
        audit = (await http.get("/api/audit/verify")).json()
    assert [r["round_id"] for r in rounds["rounds"]] == [rid] and none["total"] == 0
    assert timeline[-1]["to_state"] == "completed"
    assert [p["state"] for p in proposals] == ["accepted", "modified", "rejected"]
    assert [d["reviewer"] for p in proposals for d in p["decisions"]] == [REVIEWER] * 3
    assert latency["decisions"] == 3 and latency["p50_s"] >= 0 and len(latency["points"]) == 3
    assert [m["constitution_version"] for m in metrics] == [2]
    assert metrics[0]["harm_rate"] < metrics[0]["baseline_harm_rate"]
    assert [v["number"] for v in versions] == [1, 2] and versions[1]["round_id"] == rid
    assert "+" in diff.text and "Reviewers' own wording." in diff.text
    assert audit == {"rounds_checked": 1, "breaks": []}

    modified = next(p for p in proposals if p["state"] == "modified")
    async with operator_api(history.stack) as http:
        lineage = (await http.get(f"/api/principles/{modified['target']}/lineage")).json()
        missing = await http.get("/api/principles/P999/lineage")
    assert [(e["version"], e["change"]) for e in lineage] == [(1, "added"), (2, "revised")]
    assert lineage[1]["proposal_id"] == modified["proposal_id"]
    assert lineage[1]["reviewers"] == [REVIEWER] and lineage[1]["text"] == "Reviewers' own wording."
    assert missing.status_code == 404


@pytest.mark.skipif(
    not HAS_CHROMIUM, reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)"
)
async def test_the_pages_render_the_round_in_headless_chromium(
    history: History, ledger: Ledger
) -> None:
    rid = history.round_id
    from playwright.async_api import async_playwright

    _, token = await ledger.create_token("browser", "viewer")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    base = history.stack.gateway_url
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{base}/rounds")
            assert page.url.endswith("/login")  # no token yet: sign in first
            await page.fill("input[name=token]", token)
            await page.click("button")
            await page.wait_for_url(f"{base}/rounds")
            assert await page.locator("table a", has_text=rid).count() == 1
            await page.screenshot(path=str(OUTPUT / "rounds.png"), full_page=True)

            await page.click(f"text={rid}")
            await page.wait_for_url(f"{base}/rounds/{rid}")
            assert await page.locator("h2", has_text="Timeline").count() == 1
            rows = await page.locator("table").nth(1).locator("tbody tr").count()
            assert rows == len(await ledger.timeline(rid))
            assert await page.locator("text=Reviewers' own wording.").count() >= 1
            await page.screenshot(path=str(OUTPUT / "round.png"), full_page=True)

            await page.goto(f"{base}/versions")
            await page.click("text=diff with v1")
            assert await page.locator("table.diff").count() == 1
            assert await page.locator(".diff_chg, .diff_add").count() >= 1
            await page.screenshot(path=str(OUTPUT / "diff.png"), full_page=True)

            target = await ledger.pool.fetchval(
                "SELECT target FROM proposals WHERE round_id = $1 AND state = 'modified'", rid
            )
            await page.goto(f"{base}/principles/{target}")
            assert await page.locator("text=revised").count() >= 1
            await page.screenshot(path=str(OUTPUT / "lineage.png"), full_page=True)

            await page.goto(f"{base}/charts")
            for chart in ("#harm", "#latency"):
                assert await page.locator(f"{chart} svg polyline").count() >= 1
                assert await page.locator(f"{chart} svg circle").count() >= 1
            assert await page.locator("text=3 decisions").count() == 1
            await page.screenshot(path=str(OUTPUT / "charts.png"), full_page=True)
        finally:
            await browser.close()
    async with httpx.AsyncClient(base_url=base) as http:
        anonymous: Any = await http.get("/charts", headers={"accept": "text/html"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
