"""Chat completions and the models list of the model stand-in.

Every model call amend makes arrives here: proposals, conflict analysis,
preference judgements, grades, critiques, revisions and answers. The request's
`response_format` names the task (see `task_of`), `standins.model.behaviour`
scripts the answer, and this module wraps it in a `chat.completion` with
usage, spoiling it first when a fault is queued for it. Each completion says it
is scripted in its `system_fingerprint`.

The models list names the configured models and every `ft:` model a
fine-tuning job has made, so a client can check that a trained model exists.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from standins.model.behaviour import STRUCTURED_TASKS, TEXT_TASK, script_structured, script_text
from standins.model.config import ScriptedModelConfig
from standins.model.state import ModelServerState, ServerState
from standins.model.wire import (
    StandInAPIError,
    bad_request,
    contract_error,
    estimate_tokens,
    read_json,
)

SYSTEM_FINGERPRINT = "amend-scripted-stand-in"
"""Stamped on every chat completion so nobody mistakes scripted output for a model's."""

MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
"""The roles OpenAI accepts in `messages`; any other is a 400."""

_SCHEMA_LINE = re.compile(r"^\s*Schema:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)

router = APIRouter()


class DroppedResponse(Response):
    """The `drop` fault: a response that announces a body and never sends it.

    uvicorn then closes the connection ("ASGI callable returned without
    completing response."), which clients see as a dropped connection.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the status line and headers, then stop."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, state: ServerState) -> Response:
    """Answer one chat completion, or fail it as the next queued fault says.

    The transport faults (`rate_limit`, `server_error`, `drop`, `timeout`) act
    here, before or around the answer; the answer faults act in `complete`.
    """
    fault = state.faults.popleft() if state.faults else None
    if fault is not None:
        state.faults_served[fault] += 1
    if fault == "rate_limit":
        wait = f"{state.retry_after_s:g}"
        raise StandInAPIError(
            429,
            "Rate limit reached for requests (scripted stand-in fault). "
            f"Please try again in {wait}s.",
            type_="requests",
            code="rate_limit_exceeded",
            headers={
                "retry-after": wait,
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{wait}s",
            },
        )
    if fault == "server_error":
        raise StandInAPIError(
            500,
            "The server had an error while processing your request. Sorry about that! "
            "(scripted stand-in fault)",
            type_="server_error",
        )
    if fault == "drop":
        return DroppedResponse()
    body = await read_json(request)
    state.sample_request(body)
    if fault == "timeout":
        await hold_unless_disconnected(request, state.config.timeout_fault_s)
    return JSONResponse(await complete(state, body, fault))


async def complete(
    state: ModelServerState, body: dict[str, Any], fault: str | None
) -> dict[str, Any]:
    """One chat completion's answer, shared by the endpoint and the batches.

    It is what `/v1/chat/completions` returns and what a batch writes for each
    of its requests, so both are scripted, counted and spoiled alike.

    Args:
        state: The stand-in's state, counted and consulted for task faults.
        body: The chat completion request.
        fault: The fault already taken for this request, if any; a fault
            aimed at the request's task is taken here when there is none.
    """
    config = state.config
    model, messages = validate_chat(body)
    system_text = "\n".join(
        message_text(m.get("content")) for m in messages if m["role"] in ("system", "developer")
    )
    user_text = "\n".join(message_text(m.get("content")) for m in messages if m["role"] == "user")
    last_user = next(
        (message_text(m.get("content")) for m in reversed(messages) if m["role"] == "user"), ""
    )
    state.formats["tools" if body.get("tools") else response_format_type(body) or "text"] += 1
    refuse_what_is_off(config, body)
    task = task_of(body, system_text, messages)
    if fault is None and state.task_faults.get(task):
        fault = state.task_faults[task].popleft()
        state.faults_served[fault] += 1
    state.tasks[task] += 1
    state.models[model] += 1
    if config.latency_s:
        async with state.slots:
            state.in_flight += 1
            state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            try:
                await asyncio.sleep(config.latency_s)
            finally:
                state.in_flight -= 1

    if task == TEXT_TASK:
        content = script_text(
            model,
            system_text,
            user_text,
            last_user,
            overcautious=model in state.overcautious_models,
            seed=body.get("seed") if isinstance(body.get("seed"), int) else None,
            temperature=number_or_none(body.get("temperature")),
        )
    else:
        content = script_structured(task, user_text, obey_injection=fault == "obey_injection")

    finish_reason = "tool_calls" if body.get("tools") else "stop"
    refusal: str | None = None
    reply: str | None = content
    if fault == "malformed_json":
        reply = '{"proposals": [{"kind": "add", "title": "Unfinished'
    elif fault == "wrong_shape":
        reply = json.dumps({"items": [], "note": "scripted stand-in: wrong shape on purpose"})
    elif fault == "refusal":
        reply, refusal = None, "I'm sorry, but I can't help with that request."
    elif fault == "length":
        reply, finish_reason = content[: max(1, len(content) // 2)], "length"
    tool_calls: list[dict[str, Any]] | None = None
    if body.get("tools") and reply is not None:
        # The answer is the arguments of a call to the function named after the task.
        call_id = state.new_id("call_", 24, task, reply)
        tool_calls = [
            {"id": call_id, "type": "function", "function": {"name": task, "arguments": reply}}
        ]
        reply = None
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(max_tokens, int) and reply and estimate_tokens(reply) > max_tokens:
        reply, finish_reason = reply[: max_tokens * 4], "length"

    prompt_tokens = sum(estimate_tokens(message_text(m.get("content"))) for m in messages)
    completion_tokens = estimate_tokens(reply or refusal or content if tool_calls else "")
    requested_n = body.get("n")
    n = requested_n if isinstance(requested_n, int) and requested_n > 0 else 1
    return {
        "id": state.new_id("chatcmpl-", 29, model, json.dumps(messages, sort_keys=True)),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {
                    "role": "assistant",
                    "content": reply,
                    "refusal": refusal,
                    "annotations": [],
                    **({"tool_calls": tool_calls} if tool_calls else {}),
                },
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            for index in range(n)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens * n,
            "total_tokens": prompt_tokens + completion_tokens * n,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def number_or_none(value: Any) -> float | None:
    """A request's numeric parameter, or None when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def model_json(model_id: str) -> dict[str, Any]:
    """The Model object; fine-tuned models are owned by amend, the rest by the stand-in."""
    owner = "amend" if model_id.startswith("ft:") else "amend-stand-in"
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


@router.get("/v1/models")
async def list_models(state: ServerState) -> dict[str, Any]:
    """The configured models, then every model fine-tuning has made."""
    names = list(dict.fromkeys([*state.config.models, *state.fine_tuned_models]))
    return {"object": "list", "data": [model_json(name) for name in names]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, state: ServerState) -> dict[str, Any]:
    """One model, or OpenAI's 404; `ft:` names contain colons, hence the path match."""
    if model_id not in state.config.models and model_id not in state.fine_tuned_models:
        raise StandInAPIError(
            404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
        )
    return model_json(model_id)


def message_text(content: Any) -> str:
    """Text of a message's content, whether a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def validate_chat(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The model and messages of a chat request, refused with OpenAI's 400s when malformed."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("Missing required parameter: 'messages'.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in MESSAGE_ROLES:
            raise bad_request(
                f"Invalid value for 'messages[{index}].role'.", param=f"messages[{index}].role"
            )
    if body.get("stream"):
        raise bad_request(
            "The scripted stand-in does not stream; send stream=false.", param="stream"
        )
    return model, messages


def response_format_type(body: dict[str, Any]) -> str | None:
    """The `response_format` type a request asks for, if it names one."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and isinstance(response_format.get("type"), str):
        return str(response_format["type"])
    return None


def refuse_what_is_off(config: ScriptedModelConfig, body: dict[str, Any]) -> None:
    """Refuse a request for a feature the stand-in is configured without, worded as
    `config.refusal_wording` says servers word it."""
    kind = response_format_type(body)
    if kind == "json_schema" and not config.structured_outputs:
        raise refusal(config, "response_format", "type", "json_schema", "'text' or 'json_object'")
    if kind == "json_object" and not config.json_mode:
        raise refusal(config, "response_format", "type", "json_object", "'text' or 'json_schema'")
    if body.get("tools") and not config.tool_calling:
        raise refusal(config, "tools", None, "tools", "no tools")


def refusal(
    config: ScriptedModelConfig, param: str, field: str | None, value: str, allowed: str
) -> StandInAPIError:
    """The answer to a request for something this server lacks, in the configured wording."""
    if config.refusal_wording == "unprocessable":
        loc = ["body", param, *([field] if field else [])]
        detail = {"type": "literal_error", "loc": loc, "msg": f"Input should be {allowed}"}
        return StandInAPIError(
            422, f"Input should be {allowed}", body={"detail": [{**detail, "input": value}]}
        )
    if config.refusal_wording == "plain":
        message = "the loaded model cannot constrain its output that way (scripted stand-in)"
        return StandInAPIError(400, message, body={"error": {"code": 400, "message": message}})
    where = f"'{param}' of type '{value}'" if field else f"'{param}'"
    return bad_request(
        f"Invalid parameter: {where} is not supported with this model (scripted stand-in).",
        param=param,
    )


def tool_task(body: dict[str, Any]) -> str:
    """The task of a tool-calling request: the function it asks to be called."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
    else:
        offered = [t.get("function", {}).get("name") for t in body["tools"] if isinstance(t, dict)]
        name = offered[0] if len(offered) == 1 else None
    if not isinstance(name, str) or name not in STRUCTURED_TASKS:
        raise bad_request(
            f"The scripted stand-in calls one function named after a task it knows "
            f"({', '.join(STRUCTURED_TASKS)}); it was offered {name!r}.",
            param="tool_choice",
            code="unknown_task",
        )
    return name


def task_of(body: dict[str, Any], system_text: str, messages: list[dict[str, Any]]) -> str:
    """The scripted task a request asks for, from its tools or response_format.

    A tool-calling request names its task as the function to call; a
    `json_schema` names its task; JSON mode names it on a `Schema: <Name>`
    line of the system message; no format, or `text`, is a plain-text task.
    """
    if body.get("tools"):
        return tool_task(body)
    response_format = body.get("response_format")
    if response_format is None:
        return TEXT_TASK
    if not isinstance(response_format, dict):
        raise bad_request("Invalid type for 'response_format'.", param="response_format")
    kind = response_format.get("type")
    if kind == "text":
        return TEXT_TASK
    if kind == "json_schema":
        schema = response_format.get("json_schema")
        name = schema.get("name") if isinstance(schema, dict) else None
        if not isinstance(name, str) or not name:
            raise bad_request(
                "Missing required parameter: 'response_format.json_schema.name'.",
                param="response_format.json_schema.name",
            )
    elif kind == "json_object":
        everything = " ".join(message_text(m.get("content")) for m in messages).lower()
        if "json" not in everything:
            raise bad_request(
                "'messages' must contain the word 'json' in some form, to use 'response_format' "
                "of type 'json_object'.",
                param="messages",
            )
        match = _SCHEMA_LINE.search(system_text)
        if match is None:
            raise contract_error(
                "json_object mode needs a 'Schema: <Name>' line in the system message"
            )
        name = match.group(1)
    else:
        raise bad_request(
            f"Invalid value for 'response_format.type': {kind!r}.", param="response_format.type"
        )
    if name not in STRUCTURED_TASKS:
        raise bad_request(
            f"The scripted stand-in has no script for task {name!r}; it knows "
            f"{', '.join(STRUCTURED_TASKS)}.",
            param="response_format",
            code="unknown_task",
        )
    return name


async def hold_unless_disconnected(request: Request, seconds: float) -> None:
    """Sleep up to `seconds`, returning early once the client hangs up.

    So a timed-out test does not keep the server (and its shutdown) busy.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.05, remaining))
