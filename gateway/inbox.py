"""The decision inbox: a click is kept in PostgreSQL before Slack is answered,
then sent to its round by a dispatcher, a few at a time per round.

Why an inbox, measured on this machine (bench/bench_decisions.py, two cores):
sending each click straight to the round as a Temporal update made 50
concurrent clicks on one round wait for one another (p99 about 13 s in the
worst run, 1.6 s when capped by the ack budget) and hit Temporal's limit of 10
in-flight updates per workflow execution ("limit on number of concurrent
in-flight updates has been reached"). A signal would have no such limit (about
36 ms each), but the round's refusal would then no longer reach the reviewer
at once, and a modal needs that answer to show its error. One INSERT into
PostgreSQL takes about 9 ms under the same burst: the click is durable once
the row is committed, so the gateway answers Slack then, and the round still
answers through its `decide` update, validator included, as before.

The dispatcher:

- A row is inserted claimed by the gateway that took the click
  (`claimed_until` = now + lease), which sends it at once. The row's key is
  the interaction's update id, ON CONFLICT DO NOTHING: Slack's retries and a
  double delivery to two replicas keep one row.
- Clicks arriving together are kept in one multi-row INSERT: one statement is
  written at a time, and the clicks that arrive meanwhile go in the next.
- Sending waits while clicks are being kept (at most `acks_first_s`): the
  acks and the sends share one event loop, and a burst's acks come first.
- Per round (workflow id) at most `per_round` updates are in flight from one
  gateway; the rest wait their turn in arrival order. The round takes
  decisions one at a time under its lock, so more in flight would only queue
  inside Temporal, where 10 is the hard limit for all callers together.
- Every gateway sweeps, at start and every `sweep_s`: it renews the claims on
  what it is still sending, and claims (FOR UPDATE SKIP LOCKED, so two
  gateways never claim one row) undispatched rows whose claim lapsed or was
  given back. A gateway that stops gives its claims back; one that dies
  leaves them to lapse. Either way another gateway sends them.
- Sending a row twice is harmless: the `decide` update carries the row's key
  as its update id, which Temporal deduplicates in a run, and the decision's
  ledger id is one per reviewer and proposal (workflows/round.py); a row sent
  again after the round moved on (continue-as-new) is checked against the
  ledger first (`SlackInteractions._decide`, `taken_over`).
- The row is marked dispatched with the round's answer, once: the gateway
  that marks it is the one that tells the reviewer.

The gateways sweep rather than the worker: they hold the Slack client that
tells the reviewer and the code that records a refusal, and where there are
clicks there is a gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg

from ledger.errors import DATABASE_AWAY
from ledger.reads import InboxClick
from ledger.store import Ledger

log = logging.getLogger(__name__)

__all__ = ["DecisionInbox", "InboxClick"]

T = TypeVar("T")

# Updates in flight per round from one gateway; Temporal allows 10 per
# execution from all callers, so three gateways and an operator still fit.
PER_ROUND_IN_FLIGHT = 3
# How long a gateway holds an undispatched click before another may take it.
LEASE_S = 30.0
# How often a gateway renews its claims and looks for clicks nobody sends.
SWEEP_S = 5.0
# While clicks are being kept, sending waits for their acks, at most this long
# (a stream of clicks that never pauses still has its clicks sent).
ACKS_FIRST_S = 1.0
# A click whose sending failed (Temporal away) is tried again after this.
RETRY_AFTER_S = 5.0
SWEEP_BATCH = 500

# A ledger that cannot be reached now; the sweep tries again later.
LEDGER_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass
class _RoundLine:
    """The clicks of one round being sent from this gateway, a few at a time."""

    slots: asyncio.Semaphore
    users: int = 0


@dataclass
class DecisionInbox(Generic[T]):
    """Clicks kept in the ledger, sent to their rounds by `deliver`.

    `deliver(click, taken_over)` sends one click and notes the answer
    (`taken_over`: the row was claimed from the inbox, not taken from Slack by
    this gateway, so it may have been sent before). `spawn` runs a coroutine
    as a task the gateway waits for when it stops.
    """

    ledger: Ledger
    deliver: Callable[[InboxClick, bool], Awaitable[T]]
    spawn: Callable[[Coroutine[Any, Any, T]], asyncio.Task[T]]
    per_round: int = PER_ROUND_IN_FLIGHT
    lease_s: float = LEASE_S
    sweep_s: float = SWEEP_S
    owner: str = field(default_factory=lambda: f"gateway-{uuid.uuid4().hex[:12]}")
    _lines: dict[str, _RoundLine] = field(default_factory=dict)
    _sending: dict[str, asyncio.Task[T]] = field(default_factory=dict)
    acks_first_s: float = ACKS_FIRST_S
    _sweeper: asyncio.Task[None] | None = None
    _stopping: bool = False
    # Clicks being kept now, whose Slack answers wait for their rows.
    _receiving: int = 0
    _received: asyncio.Event = field(default_factory=asyncio.Event)
    # Clicks waiting for the next INSERT, and the task writing them.
    _arrived: list[tuple[InboxClick, asyncio.Future[bool]]] = field(default_factory=list)
    _keeper: asyncio.Task[None] | None = None

    async def receive(self, click: InboxClick) -> bool:
        """Keep a click, claimed by this gateway; False when it is kept already.

        Clicks that arrive together are kept together: while one INSERT is
        being written the clicks behind it wait, and go in the next, one
        statement for all of them (`Ledger.receive_decisions`). Fifty
        concurrent INSERTs took 28-34 ms through the pool's five connections
        against 0.5-2 ms for one (issue 14).
        """
        self._receiving += 1
        self._received.clear()
        try:
            kept: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._arrived.append((click, kept))
            if self._keeper is None or self._keeper.done():
                self._keeper = asyncio.create_task(self._keep())
            return await kept
        finally:
            self._receiving -= 1
            if self._receiving == 0:
                self._received.set()

    async def _keep(self) -> None:
        """Write the clicks that arrived, a statement at a time, until none are left."""
        while self._arrived:
            batch, self._arrived = self._arrived, []
            refused = await self._write(batch)
            if refused is not None and len(batch) > 1:
                # A row the ledger refuses (a NUL in a field, say) must not
                # fail the clicks it shared the statement with: each alone.
                for one in batch:
                    await self._write([one])

    async def _write(
        self, batch: list[tuple[InboxClick, asyncio.Future[bool]]]
    ) -> asyncpg.PostgresError | None:
        """Keep `batch` in one statement and answer each click; the error when
        the ledger refused the statement (the clicks are left unanswered then)."""
        try:
            kept = await self.ledger.receive_decisions(
                [click for click, _ in batch], self.owner, self.lease_s
            )
        except Exception as error:  # each click's sender decides (the direct path)
            shared = len(batch) > 1 and not isinstance(error, DATABASE_AWAY)
            if shared and isinstance(error, asyncpg.PostgresError):
                return error
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
            return None
        told: set[str] = set()
        for click, answer in batch:
            key = click.interaction_key
            # A key twice in one batch: its first click kept it, the second is a retry.
            if not answer.done():
                answer.set_result(key in kept and key not in told)
            told.add(key)
        return None

    async def acks_first(self) -> None:
        """Wait until no click is being kept, at most `acks_first_s`.

        The gateway answers Slack and sends to rounds on one event loop; under
        a burst, sending while clicks are still being kept put the sends' CPU
        (the update, the ledger note, the ephemeral message) ahead of the
        acks, and the last ack of 50 waited for them (issue 14). A kept click
        is durable, so its sending may wait for the acks behind it.
        """
        if self._receiving:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._received.wait(), self.acks_first_s)

    def dispatch(self, click: InboxClick, taken_over: bool = False) -> asyncio.Task[T]:
        """Send a click this gateway holds, in its round's turn; the task gives the answer."""
        sending = self._sending.get(click.interaction_key)
        if sending is not None:
            return sending
        task = self.spawn(self._send(click, taken_over))
        self._sending[click.interaction_key] = task
        task.add_done_callback(lambda done: self._sent(click.interaction_key, done))
        return task

    def _sent(self, key: str, task: asyncio.Task[T]) -> None:
        self._sending.pop(key, None)
        if not task.cancelled():
            task.exception()  # logged by `_send`; the sweep sends it again

    async def _send(self, click: InboxClick, taken_over: bool) -> T:
        line = self._lines.get(click.workflow_id)
        if line is None:
            line = self._lines[click.workflow_id] = _RoundLine(asyncio.Semaphore(self.per_round))
        line.users += 1
        try:
            async with line.slots:
                await self.acks_first()
                return await self.deliver(click, taken_over)
        except Exception as error:
            if self._stopping:
                raise  # cancelled by `stop`, which gives the claim back
            log.warning(
                "could not send %s to %s, trying again in %g s: %r",
                click.interaction_key,
                click.workflow_id,
                RETRY_AFTER_S,
                error,
            )
            with contextlib.suppress(*LEDGER_UNAVAILABLE):
                await self.ledger.release_claims(
                    self.owner, [click.interaction_key], after_s=RETRY_AFTER_S
                )
            raise
        finally:
            line.users -= 1
            if line.users == 0:
                del self._lines[click.workflow_id]

    async def sweep(self) -> int:
        """Renew the claims on what this gateway sends, and send what nobody
        does; the number of clicks taken over."""
        if self._sending:
            await self.ledger.renew_claims(self.owner, list(self._sending), self.lease_s)
        entries = await self.ledger.claim_decisions(self.owner, self.lease_s, SWEEP_BATCH)
        for entry in entries:
            log.info("sending %s, which no gateway had sent", entry.interaction_key)
            self.dispatch(InboxClick.of(entry), taken_over=True)
        return len(entries)

    def start(self) -> None:
        """Sweep now and every `sweep_s` until `stop`."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except LEDGER_UNAVAILABLE as error:
                log.warning("could not sweep the decision inbox: %r", error)
            await asyncio.sleep(self.sweep_s)

    async def stop(self) -> None:
        """Stop sweeping and sending; give back the claims on what is not sent."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        unsent = list(self._sending.values())
        for task in unsent:
            task.cancel()
        await asyncio.gather(*unsent, return_exceptions=True)
        try:
            await self.ledger.release_claims(self.owner)
        except LEDGER_UNAVAILABLE as error:
            log.warning("could not give back the inbox's claims (they lapse): %r", error)
