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
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from temporalio import activity

P = ParamSpec("P")
R = TypeVar("R")

# Well under the heartbeat timeout the workflow sets, so a busy event loop
# that delays one beat does not cost the activity its lease.
BEAT_EVERY_S = 5.0


class _Pulse:
    """The details the activity last heartbeated, which the background beat repeats.

    A bare beat would replace an activity's progress and checkpoint (what a
    retry resumes from) with nothing. It starts from the previous attempt's
    details, so an attempt that dies before its first `beat` loses nothing.
    """

    def __init__(self, details: tuple[Any, ...]) -> None:
        self.details = details


_pulse: ContextVar[_Pulse | None] = ContextVar("amend_activity_pulse", default=None)


def beat(*details: Any) -> None:
    """Heartbeat with `details` (progress, a checkpoint); `heartbeating` repeats them.

    Use it instead of `activity.heartbeat` in an activity wrapped in
    `heartbeating`: an activity waiting for a model slot another activity of
    the worker holds sends none of its own, and without the background beat
    it would be presumed dead at its heartbeat timeout.
    """
    pulse = _pulse.get()
    if pulse is not None:
        pulse.details = details
    activity.heartbeat(*details)


async def _beat(pulse: _Pulse, every_s: float) -> None:
    while True:
        activity.heartbeat(*pulse.details)
        await asyncio.sleep(every_s)


def heartbeating(
    run: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Run the activity with a heartbeat every `BEAT_EVERY_S` seconds alongside it."""

    @functools.wraps(run)
    async def beating(*args: P.args, **kwargs: P.kwargs) -> R:
        pulse = _Pulse(tuple(activity.info().heartbeat_details))
        token = _pulse.set(pulse)
        background = asyncio.create_task(_beat(pulse, BEAT_EVERY_S))
        try:
            return await run(*args, **kwargs)
        finally:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
            _pulse.reset(token)

    return beating
