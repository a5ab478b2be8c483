"""Proposal generation throughput against the model server's own capacity.

A real round on the Temporal dev server reads a large evidence set packed into
many small chunks, one proposal call per chunk, all started at once by the
workflow and bounded by the worker's model concurrency. The model is the
stand-in with a fixed latency and a concurrency limit equal to the worker's,
so its capacity is exactly `limit / latency` requests per second: the floor.
Throughput is counted from the stand-in's own stats (completed proposal calls
over the time between the first and the last), so Slack posting and review,
which follow generation, are not in it. The stand-in runs in the benchmark's
own process, so its CPU time per call counts against the figure; half a second
of latency, short for a real model, keeps that share small (0.98 here; at 0.2 s
it is about 0.91 on this two-core machine).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import BenchEnv, Figure, at_least
from standins.model.app import create_app
from standins.model.config import ScriptedModelConfig
from standins.serving import serve

CHUNKS = 80
LIMIT = 8
LATENCY_S = 0.5


def _evidence(path: Path) -> None:
    """One red-team item per chunk: the budget fits one item, no more."""
    lines = [
        json.dumps(
            {
                "id": f"ev-bench-{n}",
                "kind": "red_team",
                "summary": f"Transcript {n}: the model gave quantities it should not have.",
                "detail": {"what_went_wrong": "Quantities instead of only the warning. " * 3},
                "principles": ["P1"],
            }
        )
        for n in range(CHUNKS)
    ]
    path.write_text("\n".join(lines) + "\n")


async def _proposal_calls(http: httpx.AsyncClient) -> int:
    stats = (await http.get("/_standin/stats")).json()
    return int(stats["tasks"].get("ProposalBatch", 0))


async def run(env: BenchEnv) -> list[Figure]:
    evidence = env.workdir / "bench-evidence.jsonl"
    _evidence(evidence)
    config = ScriptedModelConfig(latency_s=LATENCY_S, max_concurrency=LIMIT)
    async with serve(create_app(config)) as model:
        settings: dict[str, Any] = {
            "model_base_url": f"{model.url}/v1",
            "model_concurrency": LIMIT,
            "evidence_budget_tokens": 100,
            "evidence_max_chunks": CHUNKS,
            "impact_sample_size": 0,
        }
        async with env.stack(**settings) as bench, httpx.AsyncClient(base_url=model.url) as http:
            token = {"Authorization": f"Bearer {bench.stack.operator_token}"}
            async with httpx.AsyncClient(headers=token) as gateway:
                started = await gateway.post(
                    f"{bench.stack.gateway_url}/api/rounds",
                    json={
                        "round_id": "bench-proposals",
                        "reviewers": ["U0BENCH"],
                        "evidence_files": [str(evidence)],
                        "max_proposals": 50,
                    },
                )
                started.raise_for_status()
            first = last = None
            done = 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                done = await _proposal_calls(http)
                now = time.monotonic()
                if done >= 1 and first is None:
                    first = (now, done)
                if done >= CHUNKS:
                    last = (now, done)
                    break
                await asyncio.sleep(0.02)
            # Let the round finish checking and posting before it is cancelled.
            while time.monotonic() < deadline:
                row = await bench.ledger.get_round("bench-proposals")
                if row is not None and row.state not in ("created", "proposing"):
                    break
                await asyncio.sleep(0.1)
            await bench.temporal.get_workflow_handle("round-bench-proposals").cancel()
    if first is None or last is None:
        raise RuntimeError(f"the round made {done} of {CHUNKS} proposal calls in 60 s")
    throughput = (last[1] - first[1]) / (last[0] - first[0])
    capacity = LIMIT / LATENCY_S
    return [
        Figure(
            name="proposal generation throughput",
            value=throughput,
            unit="calls/s",
            floor=capacity,
            floor_name=f"model server capacity ({LIMIT} at once / {LATENCY_S:g} s)",
            target=at_least(0.9),
            note=f"{CHUNKS} evidence chunks, one proposal call each, through the workflow",
        )
    ]
