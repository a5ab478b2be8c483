"""The run: when each fault meets which rounds, scene by scene.

Two waves of rounds, so the faults meet rounds at every stage:

1. wave 1 starts; PostgreSQL stops for a minute as its proposals are posted,
   and a simulated outsider clicks while it is down (a refusal to record);
2. wave 1 in review: one round decided while Temporal restarts, one with the
   gateway SIGKILLed mid-clicks, one with a proposal's message deleted in
   Slack (decided by an operator instead) and its clicks landing while
   rounds continue as new (Temporal is told to suggest it early);
3. wave 2 starts; Temporal restarts while a wave-1 round retrains; the model
   stand-in is down for a minute and then answers 429/500 (wave 1
   retraining, wave 2 drafting); the Slack stand-in is down for a minute
   and then answers 429/500 (wave 2 posting);
4. wave 2 decided; all rounds waited for.

Throughout, workers are SIGKILLed at seeded random moments and started again.
Every wait has a deadline inside the run's budget: a round that never gets
where a scene needs it is reported as it is, not waited on forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

from bench.chaos import faults
from bench.chaos.clicks import SlackClicks
from bench.chaos.facts import continue_as_new_times, gather_facts
from bench.chaos.faults import FaultLog
from bench.chaos.invariants import Facts
from bench.chaos.rounds import RoundPlan, Rounds
from bench.chaos.stack import ChaosStack
from bench.chaos.standins import CHANNEL


@dataclass(frozen=True)
class Options:
    rounds: int = 6
    seed: int = 12
    worker_kills: int = 20
    kill_gap_s: tuple[float, float] = (3.0, 12.0)
    postgres_outage_s: float = 60.0
    slack_outage_s: float = 60.0
    model_outage_s: float = 60.0
    error_answers: int = 12  # 429/500 answers after each stand-in outage
    # A round of three proposals is in review at about 60-70 events and each
    # decision adds about 16: at 70 the suggestion comes between its clicks
    # (at 100 it came after the last one, when a round no longer waits).
    continue_as_new_events: int = 70
    budget_s: float = 690.0  # the scenes and the final wait, after start-up
    scene_wait_s: float = 240.0  # the longest a scene waits for its rounds


@dataclass
class Outcome:
    facts: Facts
    log: FaultLog
    plans: list[RoundPlan]
    clicks_in_continue_as_new: int
    continued_as_new: int
    seconds: float
    unplanned_exits: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


async def run_scenario(stack: ChaosStack, options: Options) -> Outcome:
    started = time.monotonic()
    until = started + options.budget_s
    log = FaultLog()
    notes: list[str] = []
    clicks = SlackClicks(stack.gateway_url, stack.slack_url, CHANNEL)
    rounds = Rounds(stack, clicks)
    half = max(3, options.rounds // 2)
    wave1 = [RoundPlan(f"chaos-{n}", 1) for n in range(1, half + 1)]
    wave2 = [RoundPlan(f"chaos-{n}", 2) for n in range(half + 1, options.rounds + 1)]
    stop_killing = asyncio.Event()
    killer = asyncio.create_task(
        faults.kill_workers(
            stack.workers,
            log,
            random.Random(options.seed),
            options.worker_kills,
            options.kill_gap_s,
            stop_killing,
        )
    )

    def scene(name: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {name}", flush=True)

    def soon() -> float:
        """Until when a scene waits for its rounds."""
        return min(until, time.monotonic() + options.scene_wait_s)

    def missed(what: str) -> None:
        notes.append(what)
        print(f"  not reached in time: {what}", flush=True)

    try:
        scene("wave 1 starts")
        for plan in wave1:
            await rounds.start(plan)
        ids1 = [p.round_id for p in wave1]

        scene("PostgreSQL stops while wave 1's proposals are posted")
        if not await rounds.wait(ids1, "some posted", soon(), any_=True):
            missed("a wave-1 proposal posted")

        async def outsiders() -> None:
            await asyncio.sleep(2)
            await asyncio.gather(*(rounds.outsider_click(r) for r in ids1))

        await faults.postgres_outage(
            stack.postgres, log, options.postgres_outage_s, during=outsiders()
        )

        scene("wave 1 in review")
        if not await rounds.wait(ids1, "posted", soon()):
            missed("every wave-1 proposal posted")
        for r in ids1:
            if rounds.plans[r].outsider_clicks == 0:
                await rounds.outsider_click(r)
        first, second, third = (ids1 + ids1 + ids1)[:3]

        scene(f"{first} decided while Temporal restarts")
        await asyncio.gather(
            rounds.decide(first), faults.restart_temporal(stack.temporal, log, "in review")
        )

        scene(f"{second} decided with the gateway killed mid-clicks")
        await faults.kill_gateway_with_clicks_in_flight(
            stack.gateway, log, lambda: rounds.decide(second)
        )
        await stack.gateway.ready(60)

        scene(f"{third}: a proposal's message deleted; the rest clicked as rounds continue as new")
        posted = await rounds.posted(third)
        if posted:
            victim = posted[0]
            await faults.delete_message(
                stack.slack_url,
                log,
                victim["message"]["channel"],
                victim["message"]["ts"],
                f"{third}'s first proposal",
            )
            rounds.plans[third].deleted.add(victim["proposal"]["id"])
        await rounds.decide(third)

        scene("wave 2 starts; Temporal restarts while wave 1 retrains")
        for plan in wave2:
            await rounds.start(plan)
        ids2 = [p.round_id for p in wave2]
        if await rounds.wait(ids1, "retraining", soon(), any_=True):
            await faults.restart_temporal(stack.temporal, log, "in retraining")
        else:
            missed("a wave-1 round retraining")
            # Restarted all the same, but it does not count as the planned fault.
            await faults.restart_temporal(stack.temporal, log, "with no round retraining")

        scene("the model stand-in down, then answering 429/500")
        await faults.standin_outage(stack.model, log, options.model_outage_s)
        await faults.model_errors(stack.model_url, log, options.error_answers)

        scene("the Slack stand-in down, then answering 429/500")
        if ids2 and not await rounds.wait(ids2, "proposing", soon(), any_=True):
            missed("a wave-2 round drafting")
        await faults.standin_outage(stack.slack, log, options.slack_outage_s)
        await faults.slack_errors(stack.slack_url, log, options.error_answers)

        scene("wave 2 decided")
        if ids2 and not await rounds.wait(ids2, "posted", soon()):
            missed("every wave-2 proposal posted")
        await asyncio.gather(*(rounds.outsider_click(r) for r in ids2))
        await asyncio.gather(*(rounds.decide(r) for r in ids2))

        scene("waiting for every round to end")
        if not await rounds.wait(ids1 + ids2, "ended", until):
            missed("every round ended")
    finally:
        if not killer.done() and time.monotonic() < until:
            # The kills are part of the run: let the rest land before it ends.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(killer), max(0.0, until - time.monotonic()))
        stop_killing.set()
        await killer
        await clicks.close()

    scene("reading back the ledger, Slack, the model server and `amend audit verify`")
    plans = wave1 + wave2
    for plan in plans:
        plan.last_status = None
        for _ in range(10):
            if await rounds.status(plan.round_id) is not None:
                break
            await asyncio.sleep(2)
    facts = await gather_facts(stack, plans, clicks.clicks)
    cans = await continue_as_new_times(stack)
    during = sum(1 for c in clicks.clicks if any(t - 1.0 <= c.sent_at <= t + 3.0 for t in cans))
    return Outcome(
        facts,
        log,
        plans,
        during,
        len(cans),
        time.monotonic() - started,
        {s.name: s.unplanned_exits for s in stack.services if s.unplanned_exits},
        notes,
    )
