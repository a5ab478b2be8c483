"""What a model is shown in each output mode, what a round needs of a model
server, and how long a rate-limited round waits: pure, without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion
from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from activities import structured
from activities.model import Model
from activities.prompts import Prompt
from constitution import Grade, PreferenceJudgement, ProposalBatch, TrainingSpec
from constitution.capabilities import OutputMode, ServerCapabilities, preflight_problems
from constitution.contracts import RateLimitWait, Waiting
from constitution.errors import ErrorType
from constitution.findings import ConflictAnalysis, ImpactPreview

STRUCTURED_PROMPTS: list[tuple[str, type[BaseModel]]] = [
    ("propose.v3", ProposalBatch),
    ("conflicts.v2", ConflictAnalysis),
    ("grade.v2", Grade),
    ("prefer.v2", PreferenceJudgement),
]


@pytest.mark.parametrize(
    ("name", "schema"), STRUCTURED_PROMPTS, ids=[n for n, _ in STRUCTURED_PROMPTS]
)
def test_every_structured_prompt_carries_an_example_that_its_schema_accepts(
    name: str, schema: type[BaseModel]
) -> None:
    example = Prompt.load(name).example
    assert example is not None, f"{name} has no <example>"
    schema.model_validate(example)


def test_json_mode_shows_the_model_the_schema_it_must_answer_in() -> None:
    system = structured.system_message(OutputMode.json_object, "Propose amendments.", ProposalBatch)
    head, schema_line, schema_json = system.rsplit("\n", 2)
    assert head.startswith("Propose amendments.\n\n" + structured.JSON_ANSWER.text.rstrip())
    assert schema_line == "Schema: ProposalBatch"
    shown = json.loads(schema_json)
    assert shown == structured.tool_for(ProposalBatch)["function"]["parameters"]
    draft = shown["$defs"]["ProposalDraft"]
    assert set(draft["required"]) == {
        "kind",
        "target",
        "title",
        "text",
        "rationale",
        "evidence",
        "touches",
    }
    assert structured.request_options(OutputMode.json_object, ProposalBatch) == {
        "response_format": {"type": "json_object"}
    }


def test_tool_calling_offers_one_function_named_after_the_schema_and_asks_for_it() -> None:
    options = structured.request_options(OutputMode.tools, Grade)
    [tool] = options["tools"]
    assert tool["function"]["name"] == "Grade" and "strict" not in tool["function"]
    assert set(tool["function"]["parameters"]["properties"]) == {"harmful", "refused", "reason"}
    assert options["tool_choice"] == {"type": "function", "function": {"name": "Grade"}}
    system = structured.system_message(OutputMode.tools, "Grade it.", Grade)
    assert system.endswith("\nTool: Grade") and structured.TOOL_ANSWER.text.rstrip() in system


def test_structured_outputs_send_the_task_prompt_as_it_is() -> None:
    assert structured.system_message(OutputMode.json_schema, "Grade it.", Grade) == "Grade it."


def _capabilities(**offered: object) -> ServerCapabilities:
    found = ServerCapabilities(base_url="http://llm:8000/v1", model="m", **offered)
    return found.model_copy(update={"output_mode": found.best_mode()})


def test_modes_are_preferred_structured_outputs_first_then_json_mode_then_tools() -> None:
    assert (
        _capabilities(json_schema=True, json_object=True, tools=True).output_mode
        is OutputMode.json_schema
    )
    assert (
        _capabilities(json_schema=False, json_object=True, tools=True).output_mode
        is OutputMode.json_object
    )
    assert (
        _capabilities(json_schema=False, json_object=False, tools=True).output_mode
        is OutputMode.tools
    )
    assert _capabilities(json_schema=False, json_object=False, tools=False).output_mode is None
    both = _capabilities(json_schema=True, json_object=False, tools=True)
    assert both.best_mode(after=OutputMode.json_schema) is OutputMode.tools


def test_a_server_without_fine_tuning_is_named_with_what_to_do() -> None:
    found = _capabilities(
        json_object=True, fine_tuning=False, evidence={"fine_tuning": "404 on /v1/fine_tuning/jobs"}
    )
    assert preflight_problems(found, TrainingSpec()) == [
        "the model server at http://llm:8000/v1 has no fine-tuning API (404 on "
        "/v1/fine_tuning/jobs); set training.backend: http, or use a server with fine-tuning"
    ]
    assert preflight_problems(found, TrainingSpec(backend="http")) == []


def test_a_server_without_batches_or_any_output_mode_is_refused_for_each() -> None:
    found = _capabilities(
        json_schema=False, json_object=False, tools=False, fine_tuning=True, batch_api=False
    )
    problems = preflight_problems(found, TrainingSpec(use_batch_api=True))
    assert len(problems) == 2
    assert "none of structured outputs (json_schema), JSON mode or tool calling" in problems[0]
    assert "no Batch API (404 on /v1/batches); set training.use_batch_api: false" in problems[1]


def _rate_limited(headers: dict[str, str]) -> openai.RateLimitError:
    request = httpx.Request("POST", "http://llm/v1/chat/completions")
    return openai.RateLimitError(
        "rate limited", response=httpx.Response(429, headers=headers, request=request), body=None
    )


@pytest.mark.parametrize(
    ("retry_after", "waited", "said"),
    [
        ("600", 120, "asked to wait 600s, capped at 120s (AMEND_MODEL_RETRY_AFTER_CAP_S)"),
        ("7", 7, "asked to wait 7s"),
    ],
    ids=["beyond-the-cap", "within-the-cap"],
)
async def test_a_retry_after_is_waited_as_asked_up_to_the_cap_and_says_so(
    retry_after: str, waited: float, said: str
) -> None:
    async with openai.AsyncOpenAI(base_url="http://llm/v1", api_key="k") as client:
        model = Model(client, "m", retry_after_cap=timedelta(seconds=120))

        async def limited() -> None:
            raise _rate_limited({"retry-after": retry_after})

        with pytest.raises(ApplicationError) as caught:
            await model.call(limited)
    error = caught.value
    assert error.type == ErrorType.model_rate_limited and not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=waited)
    wait = RateLimitWait.model_validate(error.details[0])
    assert (wait.wait_s, wait.asked_s) == (waited, float(retry_after))
    assert wait.reason.endswith(said)


def test_a_wait_reads_as_what_the_round_waits_on_and_until_when() -> None:
    waiting = Waiting(on="model", until=datetime(2026, 3, 1, 12, 30, tzinfo=UTC), reason="429")
    assert waiting.describe() == "waiting on model until 2026-03-01 12:30:00 UTC (429)"


def test_an_impact_preview_that_could_not_be_made_says_why() -> None:
    preview = ImpactPreview.unavailable_because("the grader answered no grade")
    assert preview.samples == [] and preview.unavailable == "the grader answered no grade"
    assert preview.summary == "Impact preview unavailable: the grader answered no grade"


def test_structured_outputs_send_the_schema_the_client_parse_would_send() -> None:
    from openai.lib._parsing._completions import type_to_response_format_param

    options = structured.request_options(OutputMode.json_schema, ProposalBatch)

    assert options == {"response_format": type_to_response_format_param(ProposalBatch)}


def test_a_schema_built_once_is_handed_to_each_request_as_its_own_copy() -> None:
    first = structured.response_format(Grade)
    first["json_schema"]["schema"]["properties"].clear()

    assert set(structured.response_format(Grade)["json_schema"]["schema"]["properties"]) == {
        "harmful",
        "refused",
        "reason",
    }


def _completion(content: str, finish_reason: str) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason,
                    "message": {"role": "assistant", "content": content},
                }
            ],
        }
    )


def test_a_structured_output_stopped_by_the_content_filter_fails_as_parse_fails_it() -> None:
    answer = '{"harmful": false, "refused": true, "reason": "filtered"}'

    with pytest.raises(openai.ContentFilterFinishReasonError):
        structured.read_answer(OutputMode.json_schema, Grade, _completion(answer, "content_filter"))
    assert structured.read_answer(OutputMode.json_schema, Grade, _completion(answer, "stop")) == (
        Grade(harmful=False, refused=True, reason="filtered")
    )


@pytest.mark.parametrize("mode", [OutputMode.json_schema, OutputMode.json_object, OutputMode.tools])
async def test_a_body_sent_without_the_client_transform_is_what_the_transform_makes_of_it(
    mode: OutputMode,
) -> None:
    from openai._utils import async_maybe_transform
    from openai.types.chat import completion_create_params

    body = {
        "model": "m",
        "messages": structured.messages(mode, "Grade it.", "<response>ok</response>", Grade),
        "temperature": 0.7,
        "seed": 3,
        **structured.request_options(mode, Grade),
    }
    transformed = await async_maybe_transform(
        body, completion_create_params.CompletionCreateParamsNonStreaming
    )

    assert transformed == body


def _answering(headers: dict[str, str], seen: list[dict[str, object]]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        completion = _completion("an answer", "stop").model_dump(mode="json")
        return httpx.Response(200, json=completion | {"id": "chatcmpl-1"}, headers=headers)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("headers", "named"),
    [({"x-request-id": "req_9"}, "req_9"), ({}, "chatcmpl-1")],
    ids=["request-id", "completion-id"],
)
async def test_a_completion_is_posted_as_built_and_named_by_the_server(
    headers: dict[str, str], named: str
) -> None:
    seen: list[dict[str, object]] = []
    http = _answering(headers, seen)
    async with openai.AsyncOpenAI(base_url="http://llm/v1", api_key="k", http_client=http) as api:
        answer, call = await Model(api, "m").text_with_id("Be brief.", "Hi", seed=2)

    assert (answer, call) == ("an answer", named)
    assert seen == [
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ],
            "seed": 2,
        }
    ]
