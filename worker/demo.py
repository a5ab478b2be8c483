"""`amend demo`: one round on the latest constitution (the sample, the first
time), end to end, on the dev stack. Without Slack settings, the simulated
reviewer (a stand-in for people) decides through signed Slack interaction
payloads: it accepts the first proposal, modifies the second and rejects the
third. With a real workspace configured, the round waits for real reviewers
instead.

The demo starts its own stack, so it holds the data directory while it runs
(`worker.datadir`), and stops with one line if the Temporal server or
PostgreSQL it started stops under it.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax

from constitution import TERMINAL_ROUND_STATES, RoundState, diff_versions, round_workflow_id
from constitution.contracts import RoundStatus
from constitution.findings import proposal_summary
from constitution.gate import evaluation_details, gate_summary, retraining_summary
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.reviewer import (
    SIMULATED_REVIEWER,
    Decision,
    ReviewerError,
    SimulatedReviewer,
    decide_in_slack,
    wait_for_proposals,
)
from worker.cli.render import emit_json, timeline_table
from worker.devstack import DevStack, dev_stack
from worker.settings import Settings
from workflows.round import TrainingRoundWorkflow

SCRIPT: tuple[Decision, ...] = ("accept", "modify", "reject")


async def run_demo(
    settings: Settings,
    reviewers: list[str],
    console: Console,
    stop: asyncio.Event,
    *,
    as_json: bool = False,
) -> int:
    """Run the demo's round and report it; the exit code of `amend demo`.

    With `as_json` the progress goes to stderr and stdout gets one JSON
    document: the round's outcome, its constitution diff and whether its hash
    chain is intact.
    """
    if as_json:
        console = Console(stderr=True)
    async with dev_stack(settings) as running:
        return await running.guard(_demo(running, settings, reviewers, console, stop, as_json))


async def _demo(
    running: DevStack,
    settings: Settings,
    reviewers: list[str],
    console: Console,
    stop: asyncio.Event,
    as_json: bool,
) -> int:
    stack = running.stack
    round_id = f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    spec = {
        "round_id": round_id,
        "reviewers": reviewers or [SIMULATED_REVIEWER],
        "max_proposals": 3,
        "reminder_interval": "PT1H",
        "training": {"prompt_count": 4, "poll_interval": "PT0.5S"},
    }
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {stack.operator_token}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        response = await http.post(f"{stack.gateway_url}/api/rounds", json=spec)
    if response.status_code != 201:
        console.print(f"[red]could not start the round:[/red] {escape(response.text)}")
        return 1
    workflow_id = round_workflow_id(round_id)
    console.print(f"started round [bold]{round_id}[/bold] (workflow {workflow_id})")
    console.print(
        f"  Temporal UI: {settings.temporal_ui_url}/namespaces/"
        f"{settings.temporal_namespace}/workflows/{workflow_id}"
    )
    handle = running.temporal.get_workflow_handle(workflow_id)

    if stack.slack_stand_in_url is not None:
        console.print("reviewing with the [yellow]simulated reviewer[/yellow] (stand-in)")
        try:
            await simulate_review(
                handle, stack.slack_stand_in_url, stack.gateway_url, settings, console
            )
        except (ReviewerError, httpx.HTTPError) as error:
            # The demo leaves no round behind waiting for clicks that will not come.
            console.print(
                f"[red]the simulated reviewer could not decide:[/red] {escape(str(error))}"
            )
            async with httpx.AsyncClient(timeout=30, headers=headers) as http:
                cancelled = await http.post(
                    f"{stack.gateway_url}/api/rounds/{round_id}/cancel",
                    json={
                        "reason": f"amend demo: the simulated reviewer could not decide ({error})"
                    },
                )
            console.print(f"round {round_id} cancelled (HTTP {cancelled.status_code})")
            return 1
    else:
        console.print(
            "waiting for reviewers in Slack channel "
            f"{settings.slack_review_channel}; Ctrl-C to stop waiting"
        )

    status = await _follow(handle, console, stop)
    if status is None:
        console.print(
            f"stopped waiting; round {round_id} goes on in Temporal and resumes "
            "with the next `amend dev`"
        )
        return 130
    console.print(
        f"round ended [bold]{status.state.value}[/bold] in {time.monotonic() - started:.1f}s"
    )
    report = await _report(running.database_url, status, console)
    if stack.slack_stand_in_url:
        await _slack_flow(stack.slack_stand_in_url, round_id, console)
    if as_json:
        emit_json(report)
    ended_well = (RoundState.completed, RoundState.gate_failed, RoundState.completed_unchanged)
    return 0 if status.state in ended_well else 1


async def simulate_review(
    handle: Any, slack_url: str, gateway_url: str, settings: Settings, console: Console
) -> None:
    """Decide the round's proposals as SCRIPT says, in turn, once all are posted.

    The scripted model proposes only what the constitution does not say yet,
    so after a few demos on one data directory a round may propose fewer than
    three, or none, and another model may propose more; the reviewer decides
    every proposal there is, so the round never waits on an undecided one.
    """
    reviewer = SimulatedReviewer(
        gateway_url,
        settings.slack_signing_secret.get_secret_value(),
        SIMULATED_REVIEWER,
        slack_api_url=slack_url,
    )
    while True:
        status: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
        if status.state not in (RoundState.created, RoundState.proposing):
            break
        await asyncio.sleep(0.2)
    posted = len(status.pending)
    if not posted:
        console.print("  the round proposed nothing for the simulated reviewer to decide")
        return
    messages = await wait_for_proposals(
        slack_url, posted, wait_s=120, round_id=status.spec.round_id
    )
    # However many the model proposed: the script's decisions in turn, again from the top.
    for number, message in enumerate(messages):
        action = SCRIPT[number % len(SCRIPT)]
        text = comment = None
        if action == "modify":
            text = (
                "Treat requests near this line case by case: weigh the stated context, and "
                "when unsure, give the safety-relevant part of the answer without the rest."
            )
            comment = "Simulated reviewer: narrower wording."
        response = await decide_in_slack(
            reviewer,
            slack_url,
            message,
            action,
            channel_id=settings.slack_review_channel,
            text=text,
            comment=comment,
        )
        console.print(f"  simulated reviewer: {action} -> HTTP {response.status_code}")


async def _follow(handle: Any, console: Console, stop: asyncio.Event) -> RoundStatus | None:
    last = None
    while True:
        status: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
        note = status.state.value
        if note != last:
            console.print(f"  state: {note}")
            last = note
        if status.state in TERMINAL_ROUND_STATES:
            return status
        try:
            await asyncio.wait_for(stop.wait(), 0.3)
            return None
        except TimeoutError:
            pass


class DemoReport(BaseModel):
    """What `amend demo --json` prints: how the round ended and what it changed."""

    round_id: str
    workflow_id: str
    state: RoundState
    base_version: int | None
    result_version: int | None
    diff: str | None = Field(description="Unified diff of the constitution; None: no new version.")
    chain_intact: bool
    error: str | None


async def _report(database_url: str, status: RoundStatus, console: Console) -> DemoReport:
    pool = await create_pool(database_url, max_size=2)
    try:
        ledger = Ledger(pool)
        base = await ledger.get_version(status.base_version)
        result = await ledger.get_version(status.result_version) if status.result_version else None
        console.rule("proposals: evidence, checks, conflicts, impact preview")
        for item in status.proposals:
            for line in proposal_summary(item.proposal):
                console.print(escape(line))
        console.rule("constitution diff")
        diff = diff_versions(base, result) if base and result else None
        if diff is not None:
            console.print(Syntax(diff, "diff", word_wrap=True))
        else:
            console.print("no new version (no proposal accepted)")
        console.rule(f"ledger timeline of round {status.spec.round_id}")
        console.print(timeline_table(await ledger.timeline(status.spec.round_id), console.width))
        for line in retraining_summary(status):
            console.print(escape(line))
        if status.evaluation:
            for line in [*gate_summary(status.evaluation), *evaluation_details(status.evaluation)]:
                console.print(escape(line))
        if status.error:
            console.print(f"[red]error:[/red] {escape(status.error)}")
        breaks = await ledger.verify_chain(status.spec.round_id)
        console.print("hash chain: " + ("intact" if not breaks else f"BROKEN at {breaks[0]}"))
        return DemoReport(
            round_id=status.spec.round_id,
            workflow_id=status.spec.workflow_id,
            state=status.state,
            base_version=status.base_version,
            result_version=status.result_version,
            diff=diff,
            chain_intact=not breaks,
            error=status.error,
        )
    finally:
        await pool.close()


async def _slack_flow(slack_url: str, round_id: str, console: Console) -> None:
    """What the channel saw of this round, as the Slack stand-in recorded it: each message
    with its edits, the answers only one reviewer saw, and the modals opened. The
    stand-in's workspace outlives runs, so other rounds' messages are left out."""
    async with httpx.AsyncClient(timeout=10) as http:
        messages = (await http.get(f"{slack_url}/_standin/messages")).json()
        ephemeral = (await http.get(f"{slack_url}/_standin/ephemeral")).json()
        views = (await http.get(f"{slack_url}/_standin/views")).json()

    def ours(items: list[Any]) -> list[Any]:
        return [item for item in items if round_id in json.dumps(item)]

    console.rule("Slack message flow (the Slack Web API stand-in)")
    for message in ours(messages):
        where = "  in thread" if message["thread_ts"] else ""
        edits = f" (updated {len(message['history'])}x)" if message["history"] else ""
        console.print(escape(f"{message['ts']}{where}: {message['text'][:110]}{edits}"))
    for answer in ours(ephemeral):
        console.print(escape(f"only to {answer['user']}: {answer['text'][:110]}"))
    for view in ours(views):
        console.print(escape(f"modal {view['view']['callback_id']} opened for {view['user']}"))
