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
the figure is clicks answered "taken" per second. The floor of the two-process
figures is the one-process figure: the ratio is the scaling.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from bench.fleet import CHANNEL, Fleet, running_fleet
from bench.harness import SMALL_EVAL_SET, BenchEnv, Figure, at_least
from ledger.pool import create_pool
from ledger.store import Ledger

ROUNDS = 8
SPEC = {
    "max_proposals": 2,
    "training": {"prompt_count": 4, "critique_passes": 1, "poll_interval": "PT0.2S"},
}


@dataclass(frozen=True)
class Clicks:
    """A burst of clicks: how long until the last was answered, and how many
    were answered with the round's answer ("taken": the click found its
    gateway idle and waited for the round) and the slowest of those."""

    seconds: float
    count: int
    taken: int
    slowest_taken_ms: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def __str__(self) -> str:
        if not self.taken:
            return f"all {self.count} answered at once ('being recorded')"
        return (
            f"{self.taken} of {self.count} found their gateway idle and waited for the round's "
            f"answer (the slowest {self.slowest_taken_ms:.0f} ms), the rest answered at once"
        )


async def _clicks(fleet: Fleet, round_ids: list[str]) -> Clicks:
    """All clicks of every round at once, spread over the gateways."""
    messages = [m for r in round_ids for m in await fleet.messages(r, 2)]
    gateways = fleet.gateways

    async def click(index: int) -> tuple[str, float]:
        gateway = gateways[index % len(gateways)]
        began = time.perf_counter()
        answer = await fleet.reviewer(gateway).click(messages[index], "accept", channel_id=CHANNEL)
        outcome = answer.json().get("outcome")
        if outcome not in ("taken", "pending"):
            raise RuntimeError(f"a click was not taken: {answer.text}")
        return str(outcome), (time.perf_counter() - began) * 1000

    started = time.perf_counter()
    answers = await asyncio.gather(*(click(i) for i in range(len(messages))))
    seconds = time.perf_counter() - started
    taken = [ms for outcome, ms in answers if outcome == "taken"]
    return Clicks(seconds, len(answers), len(taken), max(taken, default=0.0))


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
            note=f"{2 * ROUNDS} accept clicks sent at once to one gateway, until the last is "
            f"answered: {one_clicks}",
        ),
        Figure(
            "scale-out: clicks with two gateway processes",
            two_clicks.per_second,
            "clicks/s",
            floor=one_clicks.per_second,
            floor_name="one gateway process",
            target=at_least(1.0),
            note=f"the same clicks spread over two gateways: {two_clicks}. The figure is the "
            "slowest click's: one that finds its gateway idle waits for the round's answer "
            "(the 8 rounds under way take it in hundreds of ms), and each of two gateways is "
            "idle more often than one",
        ),
    ]
