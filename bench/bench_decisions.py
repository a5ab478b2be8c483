"""Slack decisions, clicked through one `amend gateway` process by simulated
reviewers (a stand-in for people in Slack), against Temporal's own floor.

The service runs as a deployment runs it (`bench/fleet.py`): one `amend
worker` and one `amend gateway` process on the run's dev server and
PostgreSQL, so the gateway's CPU and log are its own.

Click-to-ack: each click is timed from the signed POST to the gateway's
answer, bodies signed beforehand. The gateway keeps the click in the decision
inbox (one PostgreSQL row) and answers "being recorded" (Slack ignores the
body of a button's answer; the reviewer is told the round's answer by an
ephemeral message); the inbox's dispatcher sends it to the round
(gateway/inbox.py). Two loads:

- 50 reviewers click Accept on one proposal at the same moment (a quorum of
  fifty, so every click is a vote the round takes);
- 500 clicks across 50 rounds (10 reviewers each, a quorum of 11 so the
  proposals stay open), all sent at the same moment.

Click-to-decision-in-ledger: for the bursts, from the POST to the decision
row's time (`decided_at`, written by the round as it takes the vote); one
click at a time, from the POST to the round's answer noted on the click's
inbox row (`dispatched_at`, the time the gateway tells the reviewer), which
the round gives only once the decision row is in the ledger. The floor is a
raw Temporal update round trip on a no-op workflow on the same dev server,
measured in interleaved blocks.

Gateway CPU per click: the gateway process's user + system time (from /proc)
over the 500-click burst, until every vote is in the ledger, divided by the
clicks: the insert, the update, the ephemeral message and the sweeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.fleet import CHANNEL, SIGNING_SECRET, Fleet, Process, running_fleet
from bench.harness import (
    BenchEnv,
    Figure,
    Timings,
    alternating,
    at_most,
    percentile,
    value_at_most,
)
from gateway.slack import button_click_key
from ledger.pool import create_pool
from ledger.store import Ledger
from review.messages import parse_action_value
from standins.reviewer import JSONDict, SimulatedReviewer

CONCURRENT = 50
ROUNDS, PER_ROUND = 50, 10
# One click at a time: a hundred, so that p99 is the second slowest, not the
# slowest (with 30 it was the one click that met a busy moment of the machine).
SEQUENTIAL = 100
LINE_PROPOSALS = 3
ACK_TARGET_MS = 100
IN_FLIGHT_LIMIT = "limit on number of concurrent in-flight updates"


@workflow.defn(sandboxed=False)
class NoopWorkflow:
    """The floor: an update that does nothing but answer."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.update
    async def touch(self, value: int) -> int:
        return value

    @workflow.signal
    def finish(self) -> None:
        self.done = True


def _users(prefix: str, count: int) -> list[str]:
    return [f"U0{prefix}{n:03d}" for n in range(count)]


def _cpu_s(process: Process) -> float:
    """User + system seconds the process has used (Linux /proc)."""
    stat = Path(f"/proc/{process.process.pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(env: BenchEnv) -> list[Figure]:
    url = await env.database()
    pool = await create_pool(url, max_size=4)
    queue = f"amend-bench-{uuid.uuid4().hex[:8]}"
    try:
        async with running_fleet(
            env.temporal.service_client.config.target_host,
            Ledger(pool),
            url,
            queue,
            env.workdir / queue,
            workers=1,
            gateways=1,
            model_latency_s=0,
        ) as fleet:
            return await _measure(fleet, env.temporal)
    finally:
        await pool.close()


class Crowd:
    """Simulated reviewers posting through connections opened beforehand, as
    Slack keeps its connections to an app open; bodies are signed before the
    clock starts.

    The requests are written as bytes on open keep-alive connections and the
    answers read as bytes: the client shares the gateway's two cores, and
    through httpx (a pool, a request object, a response object per click) its
    own CPU was counted in the acks it timed: 50 clicks on one round p99
    570-1100 ms through httpx against 160-170 ms through these sockets, in the
    same run (issue 14). Slack's senders are not on the service's machine.
    """

    def __init__(self, gateway: Process) -> None:
        self.gateway = gateway
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open(self, connections: int) -> None:
        """Open afresh the connections a burst of `connections` clicks goes out
        on (uvicorn closes one idle for 5 s)."""
        await self.close()
        address = urlsplit(self.gateway.url)
        while len(self.idle) < connections:
            self.idle.append(await asyncio.open_connection(address.hostname, address.port))

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()

    def request(self, user: str, message: JSONDict) -> bytes:
        """A click of Accept on `message` by `user`, signed, as Slack sends it."""
        return self.click(user, message)[0]

    def click(self, user: str, message: JSONDict) -> tuple[bytes, str]:
        """The request of an Accept click, and the key the gateway keeps it under."""
        person = SimulatedReviewer(self.gateway.url, SIGNING_SECRET, user)
        payload = person.block_actions_payload(message, "accept", channel_id=CHANNEL)
        body = person.encode(payload)
        _, proposal_id = parse_action_value(payload["actions"][0]["value"])
        key = button_click_key(payload["actions"][0]["action_ts"], user, proposal_id, "accept")
        stamp = int(time.time())
        head = (
            f"POST /slack/interactions HTTP/1.1\r\nHost: {urlsplit(self.gateway.url).netloc}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Slack-Request-Timestamp: {stamp}\r\n"
            f"X-Slack-Signature: {person.sign(body, stamp)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body, key

    async def send(self, request: bytes) -> tuple[float, float, str]:
        """(wall time sent, seconds to the whole answer, the answer's outcome).

        A connection the gateway closed while it was idle is opened again and
        the click sent on it, its clock started again, as an HTTP client does.
        """
        if not self.idle:
            await self.open(1)
        reader, writer = self.idle.pop()
        try:
            sent, began = time.time(), time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            address = urlsplit(self.gateway.url)
            reader, writer = await asyncio.open_connection(address.hostname, address.port)
            sent, began = time.time(), time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        took = time.perf_counter() - began
        self.idle.append((reader, writer))
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"a click was answered {head.splitlines()[0]!r}: {body!r}")
        return sent, took, str(json.loads(body).get("outcome"))

    async def burst(
        self, clicks: list[tuple[str, JSONDict]]
    ) -> tuple[list[float], list[str], dict[str, float]]:
        """All at once: (seconds to ack, outcomes, wall time each was sent, by user)."""
        requests = [self.request(user, message) for user, message in clicks]
        await self.open(len(requests))
        answers = await asyncio.gather(*(self.send(r) for r in requests))
        sent = {user: at for (user, _), (at, _, _) in zip(clicks, answers, strict=True)}
        return [took for _, took, _ in answers], [o for _, _, o in answers], sent


async def _in_ledger(ledger: Ledger, rounds: dict[str, int]) -> dict[str, float]:
    """Wait until each round has its votes in the ledger and its clicks noted
    in the inbox; when each vote was taken, by reviewer."""
    deadline = time.monotonic() + 300
    taken: dict[str, float] = {}
    for round_id, count in rounds.items():
        while len(found := await ledger.decisions(round_id)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every vote of {round_id} reached the ledger")
            await asyncio.sleep(0.1)
        taken.update({d.reviewer: d.decided_at.timestamp() for d in found})
    for round_id in rounds:  # and the round's answer to each noted (the reviewer told)
        while any(k.outcome is None for k in await ledger.decision_inbox(round_id)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every click of {round_id} was noted")
            await asyncio.sleep(0.1)
    return taken


async def _noted(ledger: Ledger, key: str) -> float:
    """When the round's answer to the click kept under `key` was noted (wall clock)."""
    deadline = time.monotonic() + 60
    while (entry := await ledger.inbox_entry(key)) is None or entry.dispatched_at is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the round's answer to {key} was not noted")
        await asyncio.sleep(0.01)
    if entry.outcome != "taken":
        raise RuntimeError(f"a single click was {entry.outcome}: {entry.message}")
    return entry.dispatched_at.timestamp()


async def _measure(fleet: Fleet, temporal: Client) -> list[Figure]:
    [gateway] = fleet.gateways
    # The clicks one at a time go to three proposals in turn, so none of them
    # reaches the quorum: each stays open and every click is a vote.
    crowd, line = _users("CROWD", CONCURRENT), _users("LINE", SEQUENTIAL // LINE_PROPOSALS + 5)
    burst_round = f"bench-{uuid.uuid4().hex[:6]}"
    quorum = {"quorum": CONCURRENT}  # the crowd settles the first proposal, no more
    await fleet.start_round(
        gateway,
        burst_round,
        reviewers=crowd + line,
        max_proposals=1 + LINE_PROPOSALS,
        policy=quorum,
        strict_policy=quorum,
    )
    spread = [f"{burst_round}-r{n:02d}" for n in range(ROUNDS)]
    voters = {r: _users(f"R{n:02d}V", PER_ROUND + 1) for n, r in enumerate(spread)}
    warm_round = f"{burst_round}-warm"
    voters[warm_round] = _users("WARM", PER_ROUND + 1)
    await asyncio.gather(
        *(
            fleet.start_round(
                gateway,
                r,
                reviewers=voters[r],
                max_proposals=1,
                policy={"quorum": PER_ROUND + 1},  # ten votes leave it open
                strict_policy={"quorum": PER_ROUND + 1},
            )
            for r in [*spread, warm_round]
        )
    )
    first, *in_line = await fleet.messages(burst_round, 1 + LINE_PROPOSALS)
    messages = {r: (await fleet.messages(r, 1))[0] for r in [*spread, warm_round]}
    people = Crowd(gateway)

    # -- a gateway that has taken clicks before ---------------------------------------
    # Its first clicks run code paths for the first time (the INSERT prepared
    # on its connection, the form parser, the first update): 88-165 ms for a
    # first burst of 50 against 40-94 ms for the bursts after it, in one run.
    # A gateway in service is past them, so ten clicks come first, untimed.
    await people.burst([(u, messages[warm_round]) for u in voters[warm_round][:PER_ROUND]])
    await _in_ledger(fleet.ledger, {warm_round: PER_ROUND})

    # -- fifty at once on one round -------------------------------------------------
    clicks = [(u, first) for u in crowd]
    one_round = await Burst.of(people, clicks, fleet.ledger, {burst_round: CONCURRENT})

    # -- five hundred at once across fifty rounds -----------------------------------
    cpu0 = _cpu_s(gateway)
    clicks = [(u, messages[r]) for r in spread for u in voters[r][:PER_ROUND]]
    wide = await Burst.of(people, clicks, fleet.ledger, dict.fromkeys(spread, PER_ROUND))
    cpu = _cpu_s(gateway) - cpu0

    # -- one at a time, against a raw update round trip -----------------------------
    turns = itertools.count()
    async with Worker(
        temporal,
        task_queue=f"bench-noop-{uuid.uuid4().hex[:6]}",
        workflows=[NoopWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ) as worker:
        noop: WorkflowHandle[Any, Any] = await temporal.start_workflow(
            NoopWorkflow.run,
            id=f"bench-noop-{uuid.uuid4().hex[:6]}",
            task_queue=worker.task_queue,
            execution_timeout=timedelta(minutes=10),
        )

        single_acks: list[float] = []
        to_answer: list[float] = []

        async def decide(_: int) -> None:
            turn = next(turns)
            voter, proposal = divmod(turn, LINE_PROPOSALS)
            request, key = people.click(line[voter], in_line[proposal])
            sent, ack, answer = await people.send(request)
            if answer != "pending":
                raise RuntimeError(f"a single click was answered {answer!r}")
            noted = await _noted(fleet.ledger, key)
            single_acks.append(ack)
            to_answer.append(noted - sent)

        async def raw_update(i: int) -> None:
            await noop.execute_update(NoopWorkflow.touch, i)

        _polled, floor = await alternating(decide, raw_update, SEQUENTIAL, rounds=5, warmup=2)
        await noop.signal(NoopWorkflow.finish)
    # The warm-up clicks are not counted; the rest are timed from the POST to
    # the noted answer (the polling that found it is not counted either).
    ours = Timings(tuple(to_answer[2:]))
    acked = Timings(tuple(single_acks[2:]))
    await asyncio.gather(
        *(
            temporal.get_workflow_handle(f"round-{r}").cancel()
            for r in [burst_round, *spread, warm_round]
        )
    )
    await people.close()
    in_flight_errors = gateway.output().count(IN_FLIGHT_LIMIT)
    one_at_a_time = Figure(
        "decisions: click-to-decision-in-ledger, one click at a time (p99)",
        ours.p99_ms,
        "ms",
        floor.p99_ms,
        "raw Temporal update round trip, no-op workflow (p99)",
        at_most(5),
        note=f"p50 {ours.median_ms:.1f} ms vs raw {floor.median_ms:.1f} ms; from the POST to "
        "the round's answer noted on the inbox row (then told by ephemeral message): signature "
        "check, inbox insert, ack, update, validator, ledger write, note; the ack itself "
        f"('being recorded') p50 {acked.median_ms:.1f} ms, p99 {acked.p99_ms:.1f} ms",
    )
    return [*_figures(one_round, wide, cpu, in_flight_errors), one_at_a_time]


@dataclass(frozen=True)
class Burst:
    """Clicks sent at once: each one's ack and outcome, its time to the ledger,
    and what bounds the acks: the gateway's CPU until the last one, and the
    machine's load meanwhile."""

    acks: list[float]
    outcomes: list[str]
    to_ledger: list[float]
    cpu_to_last_ack_s: float
    load: float

    @classmethod
    async def of(
        cls,
        people: Crowd,
        clicks: list[tuple[str, JSONDict]],
        ledger: Ledger,
        rounds: dict[str, int],
    ) -> Burst:
        """Send `clicks` at once and wait for `rounds` (votes by round) in the ledger."""
        cpu0 = _cpu_s(people.gateway)
        acks, outcomes, sent = await people.burst(clicks)
        cpu = _cpu_s(people.gateway) - cpu0
        load = os.getloadavg()[0]
        taken = await _in_ledger(ledger, rounds)
        to_ledger = [taken[user] - sent[user] for user, _ in clicks]
        return cls(acks, outcomes, to_ledger, cpu, load)

    def bound(self) -> str:
        """Why the slowest ack took what it took, in this run's figures."""
        cpu_ms, count = self.cpu_to_last_ack_s * 1000, len(self.acks)
        return (
            f"the gateway used {cpu_ms:.0f} ms of CPU until the last ack "
            f"({cpu_ms / count:.2f} ms a click: HTTP, signature, form, the shared INSERT, the "
            f"answer), load average {self.load:.1f} on {os.cpu_count()} cores shared with "
            "Temporal, PostgreSQL, the worker, the stand-ins and this client"
        )


def _figures(
    one_round: Burst, wide_burst: Burst, cpu: float, in_flight_errors: int
) -> list[Figure]:
    ack, wide = Timings(tuple(one_round.acks)), Timings(tuple(wide_burst.acks))
    clicks = len(wide_burst.acks)
    outcomes, wide_outcomes = one_round.outcomes, wide_burst.outcomes
    to_ledger, wide_to_ledger = one_round.to_ledger, wide_burst.to_ledger

    def answered(found: list[str]) -> str:
        return ", ".join(f"{found.count(o)} {o}" for o in sorted(set(found)))

    return [
        Figure(
            f"decisions: click-to-ack, {CONCURRENT} concurrent clicks on one round (p50)",
            ack.median_ms,
            "ms",
            note=f"answered: {answered(outcomes)} (each once the inbox kept it; the round's "
            "answer is told by ephemeral message); "
            f"all {CONCURRENT} votes reached the ledger",
        ),
        Figure(
            f"decisions: click-to-ack, {CONCURRENT} concurrent clicks on one round (p99)",
            ack.p99_ms,
            "ms",
            target=value_at_most(ACK_TARGET_MS),
            note="nearest rank: with 50 clicks, the slowest; Slack's deadline is 3000 ms; "
            f"{one_round.bound()}",
        ),
        Figure(
            f"decisions: click-to-ack, {clicks} clicks across {ROUNDS} rounds (p50)",
            wide.median_ms,
            "ms",
            note=f"all sent at once to one gateway process; answered: {answered(wide_outcomes)}",
        ),
        Figure(
            f"decisions: click-to-ack, {clicks} clicks across {ROUNDS} rounds (p99)",
            wide.p99_ms,
            "ms",
            target=value_at_most(ACK_TARGET_MS),
            note=f"500 requests at the same instant queue for one Python process: "
            f"{wide_burst.bound()}; 100 ms for 500 acks would need 0.2 ms of CPU a click",
        ),
        Figure(
            f"decisions: burst click-to-decision-in-ledger, {CONCURRENT} on one round (p99)",
            percentile(to_ledger, 99) * 1000,
            "ms",
            note=f"p50 {percentile(to_ledger, 50) * 1000:.0f} ms; the round takes decisions one "
            "at a time, so the last of 50 waits for the 49 before it",
        ),
        Figure(
            f"decisions: burst click-to-decision-in-ledger, {clicks} across {ROUNDS} rounds (p99)",
            percentile(wide_to_ledger, 99) * 1000,
            "ms",
            note=f"p50 {percentile(wide_to_ledger, 50) * 1000:.0f} ms",
        ),
        Figure(
            "decisions: gateway CPU per click",
            cpu / clicks * 1000,
            "ms",
            note=f"the `amend gateway` process over the {clicks}-click burst until every vote "
            "was in the ledger: verify, insert, dispatch, update, ephemeral message",
        ),
        Figure(
            "decisions: in-flight-limit errors in the gateway log",
            in_flight_errors,
            "errors",
            target=value_at_most(0),
            note=f"'{IN_FLIGHT_LIMIT}' over the whole run; the dispatcher sends at most 3 "
            "updates per round at once",
        ),
    ]
