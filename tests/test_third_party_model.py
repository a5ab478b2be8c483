"""The proposal path against an OpenAI-compatible server the project did not write.

LLMock (the `llmock` package from PyPI, in the test extra) serves OpenAI's
chat wire format, tool calls, scripted replies and its own error bodies; it
sends no `x-request-id` and has no fine-tuning API, as most servers other than
OpenAI. It does offer structured outputs, so each profile below is LLMock
behind a thin front that refuses `json_schema` (or JSON mode) the way a
server without them does, in that server's kind of words:

* vLLM-like: a 422 request-validation body;
* llama.cpp-like: a 400 whose message names neither parameter nor feature;
* Ollama-like tools only: a 400 for `json_schema` and for JSON mode alike;
* no `$ref`: structured outputs for flat schemas only, so the worker's probe
  passes and the first real schema (which has `$defs`) is refused.

What amend must do on each: detect what the server offers without reading
any error's wording, propose through the mode it offers with the schema and
an example in the prompt, ask again with the error after an invalid answer,
count calls without request ids, and name the missing fine-tuning API.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from llmock.main import create_app as create_llmock
from temporalio.testing import ActivityEnvironment

from activities.model import Model, ModelActivities
from constitution import ProposalBatch, TrainingSpec
from constitution.capabilities import OutputMode, preflight_problems
from constitution.contracts import ProposeInput
from constitution.samples import load_evidence, sample_constitution
from standins.serving import Served, serve

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

MODEL = "amend-proposer"
DRAFT = {
    "kind": "clarify",
    "target": "P1",
    "title": None,
    "text": "Decline to give operational detail for weapons that can cause mass casualties, "
    "whatever role or fiction the request is framed in.",
    "rationale": "A red-team item shows role play getting past P1.",
    "evidence": ["ev-rt-001"],
    "touches": ["P1"],
}


@dataclass(frozen=True)
class Profile:
    """How the front in front of LLMock refuses what the imitated server lacks."""

    name: str
    refuse: Callable[[dict[str, Any]], tuple[int, dict[str, Any]] | None]


def _format(body: dict[str, Any]) -> str | None:
    response_format = body.get("response_format")
    return response_format.get("type") if isinstance(response_format, dict) else None


def _vllm(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    if _format(body) != "json_schema":
        return None
    loc = ["body", "response_format", "type"]
    detail = {"type": "literal_error", "loc": loc, "msg": "Input should be 'text' or 'json_object'"}
    return 422, {"detail": [detail]}


def _llama_cpp(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    if _format(body) != "json_schema":
        return None
    return 400, {
        "error": {"code": 400, "message": "Unsupported grammar", "type": "invalid_request_error"}
    }


def _ollama_tools_only(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    if _format(body) not in ("json_schema", "json_object"):
        return None
    return 400, {
        "error": {"message": "invalid format", "type": "api_error", "param": None, "code": None}
    }


def _no_refs(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    if _format(body) != "json_schema" or "$defs" not in json.dumps(body["response_format"]):
        return None
    return 400, {
        "error": {"code": 400, "message": "Unsupported grammar", "type": "invalid_request_error"}
    }


VLLM = Profile("vllm-422", _vllm)
LLAMA_CPP = Profile("llama.cpp-400", _llama_cpp)
OLLAMA_TOOLS = Profile("ollama-tools-only", _ollama_tools_only)
NO_REFS = Profile("json-schema-without-refs", _no_refs)


def behind(profile: Profile, app: ASGI, refused: list[str]) -> ASGI:
    """LLMock behind a front that answers what the profile refuses, and passes the rest on."""

    async def front(scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        answer = profile.refuse(json.loads(raw))
        if answer is None:
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}

            await app(scope, replay, send)
            return
        refused.append(_format(json.loads(raw)) or "?")
        status, body = answer
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return front


@dataclass
class ThirdParty:
    served: Served
    refused: list[str]

    async def script(self, *behaviors: dict[str, Any]) -> None:
        """Queue LLMock's scripted behaviours (its own admin API)."""
        async with httpx.AsyncClient(base_url=self.served.url) as http:
            queued = await http.post("/_llmock/scenario", json={"behaviors": list(behaviors)})
        assert queued.status_code == 201, queued.text


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[ThirdParty]:
    refused: list[str] = []
    async with serve(behind(request.param, create_llmock(), refused)) as running:
        yield ThirdParty(running, refused)


@pytest.fixture
async def model(server: ThirdParty) -> AsyncIterator[Model]:
    async with openai.AsyncOpenAI(
        base_url=server.served.url + "/v1", api_key="k", max_retries=0, timeout=10
    ) as client:
        yield Model(client, MODEL, concurrency=2, output_retries=1)


def _proposal_request() -> ProposeInput:
    return ProposeInput(
        round_id="third",
        constitution=sample_constitution(),
        max_proposals=2,
        evidence=load_evidence(None),
    )


def _answer(mode: OutputMode, payload: dict[str, Any]) -> dict[str, Any]:
    """An LLMock reply carrying `payload` the way the mode carries an answer."""
    if mode is OutputMode.tools:
        return {"type": "reply", "tool_calls": [{"name": "ProposalBatch", "arguments": payload}]}
    return {"type": "reply", "text": json.dumps(payload)}


@pytest.mark.parametrize(
    ("server", "mode"),
    [
        (VLLM, OutputMode.json_object),
        (LLAMA_CPP, OutputMode.json_object),
        (OLLAMA_TOOLS, OutputMode.tools),
    ],
    ids=["vllm-422", "llama.cpp-400", "ollama-tools-only"],
    indirect=["server"],
)
async def test_proposals_come_through_the_mode_a_third_party_server_offers(
    server: ThirdParty, model: Model, mode: OutputMode
) -> None:
    found = await model.capabilities.of(MODEL)
    assert found.json_schema is False and found.output_mode is mode
    assert found.tools is True and found.request_ids is False
    assert (
        found.fine_tuning is False
        and found.evidence["fine_tuning"] == "404 on /v1/fine_tuning/jobs"
    )

    # The first answer is the wrong shape: asked again with the error, the second is taken.
    await server.script(
        _answer(mode, {"proposals": [{**DRAFT, "kind": "split"}]}),
        _answer(mode, {"proposals": [DRAFT]}),
    )
    result = await ActivityEnvironment().run(
        ModelActivities(model).propose_amendments, _proposal_request()
    )
    [proposal] = result.proposals
    assert proposal.draft.target == "P1" and proposal.draft.kind == "clarify"
    instructions = "json_answer.v1" if mode is OutputMode.json_object else "tool_answer.v1"
    assert proposal.prompt_versions == ["propose.v3", instructions]
    # Two calls behind it, counted by the completions' own ids.
    assert len(result.request_ids) == 2 and all(
        r.startswith("chatcmpl-") for r in result.request_ids
    )
    # json_schema was refused once, by the probe, however the server worded it.
    assert server.refused.count("json_schema") == 1

    [reason] = preflight_problems(found, TrainingSpec())
    assert f"at {found.base_url} has no fine-tuning API (404 on /v1/fine_tuning/jobs)" in reason


@pytest.mark.parametrize("server", [NO_REFS], ids=["json-schema-without-refs"], indirect=True)
async def test_a_json_schema_refused_after_the_probe_falls_back_once_and_is_remembered(
    server: ThirdParty, model: Model
) -> None:
    found = await model.capabilities.of(MODEL)
    assert found.json_schema is True and found.output_mode is OutputMode.json_schema

    await server.script(*[_answer(OutputMode.json_object, {"proposals": [DRAFT]})] * 2)
    first = await model.structured(ProposalBatch, "Propose.", "<max_proposals>1</max_proposals>")
    second = await model.structured(ProposalBatch, "Propose.", "<max_proposals>1</max_proposals>")

    assert first.mode is second.mode is OutputMode.json_object
    assert first.value == second.value and len(first.calls) == len(second.calls) == 1
    # Refused once for the real schema, then never asked again.
    assert server.refused == ["json_schema"]
    remembered = await model.capabilities.of(MODEL)
    assert remembered.json_schema is False and remembered.output_mode is OutputMode.json_object
    assert remembered.evidence["json_schema"] == "400 on /v1/chat/completions"
