"""Heartbeats for activities that wait on something slow (a model call, an upload).

Temporal learns that a worker died only from a missed heartbeat; an activity
that sends none is presumed alive until its start-to-close timeout, which for
drafting is minutes. An activity wrapped in `heartbeating` beats every few
seconds in the background for as long as it runs, however long one call
inside it takes, so the workflow can give it a heartbeat timeout of seconds
(`workflows.round.HEARTBEAT_TIMEOUT`) and a killed worker's activity is
retried by another worker at once. The SDK throttles what reaches the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from temporalio import activity

P = ParamSpec("P")
R = TypeVar("R")

# Well under the heartbeat timeout the workflow sets, so a busy event loop
# that delays one beat does not cost the activity its lease.
BEAT_EVERY_S = 5.0


async def _beat(every_s: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(every_s)


def heartbeating(
    run: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Run the activity with a heartbeat every `BEAT_EVERY_S` seconds alongside it."""

    @functools.wraps(run)
    async def beating(*args: P.args, **kwargs: P.kwargs) -> R:
        pulse = asyncio.create_task(_beat(BEAT_EVERY_S))
        try:
            return await run(*args, **kwargs)
        finally:
            pulse.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pulse

    return beating
