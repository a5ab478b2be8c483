"""What the suite reads back at the end, from the ledger, the stand-ins and
`amend audit verify`, into the records the invariants check."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from typing import Any

import asyncpg
import httpx

from bench.chaos.clicks import OUTSIDER, Click
from bench.chaos.invariants import Facts, RoundFacts
from bench.chaos.rounds import RoundPlan
from bench.chaos.services import AMEND
from bench.chaos.stack import ChaosStack
from ledger.pool import create_pool
from ledger.store import Ledger
from review.messages import parse_action_value
from standins.reviewer import JSONDict

SETTLED = ("accepted", "modified", "rejected")


def proposal_of(record: JSONDict) -> tuple[str, str] | None:
    """(workflow id, proposal id) of a proposal message, from its buttons in
    any version (a settled message has lost them; its first version had them)."""
    for version in [record, *(record.get("history") or [])]:
        for block in version.get("blocks") or []:
            for element in block.get("elements") or []:
                if isinstance(element, dict) and element.get("action_id") == "accept":
                    try:
                        return parse_action_value(str(element.get("value", "")))
                    except ValueError:
                        continue
    return None


async def slack_messages(slack_url: str) -> list[JSONDict]:
    async with httpx.AsyncClient(timeout=10) as http:
        records: list[JSONDict] = (await http.get(f"{slack_url}/_standin/messages")).json()
    return records


async def fine_tune_jobs(model_url: str) -> Counter[str]:
    """Fine-tune jobs per round, from the model stand-in (suffix: the round id)."""
    async with httpx.AsyncClient(timeout=10) as http:
        data = (await http.get(f"{model_url}/v1/fine_tuning/jobs", params={"limit": 100})).json()[
            "data"
        ]
    return Counter(str(job.get("user_provided_suffix")) for job in data)


def audit_verify(stack: ChaosStack) -> tuple[int, str]:
    """`amend audit verify` as an operator runs it against the ledger."""
    done = subprocess.run(
        [AMEND, "audit", "verify"],
        env=stack.amend_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


async def gather_facts(stack: ChaosStack, plans: list[RoundPlan], clicks: list[Click]) -> Facts:
    messages = await slack_messages(stack.slack_url)
    jobs = await fine_tune_jobs(stack.model_url)
    per_proposal: Counter[str] = Counter()
    for record in messages:
        found = proposal_of(record)
        if found is not None:
            per_proposal[found[1]] += 1
    pool = await create_pool(stack.database_url, max_size=2)
    rounds = []
    try:
        ledger = Ledger(pool)
        async with pool.acquire() as conn:
            for plan in plans:
                rounds.append(await _round_facts(conn, ledger, plan, messages, per_proposal, jobs))
    finally:
        await pool.close()
    exit_code, output = await asyncio.to_thread(audit_verify, stack)
    return Facts(rounds, clicks, exit_code, output)


async def _round_facts(
    conn: Any,
    ledger: Ledger,
    plan: RoundPlan,
    messages: list[JSONDict],
    per_proposal: Counter[str],
    jobs: Counter[str],
) -> RoundFacts:
    rid = plan.round_id
    status = plan.last_status or {}
    ledger_state = await conn.fetchval("SELECT state FROM rounds WHERE round_id = $1", rid)
    waiting = status.get("waiting")
    reason = None
    if waiting:
        reason = f"waiting on {waiting.get('on')}: {waiting.get('reason')}"
    elif status.get("blocked"):
        reason = f"blocked: {status['blocked']}"
    proposals = [
        r["proposal_id"]
        for r in await conn.fetch(
            "SELECT proposal_id FROM proposals WHERE round_id = $1 ORDER BY proposal_id", rid
        )
    ]
    decisions = {
        r["proposal_id"]: r["n"]
        for r in await conn.fetch(
            "SELECT proposal_id, count(*) AS n FROM decisions WHERE round_id = $1 "
            "GROUP BY proposal_id",
            rid,
        )
    }
    settlings = {
        r["entity"].removeprefix("proposal:"): r["n"]
        for r in await conn.fetch(
            "SELECT entity, count(*) AS n FROM transitions WHERE round_id = $1 "
            "AND entity LIKE 'proposal:%' "
            "AND to_state = ANY($2::text[]) GROUP BY entity",
            rid,
            list(SETTLED),
        )
    }
    sequences = [
        r["sequence"]
        for r in await conn.fetch(
            "SELECT sequence FROM transitions WHERE round_id = $1 ORDER BY sequence", rid
        )
    ]
    refusals = await conn.fetchval(
        "SELECT count(*) FROM decision_attempts WHERE round_id = $1 AND reviewer = $2",
        rid,
        OUTSIDER,
    )
    summary = f"Round `{rid}` review ended"
    return RoundFacts(
        round_id=rid,
        expected=plan.expected,
        state=status.get("state") or ledger_state or "not started",
        waiting=reason,
        error=status.get("error"),
        proposals=proposals,
        decided=set(plan.decided),
        votes=dict(plan.votes),
        decisions=decisions,
        settlings=settlings,
        sequences=sequences,
        chain_problems=[str(b) for b in await ledger.verify_chain(rid)],
        messages={p: per_proposal[p] for p in proposals},
        deleted=set(plan.deleted),
        summaries=sum(1 for m in messages if str(m.get("text", "")).startswith(summary)),
        fine_tune_jobs=jobs[rid[:40]],
        refused_clicks=plan.outsider_clicks,
        refusals_recorded=int(refusals or 0),
    )


async def continue_as_new_times(stack: ChaosStack) -> list[float]:
    """When rounds continued as new (their `history` transitions), as epoch seconds."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch("SELECT at FROM transitions WHERE entity = 'history'")
    finally:
        await conn.close()
    return [r["at"].timestamp() for r in rows]
