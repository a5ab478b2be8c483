"""The operator API and the ledger activities' idempotency, over real services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.ledger import LedgerActivities
from constitution import RoundSpec, TransitionRecord
from constitution.contracts import OpenRoundInput
from constitution.samples import sample_constitution
from ledger.store import Ledger
from standins.reviewer import SimulatedReviewer, decide_in_slack, wait_for_proposals
from tests.conftest import REVIEW_CHANNEL, StackFactory, operator_api
from worker.stack import Stack


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(dev_server) as running:
        yield running


async def test_starting_a_round_twice_is_a_conflict_and_starts_one(
    stack: Stack, dev_server: WorkflowEnvironment
) -> None:
    body = {"round_id": "api-dup", "reviewers": ["U0ALICE"], "max_proposals": 1}
    async with operator_api(stack) as http:
        first = await http.post("/api/rounds", json=body)
        second = await http.post("/api/rounds", json=body)
        shown = await http.get("/api/rounds/api-dup")
    assert first.status_code == 201 and first.json()["workflow_id"] == "round-api-dup"
    assert second.status_code == 409 and "already exists" in second.json()["detail"]
    assert shown.status_code == 200 and shown.json()["spec"]["round_id"] == "api-dup"
    await dev_server.client.get_workflow_handle("round-api-dup").cancel()


async def test_a_bad_round_spec_is_refused_with_the_field_named(stack: Stack) -> None:
    async with operator_api(stack) as http:
        response = await http.post("/api/rounds", json={"round_id": "Bad Id!", "reviewers": []})
    assert response.status_code == 422
    fields = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert ("body", "round_id") in fields and ("body", "reviewers") in fields


async def test_unknown_rounds_are_404(stack: Stack) -> None:
    async with operator_api(stack) as http:
        assert (await http.get("/api/rounds/nope")).status_code == 404
        assert (await http.get("/api/rounds/nope/timeline")).status_code == 404
        assert (await http.get("/healthz")).json() == {"status": "ok"}


async def test_the_openapi_document_lists_each_routes_error_answers_with_their_bodies(
    stack: Stack,
) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        spec = (await http.get("/openapi.json")).json()
        docs = await http.get("/docs")
        redoc = await http.get("/redoc")

    def answers(path: str, method: str) -> dict[str, str]:
        responses: dict[str, Any] = spec["paths"][path][method]["responses"]
        found = {}
        for code, response in responses.items():
            if code >= "400":
                [content] = response["content"].values()
                found[code] = content["schema"]["$ref"]
        return found

    error, invalid, caller = (
        "#/components/schemas/ErrorBody",
        "#/components/schemas/ValidationErrorBody",
        "#/components/schemas/CallerErrorBody",
    )
    assert answers("/api/rounds/{round_id}/cancel", "post") == {
        "400": error,
        "401": error,
        "403": error,
        "404": error,
        "409": error,
        "413": error,
        "422": invalid,
        "503": error,
    }
    assert answers("/api/rounds", "get") == {"401": error, "422": invalid, "503": error}
    assert answers("/api/rounds", "post") == {
        "400": error,
        "401": error,
        "403": error,
        "409": error,
        "413": error,
        "422": invalid,
        "503": error,
    }
    assert answers("/api/constitution/versions", "get") == {"401": error, "503": error}
    assert answers("/trainer/callback", "post") == {
        "400": caller,
        "401": caller,
        "410": caller,
        "413": error,
        "503": error,
    }
    assert spec["components"]["schemas"]["CallerErrorBody"]["required"] == ["error"]
    # Both documentation pages load their assets from the gateway itself.
    for page in (docs, redoc):
        assert page.status_code == 200
        assert "cdn." not in page.text and "https://" not in page.text.split("<body>")[0]
        for asset in ("/static-offline-docs/", "/static/vendor/redoc-"):
            if asset in page.text:
                break
        else:
            raise AssertionError(f"no local assets in {page.url}")


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


async def test_signed_interactions_that_are_not_amends_are_refused_and_change_nothing(
    stack: Stack, ledger: Ledger
) -> None:
    alice = SimulatedReviewer(
        stack.gateway_url, stack.settings.slack_signing_secret.get_secret_value(), "U0ALICE"
    )
    no_payload = await alice.send_raw(b"token=x&team_id=T0AMEND")
    not_json = await alice.send_raw(urlencode({"payload": "{not json"}).encode())
    foreign = await alice.send_raw(
        alice.encode(
            {
                "type": "block_actions",
                "user": {"id": "U0ALICE"},
                "actions": [{"action_id": "accept", "value": "someone-elses-app"}],
            }
        )
    )
    bad_modal = await alice.send_raw(
        alice.encode(
            {
                "type": "view_submission",
                "user": {"id": "U0ALICE"},
                "view": {"callback_id": "modify_proposal", "private_metadata": "junk"},
            }
        )
    )
    unsigned = await httpx.AsyncClient().post(
        f"{stack.gateway_url}/slack/interactions", content=b"payload=%7B%7D"
    )
    assert [r.status_code for r in (no_payload, not_json, foreign, bad_modal)] == [400] * 4
    assert unsigned.status_code == 401
    assert await ledger.list_rounds() == []


async def test_a_modify_with_blank_text_is_answered_in_the_modal_and_decides_nothing(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    async with operator_api(stack) as http:
        started = await http.post(
            "/api/rounds", json={"round_id": "blank", "reviewers": ["U0ALICE"], "max_proposals": 1}
        )
    assert started.status_code == 201
    slack_url = stack.slack_stand_in_url or ""
    [message] = await wait_for_proposals(slack_url, 1, wait_s=30)
    alice = SimulatedReviewer(
        stack.gateway_url,
        stack.settings.slack_signing_secret.get_secret_value(),
        "U0ALICE",
        slack_api_url=slack_url,
    )
    answer = await decide_in_slack(
        alice, slack_url, message, "modify", channel_id=REVIEW_CHANNEL, text="   "
    )
    assert answer.json()["response_action"] == "errors"
    assert "edited text" in answer.json()["errors"]["text"]
    assert await ledger.decisions("blank") == []
    await dev_server.client.get_workflow_handle("round-blank").cancel()


async def test_the_api_reverts_and_an_earlier_versions_text_imports_as_a_revert(
    stack: Stack, ledger: Ledger
) -> None:
    """Once a 500: importing v1's text again hit the unique content hash."""
    v1 = sample_constitution()
    principles = [p.model_dump(mode="json") for p in v1.principles]
    reworded = [{**principles[0], "text": "Reworded by an operator."}, *principles[1:]]
    async with operator_api(stack) as http:
        v2 = await http.post(
            "/api/constitution/versions",
            json={"principles": reworded, "source": "ops/c.md", "reason": "clearer"},
        )
        back = await http.post("/api/constitution/versions", json={"principles": principles})
        same = await http.post("/api/constitution/versions", json={"principles": principles})
        to_v2 = await http.post("/api/constitution/versions/2/revert", json={"reason": "undo"})
        no_reason = await http.post("/api/constitution/versions/1/revert", json={})
        missing = await http.post("/api/constitution/versions/9/revert", json={"reason": "x"})
        versions = (await http.get("/api/constitution/versions")).json()
        page = await http.get("/versions")
        lineage_page = await http.get("/principles/P1")
    assert (v2.status_code, v2.json()) == (201, {"version": 2, "stored": True, "reverts": None})
    assert (back.status_code, back.json()) == (201, {"version": 3, "stored": True, "reverts": 1})
    assert (same.status_code, same.json()) == (
        200,
        {"version": 3, "stored": False, "reverts": None},
    )
    assert (to_v2.status_code, to_v2.json()) == (201, {"version": 4, "stored": True, "reverts": 2})
    assert no_reason.status_code == 422 and missing.status_code == 404
    assert [
        (v["number"], v["imported_by"], v["source"], v["reverts"], v["reason"]) for v in versions
    ] == [
        (1, None, None, None, None),
        (2, "operator:dev-stack", "ops/c.md", None, "clearer"),
        (3, "operator:dev-stack", "the HTTP API", 1, None),
        (4, "operator:dev-stack", None, 2, "undo"),
    ]
    assert "revert to v2 by operator:dev-stack: undo" in page.text
    assert "revert to v1 by operator:dev-stack from the HTTP API" in lineage_page.text
    stored = await ledger.get_version(4)
    assert stored is not None and stored.principles[0].text == "Reworded by an operator."
