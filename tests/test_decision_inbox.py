"""The decision inbox (gateway.inbox) on the real stack: a click is kept in
PostgreSQL before Slack is answered and sent to its round by a dispatcher, so
a burst of clicks on one round is acknowledged without reaching Temporal's
limit on in-flight updates, a click acknowledged by a gateway that then stopped
or died is still taken, and Slack's retries of one click keep one row."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from constitution import DecisionKind, DecisionRequest
from gateway.inbox import PER_ROUND_IN_FLIGHT, DecisionInbox, InboxClick
from ledger.store import Ledger
from standins.reviewer import SimulatedReviewer, wait_for_proposals
from tests.conftest import REVIEW_CHANNEL, StackFactory, eventually, start_round
from tests.test_slack_clicks import as_reviewer, recorded, second_gateway, signed
from worker.stack import Stack

ALICE, BOB = "U0ALICE", "U0BOB"
CROWD = [f"U0CROWD{n:03d}" for n in range(50)]


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(dev_server) as running:
        yield running


async def posted(stack: Stack, round_id: str, **spec: Any) -> dict[str, Any]:
    """Start a round of one proposal and wait for its message."""
    await start_round(stack, round_id, max_proposals=1, **spec)
    [message] = await wait_for_proposals(
        stack.slack_stand_in_url or "", 1, wait_s=30, round_id=round_id
    )
    return message


async def decided(ledger: Ledger, round_id: str, count: int) -> list[Any]:
    async def enough() -> list[Any] | None:
        found = await ledger.decisions(round_id)
        return found if len(found) >= count else None

    found: list[Any] = await eventually(enough, f"{count} decisions of {round_id}", wait_s=120)
    return found


async def test_fifty_concurrent_clicks_on_one_round_are_all_acknowledged_and_each_taken_once(
    stack: Stack,
    dev_server: WorkflowEnvironment,
    ledger: Ledger,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    quorum = {"quorum": len(CROWD)}  # every click is a vote the round takes
    message = await posted(stack, "burst", reviewers=CROWD, policy=quorum, strict_policy=quorum)
    secret = stack.settings.slack_signing_secret.get_secret_value()
    # A gateway served in-process, to count the updates it has in flight.
    async with second_gateway(stack, dev_server, database_url) as gateway:
        inbox = gateway.app.state.slack_interactions.inbox  # type: ignore[attr-defined]
        deliver, in_flight, most = inbox.deliver, 0, 0

        async def counted(click: InboxClick, taken_over: bool) -> Any:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await deliver(click, taken_over)
            finally:
                in_flight -= 1

        inbox.deliver = counted
        crowd = [SimulatedReviewer("http://replica", secret, u, client=gateway) for u in CROWD]
        answers = await asyncio.gather(
            *(r.click(message, "accept", channel_id=REVIEW_CHANNEL) for r in crowd)
        )
        assert [a.status_code for a in answers] == [200] * len(CROWD)
        assert {a.json()["outcome"] for a in answers} == {"pending"}
        decisions = await decided(ledger, "burst", len(CROWD))

        async def all_noted() -> bool:
            return all(k.outcome == "taken" for k in await ledger.decision_inbox("burst"))

        await eventually(all_noted, "every click noted as taken")
    assert 1 <= most <= PER_ROUND_IN_FLIGHT
    assert sorted(d.reviewer for d in decisions) == CROWD
    assert await ledger.decision_attempts("burst") == []
    kept = await ledger.decision_inbox("burst")
    assert len({k.interaction_key for k in kept}) == len(kept) == len(CROWD)
    log = "\n".join(record.getMessage() for record in caplog.records)
    assert "in-flight" not in log and "could not send" not in log


async def test_slack_retries_of_one_click_on_two_replicas_keep_one_row_and_one_decision(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger, database_url: str
) -> None:
    message = await posted(stack, "retried", reviewers=[ALICE, BOB], policy={"quorum": 2})
    alice = as_reviewer(stack, ALICE)
    body = alice.encode(alice.block_actions_payload(message, "accept", channel_id=REVIEW_CHANNEL))
    async with (
        second_gateway(stack, dev_server, database_url) as replica,
        httpx.AsyncClient(base_url=stack.gateway_url, timeout=60) as http,
    ):
        deliveries = [
            client.post(
                "/slack/interactions",
                content=body,
                headers=signed(alice, body, **({"X-Slack-Retry-Num": str(n)} if n else {})),
            )
            for n, client in enumerate([http, replica, http, replica])
        ]
        answers = await asyncio.gather(*deliveries)
        assert [a.status_code for a in answers] == [200] * 4
        [decision] = await decided(ledger, "retried", 1)
    assert decision.reviewer == ALICE
    [kept] = await ledger.decision_inbox("retried")
    assert kept.request["reviewer"] == ALICE
    assert await ledger.decision_attempts("retried") == []


async def test_a_click_acknowledged_by_a_gateway_that_then_stopped_is_taken_by_the_next(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    async with stack_on(dev_server) as first:
        message = await posted(first, "handed-on")
    # This gateway acknowledges the click, but no worker runs the round (its
    # worker polls another queue), so the click is not yet taken when it stops.
    async with stack_on(
        dev_server, temporal_task_queue="nobody-runs-handed-on", gateway_graceful_shutdown_s=0
    ) as stopping:
        answer = await as_reviewer(stopping, ALICE).click(
            message, "accept", channel_id=REVIEW_CHANNEL
        )
        assert answer.status_code == 200 and answer.json()["outcome"] == "pending"
    [kept] = await ledger.decision_inbox("handed-on")
    assert kept.dispatched_at is None and kept.claimed_by is None  # given back
    assert await ledger.decisions("handed-on") == []

    async with stack_on(dev_server) as fresh:
        [decision] = await decided(ledger, "handed-on", 1)
        assert decision.reviewer == ALICE

        [ephemeral] = await eventually(
            lambda: recorded(fresh, "ephemeral"), "Alice told her accept was taken"
        )
        assert ephemeral["user"] == ALICE and "accept recorded" in ephemeral["text"]
    [kept] = await ledger.decision_inbox("handed-on")
    assert kept.outcome == "taken" and kept.dispatched_at is not None
    assert await ledger.decision_attempts("handed-on") == []


async def test_a_click_kept_by_a_gateway_that_died_is_sent_once_its_claim_lapses(
    stack: Stack, ledger: Ledger
) -> None:
    """A gateway killed between keeping a click and sending it leaves the row
    claimed until the claim lapses; a live gateway's claim is left alone."""
    await posted(stack, "orphaned", reviewers=[ALICE, BOB], policy={"quorum": 2})

    async def kept_by(owner: str, reviewer: str, lease_s: float) -> None:
        click = InboxClick(
            interaction_key=f"slack:1.0:{reviewer}:orphaned-p1:accept",
            workflow_id="round-orphaned",
            round_id="orphaned",
            request=DecisionRequest(
                proposal_id="orphaned-p1", kind=DecisionKind.accept, reviewer=reviewer
            ),
            channel=REVIEW_CHANNEL,
        )
        await ledger.receive_decision(
            interaction_key=click.interaction_key,
            workflow_id=click.workflow_id,
            round_id=click.round_id,
            request=click.request.model_dump(mode="json"),
            channel=click.channel,
            claimed_by=owner,
            lease_s=lease_s,
        )

    await kept_by("gateway-alive", BOB, lease_s=3600)
    await kept_by("gateway-killed", ALICE, lease_s=0)

    [decision] = await decided(ledger, "orphaned", 1)  # by the running gateway's sweep
    assert decision.reviewer == ALICE
    by_reviewer = {k.request["reviewer"]: k for k in await ledger.decision_inbox("orphaned")}
    assert by_reviewer[BOB].claimed_by == "gateway-alive" and by_reviewer[BOB].outcome is None
    assert [d.reviewer for d in await ledger.decisions("orphaned")] == [ALICE]


async def test_two_gateways_claiming_at_once_never_claim_the_same_click(ledger: Ledger) -> None:
    for n in range(40):
        await ledger.receive_decision(
            interaction_key=f"key-{n}",
            workflow_id="round-claimed",
            round_id="claimed",
            request={"proposal_id": "claimed-p1", "kind": "accept", "reviewer": f"U{n}"},
            channel="",
            claimed_by="gateway-gone",
            lease_s=0,
        )
    claims = await asyncio.gather(
        *(ledger.claim_decisions(f"gateway-{g}", 30, 15) for g in range(4))
    )
    keys = [entry.interaction_key for claim in claims for entry in claim]
    assert len(keys) == len(set(keys)) == 40
    # Claimed now: nothing is left for a fifth.
    assert await ledger.claim_decisions("gateway-late", 30, 100) == []


async def test_a_click_is_taken_and_its_reviewer_told_while_a_taken_over_click_hangs(
    stack: Stack, dev_server: WorkflowEnvironment, ledger: Ledger
) -> None:
    """A dead gateway's click on a round no worker runs hangs in the sweeping
    gateway; it holds up no other round's click, which is taken and its
    reviewer told."""
    stuck = await dev_server.client.start_workflow(
        "TrainingRoundWorkflow", id="round-stuck", task_queue="nobody-runs-stuck"
    )
    await ledger.receive_decision(
        interaction_key="slack:1.0:U0ALICE:stuck-p1:accept",
        workflow_id="round-stuck",
        round_id="stuck",
        request={"proposal_id": "stuck-p1", "kind": "accept", "reviewer": ALICE},
        channel=REVIEW_CHANNEL,
        claimed_by="gateway-killed",
        lease_s=0,
    )

    async def taken_over() -> bool:
        [kept] = await ledger.decision_inbox("stuck")
        return kept.claimed_by not in (None, "gateway-killed")

    await eventually(taken_over, "the stuck click taken over by the running gateway")
    message = await posted(stack, "lone")
    answer = await as_reviewer(stack, ALICE).accept(message, channel_id=REVIEW_CHANNEL)
    assert "accept recorded for lone-p1" in answer.text, answer.text
    [decision] = await ledger.decisions("lone")
    assert decision.reviewer == ALICE
    [stuck_click] = await ledger.decision_inbox("stuck")
    assert stuck_click.outcome is None  # still hanging
    await stuck.terminate("test over")


def _click(round_id: str, reviewer: str, key: str | None = None) -> InboxClick:
    return InboxClick(
        interaction_key=key or f"slack:1.0:{reviewer}:{round_id}-p1:accept",
        workflow_id=f"round-{round_id}",
        round_id=round_id,
        request=DecisionRequest(
            proposal_id=f"{round_id}-p1", kind=DecisionKind.accept, reviewer=reviewer
        ),
        channel=REVIEW_CHANNEL,
    )


async def test_one_statement_keeps_each_click_once_however_often_it_comes(ledger: Ledger) -> None:
    """A batch holding a click twice, and one kept by an earlier statement:
    each interaction has one row, kept by its first click, in arrival order."""
    earlier = _click("batched", "U0EARLIER")
    assert await ledger.receive_decisions([earlier], "gateway-a", 30) == {earlier.interaction_key}
    alice, bob = _click("batched", ALICE), _click("batched", BOB)
    again = alice.model_copy(update={"channel": "C0OTHER"})
    kept = await ledger.receive_decisions([alice, earlier, bob, again], "gateway-b", 30)
    assert kept == {alice.interaction_key, bob.interaction_key}
    rows = await ledger.decision_inbox("batched")
    assert [r.request["reviewer"] for r in rows] == ["U0EARLIER", ALICE, BOB]
    assert [r.claimed_by for r in rows] == ["gateway-a", "gateway-b", "gateway-b"]
    assert rows[1].channel == REVIEW_CHANNEL  # the first click's, not the second's
    assert await ledger.receive_decisions([], "gateway-b", 30) == set()


async def test_concurrent_clicks_are_kept_in_few_statements_and_each_answered_once(
    ledger: Ledger,
) -> None:
    """Fifty clicks at once, one of them delivered twice: fewer INSERTs than
    clicks, every click kept, and exactly one of the two deliveries is the
    one that kept it (the other is answered as a retry)."""
    statements = 0
    receive_decisions = ledger.receive_decisions

    async def counted(*args: Any) -> set[str]:
        nonlocal statements
        statements += 1
        return await receive_decisions(*args)

    ledger.receive_decisions = counted  # type: ignore[method-assign,assignment]
    inbox: DecisionInbox[None] = DecisionInbox(ledger, _never_sent, asyncio.create_task)
    clicks = [_click("crowded", reviewer) for reviewer in CROWD]
    answers = await asyncio.gather(*(inbox.receive(c) for c in [*clicks, clicks[7]]))
    assert statements < len(clicks)
    assert answers[:7] + answers[8:-1] == [True] * (len(clicks) - 1)
    assert sorted([answers[7], answers[-1]]) == [False, True]
    rows = await ledger.decision_inbox("crowded")
    assert sorted(r.request["reviewer"] for r in rows) == CROWD


async def _never_sent(click: InboxClick, taken_over: bool) -> None:
    raise AssertionError(f"{click.interaction_key} was sent")


async def test_a_kept_click_is_sent_only_once_the_clicks_kept_behind_it_are(
    ledger: Ledger,
) -> None:
    """The first click of a burst is kept in a statement of its own; the ones
    arriving meanwhile wait for the next. Its sending waits until they are
    kept too, so their acks are not queued behind the update."""
    kept_behind: list[bool] = []
    kept_when_sent: list[int] = []

    async def deliver(click: InboxClick, taken_over: bool) -> None:
        kept_when_sent.append(len(kept_behind))

    async def keep_behind(reviewer: str) -> None:
        kept_behind.append(await inbox.receive(_click("acked", reviewer)))

    inbox: DecisionInbox[None] = DecisionInbox(ledger, deliver, asyncio.create_task)
    first = asyncio.create_task(inbox.receive(_click("acked", ALICE)))
    for _ in range(2):  # the click joins the inbox, then its INSERT starts
        await asyncio.sleep(0)
    behind = asyncio.gather(*(keep_behind(u) for u in CROWD[:10]))
    assert await first
    await inbox.dispatch(_click("acked", ALICE))
    await behind
    assert kept_when_sent == [10] and kept_behind == [True] * 10


async def test_a_click_the_ledger_refuses_fails_alone_not_the_clicks_kept_with_it(
    ledger: Ledger,
) -> None:
    """PostgreSQL refuses text holding NUL; a click carrying one fails on its
    own (its sender sends it to the round directly), the rest of its
    statement is kept."""
    inbox: DecisionInbox[None] = DecisionInbox(ledger, _never_sent, asyncio.create_task)
    clicks = [_click("poisoned", u) for u in CROWD[:5]]
    clicks[2] = _click("poisoned", "U0NUL\x00")
    answers = await asyncio.gather(*(inbox.receive(c) for c in clicks), return_exceptions=True)
    assert [a for n, a in enumerate(answers) if n != 2] == [True] * 4
    assert isinstance(answers[2], asyncpg.PostgresError)
    rows = await ledger.decision_inbox("poisoned")
    assert sorted(r.request["reviewer"] for r in rows) == sorted(CROWD[:2] + CROWD[3:5])
