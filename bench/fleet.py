"""A fleet of `amend worker` and `amend gateway` processes on one task queue,
as a deployment runs them: the scale-out test and the scale-out benchmark
start it. The stand-ins for the model and Slack run in the calling process;
the processes reach them over HTTP, as they would reach the real services.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle

from constitution.contracts import RoundResult
from ledger.store import Ledger
from review.messages import parse_action_value
from standins.model.app import create_app as create_model
from standins.model.config import ScriptedModelConfig
from standins.reviewer import JSONDict, SimulatedReviewer
from standins.serving import free_port, serve
from standins.slack.app import create_app as create_slack
from standins.slack.config import SlackStandInConfig

CHANNEL = "C0AMENDREVIEW"
ALICE = "U0ALICE"
SIGNING_SECRET = "fleet-signing-secret"
AMEND = str(Path(sys.executable).parent / "amend")


@dataclass
class Process:
    name: str
    process: asyncio.subprocess.Process
    url: str  # the gateway, or the worker's health endpoint
    log: Path

    @property
    def identity(self) -> str:
        """How Temporal names this process's worker (the SDK's default identity)."""
        return f"{self.process.pid}@{os.uname().nodename}"

    async def exited(self, within_s: float = 60) -> int:
        return await asyncio.wait_for(self.process.wait(), within_s)

    def output(self) -> str:
        """What the process printed (for a failing assertion's message)."""
        return self.log.read_text()


@dataclass
class Fleet:
    ledger: Ledger
    slack_url: str
    model_url: str
    token: str
    workers: list[Process] = field(default_factory=list)
    gateways: list[Process] = field(default_factory=list)

    def worker_running(self, identity: str) -> Process:
        [found] = [w for w in self.workers if w.identity == identity]
        return found

    async def set_model_latency(self, latency_s: float) -> None:
        """The stand-in model's latency from now on: a slow model catches work
        mid-way; once caught, the rest of the round need not wait on it."""
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{self.model_url}/_standin/latency", json={"latency_s": latency_s}
            )
        answer.raise_for_status()

    async def start_round(self, gateway: Process, round_id: str, **spec: Any) -> None:
        body = {"round_id": round_id, "reviewers": [ALICE], **spec}
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as http:
            response = await http.post("/api/rounds", json=body, timeout=30)
        assert response.status_code == 201, response.text

    async def messages(self, round_id: str, count: int) -> list[JSONDict]:
        """The round's proposal messages, once `count` are posted."""

        async def posted() -> list[JSONDict] | None:
            async with httpx.AsyncClient() as http:
                records = (await http.get(f"{self.slack_url}/_standin/messages")).json()
            mine = [r for r in records if _round_of(r) == f"round-{round_id}"]
            return mine if len(mine) >= count else None

        for _ in range(1200):
            if (found := await posted()) is not None:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"{round_id}: {count} proposals were not posted")

    def reviewer(self, gateway: Process) -> SimulatedReviewer:
        return SimulatedReviewer(
            gateway.url, SIGNING_SECRET, ALICE, slack_api_url=self.slack_url, timeout=30
        )

    def handle(self, client: Client, round_id: str) -> WorkflowHandle[Any, RoundResult]:
        return client.get_workflow_handle(f"round-{round_id}", result_type=RoundResult)


def _round_of(record: JSONDict) -> str | None:
    for block in record.get("blocks", []):
        for element in block.get("elements", []):
            if element.get("action_id") == "accept":
                return parse_action_value(element["value"])[0]
    return None


async def _ready(member: Process) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(600):
            if member.process.returncode is not None:
                raise RuntimeError(f"{member.name} exited:\n{member.output()}")
            try:
                if (await http.get(f"{member.url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{member.name} never became ready:\n{member.output()}")


@asynccontextmanager
async def running_fleet(
    temporal_address: str,
    ledger: Ledger,
    database_url: str,
    task_queue: str,
    workdir: Path,
    *,
    workers: int = 2,
    gateways: int = 2,
    model_latency_s: float = 0.1,
    model: ScriptedModelConfig | None = None,
    **settings: str,
) -> AsyncIterator[Fleet]:
    """`workers` and `gateways` as processes of their own, on one task queue,
    each ready (its /readyz answers 200) before this yields. `settings` are
    AMEND_* variables (without the prefix) for every process; `model` replaces
    the stand-in model's configuration (a latency of `model_latency_s`)."""
    _, token = await ledger.create_token(f"fleet-{task_queue}", "operator")
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    slack_config = SlackStandInConfig(channels=[CHANNEL], post_message_per_second=50)
    async with AsyncExitStack() as stack:
        model_app = create_model(model or ScriptedModelConfig(latency_s=model_latency_s))
        served_model = await stack.enter_async_context(serve(model_app))
        slack = await stack.enter_async_context(serve(create_slack(slack_config)))
        base = {
            **os.environ,
            "AMEND_DATABASE_URL": database_url,
            "AMEND_TEMPORAL_ADDRESS": temporal_address,
            "AMEND_TEMPORAL_TASK_QUEUE": task_queue,
            "AMEND_MODEL_BASE_URL": f"{served_model.url}/v1",
            "AMEND_SLACK_API_URL": slack.url,
            "AMEND_SLACK_BOT_TOKEN": slack_config.bot_token,
            "AMEND_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "AMEND_SLACK_REVIEW_CHANNEL": CHANNEL,
            "AMEND_SLACK_POST_INTERVAL_S": "0.02",
            # One artifact store, as workers share a volume in a deployment.
            "AMEND_DATA_DIR": str(workdir / "shared"),
            **{f"AMEND_{name.upper()}": value for name, value in settings.items()},
        }
        fleet = Fleet(ledger, slack.url, served_model.url, token)
        for kind in ["worker"] * workers + ["gateway"] * gateways:
            port = free_port()
            members = fleet.workers if kind == "worker" else fleet.gateways
            env = {**base, "AMEND_GATEWAY_PORT": str(port)}
            if kind == "worker":
                env["AMEND_WORKER_HEALTH_BIND"] = f"127.0.0.1:{port}"
            log = workdir / f"{kind}{len(members) + 1}.log"
            output = stack.enter_context(log.open("wb"))
            process = await asyncio.create_subprocess_exec(
                AMEND, kind, env=env, stdout=output, stderr=output
            )
            members.append(
                Process(f"{kind}{len(members) + 1}", process, f"http://127.0.0.1:{port}", log)
            )
            stack.push_async_callback(_stop, process)
        await asyncio.gather(*(_ready(m) for m in [*fleet.workers, *fleet.gateways]))
        yield fleet


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGCONT)
        process.kill()
        await process.wait()
