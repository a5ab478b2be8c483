"""Round throughput, history size and cost per round.

Many rounds run at once through the whole service: the scripted stand-in model
proposes, the Slack stand-in carries the messages, the simulated reviewer
accepts every proposal through the gateway with signed clicks, and the round
goes on through training and evaluation on the stand-ins. The floor is a no-op
workflow (`bench/noop.py`) with the same number of activities and updates per
round, driven at the same concurrency on the same Temporal server.

History figures come from the measured rounds' own event histories: events and
bytes per proposal, and how many proposals one run could hold before Temporal
suggests continue-as-new (server defaults: 4 Ki events or 4 MiB, see
`limit.historyCount.suggestContinueAsNew` and `limit.historySize.suggestContinueAsNew`).
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Worker

from bench.harness import (
    SMALL_EVAL_SET,
    SUGGEST_BYTES,
    SUGGEST_EVENTS,
    BenchEnv,
    BenchStack,
    Figure,
    at_least,
    history_bytes,
    served_apart,
    value_at_most,
)
from bench.noop import NoOpRound, NoOpRoundInput, noop
from constitution.contracts import RoundResult
from standins.reviewer import SimulatedReviewer, open_proposals
from standins.slack.config import SlackStandInConfig

ROUNDS = int(os.environ.get("AMEND_BENCH_ROUNDS", "40"))
PROPOSALS = 10  # asked for; the scripted model's evidence yields fewer
TIMEOUT_S = 600
REPRESS_S = 5.0
REVIEWER = "U0BENCHREVIEWER"
CHANNEL = SlackStandInConfig().channels[0]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(env: BenchEnv) -> list[Figure]:
    # Slack's per-channel pace (about a post a second) is off here: with it,
    # the rounds' few hundred posts to one channel would take that many
    # seconds whatever the service does, and the figure would measure Slack.
    settings: dict[str, Any] = {
        "slack_signing_secret": "bench-signing-secret",
        "slack_post_interval_s": 0,
        # The worker's bound on model calls in flight is for a real server's
        # capacity; the stand-in answers at once, so the bound would make this a
        # measure of the model path (which bench_proposals and bench_training
        # measure against the server's capacity).
        "model_concurrency": 64,
        "eval_prompt_file": str(SMALL_EVAL_SET),
    }
    # The stand-ins run in processes of their own, as the real model server and
    # Slack would, so this process's CPU is the service's (worker, gateway) and
    # the simulated reviewer's.
    async with (
        served_apart("standins.model.app:create_app") as model_url,
        served_apart("standins.slack.app:create_app") as slack_url,
    ):
        settings |= {
            "model_base_url": f"{model_url}/v1",
            "slack_api_url": slack_url,
            "slack_bot_token": SlackStandInConfig().bot_token,
            "slack_review_channel": CHANNEL,
        }
        async with env.stack(**settings) as bench:
            ours = await _our_rounds(bench, slack_url)
    floor = await _noop_rounds(env.temporal, ours["activities"], ours["updates"])
    return _figures(ours, floor)


async def _our_rounds(bench: BenchStack, slack_url: str) -> dict[str, Any]:
    stack = bench.stack
    reviewer = SimulatedReviewer(
        stack.gateway_url,
        stack.settings.slack_signing_secret.get_secret_value(),
        REVIEWER,
        slack_api_url=slack_url,
    )
    batch = uuid.uuid4().hex[:6]
    round_ids = [f"bench-{batch}-{i}" for i in range(ROUNDS)]
    cpu0, started = _cpu_seconds(), time.perf_counter()
    token = {"Authorization": f"Bearer {stack.operator_token}"}
    async with httpx.AsyncClient(timeout=30, headers=token) as http:
        await asyncio.gather(
            *(
                http.post(
                    f"{stack.gateway_url}/api/rounds",
                    json={
                        "round_id": round_id,
                        "reviewers": [REVIEWER],
                        "max_proposals": PROPOSALS,
                        "training": {"poll_interval": "PT0.2S"},
                    },
                )
                for round_id in round_ids
            )
        )
        handles = [
            bench.temporal.get_workflow_handle(f"round-{r}", result_type=RoundResult)
            for r in round_ids
        ]
        results = asyncio.ensure_future(asyncio.gather(*(h.result() for h in handles)))
        clicker = asyncio.ensure_future(_accept_everything(slack_url, reviewer))
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await asyncio.wait([results, clicker], return_when=asyncio.FIRST_COMPLETED)
            if not results.done():
                clicker.result()  # the reviewer stopped: say why
            finished: list[RoundResult] = results.result()
        finally:
            clicker.cancel()
            results.cancel()
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu0
    failed = [r for r in finished if r.state.value != "completed"]
    sampled = min(5, ROUNDS)
    histories = [await h.fetch_history() for h in handles[:sampled]]
    decided = [len(await bench.ledger.decisions(r)) for r in round_ids[:sampled]]
    proposals = sum(decided) / sampled
    return {
        "elapsed": elapsed,
        "cpu": cpu,
        "rss": _max_rss_mib(),
        "failed": len(failed),
        "proposals": proposals,
        "activities": _count(histories[0], EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        "updates": _count(histories[0], EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
        "events": sum(len(h.events) for h in histories) / len(histories),
        "bytes": sum(history_bytes(h) for h in histories) / len(histories),
    }


def _count(history: WorkflowHistory, kind: int) -> int:
    return sum(1 for e in history.events if e.event_type == kind)


async def _accept_everything(slack_url: str, reviewer: SimulatedReviewer) -> None:
    """The simulated reviewer watching the channel: accept each open proposal,
    and press again on one still open a while later (a click can land before
    the round has noted the message as posted, and is then refused)."""
    clicked: dict[str, float] = {}
    while True:
        now = time.monotonic()
        due = [
            r
            for r in await open_proposals(slack_url, channel_id=CHANNEL)
            if now - clicked.get(r["ts"], -REPRESS_S) >= REPRESS_S
        ]
        clicked.update((r["ts"], now) for r in due)
        await asyncio.gather(*(reviewer.click(r, "accept", channel_id=CHANNEL) for r in due))
        await asyncio.sleep(0.2)


async def _noop_rounds(client: Client, activities: int, updates: int) -> dict[str, Any]:
    queue = f"bench-noop-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[NoOpRound], activities=[noop]):
        cpu0, started = _cpu_seconds(), time.perf_counter()
        handles = await asyncio.gather(
            *(
                client.start_workflow(
                    NoOpRound.run,
                    NoOpRoundInput(activities=activities, updates=updates),
                    id=f"bench-noop-{queue}-{i}",
                    task_queue=queue,
                    execution_timeout=timedelta(minutes=10),
                )
                for i in range(ROUNDS)
            )
        )
        await asyncio.gather(
            *(h.execute_update(NoOpRound.decide, f"p{n}") for h in handles for n in range(updates))
        )
        await asyncio.gather(*(h.result() for h in handles))
        return {"elapsed": time.perf_counter() - started, "cpu": _cpu_seconds() - cpu0}


def _figures(ours: dict[str, Any], floor: dict[str, Any]) -> list[Figure]:
    per_proposal_events = ours["events"] / max(ours["proposals"], 1)
    per_proposal_bytes = ours["bytes"] / max(ours["proposals"], 1)
    fit = min(SUGGEST_EVENTS / per_proposal_events, SUGGEST_BYTES / per_proposal_bytes)
    shape = f"{ours['activities']} activities and {ours['updates']} updates per round"
    return [
        Figure(
            f"rounds: {ROUNDS} concurrent rounds, about {ours['proposals']:.0f} proposals each",
            ROUNDS / ours["elapsed"],
            "rounds/s",
            ROUNDS / floor["elapsed"],
            "no-op workflow, same shape",
            at_least(0.8),
            note=f"{shape}; {ours['failed']} rounds did not complete. Where missed: on two "
            "cores the service competes for CPU with the stand-in model (every proposal, "
            "check, preview, dataset and evaluation call of every round) and the Slack "
            "stand-in, which the no-op floor does not run, and the round waits on real "
            "timers (fine-tune polls) that the floor does not have",
        ),
        Figure(
            "rounds: CPU per round (worker, gateway and reviewer process)",
            ours["cpu"] / ROUNDS * 1000,
            "ms",
            floor["cpu"] / ROUNDS * 1000,
            "no-op workflow, same shape",
            note="the stand-ins run in processes of their own and are not counted; the "
            "simulated reviewer shares the process; the Temporal server's CPU is not counted "
            "on either side",
        ),
        Figure("rounds: peak RSS of the worker and gateway process", ours["rss"], "MiB"),
        Figure("history: events per proposal", per_proposal_events, "events"),
        Figure("history: bytes per proposal", per_proposal_bytes, "bytes"),
        Figure(
            "history: proposals per run before continue-as-new is suggested",
            fit,
            "proposals",
            note=f"Temporal suggests continue-as-new at {SUGGEST_EVENTS} events or "
            f"{SUGGEST_BYTES // 1024 // 1024} MiB",
        ),
        Figure(
            "history: one round's events vs the suggestion threshold",
            ours["events"] / SUGGEST_EVENTS,
            "fraction",
            target=value_at_most(0.25),
        ),
    ]
