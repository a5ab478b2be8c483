"""How a structured answer is asked for, and read, in each output mode.

The model sees one schema in every mode: the strict JSON Schema the `openai`
client sends for structured outputs (`pydantic_function_tool`'s parameters,
which is the same `to_strict_json_schema`). With structured outputs the server
holds the answer to it; with JSON mode the system message carries it after a
`Schema: <Name>` line; with tool calling it is the parameters of the one
function offered, named after the schema. The task's own prompt ends with an
example answer (`activities.prompts`), so in every mode a model has the shape
and an instance of it. Pydantic puts class docstrings into the schema as
descriptions; the classes it is built from (`ProposalBatch`, `ProposalDraft`,
`ConflictAnalysis`, `Grade`, ...) keep theirs short and meant for the model.

Answers are validated here with pydantic in every mode; what fails validation
is asked again by `activities.model.Model.structured` with the error.

A schema's JSON Schema is built once per class (`_function_json`), not per
request: the `openai` client's `chat.completions.parse` builds it (pydantic's
`model_json_schema` made strict) on every call, and with its parsed-completion
construction that was 1.1 ms of the worker's CPU per structured call
(2.4 ms against 1.3 ms through `create` with the schema built once, measured
on the 2-core dev machine against the model stand-in; an evaluation grades
every answer, about half of a round's ~1,500 calls).
"""

from __future__ import annotations

import functools
import json
from typing import Any, TypeVar

import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
)
from pydantic import BaseModel

from activities.prompts import Prompt
from constitution.capabilities import OutputMode

Schema = TypeVar("Schema", bound=BaseModel)

JSON_ANSWER = Prompt.load("json_answer.v1")
TOOL_ANSWER = Prompt.load("tool_answer.v1")

INSTRUCTIONS: dict[OutputMode, Prompt] = {
    OutputMode.json_object: JSON_ANSWER,
    OutputMode.tools: TOOL_ANSWER,
}
"""The output-mode prompt added to the task's, recorded beside it (structured outputs add none)."""


class ToolNotCalled(ValueError):
    """A tool-calling answer that called no tool (or another one): invalid output, asked again."""


@functools.cache
def _function_json(schema: type[BaseModel]) -> str:
    """The function a schema is offered as (its parameters the strict JSON Schema),
    as JSON text: built once per class, and immutable, so no request shares a dict."""
    tool = openai.pydantic_function_tool(schema)
    function = dict(tool["function"])
    function.pop("strict", None)
    return json.dumps(function, separators=(",", ":"))


def tool_for(schema: type[BaseModel]) -> ChatCompletionFunctionToolParam:
    """The one function a tool-calling request offers: named after the schema, its
    parameters the schema. Not `strict`: servers other than OpenAI may refuse the
    flag, and the arguments are validated here anyway."""
    return {"type": "function", "function": json.loads(_function_json(schema))}


def _parameters(schema: type[BaseModel]) -> dict[str, Any]:
    parameters: dict[str, Any] = tool_for(schema)["function"].get("parameters", {})
    return parameters


def schema_text(schema: type[BaseModel]) -> str:
    """The JSON Schema the model is shown, compact."""
    return json.dumps(_parameters(schema), separators=(",", ":"))


def response_format(schema: type[BaseModel]) -> dict[str, Any]:
    """The structured-outputs `response_format` of `schema`: what the `openai`
    client's `parse` sends (`type_to_response_format_param`), the same strict
    schema, named after the class."""
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": _parameters(schema), "strict": True},
    }


def system_message(mode: OutputMode, system: str, schema: type[BaseModel]) -> str:
    """The task's system prompt with what the output mode needs added to it."""
    if mode is OutputMode.json_object:
        return (
            f"{system.rstrip()}\n\n{JSON_ANSWER.text.rstrip()}\n"
            f"Schema: {schema.__name__}\n{schema_text(schema)}"
        )
    if mode is OutputMode.tools:
        return f"{system.rstrip()}\n\n{TOOL_ANSWER.text.rstrip()}\nTool: {schema.__name__}"
    return system


def messages(
    mode: OutputMode,
    system: str,
    user: str,
    schema: type[BaseModel],
    corrections: list[ChatCompletionMessageParam] | None = None,
) -> list[ChatCompletionMessageParam]:
    """The messages of one structured request, with any corrections asked so far."""
    return [
        {"role": "system", "content": system_message(mode, system, schema)},
        {"role": "user", "content": user},
        *(corrections or []),
    ]


def request_options(mode: OutputMode, schema: type[BaseModel]) -> dict[str, Any]:
    """The request fields of an output mode: the schema as structured outputs'
    `response_format`, JSON mode's flag, or the one tool and the call of it."""
    if mode is OutputMode.json_schema:
        return {"response_format": response_format(schema)}
    if mode is OutputMode.json_object:
        return {"response_format": {"type": "json_object"}}
    if mode is OutputMode.tools:
        return {
            "tools": [tool_for(schema)],
            "tool_choice": {"type": "function", "function": {"name": schema.__name__}},
        }
    raise ValueError(f"{mode} is not an output mode a request can ask for")


def correction(mode: OutputMode, schema: type[BaseModel], error: str) -> ChatCompletionMessageParam:
    """What is said after an invalid answer, so the next one can be valid."""
    again = (
        f"Call {schema.__name__} again with arguments that match its parameters exactly."
        if mode is OutputMode.tools
        else "Answer again with JSON that matches the schema exactly."
    )
    return {"role": "user", "content": f"Your last answer was invalid: {error}. {again}"}


def called(message: ChatCompletionMessage, name: str) -> str | None:
    """The arguments of the answer's call of the function `name`, or None if it made none."""
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)  # custom tool calls have none
        if function is not None and function.name == name:
            return str(function.arguments or "")
    return None


def read_answer(mode: OutputMode, schema: type[Schema], completion: ChatCompletion) -> Schema:
    """The answer of a completion in any output mode, validated into `schema`.

    Raises pydantic's `ValidationError`, `ToolNotCalled`, or the client's
    `LengthFinishReasonError` for an answer cut off by the length limit: each
    is invalid output, asked again with the reason. With structured outputs,
    an answer the server's content filter stopped raises
    `ContentFilterFinishReasonError`, as the client's `parse` does there.
    """
    choice = completion.choices[0]
    if choice.finish_reason == "length":
        raise openai.LengthFinishReasonError(completion=completion)
    if mode is OutputMode.json_schema and choice.finish_reason == "content_filter":
        raise openai.ContentFilterFinishReasonError()
    message = choice.message
    if mode is OutputMode.tools:
        arguments = called(message, schema.__name__)
        if arguments is not None:
            return schema.model_validate_json(arguments)
        if not message.content:
            raise ToolNotCalled(f"the answer did not call {schema.__name__}")
        # Some servers put the arguments in the content instead of a call.
    return schema.model_validate_json(message.content or "")
