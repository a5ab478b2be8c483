"""Capacity per process, for sizing a deployment: rounds a second one `amend
worker` process carries, clicks a second one `amend gateway` process answers,
and what a second of each adds on this machine.

The processes run as a deployment runs them (`bench/fleet.py`), on the run's
dev server and PostgreSQL, with the stand-in model (no latency) and Slack in
the benchmark's process. Rounds: ROUNDS rounds of two proposals are started
together through the gateway(s), every proposal is accepted as soon as it is
posted, and each round retrains on a small dataset; the figure is rounds
completed per second from the first start to the last end. Clicks: with every
round in review, all its clicks are sent at once, spread over the gateways;
the figure is clicks acknowledged per second, from the first sent to the last
acknowledgement. A gateway acknowledges a click ("being recorded") once its
decision inbox keeps it; the round's answer reaches the reviewer afterwards,
by ephemeral message, which is checked (every click told it was recorded)
but not timed. The floor of the two-process figures is the one-process
figure: the ratio is the scaling.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from bench.fleet import ALICE, CHANNEL, Fleet, running_fleet
from bench.harness import SMALL_EVAL_SET, BenchEnv, Figure, at_least
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.reviewer import told_to, wait_until_told

ROUNDS = 8
SPEC = {
    "max_proposals": 2,
    "training": {"prompt_count": 4, "critique_passes": 1, "poll_interval": "PT0.2S"},
}


@dataclass(frozen=True)
class Clicks:
    """A burst of clicks: how long until the last was acknowledged, and each
    click's time from its POST to its acknowledgement."""

    seconds: float
    acks_ms: tuple[float, ...]

    @property
    def count(self) -> int:
        return len(self.acks_ms)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def __str__(self) -> str:
        acks = sorted(self.acks_ms)
        return (
            f"all {self.count} acknowledged ('being recorded') within {self.seconds * 1000:.0f} "
            f"ms (acks: fastest {acks[0]:.0f} ms, median {acks[len(acks) // 2]:.0f} ms, "
            f"slowest {acks[-1]:.0f} ms); each reviewer then told by ephemeral message that the "
            "round recorded the accept"
        )


async def _clicks(fleet: Fleet, round_ids: list[str]) -> Clicks:
    """All clicks of every round at once, spread over the gateways; each one's
    reviewer told afterwards that the round took it."""
    messages = [m for r in round_ids for m in await fleet.messages(r, 2)]
    gateways = fleet.gateways
    told_before = len(await told_to(fleet.slack_url, ALICE))

    async def click(index: int) -> float:
        gateway = gateways[index % len(gateways)]
        began = time.perf_counter()
        answer = await fleet.reviewer(gateway).click(messages[index], "accept", channel_id=CHANNEL)
        if answer.status_code != 200 or answer.json().get("outcome") != "pending":
            raise RuntimeError(f"a click was not acknowledged: {answer.text}")
        return (time.perf_counter() - began) * 1000

    started = time.perf_counter()
    acks = await asyncio.gather(*(click(i) for i in range(len(messages))))
    seconds = time.perf_counter() - started
    # Not timed: every click's reviewer is told, once, that the round recorded it.
    await wait_until_told(fleet.slack_url, ALICE, seen=told_before + len(acks) - 1, wait_s=120)
    told = (await told_to(fleet.slack_url, ALICE))[told_before:]
    if len(told) != len(acks) or not all("accept recorded" in t["text"] for t in told):
        raise RuntimeError(f"the reviewer was not told once per click that it was recorded: {told}")
    return Clicks(seconds, tuple(acks))


async def _measure(env: BenchEnv, processes: int) -> tuple[float, Clicks]:
    """(rounds/s, the clicks) with `processes` workers and as many gateways."""
    url = await env.database()
    pool = await create_pool(url, max_size=2)
    queue = f"amend-bench-{uuid.uuid4().hex[:8]}"
    try:
        async with running_fleet(
            env.temporal.service_client.config.target_host,
            Ledger(pool),
            url,
            queue,
            env.workdir / queue,
            workers=processes,
            gateways=processes,
            model_latency_s=0,
            eval_prompt_file=str(SMALL_EVAL_SET),
        ) as fleet:
            round_ids = [f"scale-{processes}-{n}" for n in range(ROUNDS)]
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    fleet.start_round(fleet.gateways[n % processes], r, **SPEC)
                    for n, r in enumerate(round_ids)
                )
            )
            clicks = await _clicks(fleet, round_ids)
            await asyncio.gather(
                *(asyncio.wait_for(fleet.handle(env.temporal, r).result(), 600) for r in round_ids)
            )
            elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    return ROUNDS / elapsed, clicks


async def run(env: BenchEnv) -> list[Figure]:
    one_rounds, one_clicks = await _measure(env, 1)
    two_rounds, two_clicks = await _measure(env, 2)
    return [
        Figure(
            "scale-out: rounds per worker process",
            one_rounds,
            "rounds/s",
            note=f"{ROUNDS} rounds of 2 proposals, started together, each retrained on 4 "
            "examples; one `amend worker`, one `amend gateway`",
        ),
        Figure(
            "scale-out: rounds with two worker processes",
            two_rounds,
            "rounds/s",
            floor=one_rounds,
            floor_name="one worker process",
            target=at_least(1.0),
            note="two workers and two gateways on a 2-core machine that also runs Temporal, "
            "PostgreSQL and the stand-ins: the scaling is bounded by the cores",
        ),
        Figure(
            "scale-out: clicks per gateway process",
            one_clicks.per_second,
            "clicks/s",
            note=f"{2 * ROUNDS} accept clicks sent at once to one gateway, from the first sent "
            f"to the last acknowledged: {one_clicks}",
        ),
        Figure(
            "scale-out: clicks with two gateway processes",
            two_clicks.per_second,
            "clicks/s",
            floor=one_clicks.per_second,
            floor_name="one gateway process",
            target=at_least(1.0),
            note=f"the same clicks spread over two gateways, half to each: {two_clicks}. "
            "The figure is the last acknowledgement's: each gateway verifies its half, keeps "
            "it in the decision inbox (PostgreSQL, shared) and answers; the rounds' answers "
            "follow by ephemeral message, outside the figure. Both gateways share the 2 "
            "cores with the workers, Temporal, PostgreSQL and the stand-ins",
        ),
    ]
