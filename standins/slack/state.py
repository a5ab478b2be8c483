"""What the Slack stand-in remembers between calls, and how a route reaches it.

All of it lives in one `SlackStandInState` per app, on `app.state.slack`:
every message, view and call, so tests can see what amend posted and
opened; the queued faults; the registered triggers; the Socket Mode server.
Routes take it through the `SlackState` dependency rather than from a
closure; tests read it with `standin_state(app)`.

Given a file (`amend dev` gives one under its data directory), the workspace
itself, messages, ephemeral answers and modals, is kept there after every
call that changes it and read back at start, as a real workspace outlives a
restart of amend: a round in review still has messages to click and to update.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from standins.slack.config import SlackStandInConfig
from standins.slack.socket_mode import SocketModeServer
from standins.slack.wire import JSONDict


class FaultSpec(BaseModel):
    """One injected failure, consumed by the next matching Web API call.

    Kinds: `rate_limited` (429 with `Retry-After`), `server_error` (500),
    `error` (200 with `{"ok": false, "error": ...}`) and `slow_answer` (the
    call takes effect at once, its answer comes `hold_s` later, as over a slow
    network). With `method` set, only a call of that method takes it.
    """

    kind: Literal["rate_limited", "server_error", "error", "slow_answer"]
    retry_after: int = 1
    hold_s: float = 2.0  # slow_answer: the call takes effect, its answer comes this much later
    error: str = "internal_error"
    method: str | None = None


class KeptWorkspace(BaseModel):
    """What survives a restart of the stand-in.

    The channel's messages, the ephemeral answers, the modals, and the
    counters that keep new ts values and ids from repeating old ones.
    """

    messages: list[JSONDict]
    ephemeral: list[JSONDict]
    views: list[JSONDict]
    last_ts_us: int
    last_id: int


@dataclass
class Trigger:
    """A trigger id a test registered, so `views.open` can hold it to Slack's rules.

    A trigger opens one view, within the configured time to live.
    """

    user_id: str
    registered_at: float
    used: bool = False


@dataclass
class SlackStandInState:
    """Everything the stand-in remembers; reachable as `app.state.slack`."""

    config: SlackStandInConfig
    messages: dict[tuple[str, str], JSONDict] = field(default_factory=dict)
    ephemeral: list[JSONDict] = field(default_factory=list)
    views: dict[str, JSONDict] = field(default_factory=dict)
    calls: list[JSONDict] = field(default_factory=list)
    faults: list[FaultSpec] = field(default_factory=list)
    triggers: dict[str, Trigger] = field(default_factory=dict)
    revoked: bool = False
    last_post: dict[str, float] = field(default_factory=dict)
    last_ts_us: int = 0
    last_id: int = 0
    socket: SocketModeServer = field(default_factory=SocketModeServer)
    store: Path | None = None

    def load(self) -> None:
        """Read the workspace back from `store`, if it was kept there before."""
        if self.store is None or not self.store.exists():
            return
        kept = KeptWorkspace.model_validate_json(self.store.read_text())
        self.messages = {(m["channel"], m["ts"]): m for m in kept.messages}
        self.ephemeral = kept.ephemeral
        self.views = {v["id"]: v for v in kept.views}
        self.last_ts_us = kept.last_ts_us
        self.last_id = kept.last_id

    def keep(self) -> None:
        """Write the workspace to `store` (whole, then renamed, so a crash leaves the last copy)."""
        if self.store is None:
            return
        kept = KeptWorkspace(
            messages=list(self.messages.values()),
            ephemeral=self.ephemeral,
            views=list(self.views.values()),
            last_ts_us=self.last_ts_us,
            last_id=self.last_id,
        )
        partial = self.store.with_suffix(".partial")
        partial.write_text(kept.model_dump_json())
        os.replace(partial, self.store)

    def reset(self) -> None:
        """Forget what was posted, opened and queued, and un-revoke the token.

        Ids and timestamps keep counting, so none is handed out twice.
        """
        self.messages.clear()
        self.ephemeral.clear()
        self.views.clear()
        self.calls.clear()
        self.faults.clear()
        self.triggers.clear()
        self.last_post.clear()
        self.revoked = False
        self.keep()

    def next_ts(self) -> str:
        """A Slack-style "seconds.micros" ts, strictly increasing.

        Slack identifies a message by channel and ts, so two never share one.
        """
        now_us = int(time.time() * 1_000_000)
        self.last_ts_us = max(now_us, self.last_ts_us + 1)
        return f"{self.last_ts_us // 1_000_000}.{self.last_ts_us % 1_000_000:06d}"

    def new_id(self, prefix: str, width: int = 10) -> str:
        """A fresh Slack-looking id (`prefix` and a zero-padded counter)."""
        self.last_id += 1
        return f"{prefix}{self.last_id:0{width}d}"

    def take_fault(self, method: str) -> FaultSpec | None:
        """The first queued fault for a call of `method`, removed from the queue."""
        for i, fault in enumerate(self.faults):
            if fault.method is None or fault.method == method:
                return self.faults.pop(i)
        return None


WebAPIMethod = Callable[[SlackStandInState, JSONDict], JSONDict]
"""A Web API method as the stand-in serves it: the state and the call's
arguments in, Slack's answer out; refusals raise `SlackError`."""


def standin_state(app: FastAPI) -> SlackStandInState:
    """The in-memory state of an app made by `create_app`, for tests to inspect."""
    state: SlackStandInState = app.state.slack
    return state


async def request_state(request: Request) -> SlackStandInState:
    """The state of the app serving `request`, for routes to depend on.

    Async so FastAPI runs it on the event loop instead of a worker thread.
    """
    return standin_state(request.app)


SlackState = Annotated[SlackStandInState, Depends(request_state)]
"""A route parameter of this type receives its app's `SlackStandInState`."""
