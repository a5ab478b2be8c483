"""The model, reached through the `openai` client on any OpenAI-compatible server.

One retry layer: the client is built with `max_retries=0` and Temporal retries
the activity, so a failed call is retried by exactly one party, with the
activity's backoff. A 429 becomes `ModelRateLimited`, whose details
(`RateLimitWait`) say how long the server asked to wait, capped by
`AMEND_MODEL_RETRY_AFTER_CAP_S`: the round waits that long where everyone can
see it, then asks again. Other 4xx answers fail for good (asking again cannot
fix them), except a structured-outputs request, which is asked in the next
output mode the server offers; 5xx, timeouts and dropped connections are retried. Invalid structured
output is not a transport failure: it is asked again with the validation error
in the prompt, a bounded number of times, then the activity fails with a
non-retryable `ModelOutputInvalid`.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import structured
from activities.capabilities import Capabilities, refused_status
from activities.liveness import heartbeating
from activities.prompts import Prompt
from constitution import Grade, ProposalBatch
from constitution.capabilities import OutputMode
from constitution.contracts import ProposeInput, ProposeResult, RateLimitWait
from constitution.errors import ErrorType
from constitution.models import Proposal, needs_strict_review
from workflows import activities as defined

Schema = TypeVar("Schema", bound=BaseModel)
Result = TypeVar("Result")

DEFAULT_RETRY_AFTER = timedelta(seconds=5)
DEFAULT_RETRY_AFTER_CAP = timedelta(minutes=2)


@dataclass
class Exchange(Generic[Schema]):
    """One structured question under way: what is asked, of which model, in
    which mode, the corrections said after invalid answers, and every call made
    for it (by the server's request id, or the completion's own id where the
    server sends none)."""

    schema: type[Schema]
    system: str
    user: str
    model: str
    mode: OutputMode
    corrections: list[ChatCompletionMessageParam] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[ChatCompletionMessageParam]:
        """The messages of the next request, in the exchange's mode."""
        return structured.messages(self.mode, self.system, self.user, self.schema, self.corrections)


@dataclass(frozen=True)
class Answer(Generic[Schema]):
    """A structured answer, the calls it took and the output mode that answered."""

    value: Schema
    calls: list[str]
    mode: OutputMode

    @property
    def prompts(self) -> list[str]:
        """The output-mode prompt behind the answer, to record beside the task's."""
        instructions = structured.INSTRUCTIONS.get(self.mode)
        return [instructions.name] if instructions else []


def call_id(headers: httpx.Headers, body: object) -> str:
    """What names one call: the server's `x-request-id`, else the completion's own
    id, else one made here, so calls are counted on any server."""
    header = headers.get("x-request-id")
    if header:
        return str(header)
    if isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"]:
        return str(body["id"])
    return f"local-{uuid.uuid4().hex[:24]}"


class Model:
    """The model client, its concurrency bound and its server's capabilities.

    Built once per worker, so capabilities are detected once per model.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        concurrency: int = 4,
        output_retries: int = 1,
        *,
        output_mode: OutputMode = OutputMode.auto,
        retry_after_cap: timedelta = DEFAULT_RETRY_AFTER_CAP,
    ) -> None:
        self.client = client
        self.model = model
        self.concurrency = concurrency
        self.output_retries = output_retries
        self.retry_after_cap = retry_after_cap
        self._slots = asyncio.Semaphore(concurrency)
        self.capabilities = Capabilities(client, self.call, output_mode)

    def body(
        self, system: str, user: str, *, schema: type[BaseModel] | None = None
    ) -> dict[str, Any]:
        """The request body of one completion, as a Batch API line carries it; with a
        schema, in JSON mode (the prompt carries the schema), validated on return."""
        mode = OutputMode.json_object if schema is not None else OutputMode.json_schema
        body: dict[str, Any] = {"model": self.model}
        if schema is None:
            body["messages"] = [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ]
        else:
            body["messages"] = structured.messages(mode, system, user, schema)
            body.update(structured.request_options(mode, schema))
        return body

    async def text(
        self,
        system: str,
        user: str,
        *,
        model: str | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> str:
        """A plain answer; `temperature` and `seed` are sent only when given."""
        answer, _ = await self.text_with_id(
            system, user, model=model, temperature=temperature, seed=seed
        )
        return answer

    async def text_with_id(
        self,
        system: str,
        user: str,
        *,
        model: str | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> tuple[str, str]:
        """A plain answer and the id of the call that gave it.

        An evaluation samples each prompt several times: the `seed` tells the
        samples apart where a server honours it.
        """
        body: dict[str, Any] = {
            "model": model or self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        }
        if temperature is not None:
            body["temperature"] = temperature
        if seed is not None:
            body["seed"] = seed
        completion, call = await self.complete(body)
        message = completion.choices[0].message
        _refuse_if_refused(message.refusal)
        return message.content or "", call

    async def structured(
        self, schema: type[Schema], system: str, user: str, *, model: str | None = None
    ) -> Answer[Schema]:
        """An answer validated into `schema`, in the best output mode the server offers.

        Invalid output is asked again with the validation error,
        `output_retries` times. A structured-outputs request the server refuses
        (any 4xx, however worded) is asked in the next mode it offers; when that
        answers, the server's refusal is remembered and later calls skip it.
        """
        name = model or self.model
        found = await self.capabilities.of(name)
        mode = found.output_mode
        if mode is None:
            raise ApplicationError(
                f"the model server at {found.base_url} offers model {name} none of structured "
                "outputs, JSON mode or tool calling; use a server or model that offers one",
                type=ErrorType.model_request_refused,
                non_retryable=True,
            )
        exchange = Exchange(schema, system, user, name, mode)
        last_error = ""
        for _attempt in range(self.output_retries + 1):
            try:
                value = await self._ask(exchange)
                return Answer(value=value, calls=exchange.calls, mode=exchange.mode)
            except (ValidationError, structured.ToolNotCalled) as error:
                last_error = _short(error) if isinstance(error, ValidationError) else str(error)
            except openai.LengthFinishReasonError:
                last_error = "the answer was cut off by the length limit; answer more briefly"
            exchange.corrections.append(structured.correction(exchange.mode, schema, last_error))
        raise ApplicationError(
            f"the model's output did not match {schema.__name__} after "
            f"{self.output_retries + 1} attempts: {last_error}",
            type=ErrorType.model_output_invalid,
            non_retryable=True,
        )

    async def complete(self, body: dict[str, Any]) -> tuple[ChatCompletion, str]:
        """One chat completion of `body` and the id of the call that gave it.

        `body` is JSON under the API's own field names, as a Batch API line
        carries it (`body`). It is sent with the client's `post`, not
        `chat.completions.create`: `create` runs every request through the
        SDK's typed transform (the aliases and formats of its TypedDicts,
        tried against each member of every message union), which leaves a
        body like these as it is and cost 0.3 ms of the worker's CPU a call,
        a fifth of the bench process's main thread over a round. The client's
        base URL, key, headers, timeout and error mapping are the same, and
        the answer is built as the client builds it (`model_construct`: lenient,
        for servers that leave fields out).
        """
        response = await self.call(
            lambda: self.client.post("/chat/completions", body=body, cast_to=httpx.Response)
        )
        answer = response.json()  # not JSON: a ValueError, retried as a transport fault
        if not isinstance(answer, dict):
            raise ValueError(f"the model server answered with JSON {type(answer).__name__}")
        return ChatCompletion.model_construct(**answer), call_id(response.headers, answer)

    async def call(self, request: Callable[[], Awaitable[Result]]) -> Result:
        """One request under the concurrency bound, its errors mapped to what
        Temporal should do about them."""
        async with self._slots:
            try:
                return await request()
            except openai.RateLimitError as error:
                raise self._rate_limited(error) from error
            except openai.APIStatusError as error:
                if error.status_code >= 500 or error.status_code in (408, 409):
                    raise
                raise ApplicationError(
                    f"the model server refused the request ({error.status_code}): "
                    f"{_error_message(error)}",
                    type=ErrorType.model_request_refused,
                    non_retryable=True,
                ) from error

    def _rate_limited(self, error: openai.RateLimitError) -> ApplicationError:
        """A 429 as a wait the round shows: as long as the server asked, up to the cap."""
        asked = retry_after_delay(error.response)
        wait = min(asked, self.retry_after_cap)
        capped = (
            f", capped at {self.retry_after_cap.total_seconds():g}s (AMEND_MODEL_RETRY_AFTER_CAP_S)"
            if asked > wait
            else ""
        )
        reason = (
            f"the model server is rate limiting (429) and asked to wait "
            f"{asked.total_seconds():g}s{capped}"
        )
        return ApplicationError(
            reason,
            RateLimitWait(
                wait_s=wait.total_seconds(), asked_s=asked.total_seconds(), reason=reason
            ).model_dump(),
            type=ErrorType.model_rate_limited,
            next_retry_delay=wait,
        )

    async def _ask(self, exchange: Exchange[Schema]) -> Schema:
        if exchange.mode is not OutputMode.json_schema:
            return await self._ask_in(exchange)
        try:
            return await self._ask_in(exchange)
        except ApplicationError as error:
            seen = refused_status(error)
            found = await self.capabilities.of(exchange.model)
            fallback = found.best_mode(after=OutputMode.json_schema)
            if seen is None or found.mode_from_settings or fallback is None:
                raise
        # Refused, whatever the wording: ask in the next mode the server offers.
        # If that answers, the refusal was the mode's; remember it.
        exchange.mode = fallback
        value = await self._ask_in(exchange)
        self.capabilities.json_schema_refused(exchange.model, seen)
        return value

    async def _ask_in(self, exchange: Exchange[Schema]) -> Schema:
        """One request in the exchange's mode, its answer validated here in every
        mode (structured outputs too: the schema is built once, see
        `activities.structured`, where the client's `parse` builds it per call)."""
        schema = exchange.schema
        completion, call = await self.complete(
            {
                "model": exchange.model,
                "messages": exchange.messages,
                **structured.request_options(exchange.mode, schema),
            }
        )
        exchange.calls.append(call)
        _refuse_if_refused(completion.choices[0].message.refusal)
        return structured.read_answer(exchange.mode, schema, completion)


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
) -> Answer[Grade]:
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
    PROMPT = "propose.v3"

    def __init__(self, model: Model) -> None:
        self.model = model
        self.prompt = Prompt.load(self.PROMPT)

    @activity.defn
    @heartbeating
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
        answer = await self.model.structured(ProposalBatch, self.prompt.text, user)
        request_ids = answer.calls
        drafts = [
            Proposal(
                id=f"{request.round_id}-c{request.chunk}d{i}",
                round_id=request.round_id,
                draft=draft,
                prompt_version=self.prompt.name,
                prompt_versions=[self.prompt.name, *answer.prompts],
                model=self.model.model,
                request_ids=request_ids,
                chunk=request.chunk,
                strict_review=needs_strict_review(draft, request.constitution),
            )
            for i, draft in enumerate(answer.value.proposals, start=1)
        ]
        activity.logger.info(
            "round %s chunk %d: %d drafts", request.round_id, request.chunk, len(drafts)
        )
        return ProposeResult(proposals=drafts, request_ids=request_ids)
