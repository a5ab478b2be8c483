"""The built-in pages people open most: a finished round's page and /charts.

A round of up to five proposals runs to its end on the stack (the simulated
reviewer accepts each one, so the page has votes, a dataset, a job and an
evaluation to show). Each page is then fetched through the gateway as a
signed-in browser would, and compared with its floor: one read of the
dashboard API through the same gateway (HTTP, the token check, one query,
JSON), timed in interleaved blocks. The round page makes a dozen reads and
renders the typed view model (word diffs, the gate figure by figure) through
Jinja2, so it may cost a few such reads; the note gives its ledger reads run
raw through asyncpg, which is what the database alone takes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx

from bench.harness import BenchEnv, BenchStack, Figure, alternating, at_most
from constitution import RoundState
from constitution.contracts import RoundResult
from standins.reviewer import SimulatedReviewer, wait_for_proposals

PROPOSALS = 5
SAMPLES = 40
CHANNEL = "C0AMENDBENCH"


async def run(env: BenchEnv) -> list[Figure]:
    async with env.stack() as bench:
        return await _measure(bench)


async def _finished_round(bench: BenchStack) -> str:
    stack = bench.stack
    round_id = f"pages-{uuid.uuid4().hex[:6]}"
    token = {"Authorization": f"Bearer {stack.operator_token}"}
    async with httpx.AsyncClient(timeout=30, headers=token) as http:
        started = await http.post(
            f"{stack.gateway_url}/api/rounds",
            json={
                "round_id": round_id,
                "reviewers": ["U0BENCH"],
                "max_proposals": PROPOSALS,
                "training": {"poll_interval": "PT0.2S"},
            },
        )
        started.raise_for_status()
        deadline = time.monotonic() + 60
        while True:
            status = (await http.get(f"{stack.gateway_url}/api/rounds/{round_id}")).json()
            if status["state"] == "in_review":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the round did not reach review: {status['state']}")
            await asyncio.sleep(0.2)
    slack = stack.slack_stand_in_url or ""
    count = len(status["proposals"])
    messages = await wait_for_proposals(slack, count, channel_id=CHANNEL, wait_s=60)
    reviewer = SimulatedReviewer(
        stack.gateway_url,
        stack.settings.slack_signing_secret.get_secret_value(),
        "U0BENCH",
        slack_api_url=slack,
    )
    for message in messages:
        await reviewer.click(message, "accept", channel_id=CHANNEL)
    result: RoundResult = await bench.temporal.get_workflow_handle(
        f"round-{round_id}", result_type=RoundResult
    ).result()
    if result.state is not RoundState.completed:
        raise RuntimeError(f"the round ended {result.state.value}")
    return round_id


async def _round_page_queries(conn: asyncpg.Connection, round_id: str) -> None:
    """The reads the round page makes, raw: its floor."""
    await conn.fetchrow("SELECT * FROM rounds WHERE round_id = $1", round_id)
    await conn.fetch("SELECT * FROM transitions WHERE round_id = $1 ORDER BY sequence", round_id)
    await conn.fetch(
        """SELECT p.*, pp.posted_at FROM proposals p
           LEFT JOIN dash_proposal_posted pp ON pp.proposal_id = p.proposal_id
           WHERE p.round_id = $1 ORDER BY p.position""",
        round_id,
    )
    await conn.fetch("SELECT * FROM decisions WHERE round_id = $1 ORDER BY decided_at", round_id)
    await conn.fetch(
        """SELECT g.* FROM proposal_generation g JOIN proposals p USING (proposal_id)
           WHERE p.round_id = $1""",
        round_id,
    )
    await conn.fetch(
        "SELECT * FROM proposal_checks WHERE round_id = $1 ORDER BY subject, position", round_id
    )
    await conn.fetch("SELECT * FROM evidence WHERE round_id = $1 ORDER BY position", round_id)
    await conn.fetch("SELECT * FROM principles WHERE version = 1 ORDER BY position")
    await conn.fetchrow("SELECT * FROM datasets WHERE round_id = $1", round_id)
    await conn.fetch(
        """SELECT principle_id, count(*) FROM dataset_examples WHERE round_id = $1
           GROUP BY principle_id""",
        round_id,
    )
    await conn.fetchrow("SELECT * FROM training_jobs WHERE round_id = $1", round_id)
    await conn.fetchrow("SELECT * FROM evaluations WHERE round_id = $1", round_id)


async def _charts_queries(conn: asyncpg.Connection) -> None:
    """The reads /charts makes, raw: its floor."""
    await conn.fetch(
        """SELECT d.*, e.candidate, e.baseline, r.spec -> 'gate' FROM dash_evaluations d
           JOIN evaluations e ON e.round_id = d.round_id
           JOIN rounds r ON r.round_id = d.round_id"""
    )
    await conn.fetchrow(
        """SELECT count(*), avg(latency_s),
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_s),
                  percentile_cont(0.9) WITHIN GROUP (ORDER BY latency_s), max(latency_s)
           FROM dash_decision_latency"""
    )
    await conn.fetch("SELECT * FROM dash_decision_latency ORDER BY decided_at DESC LIMIT 200")


async def _measure(bench: BenchStack) -> list[Figure]:
    round_id = await _finished_round(bench)
    _, token = await bench.ledger.create_token("bench-browser", "viewer")
    http = httpx.AsyncClient(
        base_url=bench.stack.gateway_url,
        cookies={"amend_token": token},
        headers={"accept": "text/html"},
        timeout=30,
    )
    conn = await asyncpg.connect(bench.database_url)
    figures: list[Figure] = []
    try:

        async def api_read(_: int) -> None:
            response = await http.get(
                f"/api/rounds/{round_id}/timeline", headers={"accept": "application/json"}
            )
            response.raise_for_status()

        for name, path, queries in (
            ("round page", f"/rounds/{round_id}", lambda: _round_page_queries(conn, round_id)),
            ("charts page", "/charts", lambda: _charts_queries(conn)),
        ):

            async def page(_: int, path: str = path) -> None:
                response = await http.get(path)
                response.raise_for_status()

            async def raw(_: int, queries: Any = queries) -> None:
                await queries()

            ours, floor = await alternating(page, api_read, SAMPLES, rounds=4, warmup=3)
            reads, _ = await alternating(raw, raw, SAMPLES // 2, rounds=2, warmup=2)
            size = len((await http.get(path)).content)
            figures.append(
                Figure(
                    f"pages: {name}, a finished round of {PROPOSALS} proposals (p50)",
                    ours.median_ms,
                    "ms",
                    floor.median_ms,
                    "one API read (a round's timeline as JSON) through the same gateway",
                    at_most(4),
                    note=f"{size / 1024:.0f} KiB of HTML; p99 {ours.p99_ms:.1f} ms; its ledger "
                    f"reads alone, raw asyncpg: {reads.median_ms:.2f} ms",
                )
            )
    finally:
        await conn.close()
        await http.aclose()
    return figures
