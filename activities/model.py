"""The model, reached through the `openai` client on any OpenAI-compatible server.

One retry layer: the client is built with `max_retries=0` and Temporal retries
the activity, so a failed call is retried by exactly one party, with the
activity's backoff. Invalid structured output is not a transport failure: it
is asked again once with the validation error in the prompt, then the activity
fails with a non-retryable `ModelOutputInvalid`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from constitution import ProposalBatch, ProposalKind
from constitution.contracts import ProposeInput, ProposeResult
from constitution.models import Proposal, ProposalDraft, needs_strict_review
from constitution.samples import EvidenceFileError, load_evidence

Schema = TypeVar("Schema", bound=BaseModel)

INVALID_OUTPUT_RETRIES = 1


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

    def __init__(self, client: AsyncOpenAI, model: str, concurrency: int = 4) -> None:
        self.client = client
        self.model = model
        self.concurrency = concurrency
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
        async with self._slots:
            response = await self.client.chat.completions.create(
                model=model or self.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            )
        return response.choices[0].message.content or ""

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
        for _attempt in range(INVALID_OUTPUT_RETRIES + 1):
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
            f"the model's output did not match {schema.__name__}: {last_error}",
            type="ModelOutputInvalid",
            non_retryable=True,
        )

    async def _ask(
        self, schema: type[Schema], messages: list[ChatCompletionMessageParam], model: str
    ) -> tuple[Schema, str | None]:
        async with self._slots:
            try:
                raw = await self.client.chat.completions.with_raw_response.parse(
                    model=model,
                    messages=messages,
                    response_format=schema,
                )
                completion = raw.parse()
                message = completion.choices[0].message
                _refuse_if_refused(message.refusal)
                # No parsed object: validating the content names what is wrong.
                parsed = message.parsed or schema.model_validate_json(message.content or "")
                return parsed, raw.headers.get("x-request-id")
            except openai.BadRequestError as error:
                if "response_format" not in str(error) and "json_schema" not in str(error):
                    raise
            # The server lacks structured outputs: JSON mode, validated here.
            fallback = await self.client.chat.completions.with_raw_response.create(
                model=model,
                messages=messages,
                response_format={"type": "json_object"},
            )
        plain = fallback.parse().choices[0].message
        _refuse_if_refused(plain.refusal)
        return schema.model_validate_json(plain.content or ""), fallback.headers.get("x-request-id")


def _refuse_if_refused(refusal: str | None) -> None:
    if refusal:
        raise ApplicationError(
            f"the model refused: {refusal}", type="ModelOutputInvalid", non_retryable=True
        )


def _short(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "output"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class ModelActivities:
    PROMPT = "propose.v1"

    def __init__(self, model: Model) -> None:
        self.model = model
        self.prompt = Prompt.load(self.PROMPT)

    @activity.defn(name="propose_amendments")
    async def propose_amendments(self, request: ProposeInput) -> ProposeResult:
        try:
            evidence = load_evidence(request.evidence_file)
        except EvidenceFileError as error:
            raise ApplicationError(
                str(error), type="EvidenceFileError", non_retryable=True
            ) from error
        principles = [p.model_dump(mode="json") for p in request.constitution.principles]
        user = (
            f"<constitution>{json.dumps(principles)}</constitution>\n"
            f"<evidence>{json.dumps([e.model_dump(mode='json') for e in evidence])}</evidence>\n"
            f"<max_proposals>{request.max_proposals}</max_proposals>"
        )
        batch, request_id = await self.model.structured(ProposalBatch, self.prompt.text, user)
        drafts = [d for d in batch.proposals if _targets_exist(d, request)]
        proposals = [
            Proposal(
                id=f"{request.round_id}-p{i}",
                round_id=request.round_id,
                draft=draft,
                prompt_version=self.prompt.name,
                model=self.model.model,
                strict_review=needs_strict_review(draft, request.constitution),
            )
            for i, draft in enumerate(drafts[: request.max_proposals], start=1)
        ]
        activity.logger.info("round %s: %d proposals", request.round_id, len(proposals))
        return ProposeResult(proposals=proposals, request_ids=[request_id] if request_id else [])


def _targets_exist(draft: ProposalDraft, request: ProposeInput) -> bool:
    """A proposal aimed at a principle that does not exist never reaches a reviewer."""
    if draft.kind is ProposalKind.add:
        return True
    return request.constitution.principle(draft.target or "") is not None
