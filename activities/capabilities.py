"""Detecting what a model server offers, once per worker and model.

Each probe is a cheap request judged by its HTTP status and the shape of the
answer, never by an error's wording (servers word theirs differently):

* output modes: one chat completion per mode asking for a `CapabilityProbe`
  (`{"ok": true}`), made exactly as a real structured call in that mode is
  made, so what the probe finds is what the round will get. A 2xx answer that
  shows what the mode guarantees (`delivers`) means offered; a 4xx (400, 404,
  422, ...) means refused; an answer that ignores the mode (prose for JSON, no
  tool call) means not offered.
* Batch API, files, fine-tuning: a list request with `limit=1`; 2xx means
  present, a 4xx means absent (`404 on /v1/fine_tuning/jobs`).
* `x-request-id`: whether the probes' answers carried one.

Rate limits, 5xx, timeouts and dropped connections prove nothing and are not
kept: they propagate (a 429 as `ModelRateLimited`, so the round waits for it)
and the next call probes again. `AMEND_MODEL_OUTPUT_MODE` fixes the mode and
skips the chat probes; the endpoint probes still run, for the preflight.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion
from temporalio.exceptions import ApplicationError

from activities import structured
from constitution.capabilities import (
    PREFERRED_MODES,
    CapabilityProbe,
    OutputMode,
    ServerCapabilities,
)
from constitution.errors import ErrorType

Result = TypeVar("Result")
Call = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
"""`Model.call`: one request under the model's concurrency bound, its errors mapped."""

PROBE_SYSTEM = "You check that this server answers in the requested form."
PROBE_USER = 'Answer with {"ok": true}.'


def refused_status(error: ApplicationError) -> str | None:
    """`<status> on <path>` of a request the server refused, from the client's error."""
    cause = error.__cause__
    if error.type != ErrorType.model_request_refused or not isinstance(
        cause, openai.APIStatusError
    ):
        return None
    return f"{cause.status_code} on {cause.response.request.url.path}"


def delivers(mode: OutputMode, completion: ChatCompletion) -> bool:
    """Whether an answer shows what the mode guarantees, and no more is asked.

    Structured outputs guarantee the schema, so the probe's answer must
    validate; JSON mode guarantees a JSON object, and tool calling a call of
    the named function with JSON arguments. Whether a model then fills in the
    schema well is what validation and asking again handle, per call.
    """
    message = completion.choices[0].message
    if mode is OutputMode.json_schema:
        if getattr(message, "parsed", None) is None:
            CapabilityProbe.model_validate_json(message.content or "")
        return True
    if mode is OutputMode.tools:
        return _json_object(structured.called(message, CapabilityProbe.__name__))
    return _json_object(message.content)


def _json_object(text: str | None) -> bool:
    try:
        return isinstance(json.loads(text or ""), dict)
    except ValueError:
        return False


class Capabilities:
    """The capabilities of each model this worker reaches on its server, detected once.

    Built once per worker beside the model client. Concurrent first calls for
    one model wait for one detection.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        call: Call,
        mode: OutputMode = OutputMode.auto,
    ) -> None:
        self.client = client
        self.call = call
        self.mode = mode
        self.base_url = str(client.base_url).rstrip("/")
        self._found: dict[str, ServerCapabilities] = {}
        self._detecting: dict[str, asyncio.Lock] = {}

    async def of(self, model: str) -> ServerCapabilities:
        """What the server offers `model`, probed on first use and kept."""
        if model in self._found:
            return self._found[model]
        lock = self._detecting.setdefault(model, asyncio.Lock())
        async with lock:
            if model not in self._found:
                self._found[model] = await self._detect(model)
        return self._found[model]

    def json_schema_refused(self, model: str, seen: str) -> ServerCapabilities:
        """Remember that the server refused a structured-outputs request that another
        mode then answered, so later calls go straight to that mode."""
        found = self._found[model]
        evidence = {**found.evidence, "json_schema": seen}
        updated = found.model_copy(
            update={
                "json_schema": False,
                "output_mode": found.best_mode(after=OutputMode.json_schema),
                "evidence": evidence,
            }
        )
        self._found[model] = updated
        return updated

    async def _detect(self, model: str) -> ServerCapabilities:
        evidence: dict[str, str] = {}
        offered: dict[str, bool | None] = {}
        ids: list[bool] = []
        if self.mode is OutputMode.auto:
            for mode in PREFERRED_MODES:
                offered[mode.value], evidence[mode.value], had_id = await self._probe_mode(
                    model, mode
                )
                ids.append(had_id)
        for name, listing in (
            ("batch_api", lambda: self.client.batches.with_raw_response.list(limit=1)),
            ("files", lambda: self.client.files.with_raw_response.list(limit=1)),
            ("fine_tuning", lambda: self.client.fine_tuning.jobs.with_raw_response.list(limit=1)),
        ):
            offered[name], evidence[name], had_id = await self._probe_endpoint(listing)
            ids.append(had_id)
        found = ServerCapabilities(
            base_url=self.base_url,
            model=model,
            request_ids=any(ids),
            mode_from_settings=self.mode is not OutputMode.auto,
            evidence=evidence,
            **offered,
        )
        chosen = found.best_mode() if self.mode is OutputMode.auto else self.mode
        return found.model_copy(update={"output_mode": chosen})

    async def _probe_mode(self, model: str, mode: OutputMode) -> tuple[bool, str, bool]:
        messages = structured.messages(mode, PROBE_SYSTEM, PROBE_USER, CapabilityProbe)
        if mode is OutputMode.json_schema:

            def request() -> Awaitable[Any]:
                return self.client.chat.completions.with_raw_response.parse(
                    model=model, messages=messages, response_format=CapabilityProbe
                )
        else:

            def request() -> Awaitable[Any]:
                return self.client.chat.completions.with_raw_response.create(
                    model=model,
                    messages=messages,
                    **structured.request_options(mode, CapabilityProbe),
                )

        try:
            raw = await self.call(request)
        except ApplicationError as error:
            seen = refused_status(error)
            if seen is None:
                raise
            return False, seen, False
        had_id = "x-request-id" in raw.headers
        status = raw.http_response.status_code
        try:
            completion = raw.parse()
            if not delivers(mode, completion):
                return False, f"{status}, but the answer ignored the mode", had_id
        except (ValueError, openai.LengthFinishReasonError) as error:
            # ValueError covers pydantic's ValidationError.
            return False, f"{status}, but the answer was not in that form ({error})", had_id
        return True, str(status), had_id

    async def _probe_endpoint(
        self, listing: Callable[[], Awaitable[Any]]
    ) -> tuple[bool, str, bool]:
        try:
            raw = await self.call(listing)
        except ApplicationError as error:
            seen = refused_status(error)
            if seen is None:
                raise
            return False, seen, False
        return True, str(raw.http_response.status_code), "x-request-id" in raw.headers
