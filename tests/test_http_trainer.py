"""A lab's own trainer behind the `http` backend, through real rounds: polled
through its status URL, or completing the waiting activity asynchronously by a
signed call back to the gateway carrying the activity's task token. The
trainer is the HTTP trainer stand-in; Temporal, PostgreSQL and the gateway are
real."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from constitution import RoundState
from constitution.trainer_callback import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signed_headers,
)
from gateway import deps
from gateway.trainer import router as trainer_router
from ledger.store import Ledger
from standins import trainer
from standins.serving import free_port, serve
from tests.conftest import StackFactory, accepted_round
from worker.stack import Stack
from workflows.client import round_status

SECRET = "trainer-secret-for-tests"


def signed_now(secret: str, body: bytes) -> dict[str, str]:
    """The headers a trainer signing `body` now sends."""
    return signed_headers(secret, body, int(time.time()))


@asynccontextmanager
async def lab_trainer(**config: Any) -> AsyncIterator[tuple[str, FastAPI]]:
    port = free_port()
    app = trainer.create_app(
        trainer.TrainerStandInConfig(secret=SECRET, public_url=f"http://127.0.0.1:{port}", **config)
    )
    async with serve(app, port=port) as served:
        yield served.url, app


async def send_callback(stack: Stack, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{stack.gateway_url}/trainer/callback",
            content=body,
            headers={"content-type": "application/json", **headers},
        )


async def test_a_trainer_that_calls_back_completes_the_round_and_forged_or_stale_calls_are_refused(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    async with (
        lab_trainer(mode="callback", callback_delay_s=None) as (url, lab),
        stack_on(dev_server, trainer_url=url, trainer_secret=SECRET) as stack,
    ):
        handle = await accepted_round(stack, dev_server, "lab-callback", backend="http")
        for _ in range(1200):
            watched = [j for j in lab.state.jobs.values() if j.callbacks]
            if watched:
                break
            await asyncio.sleep(0.05)
        [job] = watched
        token = job.callbacks[0]["task_token"]
        claim = json.dumps(
            {"task_token": token, "job_id": job.id, "status": "succeeded", "fine_tuned_model": "x"}
        ).encode()

        # Someone who learned the token but not the secret is refused.
        forged = await send_callback(stack, claim, signed_now("not-the-secret", claim))
        old = str(int(time.time()) - 3600)
        stale = await send_callback(
            stack, claim, {TIMESTAMP_HEADER: old, SIGNATURE_HEADER: sign(SECRET, old, claim)}
        )
        assert forged.status_code == 401 and stale.status_code == 401
        assert "signature does not match" in forged.json()["error"]
        assert "too old" in stale.json()["error"]
        status = await round_status(dev_server.client, "lab-callback")
        assert status.state is RoundState.training and status.candidate_model is None

        async with httpx.AsyncClient() as http:
            released = await http.post(f"{url}/_standin/jobs/{job.id}/finish")
        assert released.status_code == 200
        result = await handle.result()
        assert result.state is RoundState.completed
        assert result.candidate_model == f"ft:amend-base:lab:{job.id}"
        [sent] = lab.state.callbacks_sent
        assert sent["status_code"] == 200

        # The same callback again, freshly signed: its activity is no longer waiting.
        replayed = await send_callback(stack, sent["body"], signed_now(SECRET, sent["body"]))
        assert replayed.status_code == 410
        row = await ledger.training_job_for_round("lab-callback")
        assert row is not None and row.backend == "http" and row.status == "succeeded"
        assert row.fine_tuned_model == result.candidate_model


async def test_a_trainer_with_a_status_url_is_polled_to_completion(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    async with (
        lab_trainer(mode="poll", polls_to_finish=2) as (url, lab),
        stack_on(dev_server, trainer_url=url, trainer_secret=SECRET) as stack,
    ):
        handle = await accepted_round(stack, dev_server, "lab-poll", backend="http")
        result = await handle.result()
    assert result.state is RoundState.completed
    [job] = lab.state.jobs.values()
    assert job.polls >= 2 and not job.callbacks
    assert job.request["dataset_uri"].startswith("file://")
    row = await ledger.training_job_for_round("lab-poll")
    assert row is not None and row.poll_url == f"{url}/jobs/{job.id}"


async def test_without_a_trainer_secret_a_callback_trainer_fails_the_round_at_once(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    async with (
        lab_trainer(mode="callback", callback_delay_s=None) as (url, lab),
        stack_on(dev_server, trainer_url=url) as stack,
    ):
        handle = await accepted_round(stack, dev_server, "lab-no-secret", backend="http")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        # And the gateway refuses every callback, signed with anything.
        body = b'{"task_token": "00", "job_id": "x", "status": "succeeded"}'
        refused = await send_callback(stack, body, signed_now(SECRET, body))
    assert refused.status_code == 401
    assert "no trainer secret" in refused.json()["error"]
    timeline = await ledger.timeline("lab-no-secret")
    [failed] = [t for t in timeline if t.entity == "round" and t.to_state == "failed"]
    assert "AMEND_TRAINER_SECRET is unset" in failed.reason
    [job] = lab.state.jobs.values()
    assert not job.callbacks


async def test_a_signed_callback_that_is_not_a_trainer_callback_is_400_and_completes_nothing() -> (
    None
):
    # No Temporal and no ledger: a bad body must be refused before either is touched.
    class Untouched:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"{name} of a service was touched")

    app = FastAPI()
    app.include_router(trainer_router)
    config = deps.GatewayConfig(
        signing_secret=SecretStr("unused"),
        task_queue="unused",
        database_url=SecretStr("postgresql://unused"),
        slack=AsyncWebClient(),
        trainer_secret=SecretStr(SECRET),
    )
    app.dependency_overrides[deps.config] = lambda: config
    app.dependency_overrides[deps.temporal] = Untouched
    app.dependency_overrides[deps.ledger] = Untouched
    bodies = [
        b"not json",
        b'{"job_id": "x", "status": "succeeded"}',  # no task token
        b'{"task_token": "not-hex", "job_id": "x", "status": "succeeded"}',
        b'{"task_token": "00", "job_id": "x", "status": "exploded"}',
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        answers = [
            await http.post(
                "/trainer/callback",
                content=body,
                headers=signed_now(SECRET, body),
            )
            for body in bodies
        ]
    assert [a.status_code for a in answers] == [400] * len(bodies)
    assert all("not a trainer callback" in a.json()["error"] for a in answers)
