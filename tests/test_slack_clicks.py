"""Clicks at the gateway's edge, on the real stack (Temporal dev server,
PostgreSQL, the Slack Web API stand-in): requests that are unsigned or
malformed, outsiders who open a decision modal, Slack's redeliveries of one
click, and modals opened while no worker runs the round. Clicks come from the
simulated reviewer (a stand-in for a person in Slack)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import hypothesis
import pytest
from hypothesis import strategies as st
from temporalio.testing import WorkflowEnvironment

import gateway.slack
from ledger.store import Ledger
from standins.reviewer import SimulatedReviewer, told_to, wait_for_proposals, wait_until_told
from tests.conftest import REVIEW_CHANNEL, StackFactory, eventually, start_round
from tests.unit.test_properties import json_values, slack_like
from worker.runtime import gateway_app, running_worker
from worker.stack import Stack

ALICE, MALLORY = "U0ALICE", "U0MALLORY"


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(dev_server) as running:
        yield running


@asynccontextmanager
async def second_gateway(
    stack: Stack, env: WorkflowEnvironment, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """Another replica of the gateway, served in-process (same ledger, Temporal, Slack)."""
    app = gateway_app(stack.settings, database_url, env.client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://replica"
        ) as http,
    ):
        http.app = app  # type: ignore[attr-defined]
        yield http


def as_reviewer(stack: Stack, user: str, gateway_url: str | None = None) -> SimulatedReviewer:
    return SimulatedReviewer(
        gateway_url or stack.gateway_url,
        stack.settings.slack_signing_secret.get_secret_value(),
        user,
        slack_api_url=stack.slack_stand_in_url,
        timeout=60,
    )


async def recorded(stack: Stack, what: str) -> list[dict[str, Any]]:
    """What the Slack stand-in recorded: `ephemeral`, `views` or `messages`."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{stack.slack_stand_in_url}/_standin/{what}")
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


async def gateway_writes(ledger: Ledger, round_id: str) -> tuple[list[Any], list[Any]]:
    """What the gateway writes for a round: decisions taken and refused."""
    return await ledger.decisions(round_id), await ledger.decision_attempts(round_id)


async def round_in_review(stack: Stack, round_id: str) -> dict[str, Any]:
    await start_round(stack, round_id, max_proposals=1, reviewers=[ALICE])
    [message] = await wait_for_proposals(
        stack.slack_stand_in_url or "", 1, wait_s=30, round_id=round_id
    )
    return message


def signed(reviewer: SimulatedReviewer, body: bytes, **extra: str) -> dict[str, str]:
    ts = int(time.time())
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": reviewer.sign(body, ts),
        **extra,
    }


async def test_unsigned_requests_with_a_bad_timestamp_or_a_body_not_utf8_get_401(
    stack: Stack,
) -> None:
    url = f"{stack.gateway_url}/slack/interactions"
    attempts: list[tuple[bytes, dict[str, Any]]] = [
        (b"payload=%7B%7D", {"X-Slack-Request-Timestamp": "soon"}),
        # "²" is a digit to str.isdigit() but no number to int(): sent as Latin-1.
        (b"payload=%7B%7D", {"X-Slack-Request-Timestamp": b"\xb2", "X-Slack-Signature": "v0=0"}),
        (b"payload=%7B%7D", {"X-Slack-Request-Timestamp": b"1\xb2", "X-Slack-Signature": b"\xff"}),
        (b"\xff\xfe\x00not utf-8", {"X-Slack-Request-Timestamp": str(int(time.time()))}),
        (b"\xff\xfe\x00not utf-8", {}),
    ]
    async with httpx.AsyncClient() as http:
        for body, headers in attempts:
            response = await http.post(url, content=body, headers=headers)
            assert response.status_code == 401, (body, headers, response.text)


def malformed_payloads(click: dict[str, Any], submit: dict[str, Any]) -> list[Any]:
    """A real click and a real modal submission, each broken in one way."""

    def broken(base: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> Any:
        copy = json.loads(json.dumps(base))
        change(copy)
        return copy

    def state_values(value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda p: p["view"]["state"].__setitem__("values", value)

    return [
        [],
        "block_actions",
        None,
        42,
        broken(click, lambda p: p.pop("user")),
        broken(click, lambda p: p.__setitem__("user", {})),
        broken(click, lambda p: p.__setitem__("user", {"id": ""})),
        broken(click, lambda p: p.__setitem__("user", "U0ALICE")),
        broken(click, lambda p: p.__setitem__("user", {"id": 7})),
        broken(click, lambda p: p.__setitem__("container", "C0AMENDREVIEW")),
        broken(click, lambda p: p.__setitem__("actions", {"action_id": "accept"})),
        broken(click, lambda p: p.__setitem__("actions", ["accept"])),
        broken(click, lambda p: p["actions"][0].__setitem__("value", ["round-x|x-p1"])),
        broken(submit, lambda p: p.pop("user")),
        broken(submit, lambda p: p.__setitem__("view", "a modal")),
        broken(submit, lambda p: p.__setitem__("view", None)),
        broken(submit, state_values("all of it")),
        broken(submit, state_values({"comment": "no reason"})),
        broken(submit, state_values({"comment": {"comment": {"value": 5}}})),
        broken(submit, state_values({"comment": {"comment": []}})),
    ]


async def test_signed_but_malformed_payloads_get_400_with_a_reason_and_change_nothing(
    stack: Stack, ledger: Ledger
) -> None:
    message = await round_in_review(stack, "click-malformed")
    alice = as_reviewer(stack, ALICE)
    click = alice.block_actions_payload(message, "accept", channel_id=REVIEW_CHANNEL)
    opened = await alice.click(message, "reject", channel_id=REVIEW_CHANNEL)
    assert opened.json()["outcome"] == "opened"
    [view] = await recorded(stack, "views")
    submit = alice.view_submission_payload(view, {"comment": "too vague"})
    before = (
        await gateway_writes(ledger, "click-malformed"),
        await recorded(stack, "ephemeral"),
    )

    for payload in malformed_payloads(click, submit):
        body = urlencode({"payload": json.dumps(payload)}).encode()
        response = await alice.send_raw(body)
        assert response.status_code == 400, (payload, response.text)
        assert response.json()["error"], payload

    assert (
        await gateway_writes(ledger, "click-malformed"),
        await recorded(stack, "ephemeral"),
    ) == (before)
    assert await ledger.decisions("click-malformed") == []


async def test_an_outsider_is_refused_at_the_click_and_the_refused_opening_is_recorded(
    stack: Stack, ledger: Ledger
) -> None:
    message = await round_in_review(stack, "click-outsider")
    for kind in ("modify", "reject"):
        clicked = await as_reviewer(stack, MALLORY).click(message, kind, channel_id=REVIEW_CHANNEL)
        answer = clicked.json()
        assert answer["outcome"] == "refused"
        assert "U0MALLORY is not a reviewer of round click-outsider" in answer["message"]
    assert await recorded(stack, "views") == []
    attempts = await ledger.decision_attempts("click-outsider")
    assert [(a.reviewer, a.kind, a.outcome) for a in attempts] == [
        (MALLORY, "modify", "refused"),
        (MALLORY, "reject", "refused"),
    ]
    assert all("not a reviewer" in a.reason for a in attempts)
    told = await eventually(
        lambda: _at_least(recorded(stack, "ephemeral"), 2), "the outsider told twice"
    )
    assert {e["user"] for e in told} == {MALLORY}


async def _at_least(records: Any, count: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await records
    return found if len(found) >= count else None


async def test_slack_redeliveries_of_a_click_are_answered_once_on_any_replica(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger, database_url: str
) -> None:
    message = await round_in_review(stack, "click-redelivered")
    mallory, alice = as_reviewer(stack, MALLORY), as_reviewer(stack, ALICE)
    refused_body = mallory.encode(
        mallory.block_actions_payload(message, "accept", channel_id=REVIEW_CHANNEL)
    )
    taken_body = alice.encode(
        alice.block_actions_payload(message, "accept", channel_id=REVIEW_CHANNEL)
    )
    slack = stack.slack_stand_in_url or ""
    async with second_gateway(stack, dev_server, database_url) as replica:
        for body, reviewer, outcome in (
            (refused_body, mallory, "refused"),
            (taken_body, alice, "taken"),
        ):
            first = await reviewer.send_raw(body)
            assert first.status_code == 200 and first.json()["outcome"] == "pending"
            answered = await wait_until_told(slack, reviewer.user_id, wait_s=30)
            # Once the round has answered, every redelivery, on either replica,
            # is answered from the decision inbox with that answer.
            for number, http_post in (
                ("1", _post_to(stack.gateway_url)),
                ("2", replica.post),
                ("3", _post_to(stack.gateway_url)),
            ):
                again = await http_post(
                    "/slack/interactions",
                    content=body,
                    headers=signed(reviewer, body, **{"X-Slack-Retry-Num": number}),
                )
                assert again.status_code == 200, again.text
                assert again.json()["outcome"] == outcome, again.json()
                assert again.json()["message"] == answered["text"], again.json()

    [attempt] = await ledger.decision_attempts("click-redelivered")
    assert attempt.reviewer == MALLORY
    [decision] = await ledger.decisions("click-redelivered")
    assert decision.reviewer == ALICE
    # Let any message a redelivery would wrongly send arrive, then count.
    await eventually(lambda: _settled_ephemeral(stack), "no more messages", wait_s=30)
    told = await recorded(stack, "ephemeral")
    assert sorted(e["user"] for e in told) == [ALICE, MALLORY], told


_last_counts: list[int] = []


async def _settled_ephemeral(stack: Stack) -> bool:
    """True once the stand-in's ephemeral messages stopped changing over five polls."""
    _last_counts.append(len(await recorded(stack, "ephemeral")))
    recent = _last_counts[-5:]
    return len(recent) == 5 and len(set(recent)) == 1


def _post_to(base_url: str) -> Callable[..., Any]:
    async def post(path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            return await http.post(path, **kwargs)

    return post


async def test_a_decision_modal_opens_from_the_ledger_while_no_worker_runs_the_round(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger, database_url: str
) -> None:
    async with stack_on(dev_server) as first:
        message = await round_in_review(first, "click-workerless")

        async def in_review() -> bool:
            found = await ledger.proposal_in_review("click-workerless", "click-workerless-p1")
            return found is not None and found.status.state.value == "posted"

        await eventually(in_review, "the ledger to note the proposal posted")
    # The round waits in review in Temporal; this stack's worker polls another queue.
    workflow = dev_server.client.get_workflow_handle("round-click-workerless")
    async with stack_on(dev_server, temporal_task_queue="nobody-runs-workerless") as stack:
        alice = as_reviewer(stack, ALICE)
        for kind in ("reject", "modify"):
            clicked = await alice.click(message, kind, channel_id=REVIEW_CHANNEL)
            assert clicked.json()["outcome"] == "opened", clicked.json()
        views = await recorded(stack, "views")
        assert [v["view"]["callback_id"] for v in views] == ["reject_proposal", "modify_proposal"]

        # A ledger that cannot be read: the reviewer is asked to try again, not
        # told the running round has ended.
        async with second_gateway(stack, dev_server, database_url) as replica:
            await replica.app.state.services.ledger.pool.close()  # type: ignore[attr-defined]
            replica_alice = as_reviewer(stack, ALICE)
            payload = replica_alice.block_actions_payload(
                message, "reject", channel_id=REVIEW_CHANNEL
            )
            body = replica_alice.encode(payload)
            response = await replica.post(
                "/slack/interactions", content=body, headers=signed(replica_alice, body)
            )
        answer = response.json()
        assert answer["outcome"] == "unavailable", answer
        assert "try again in a moment" in answer["message"]
        assert "no longer running" not in answer["message"]
    await workflow.terminate("test over")  # no worker will ever run it


async def test_an_accept_is_answered_once_kept_without_waiting_for_the_round_and_told_once_taken(
    dev_server: WorkflowEnvironment,
    stack_on: StackFactory,
    ledger: Ledger,
    database_url: str,
    task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slack ignores the body of a button's answer, so an Accept click on an
    idle gateway is answered "pending" once the decision inbox keeps it, not
    when the round answers: here no worker runs the round and the ack budget
    is stretched to 120 s, so a gateway that waited for the round would not
    answer within the reviewer's 30 s. The reviewer learns the outcome from
    one ephemeral message, sent once the round takes the click."""
    async with stack_on(dev_server) as first:
        message = await round_in_review(first, "click-acked")
    monkeypatch.setattr(gateway.slack, "ACK_BUDGET_S", 120.0)
    workflow = dev_server.client.get_workflow_handle("round-click-acked")
    async with stack_on(
        dev_server, temporal_task_queue="nobody-runs-acked", gateway_graceful_shutdown_s=0
    ) as stack:
        slack = stack.slack_stand_in_url or ""
        alice = SimulatedReviewer(
            stack.gateway_url,
            stack.settings.slack_signing_secret.get_secret_value(),
            ALICE,
            slack_api_url=slack,
            timeout=30,
        )
        clicked = await alice.click(message, "accept", channel_id=REVIEW_CHANNEL)
        assert clicked.status_code == 200
        assert clicked.json() == {
            "outcome": "pending",
            "message": "Your decision is being recorded.",
            "proposal_id": "click-acked-p1",
        }
        [kept] = await ledger.decision_inbox("click-acked")
        assert kept.request["reviewer"] == ALICE and kept.claimed_by is not None
        assert kept.outcome is None and kept.dispatched_at is None
        assert await ledger.decisions("click-acked") == []
        assert await told_to(slack, ALICE) == []

        # A worker for the round's queue: the round takes the click the
        # gateway sent, and the gateway tells the reviewer.
        runs = stack.settings.model_copy(update={"temporal_task_queue": task_queue})
        async with running_worker(runs, database_url, dev_server.client):
            told = await wait_until_told(slack, ALICE, wait_s=60)
            assert "accept recorded for click-acked-p1" in told["text"]
            [decision] = await ledger.decisions("click-acked")
            assert decision.reviewer == ALICE and decision.kind == "accept"
            await workflow.terminate("test over")
        [kept] = await ledger.decision_inbox("click-acked")
        assert kept.outcome == "taken" and kept.message == told["text"]
        # Let any second message arrive, then count: told once.
        await eventually(lambda: _settled_ephemeral(stack), "no more messages", wait_s=30)
        assert await told_to(slack, ALICE) == [told]


async def test_a_modal_opens_through_slacks_429_and_500_and_past_the_trigger_the_reviewer_is_told(
    stack: Stack, ledger: Ledger
) -> None:
    """Slack refuses views.open now and then (429, 5xx); the click's trigger id
    lives 3 s, so the gateway opens again within it, and past it tells the
    reviewer to click again rather than leave the button doing nothing."""
    message = await round_in_review(stack, "click-busy-slack")

    async def in_review() -> bool:
        found = await ledger.proposal_in_review("click-busy-slack", "click-busy-slack-p1")
        return found is not None and found.status.state.value == "posted"

    await eventually(in_review, "the ledger to note the proposal posted")
    slack = _post_to(stack.slack_stand_in_url or "")
    busy = [{"kind": "rate_limited", "retry_after": 1}, {"kind": "server_error"}]
    (await slack("/_standin/faults", json={"faults": busy})).raise_for_status()
    alice = as_reviewer(stack, ALICE)
    clicked = await alice.click(message, "modify", channel_id=REVIEW_CHANNEL)
    assert clicked.json()["outcome"] == "opened", clicked.json()
    opens = [c["status"] for c in await recorded(stack, "calls") if c["method"] == "views.open"]
    assert opens == [429, 500, 200]
    assert [v["view"]["callback_id"] for v in await recorded(stack, "views")] == ["modify_proposal"]

    # Slack busier than the trigger id lives: nothing opens, the reviewer is told.
    longer = [{"kind": "rate_limited", "retry_after": 30}]
    (await slack("/_standin/faults", json={"faults": longer})).raise_for_status()
    clicked = await alice.click(message, "reject", channel_id=REVIEW_CHANNEL)
    answer = clicked.json()
    assert answer["outcome"] == "unavailable", answer
    assert "click Reject… again" in answer["message"]

    async def told() -> bool:
        return any(
            e["user"] == ALICE and "click Reject… again" in e["text"]
            for e in await recorded(stack, "ephemeral")
        )

    await eventually(told, "the reviewer to be told the editor did not open")
    assert len(await recorded(stack, "views")) == 1
    assert await gateway_writes(ledger, "click-busy-slack") == ([], [])


async def test_any_signed_payload_of_any_shape_gets_2xx_or_4xx_and_never_a_5xx(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger, database_url: str
) -> None:
    """Driven in-process (httpx's ASGI transport) against the real ledger and
    Temporal, with payloads shaped like a real click on a real proposal."""
    message = await round_in_review(stack, "click-fuzzed")
    alice = as_reviewer(stack, ALICE)
    click = alice.block_actions_payload(message, "accept", channel_id=REVIEW_CHANNEL)
    loop = asyncio.get_running_loop()
    problems: list[str] = []
    button_values = st.sampled_from(
        [
            click["actions"][0]["value"],
            "round-click-fuzzed|click-fuzzed-p9",
            "round-x|y",
            "|",
            "round-",
        ]
    )
    payloads = st.one_of(
        json_values,
        slack_like,
        st.fixed_dictionaries(
            {
                "type": st.just("block_actions"),
                "user": st.fixed_dictionaries({"id": st.sampled_from([MALLORY, "", "U0X"])}),
                "actions": st.lists(
                    st.fixed_dictionaries(
                        {
                            "action_id": st.sampled_from(["accept", "reject", "modify", "x"]),
                            "value": button_values | json_values,
                            "action_ts": st.text(max_size=10) | json_values,
                        }
                    ),
                    max_size=2,
                ),
            },
            optional={"container": json_values, "trigger_id": json_values},
        ),
    )

    async with second_gateway(stack, dev_server, database_url) as replica:

        async def send(payload: Any) -> httpx.Response:
            body = urlencode({"payload": json.dumps(payload)}).encode()
            return await replica.post(
                "/slack/interactions", content=body, headers=signed(alice, body)
            )

        @hypothesis.settings(
            max_examples=120,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(payload=payloads)
        def fuzz(payload: Any) -> None:
            response = asyncio.run_coroutine_threadsafe(send(payload), loop).result(60)
            if response.status_code >= 500:
                problems.append(f"{response.status_code} for {payload!r}: {response.text}")

        await asyncio.to_thread(fuzz)
    assert problems == []
    # Alice never clicked: nothing was decided in her name.
    assert await ledger.decisions("click-fuzzed") == []
