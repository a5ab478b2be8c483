"""The operator API and the ledger activities' idempotency, over real services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.ledger import LedgerActivities
from constitution import RoundSpec, TransitionRecord
from constitution.contracts import OpenRoundInput
from constitution.samples import sample_constitution
from ledger.store import Ledger
from tests.conftest import StackFactory
from worker.stack import Stack


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(dev_server) as running:
        yield running


async def test_starting_a_round_twice_is_a_conflict_and_starts_one(
    stack: Stack, dev_server: WorkflowEnvironment
) -> None:
    body = {"round_id": "api-dup", "reviewers": ["U0ALICE"], "max_proposals": 1}
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        first = await http.post("/api/rounds", json=body)
        second = await http.post("/api/rounds", json=body)
        shown = await http.get("/api/rounds/api-dup")
    assert first.status_code == 201 and first.json()["workflow_id"] == "round-api-dup"
    assert second.status_code == 409 and "already exists" in second.json()["detail"]
    assert shown.status_code == 200 and shown.json()["spec"]["round_id"] == "api-dup"
    await dev_server.client.get_workflow_handle("round-api-dup").cancel()


async def test_a_bad_round_spec_is_refused_with_the_field_named(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        response = await http.post("/api/rounds", json={"round_id": "Bad Id!", "reviewers": []})
    assert response.status_code == 422
    fields = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert ("body", "round_id") in fields and ("body", "reviewers") in fields


async def test_unknown_rounds_are_404(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        assert (await http.get("/api/rounds/nope")).status_code == 404
        assert (await http.get("/api/rounds/nope/timeline")).status_code == 404
        assert (await http.get("/healthz")).json() == {"status": "ok"}


async def test_a_retried_ledger_activity_writes_one_row(ledger: Ledger) -> None:
    await ledger.save_version(sample_constitution())
    activities = LedgerActivities(ledger)
    env = ActivityEnvironment()
    spec = RoundSpec(round_id="retry", reviewers=["U0ALICE"])
    await env.run(activities.open_round, OpenRoundInput(spec=spec))
    await env.run(activities.open_round, OpenRoundInput(spec=spec))
    record = TransitionRecord(
        workflow_id="round-retry",
        sequence=1,
        round_id="retry",
        entity="round",
        from_state=None,
        to_state="created",
        actor="workflow",
        at=datetime.now(UTC),
    )
    assert await env.run(activities.record_transitions, [record]) == 1
    assert await env.run(activities.record_transitions, [record]) == 0
    assert len(await ledger.timeline("retry")) == 1
    assert len(await ledger.list_rounds()) == 1
