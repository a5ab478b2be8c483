"""The model calls a round must make, with nothing else: the activity behind
the fair floor of `bench_rounds`.

It makes chat completions through the client the worker builds
(`worker.runtime.model_client`: the same `openai.AsyncOpenAI`, no retries, the
same timeout) against the same model stand-in, at most the worker's
`model_concurrency` at once across the worker, as `activities.model.Model`
bounds them. Each is one of the rounds' own requests: the stand-in kept a
uniform sample of the bodies the measured rounds sent (`sampling_stand_in`),
and the floor sends them in turn through `Model.complete`, the call every
model request of a round goes through (post, error mapping, the answer read
into a `ChatCompletion`). What the round does with an answer after (a structured
grade validated, a proposal checked) is the service's work, not the call's.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from fastapi import FastAPI
from temporalio import activity

from activities.model import Model
from bench.noop import MODEL_CALLS_ACTIVITY
from standins.model.app import create_app
from standins.model.config import ScriptedModelConfig
from worker.runtime import model_client
from worker.settings import Settings

SAMPLE = 2_000  # request bodies the stand-in keeps: about a round and a half's calls


def sampling_stand_in() -> FastAPI:
    """The model stand-in keeping a sample of the requests it answers
    (`served_apart("bench.model_calls:sampling_stand_in")`)."""
    return create_app(ScriptedModelConfig(request_sample_size=SAMPLE))


class ModelCalls:
    """The floor's calls, through one `Model` for the worker, as a worker's are."""

    def __init__(self, settings: Settings, bodies: list[dict[str, Any]]) -> None:
        if not bodies:
            raise ValueError("the floor needs the rounds' request bodies to replay")
        self.model = Model(model_client(settings), settings.model_name, settings.model_concurrency)
        self.bodies = bodies
        self._turn = itertools.count()  # every floor round goes on through the sample

    async def one(self) -> str:
        completion, _call = await self.model.complete(
            self.bodies[next(self._turn) % len(self.bodies)]
        )
        return completion.choices[0].message.content or ""

    @activity.defn(name=MODEL_CALLS_ACTIVITY)
    async def make(self, calls: int) -> int:
        """Make `calls` completions at once (the concurrency bound queues them)."""
        answers = await asyncio.gather(*(self.one() for _ in range(calls)))
        return len(answers)

    async def close(self) -> None:
        await self.model.client.close()
