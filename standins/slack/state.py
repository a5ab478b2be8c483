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

Kept as a copy of the whole workspace and a journal beside it (`<file>.journal`,
a JSON line per change, appended after each call). Writing the whole workspace
after every call cost a call time in proportion to everything ever posted: a
third of the 90-day wait test's CPU went there, 2,160 reminders in. The copy is
rewritten only once the journal outgrows the workspace, so a call costs the
same however long the stand-in has run, and a kill still loses no call that
was answered.
"""

from __future__ import annotations

import json
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
    journal_seq: int = 0
    """The last journal entry this copy holds; later entries are replayed on it."""


JOURNAL_AT_LEAST = 1_000
"""Journal entries the copy may fall behind by, whatever the workspace's size;
beyond that and twice the workspace's entries, the copy is rewritten."""


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
    changes: list[JSONDict] = field(default_factory=list)
    """Changes made since the last `keep`, each a journal entry to be."""
    journal_seq: int = 0
    journal_entries: int = 0
    """Entries in the journal now, beyond what the copy holds."""

    @property
    def journal(self) -> Path | None:
        return None if self.store is None else self.store.with_name(self.store.name + ".journal")

    # Every change to the workspace goes through one of these four, which
    # note it for the journal.

    def put_message(self, record: JSONDict) -> None:
        """A message posted, or changed in place (an edit)."""
        self.messages[(record["channel"], record["ts"])] = record
        self._note({"message": record})

    def drop_message(self, channel: str, ts: str) -> JSONDict | None:
        """The message deleted; None when there was none."""
        found = self.messages.pop((channel, ts), None)
        if found is not None:
            self._note({"deleted": [channel, ts]})
        return found

    def add_ephemeral(self, entry: JSONDict) -> None:
        self.ephemeral.append(entry)
        self._note({"ephemeral": entry})

    def put_view(self, record: JSONDict) -> None:
        """A modal opened, or changed in place."""
        self.views[record["id"]] = record
        self._note({"view": record})

    def _note(self, change: JSONDict) -> None:
        if self.store is not None:
            self.changes.append(change)

    def load(self) -> None:
        """Read the workspace back from `store` and its journal, if kept there before.

        A journal's last line cut short by a kill is the change of a call that
        was never answered: it is left out, and the copy is rewritten at once,
        so that the next change is not appended to the broken line.
        """
        if self.store is None:
            return
        if self.store.exists():
            kept = KeptWorkspace.model_validate_json(self.store.read_text())
            self.messages = {(m["channel"], m["ts"]): m for m in kept.messages}
            self.ephemeral = kept.ephemeral
            self.views = {v["id"]: v for v in kept.views}
            self.last_ts_us = kept.last_ts_us
            self.last_id = kept.last_id
            self.journal_seq = kept.journal_seq
        journal = self.journal
        if journal is None or not journal.exists():
            return
        text = journal.read_text()
        cut_short = bool(text) and not text.endswith("\n")
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                cut_short = True
                break
            self.journal_entries += 1
            if entry["seq"] <= self.journal_seq:
                continue  # already in the copy (killed before the journal was emptied)
            self._replay(entry)
        self.changes.clear()
        if cut_short:
            self.compact()

    def _replay(self, entry: JSONDict) -> None:
        if "message" in entry:
            self.put_message(entry["message"])
        elif "deleted" in entry:
            self.drop_message(*entry["deleted"])
        elif "ephemeral" in entry:
            self.add_ephemeral(entry["ephemeral"])
        elif "view" in entry:
            self.put_view(entry["view"])
        self.journal_seq = entry["seq"]
        self.last_ts_us = max(self.last_ts_us, entry["last_ts_us"])
        self.last_id = max(self.last_id, entry["last_id"])

    def keep(self) -> None:
        """Append the call's changes to the journal; rewrite the copy instead
        once the journal has outgrown the workspace."""
        journal = self.journal
        if journal is None or not self.changes:
            return
        live = len(self.messages) + len(self.ephemeral) + len(self.views)
        if self.journal_entries + len(self.changes) > max(JOURNAL_AT_LEAST, 2 * live):
            self.compact()
            return
        lines = []
        for change in self.changes:
            self.journal_seq += 1
            entry = {"seq": self.journal_seq, **change}
            entry |= {"last_ts_us": self.last_ts_us, "last_id": self.last_id}
            lines.append(json.dumps(entry) + "\n")
        with journal.open("a") as out:
            out.writelines(lines)
        self.journal_entries += len(lines)
        self.changes.clear()

    def compact(self) -> None:
        """The whole workspace to the copy (written, then renamed, so a kill
        leaves the last one), then an empty journal."""
        if self.store is None or self.journal is None:
            return
        self.journal_seq += len(self.changes)
        kept = KeptWorkspace(
            messages=list(self.messages.values()),
            ephemeral=self.ephemeral,
            views=list(self.views.values()),
            last_ts_us=self.last_ts_us,
            last_id=self.last_id,
            journal_seq=self.journal_seq,
        )
        partial = self.store.with_suffix(".partial")
        partial.write_text(kept.model_dump_json())
        os.replace(partial, self.store)
        self.journal.write_text("")
        self.journal_entries = 0
        self.changes.clear()

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
        if self.store is not None:
            self.compact()

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
