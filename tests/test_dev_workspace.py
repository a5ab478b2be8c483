"""The dev stack's Slack workspace (the stand-in, a stand-in for Slack): it
outlives a restart, so a round left in review is still decided through its
messages, and it has the group and channel the README's spec example names,
so that example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import yaml
from temporalio.testing import WorkflowEnvironment

from constitution import ProposalState, RoundState
from constitution.contracts import RoundStatus
from ledger.store import Ledger
from standins.reviewer import wait_for_proposals
from tests.conftest import StackFactory, eventually, operator_api
from tests.conftest import start_round as start_over_api
from tests.test_round_end_to_end import reviewer
from tests.test_slack_review import status_of

README = Path(__file__).resolve().parent.parent / "README.md"


async def test_a_round_in_review_is_decided_through_its_messages_after_a_restart(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    async with stack_on(dev_server) as stack:
        await start_over_api(stack, "restarted", max_proposals=1)
        [message] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=30)
    # `amend dev` stopped and started again on the same data directory: a new
    # Slack stand-in (on another port), the same workspace.
    async with stack_on(dev_server) as stack:
        [again] = await wait_for_proposals(stack.slack_stand_in_url or "", 1, wait_s=5)
        assert again["ts"] == message["ts"]
        clicked = await reviewer(stack).accept(again, channel_id="C0AMENDREVIEW")
        assert "accept recorded" in clicked.text and not clicked.refused, clicked.text

        async def decided() -> bool:
            status = await status_of(dev_server, "restarted")
            return status.proposals[0].state is ProposalState.accepted and not status.blocked

        await eventually(decided, "the accept to be taken")

        # The round updates the same message (no message_not_found, no block).
        async def updated() -> bool:
            async with httpx.AsyncClient() as http:
                records = (await http.get(f"{stack.slack_stand_in_url}/_standin/messages")).json()
            [record] = [r for r in records if r["ts"] == message["ts"]]
            return bool(record["history"]) and "actions" not in str(record["blocks"])

        await eventually(updated, "the message to lose its buttons")
        async with operator_api(stack) as http:
            await http.post("/api/rounds/restarted/cancel", json={"reason": "test over"})
    timeline = await ledger.timeline("restarted")
    assert not [t for t in timeline if t.entity == "slack" and t.to_state == "blocked"]


def readme_spec() -> dict[str, object]:
    """The spec with the review fields, as the README shows it."""
    text = README.read_text()
    found = re.search(r"A spec with the review fields.*?```yaml\n(.*?)```", text, re.DOTALL)
    assert found, "the README's spec example is gone"
    spec: dict[str, object] = yaml.safe_load(found.group(1))
    return spec


async def test_the_readmes_spec_example_runs_as_written_on_the_dev_stack(
    dev_server: WorkflowEnvironment, stack_on: StackFactory
) -> None:
    spec = readme_spec()
    assert spec["reviewer_groups"] == ["S0SAFETY"] and spec["escalate_to"] == "C0LEADS"
    round_id = f"readme-{spec['round_id']}"  # the session's Temporal is shared by the tests
    async with stack_on(dev_server) as stack, operator_api(stack) as http:
        started = await http.post("/api/rounds", json={**spec, "round_id": round_id})
        assert started.status_code == 201, started.text

        async def in_review() -> RoundStatus | None:
            status = await status_of(dev_server, round_id)
            return status if status.state is RoundState.in_review else None

        status = await eventually(in_review, "the README's round to reach review", 60)
        assert status.blocked is None
        assert "U0SIMREVIEW" in status.group_members["S0SAFETY"]
        await http.post(f"/api/rounds/{round_id}/cancel", json={"reason": "test over"})
