"""Slack posting: 100 proposals to one channel, against the channel's own rate limit.

Real Slack lets a channel take about one `chat.postMessage` a second (short
bursts tolerated) and answers faster posting with 429 and Retry-After. The
Slack stand-in here enforces exactly that, one a second per channel, so the
floor is the limit itself: 1.0 messages/s.

The proposals come from real rounds through the workflow, started at once on
one worker and all posting to the one review channel: a round holds at most
50 proposals (`RoundSpec.max_proposals`) and the scripted model proposes at
most one revision per principle of the sample constitution (twelve), so the
hundred are ten rounds of ten. Each round posts its proposals one after
another (`TrainingRoundWorkflow._post`); the worker's pacer
(`activities.slack.ChannelPacer`, `AMEND_SLACK_POST_INTERVAL_S`) spaces the
posts of all ten on the channel.

Figures, from the stand-in's own record of calls: proposal posts per second
from the first to the hundredth (99 intervals over their span), and the 429s
the stand-in answered to `chat.postMessage`. Pacing at Slack's rate, the run
takes about 100 s of posting plus the rounds' proposing.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bench.harness import BenchEnv, Figure, at_least, value_at_most
from standins.serving import serve
from standins.slack.app import create_app
from standins.slack.config import SlackStandInConfig
from standins.slack.state import SlackStandInState, standin_state

CHANNEL = "C0AMENDBENCH"
RATE = 1.0  # Slack's chat.postMessage limit, messages per second per channel
ROUNDS, PER_ROUND = 10, 10
POSTS = ROUNDS * PER_ROUND
# `AMEND_BENCH_SLACK_INTERVAL_S=0` measures the worker without its pacer (the "before").
INTERVAL_S = float(os.environ.get("AMEND_BENCH_SLACK_INTERVAL_S", str(1 / RATE)))
DEADLINE_S = 300


def _evidence(path: Path) -> None:
    """One red-team item per principle: the scripted model revises each named
    principle once, so a round proposes one revision per item."""
    lines = [
        json.dumps(
            {
                "id": f"ev-slack-{n}",
                "kind": "red_team",
                "summary": f"Transcript {n}: the model gave quantities it should not have.",
                "detail": {"what_went_wrong": "Quantities instead of only the warning."},
                "principles": [f"P{n}"],
            }
        )
        for n in range(1, PER_ROUND + 1)
    ]
    path.write_text("\n".join(lines) + "\n")


def _proposal_posts(state: SlackStandInState) -> list[float]:
    """When the stand-in took each proposal's post (a round's digest or summary is not one)."""
    return sorted(
        float(m["ts"])
        for m in state.messages.values()
        if m["channel"] == CHANNEL
        and ":proposal:" in str(((m.get("metadata") or {}).get("event_payload") or {}).get("key"))
    )


def _rate_limited(state: SlackStandInState) -> int:
    return sum(
        1 for c in state.calls if c["method"] == "chat.postMessage" and c.get("status") == 429
    )


async def run(env: BenchEnv) -> list[Figure]:
    evidence = env.workdir / "bench-slack-evidence.jsonl"
    _evidence(evidence)
    slack = create_app(SlackStandInConfig(channels=[CHANNEL], post_message_per_second=RATE))
    state = standin_state(slack)
    async with serve(slack) as served:
        settings: dict[str, Any] = {
            "slack_api_url": served.url,
            "slack_bot_token": SecretStr(SlackStandInConfig().bot_token),
            "slack_review_channel": CHANNEL,
            "slack_post_interval_s": INTERVAL_S,
            "impact_sample_size": 0,
        }
        async with env.stack(**settings) as bench:
            token = {"Authorization": f"Bearer {bench.stack.operator_token}"}
            async with httpx.AsyncClient(headers=token, timeout=30) as gateway:
                for n in range(ROUNDS):
                    started = await gateway.post(
                        f"{bench.stack.gateway_url}/api/rounds",
                        json={
                            "round_id": f"bench-slack-{n}",
                            "reviewers": ["U0BENCH"],
                            "evidence_files": [str(evidence)],
                            "max_proposals": PER_ROUND,
                        },
                    )
                    started.raise_for_status()
            deadline = time.monotonic() + DEADLINE_S
            while len(_proposal_posts(state)) < POSTS:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            posts = _proposal_posts(state)
            limited = _rate_limited(state)
            for n in range(ROUNDS):
                await bench.temporal.get_workflow_handle(f"round-bench-slack-{n}").cancel()
    if len(posts) < POSTS:
        raise RuntimeError(f"{len(posts)} of {POSTS} proposals posted in {DEADLINE_S} s")
    span = posts[-1] - posts[0]
    rate = (len(posts) - 1) / span
    pacing = f"pacer at {INTERVAL_S:g} s" if INTERVAL_S > 0 else "no pacer"
    return [
        Figure(
            name="Slack posts to one channel",
            value=rate,
            unit="messages/s",
            floor=RATE,
            floor_name=f"the channel's rate limit ({RATE:g}/s, as Slack's)",
            target=at_least(0.9),
            note=f"{ROUNDS} rounds of {PER_ROUND} proposals on one worker, {pacing}; "
            f"first to last post {span:.0f} s (about 100 s at Slack's rate)",
        ),
        Figure(
            name="Slack 429s while posting them",
            value=float(limited),
            unit="429s",
            target=value_at_most(0),
            note="chat.postMessage answered 429 by the stand-in (Retry-After waited by slack_sdk)",
        ),
    ]
