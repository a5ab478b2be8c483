"""What a model server without structured outputs costs, against one with them.

The model client (`activities.model.Model`) asks the stand-in model for
proposal batches, once configured as OpenAI (structured outputs) and once as a
server with JSON mode only (json_schema refused with a 422, as vLLM's front
end does). The stand-in adds a fixed latency per completion, as a server does,
and runs in this process.

* Requests per answer on the JSON-mode-only server, after the worker's probes:
  the floor is one. Before capabilities were detected every structured call
  tried json_schema first and was refused, two requests per answer.
* Time per answer in JSON mode (schema and example in the prompt, the answer
  validated here) against structured outputs on the full server: the cost of
  doing the server's work on this side.
* Detecting a server's capabilities (three chat probes and three list
  requests), once per worker and model, against one structured answer.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import httpx
import openai

from activities.model import Model
from bench.harness import BenchEnv, Figure, alternating, at_most
from constitution import ProposalBatch
from constitution.samples import load_evidence, sample_constitution
from standins.model.app import create_app
from standins.model.config import ScriptedModelConfig
from standins.serving import Served, serve

ANSWERS = 30
DETECTIONS = 5
LATENCY_S = 0.02
FULL = ScriptedModelConfig(latency_s=LATENCY_S)
JSON_MODE_ONLY = ScriptedModelConfig(
    latency_s=LATENCY_S, structured_outputs=False, refusal_wording="unprocessable"
)


def _user() -> str:
    principles = [p.model_dump(mode="json") for p in sample_constitution().principles]
    evidence = [e.model_dump(mode="json") for e in load_evidence(None)]
    return (
        f"<constitution>{json.dumps(principles)}</constitution>\n"
        f"<evidence>{json.dumps(evidence)}</evidence>\n<max_proposals>3</max_proposals>"
    )


async def _chat_requests(served: Served) -> int:
    async with httpx.AsyncClient(base_url=served.url) as http:
        stats: dict[str, Any] = (await http.get("/_standin/stats")).json()
    return int(stats["requests"].get("POST /v1/chat/completions", 0))


async def run(env: BenchEnv) -> list[Figure]:
    user = _user()
    async with (
        serve(create_app(FULL)) as full,
        serve(create_app(JSON_MODE_ONLY)) as json_only,
        openai.AsyncOpenAI(base_url=f"{full.url}/v1", api_key="k", max_retries=0) as full_client,
        openai.AsyncOpenAI(
            base_url=f"{json_only.url}/v1", api_key="k", max_retries=0
        ) as json_client,
    ):
        structured_model = Model(full_client, "amend-proposer")
        await structured_model.capabilities.of("amend-proposer")  # warms the client up
        detections = []
        for _ in range(DETECTIONS):
            json_model = Model(json_client, "amend-proposer")  # a new worker's cache
            started = time.perf_counter()
            await json_model.capabilities.of("amend-proposer")
            detections.append(time.perf_counter() - started)
        detection_s = statistics.median(detections)
        probes = await _chat_requests(json_only)

        answered = 0

        async def in_json_mode(_: int) -> None:
            nonlocal answered
            await json_model.structured(ProposalBatch, "Propose amendments.", user)
            answered += 1

        async def with_structured_outputs(_: int) -> None:
            await structured_model.structured(ProposalBatch, "Propose amendments.", user)

        json_times, structured_times = await alternating(
            in_json_mode, with_structured_outputs, repeat=ANSWERS
        )
        per_answer = (await _chat_requests(json_only) - probes) / answered
    json_s, structured_s = json_times.median, structured_times.median
    return [
        Figure(
            name="requests per structured answer, server without json_schema",
            value=per_answer,
            unit="requests",
            floor=1.0,
            floor_name="one request per answer",
            target=at_most(1.0),
            note="proposal batches after the worker's probes; 2 before detection",
        ),
        Figure(
            name="structured answer in JSON mode",
            value=json_s * 1000,
            unit="ms",
            floor=structured_s * 1000,
            floor_name="the same answer with structured outputs",
            target=at_most(1.3),
            note=f"median of {ANSWERS}; stand-in latency {LATENCY_S * 1000:g} ms a completion",
        ),
        Figure(
            name="capability detection, once per worker and model",
            value=detection_s * 1000,
            unit="ms",
            floor=structured_s * 1000,
            floor_name="one structured answer",
            target=at_most(8),
            note=f"median of {DETECTIONS}: three chat probes and three list requests",
        ),
    ]
