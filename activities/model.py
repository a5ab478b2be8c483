"""The model, reached through the `openai` client on any OpenAI-compatible server.

One retry layer: the client is built with `max_retries=0` and Temporal retries
the activity, so a failed call is retried by exactly one party, with the
activity's backoff. A 429 becomes an `ApplicationError` whose
`next_retry_delay` is the server's Retry-After, so Temporal waits as long as
the server asked; other 4xx answers fail for good (asking again cannot fix
them); 5xx, timeouts and dropped connections are retried. Invalid structured
output is not a transport failure: it is asked again with the validation error
in the prompt, a bounded number of times, then the activity fails with a
non-retryable `ModelOutputInvalid`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from importlib import resources
from typing import Any, TypeVar

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from constitution import Grade, ProposalBatch
from constitution.contracts import ProposeInput, ProposeResult
from constitution.errors import ErrorType
from constitution.models import Proposal, needs_strict_review
from workflows import activities as defined

Schema = TypeVar("Schema", bound=BaseModel)
Result = TypeVar("Result")

DEFAULT_RETRY_AFTER = timedelta(seconds=5)


@dataclass(frozen=True)
class Prompt:
    """A versioned prompt file of `activities/prompts/`; its version is recorded
    with every output it produced."""

    name: str
    text: str

    @classmethod
    def load(cls, name: str) -> Prompt:
        return cls(name, (resources.files("activities") / "prompts" / f"{name}.md").read_text())


def json_instructions(system: str, schema: type[BaseModel]) -> str:
    """The system message of a structured request: JSON mode needs the word, and
    the schema's name tells a JSON-mode server what shape is wanted."""
    return f"{system}\nAnswer in JSON.\nSchema: {schema.__name__}"


class Model:
    """The model client with bounded concurrency, built once per worker."""

    def __init__(
        self, client: AsyncOpenAI, model: str, concurrency: int = 4, output_retries: int = 1
    ) -> None:
        self.client = client
        self.model = model
        self.concurrency = concurrency
        self.output_retries = output_retries
        self._slots = asyncio.Semaphore(concurrency)

    def body(self, system: str, user: str, *, json_object: bool = False) -> dict[str, Any]:
        """The request body of one completion, as a Batch API line carries it."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        }
        if json_object:
            body["response_format"] = {"type": "json_object"}
        return body

    async def text(self, system: str, user: str, *, model: str | None = None) -> str:
        answer, _ = await self.text_with_id(system, user, model=model)
        return answer

    async def text_with_id(
        self, system: str, user: str, *, model: str | None = None
    ) -> tuple[str, str | None]:
        """A plain answer and the request id the server gave it."""
        raw = await self._call(
            lambda: self.client.chat.completions.with_raw_response.create(
                model=model or self.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            )
        )
        message = raw.parse().choices[0].message
        _refuse_if_refused(message.refusal)
        return message.content or "", raw.headers.get("x-request-id")

    async def structured(
        self, schema: type[Schema], system: str, user: str, *, model: str | None = None
    ) -> tuple[Schema, str | None]:
        """Structured output into `schema`; JSON mode plus validation where the
        server lacks structured outputs. Returns the object and the request id."""
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": json_instructions(system, schema)},
            {"role": "user", "content": user},
        ]
        last_error = ""
        for _attempt in range(self.output_retries + 1):
            try:
                return await self._ask(schema, messages, model or self.model)
            except ValidationError as error:
                last_error = _short(error)
            except openai.LengthFinishReasonError:
                last_error = "the answer was cut off by the length limit; answer more briefly"
            messages = [
                *messages,
                {
                    "role": "user",
                    "content": "Your last answer was invalid: "
                    f"{last_error}. Answer again with JSON that matches the schema exactly.",
                },
            ]
        raise ApplicationError(
            f"the model's output did not match {schema.__name__} after "
            f"{self.output_retries + 1} attempts: {last_error}",
            type=ErrorType.model_output_invalid,
            non_retryable=True,
        )

    async def _call(self, request: Callable[[], Awaitable[Result]]) -> Result:
        """One request under the concurrency bound, its errors mapped to what
        Temporal should do about them."""
        async with self._slots:
            try:
                return await request()
            except openai.RateLimitError as error:
                delay = retry_after_delay(error.response)
                raise ApplicationError(
                    f"the model server is rate limiting (429); retrying in "
                    f"{delay.total_seconds():g}s as it asked",
                    type=ErrorType.model_rate_limited,
                    next_retry_delay=delay,
                ) from error
            except openai.APIStatusError as error:
                if error.status_code >= 500 or error.status_code in (408, 409):
                    raise
                if error.status_code == 400 and _lacks_structured_outputs(error):
                    raise
                raise ApplicationError(
                    f"the model server refused the request ({error.status_code}): "
                    f"{_error_message(error)}",
                    type=ErrorType.model_request_refused,
                    non_retryable=True,
                ) from error

    async def _ask(
        self, schema: type[Schema], messages: list[ChatCompletionMessageParam], model: str
    ) -> tuple[Schema, str | None]:
        try:
            raw = await self._call(
                lambda: self.client.chat.completions.with_raw_response.parse(
                    model=model,
                    messages=messages,
                    response_format=schema,
                )
            )
            completion = raw.parse()
            message = completion.choices[0].message
            _refuse_if_refused(message.refusal)
            # No parsed object: validating the content names what is wrong.
            parsed = message.parsed or schema.model_validate_json(message.content or "")
            return parsed, raw.headers.get("x-request-id")
        except openai.BadRequestError as error:
            if not _lacks_structured_outputs(error):
                raise
        # The server lacks structured outputs: JSON mode, validated here.
        fallback = await self._call(
            lambda: self.client.chat.completions.with_raw_response.create(
                model=model,
                messages=messages,
                response_format={"type": "json_object"},
            )
        )
        answered = fallback.parse()
        plain = answered.choices[0].message
        _refuse_if_refused(plain.refusal)
        if answered.choices[0].finish_reason == "length":
            raise openai.LengthFinishReasonError(completion=answered)
        return schema.model_validate_json(plain.content or ""), fallback.headers.get("x-request-id")


def _lacks_structured_outputs(error: openai.APIStatusError) -> bool:
    text = str(error)
    return "response_format" in text or "json_schema" in text


def _error_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return error.message


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _reset_duration(value: str) -> timedelta | None:
    """OpenAI's `x-ratelimit-reset-*` durations: '1s', '6m0s', '20ms'."""
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        return None
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


def retry_after_delay(response: httpx.Response) -> timedelta:
    """How long the server asked to wait: `retry-after-ms`, `retry-after` in
    seconds or as an HTTP date, else the later of the rate-limit reset headers;
    a default when it said nothing usable."""
    headers = response.headers
    resets = [
        _reset_duration(headers[name])
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if name in headers
    ]
    try:
        if "retry-after-ms" in headers:
            return max(timedelta(0), timedelta(milliseconds=float(headers["retry-after-ms"])))
        if "retry-after" in headers:
            value = headers["retry-after"]
            if value.strip().replace(".", "", 1).isdigit():
                return timedelta(seconds=float(value))
            return max(timedelta(0), parsedate_to_datetime(value) - datetime.now(UTC))
    except (ValueError, TypeError):
        pass
    known = [reset for reset in resets if reset is not None]
    return max(known) if known else DEFAULT_RETRY_AFTER


async def grade_answer(
    model: Model, rubric: Prompt, grader: str, constitution: str, prompt: str, answer: str
) -> tuple[Grade, str | None]:
    """One answer graded against a constitution (JSON of its principles) by the
    grader model; evaluation and impact previews grade alike."""
    return await model.structured(
        Grade,
        rubric.text,
        f"<constitution>{constitution}</constitution>\n<prompt>{prompt}</prompt>\n"
        f"<response>{answer}</response>",
        model=grader,
    )


def _refuse_if_refused(refusal: str | None) -> None:
    if refusal:
        raise ApplicationError(
            f"the model refused: {refusal}", type=ErrorType.model_output_invalid, non_retryable=True
        )


def _short(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "output"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class ModelActivities(defined.ModelActivities):
    PROMPT = "propose.v2"

    def __init__(self, model: Model) -> None:
        self.model = model
        self.prompt = Prompt.load(self.PROMPT)

    @activity.defn
    async def propose_amendments(self, request: ProposeInput) -> ProposeResult:
        """Draft proposals from one chunk of evidence. The drafts are checked,
        merged with other chunks' and numbered by `check_proposals`."""
        principles = [p.model_dump(mode="json") for p in request.constitution.principles]
        evidence = [e.model_dump(mode="json") for e in request.evidence]
        user = (
            f"<constitution>{json.dumps(principles)}</constitution>\n"
            f"<evidence>{json.dumps(evidence)}</evidence>\n"
            f"<max_proposals>{request.max_proposals}</max_proposals>"
        )
        batch, request_id = await self.model.structured(ProposalBatch, self.prompt.text, user)
        request_ids = [request_id] if request_id else []
        drafts = [
            Proposal(
                id=f"{request.round_id}-c{request.chunk}d{i}",
                round_id=request.round_id,
                draft=draft,
                prompt_version=self.prompt.name,
                model=self.model.model,
                request_ids=request_ids,
                chunk=request.chunk,
                strict_review=needs_strict_review(draft, request.constitution),
            )
            for i, draft in enumerate(batch.proposals, start=1)
        ]
        activity.logger.info(
            "round %s chunk %d: %d drafts", request.round_id, request.chunk, len(drafts)
        )
        return ProposeResult(proposals=drafts, request_ids=request_ids)
