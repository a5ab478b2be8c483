"""The dashboard API and the built-in pages over the history of real rounds,
rendered in headless Chromium from Debian's `chromium` package, driven by
Playwright (never a downloaded browser). Screenshots go to
$AMEND_TEST_OUTPUT/pages (default test-output/pages).

Every page is checked as a person would meet it: the elements it must show,
no console error, and no request leaving 127.0.0.1 (the pages, their scripts,
Plotly.js and the API docs all come from the gateway itself).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from constitution import RoundState
from constitution.contracts import RoundResult
from ledger.store import Ledger
from standins.reviewer import Decision, SimulatedReviewer, decide_in_slack, wait_for_proposals
from tests.conftest import REVIEW_CHANNEL, StackFactory, eventually, operator_api, start_round
from worker.stack import Stack

REVIEWER = "U0ALICE"
SECOND = "U0BOB"
CHROMIUM = os.environ.get("AMEND_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAS_CHROMIUM = Path(CHROMIUM).exists()
OUTPUT = Path(os.environ.get("AMEND_TEST_OUTPUT", "test-output")) / "pages"
needs_chromium = pytest.mark.skipif(
    not HAS_CHROMIUM, reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)"
)


def reviewer(stack: Stack, user: str) -> SimulatedReviewer:
    return SimulatedReviewer(
        stack.gateway_url,
        stack.settings.slack_signing_secret.get_secret_value(),
        user,
        slack_api_url=stack.slack_stand_in_url or "",
    )


async def decide(
    stack: Stack, user: str, message: dict[str, Any], kind: Decision, **how: Any
) -> None:
    slack = stack.slack_stand_in_url or ""
    answer = await decide_in_slack(
        reviewer(stack, user), slack, message, kind, channel_id=REVIEW_CHANNEL, **how
    )
    assert answer.status_code == 200, answer.text


async def fine_tunes(stack: Stack, outcome: str) -> None:
    """Script the stand-in model's next fine-tune job."""
    async with httpx.AsyncClient(base_url=stack.model_stand_in_url or "") as http:
        response = await http.post("/_standin/fine_tuning", json={"outcomes": [outcome]})
    assert response.status_code == 200, response.text


async def accepted_round(
    stack: Stack, env: WorkflowEnvironment, round_id: str, outcome: str
) -> RoundResult | None:
    """A round of one proposal, accepted, whose fine-tune job ends as `outcome`;
    its result, or None when the round failed."""
    await fine_tunes(stack, outcome)
    await start_round(stack, round_id, max_proposals=1)
    [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
    await decide(stack, REVIEWER, message, "accept")
    handle = env.client.get_workflow_handle(f"round-{round_id}", result_type=RoundResult)
    try:
        result: RoundResult = await handle.result()
    except WorkflowFailureError:
        return None
    return result


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
        first, second, third = await wait_for_proposals(slack, 3, wait_s=30)
        await decide(stack, REVIEWER, first, "accept")
        await decide(
            stack, REVIEWER, second, "modify", text="Reviewers' own wording.", comment="tighter"
        )
        await decide(stack, REVIEWER, third, "reject")
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
    # Each figure judged against the round's own gate, as the charts draw it.
    figures = {f["name"]: f for f in metrics[0]["gate_figures"]}
    assert set(figures) == {"harm rate", "over-refusal", "evaluation-awareness gap"}
    assert all(f["passed"] for f in figures.values()) and metrics[0]["passed"]
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


# -- every state of a round, in Chromium ---------------------------------------------


@dataclass(frozen=True)
class States:
    stack: Stack
    completed: str
    gate_failed: str
    failed: str
    in_review: str


@pytest.fixture
async def states(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[States]:
    """Rounds that ended completed (v2), held back by the gate (v3) and failed in
    training (v4), and one in review: two reviewers, a quorum of two, one vote in."""
    tag = uuid.uuid4().hex[:4]
    async with stack_on(dev_server, page_refresh_s=1.0) as stack:
        completed = f"done-{tag}"
        await start_round(stack, completed, max_proposals=2)
        first, second = await wait_for_proposals(stack.slack_stand_in_url or "", 2, wait_s=30)
        await decide(stack, REVIEWER, first, "accept")
        await decide(stack, REVIEWER, second, "modify", text="Reviewers' own wording.")
        done = await dev_server.client.get_workflow_handle(
            f"round-{completed}", result_type=RoundResult
        ).result()
        assert done.state is RoundState.completed

        held = await accepted_round(stack, dev_server, f"held-{tag}", "overcautious")
        assert held is not None and held.state is RoundState.gate_failed
        assert await accepted_round(stack, dev_server, f"broken-{tag}", "fail") is None

        in_review = f"open-{tag}"
        await start_round(
            stack, in_review, max_proposals=1, reviewers=[REVIEWER, SECOND], policy={"quorum": 2}
        )
        [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
        await decide(stack, REVIEWER, message, "accept")
        yield States(stack, completed, f"held-{tag}", f"broken-{tag}", in_review)


class BrowserWatch:
    """What a page did that a person would not want: console errors, uncaught
    exceptions, dialogs, and requests to any host but the gateway's."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.requests = 0

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: self.errors.append(f"dialog: {d.message}"))
        page.on("request", self._request)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _request(self, request: Any) -> None:
        self.requests += 1
        url = urlparse(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname != "127.0.0.1":
            self.outside.append(request.url)

    def assert_clean(self) -> None:
        assert self.errors == [] and self.outside == [], (self.errors, self.outside)


async def shot(page: Any, name: str) -> None:
    await page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


@needs_chromium
async def test_every_page_shows_what_a_person_needs_offline_and_without_errors(
    states: States, ledger: Ledger
) -> None:
    from playwright.async_api import async_playwright

    _, token = await ledger.create_token("browser", "viewer")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    base = states.stack.gateway_url
    watch = BrowserWatch()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            watch.attach(page)

            # Slack's "Full proposal and round" link lands on the sign-in form,
            # then on the round it named.
            await page.goto(f"{base}/rounds/{states.in_review}")
            assert "/login" in page.url
            await page.fill("input[name=token]", token)
            await page.click("button:has-text('Sign in')")
            await page.wait_for_url(f"{base}/rounds/{states.in_review}")

            # In review: who is awaited and for how long, the policy, the diff, the votes.
            assert await page.locator("#summary .state.in_review").count() == 1
            awaited = page.locator("#awaited tbody tr")
            assert await awaited.count() == 1
            assert "1 of 2 accepts" in await awaited.inner_text()
            assert SECOND in await awaited.inner_text()
            assert "2 accepts adopt" in await page.locator("#review").inner_text()
            proposal = page.locator("section.proposal").first
            assert await proposal.locator(".pair ins, .pair del").count() >= 1
            assert await proposal.locator("h4", has_text="Checks").count() == 1
            assert REVIEWER in await proposal.locator("h4:has-text('Votes') + table").inner_text()
            temporal = await page.locator("#temporal-link").get_attribute("href") or ""
            assert temporal.endswith(f"/namespaces/default/workflows/round-{states.in_review}")
            assert await page.locator("#sign-out").count() == 1
            await shot(page, "round-in-review")

            # The page refreshes itself while the round is live, without reloading:
            # the second accept adopts the proposal and the round goes on to the end.
            await page.evaluate("window.amendStillHere = true")
            [message] = [
                m
                for m in await wait_for_proposals(states.stack.slack_stand_in_url or "", 1)
                if states.in_review in str(m)
            ]
            await decide(states.stack, SECOND, message, "accept")
            await page.locator("#summary .state.completed").wait_for(timeout=60_000)
            assert await page.evaluate("window.amendStillHere") is True
            assert await page.locator("#awaited").count() == 0

            # Completed: retraining with the dataset, the job and the evaluation against the gate.
            await page.goto(f"{base}/rounds/{states.completed}")
            assert await page.locator("#summary .state.completed").count() == 1
            assert await page.locator("text=Reviewers' own wording.").count() >= 1
            assert await page.locator("#dataset-link").count() == 1
            assert "succeeded" in await page.locator("#job").inner_text()
            figures = page.locator("#gate tbody tr")
            assert await figures.count() == 3
            assert await page.locator("#gate td.pass").count() == 3
            # The statistics a safety team reads before trusting the gate.
            assert await page.locator("#paired-tests tbody tr").count() >= 1
            assert await page.locator("#evaluation table.cue-gaps").count() >= 1
            assert await page.locator("#evaluation table.categories tbody tr").count() >= 1
            assert await page.locator("#attribution tbody tr").count() >= 1
            rows = await page.locator("#timeline tbody tr").count()
            assert rows == len(await ledger.timeline(states.completed))
            await shot(page, "round-completed")
            download = await page.request.get(f"{base}/rounds/{states.completed}/dataset")
            assert download.ok and b'"messages"' in await download.body()

            # Held back by the gate: which figure failed, and why.
            await page.goto(f"{base}/rounds/{states.gate_failed}")
            assert await page.locator("#summary .state.gate_failed").count() == 1
            assert "over-refusal rose" in await page.locator("#summary").inner_text()
            failing = page.locator("#gate tr", has=page.locator("td.fail"))
            assert "over-refusal" in await failing.inner_text()
            await shot(page, "round-gate-failed")

            # Failed: the reason, and the fine-tune job that failed.
            await page.goto(f"{base}/rounds/{states.failed}")
            assert await page.locator("#summary .state.failed").count() == 1
            reason = await page.locator("#summary b").inner_text()
            assert "fine-tune job" in reason and "failed" in reason
            assert "failed" in await page.locator("#job").inner_text()
            await shot(page, "round-failed")

            # The versions and a word-level diff.
            await page.goto(f"{base}/rounds")
            assert await page.locator("table a", has_text=states.completed).count() == 1
            await shot(page, "rounds")
            await page.goto(f"{base}/versions")
            await page.click("text=diff with v1")
            assert await page.locator("table.diff tr.revised").count() >= 1
            changed = page.locator("table.diff tr.revised").first
            assert await changed.locator("ins").count() >= 1
            await shot(page, "diff")

            # The charts: Plotly from the gateway, every series and a table per chart.
            await page.goto(f"{base}/charts")
            for chart in ("trend", "harm", "overrefusal", "awareness", "latency"):
                await page.locator(f"#{chart} .main-svg").first.wait_for()
                assert await page.locator(f"#{chart} table.figures tbody tr").count() >= 1
            # The promoted versions against the reference model, and the headline figure.
            headline = await page.locator("#cumulative").text_content() or ""
            assert "harmful answers than the reference model" in headline, headline
            assert "% CI" in headline and "all amendments since v1" in headline
            harm = page.locator("#harm")
            legend = await harm.locator(".legend").text_content() or ""
            for series in ("baseline harm rate", "gate limit", "candidate harm rate"):
                assert series in legend
            assert "gate failed on over-refusal" in (
                await page.locator("#overrefusal .legend").text_content() or ""
            )
            ticks = await harm.locator(".xtick text").all_text_contents()
            assert ticks == ["v2", "v3", "v5"]  # v4 failed in training: no evaluation
            assert "harm rate" in (await harm.locator(".ytitle").text_content() or "")
            await harm.locator(".main-svg").first.hover()
            await shot(page, "charts")

            # The API docs are served by the gateway, assets and all.
            await page.goto(f"{base}/docs")
            await page.locator(".swagger-ui .info").wait_for()
            await page.goto(f"{base}/redoc")
            await page.locator("redoc h1, [role=navigation]").first.wait_for()
            await page.goto(f"{base}/rounds")
            await page.click("#sign-out")
            await page.wait_for_url(f"{base}/login")
        finally:
            await browser.close()
    watch.assert_clean()
    assert watch.requests > 20
    async with httpx.AsyncClient(base_url=base) as http:
        anonymous: Any = await http.get("/charts", headers={"accept": "text/html"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=%2Fcharts"


# -- hostile text ----------------------------------------------------------------------

HOSTILE_TITLE = '<script>alert("title")</script>Fair "quotes" & \'apostrophes\''
HOSTILE_TEXT = "Be fair.</td></tr><img src=x onerror=alert('principle')> \"'><b>not bold</b>"
HOSTILE_PROPOSAL = "<script>alert('proposal')</script><a href=\"javascript:alert(1)\">x</a>"
HOSTILE_REASON = "\"><svg onload=alert('reason')></svg>' & <i>done</i>"


class Markup(HTMLParser):
    """The elements and attributes a page really has, as a browser parses them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def markup(html: str) -> Markup:
    parsed = Markup()
    parsed.feed(html)
    return parsed


async def test_hostile_text_in_a_principle_a_proposal_and_a_reason_is_shown_never_run(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    round_id = f"hostile-text-{uuid.uuid4().hex[:6]}"  # the dev server is shared
    async with stack_on(dev_server) as stack:
        latest = await ledger.get_version()
        assert latest is not None
        principles = [p.model_dump() for p in latest.principles]
        target = next(p for p in principles if not p["protected"])
        target.update(title=HOSTILE_TITLE, text=HOSTILE_TEXT)
        async with operator_api(stack) as http:
            imported = await http.post(
                "/api/constitution/versions", json={"principles": principles}
            )
            assert imported.status_code == 201, imported.text
            await start_round(stack, round_id, max_proposals=1)
            await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
            proposal_id = (await http.get(f"/api/rounds/{round_id}/proposals")).json()[0][
                "proposal_id"
            ]
            decided = await http.post(
                f"/api/rounds/{round_id}/decisions",
                json={
                    "proposal_id": proposal_id,
                    "kind": "modify",
                    "text": HOSTILE_PROPOSAL,
                    "reason": HOSTILE_REASON,
                },
            )
            assert decided.status_code == 200, decided.text
        version = imported.json()["version"]

        async def recorded() -> bool:
            return bool(await ledger.decisions(round_id))

        await eventually(recorded, "the override to be recorded")
        _, token = await ledger.create_token("hostile-reader", "viewer")
        pages = [
            f"/rounds/{round_id}",
            f"/versions/{version}",
            f"/versions/diff?from={version - 1}&to={version}",
            f"/principles/{target['id']}",
            "/rounds",
            "/charts",
        ]
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, cookies={"amend_token": token}
        ) as http:
            shown = {path: (await http.get(path)).text for path in pages}

    def no_markup_from_people(path: str, html: str) -> None:
        parsed = markup(html)
        assert not any("alert" in s for s in parsed.scripts), path
        events = [a for _, attrs in parsed.tags for a in attrs if a.startswith("on")]
        assert events == [], (path, events)
        hrefs = [attrs.get("href") or "" for _, attrs in parsed.tags]
        assert not any(h.startswith("javascript:") for h in hrefs), path
        assert ("svg", {"onload": "alert('reason')"}) not in parsed.tags

    for path, html in shown.items():
        no_markup_from_people(path, html)
    # And each hostile text is there, as text.
    round_page = shown[f"/rounds/{round_id}"]
    assert "&lt;script&gt;alert(&#39;proposal&#39;)&lt;/script&gt;" in round_page
    assert "&#34;&gt;&lt;svg onload=alert(&#39;reason&#39;)&gt;&lt;/svg&gt;" in round_page
    assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;" in shown[f"/versions/{version}"]
    assert "onerror=alert(&#39;principle&#39;)" in shown[f"/principles/{target['id']}"]
