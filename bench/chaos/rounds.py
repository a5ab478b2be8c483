"""The rounds under test and the simulated reviewers who decide them.

Each round gets three proposals at most, decided as a team of simulated
reviewers would: the first accepted, the second modified, the third rejected
(through their modals), and before that one click by a simulated outsider,
who is not among the round's reviewers and must be refused and recorded. A
reviewer whose click got no answer, or whose modal never opened, clicks
again a few seconds later, as a person does; a message that is gone is
decided by an operator through the API instead.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.chaos.clicks import ALICE, BOB, OUTSIDER, SlackClicks
from bench.chaos.stack import ChaosStack
from standins.reviewer import JSONDict

KINDS = ("accept", "modify", "reject")
PERSON_TRIES = 4
PERSON_PAUSE_S = 3.0
SPEC: dict[str, Any] = {
    "max_proposals": 3,
    "training": {
        "prompt_count": 8,
        "critique_passes": 1,
        "heartbeat_timeout": "PT5S",
        "poll_interval": "PT0.5S",
    },
}
IN_RETRAINING = {"amending", "generating_data", "training", "evaluating"}
ENDED = {"completed", "completed_unchanged", "gate_failed", "failed", "cancelled"}


@dataclass
class RoundPlan:
    round_id: str
    wave: int
    expected: str = "completed"
    decided: set[str] = field(default_factory=set)
    votes: dict[str, int] = field(default_factory=dict)  # acknowledged votes per proposal
    deleted: set[str] = field(default_factory=set)
    outsider_clicks: int = 0
    last_status: JSONDict | None = None


class Rounds:
    """Starts the rounds, reads their status, and decides them as reviewers would."""

    def __init__(self, stack: ChaosStack, clicks: SlackClicks) -> None:
        self.stack = stack
        self.clicks = clicks
        self.plans: dict[str, RoundPlan] = {}

    async def start(self, plan: RoundPlan) -> None:
        self.plans[plan.round_id] = plan
        body = {"round_id": plan.round_id, "reviewers": [ALICE, BOB], **SPEC}
        for _ in range(30):
            try:
                response = await self.stack.api("POST", "/rounds", json=body)
                if response.status_code in (201, 409):
                    print(f"  round {plan.round_id} started (wave {plan.wave})", flush=True)
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(2)
        raise RuntimeError(f"round {plan.round_id} could not be started")

    async def status(self, round_id: str) -> JSONDict | None:
        """The round's status from the operator API; None when it cannot be read now."""
        try:
            response = await self.stack.api("GET", f"/rounds/{round_id}")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        status: JSONDict = response.json()
        self.plans[round_id].last_status = status
        return status

    async def wait(
        self, round_ids: list[str], ready: str, until: float, any_: bool = False
    ) -> bool:
        """Wait until every (or any) round is `ready` ("posted", "retraining",
        "ended") or has ended; False when `until` (monotonic) passed first."""
        while time.monotonic() < until:
            states = [await self.status(r) for r in round_ids]
            met = [s is not None and (_is(s, ready) or s["state"] in ENDED) for s in states]
            if any(met) if any_ else all(met):
                return True
            await asyncio.sleep(1)
        return False

    async def message(self, channel: str, ts: str) -> JSONDict | None:
        """The message's `/_standin/messages` record; None when it is gone."""
        for _ in range(30):
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    records = (
                        await http.get(
                            f"{self.stack.slack_url}/_standin/messages", params={"channel": channel}
                        )
                    ).json()
                return next((r for r in records if r["ts"] == ts), None)
            except httpx.HTTPError:
                await asyncio.sleep(2)  # Slack is down: a person waits too
        return None

    async def posted(self, round_id: str) -> list[JSONDict]:
        """The round's proposals that have a message (as the API shows them)."""
        status = await self.status(round_id) or self.plans[round_id].last_status or {}
        return [p for p in status.get("proposals", []) if p.get("message")]

    async def outsider_click(self, round_id: str) -> None:
        """Someone not among the reviewers presses Accept on the first proposal."""
        proposals = await self.posted(round_id)
        if not proposals:
            return
        first = proposals[0]
        record = await self.message(first["message"]["channel"], first["message"]["ts"])
        if record is None or not _has_buttons(record):
            return
        self.plans[round_id].outsider_clicks += 1
        await self.clicks.press(record, "accept", OUTSIDER, round_id, first["proposal"]["id"])

    async def decide(self, round_id: str) -> None:
        """Every posted proposal decided at once: accept, modify, reject, accept…"""
        proposals = await self.posted(round_id)
        await asyncio.gather(
            *(
                self._decide_one(round_id, p, KINDS[i % len(KINDS)], (ALICE, BOB)[i % 2])
                for i, p in enumerate(proposals)
            )
        )

    async def _decide_one(self, round_id: str, proposal: JSONDict, kind: str, user: str) -> None:
        """One reviewer decides; where the proposal needs more accepts (a
        protected principle's stricter policy), the other accepts too."""
        await self._vote(round_id, proposal, kind, user)
        needed = int(proposal.get("accepts_needed") or 1) if kind in ("accept", "modify") else 1
        for other in [r for r in (ALICE, BOB) if r != user][: needed - 1]:
            await self._vote(round_id, proposal, "accept", other)

    async def _vote(self, round_id: str, proposal: JSONDict, kind: str, user: str) -> None:
        plan = self.plans[round_id]
        proposal_id = proposal["proposal"]["id"]
        ref = proposal["message"]
        for _ in range(PERSON_TRIES):
            record = await self.message(ref["channel"], ref["ts"])
            if record is None:
                if await self._pending(round_id, proposal_id):
                    await self._override(round_id, proposal_id, kind)
                return
            if not _has_buttons(record):
                return  # settled already (an earlier click of ours went through)
            if await self._click(plan, record, proposal_id, kind, user):
                return
            await asyncio.sleep(PERSON_PAUSE_S)

    async def _click(
        self, plan: RoundPlan, record: JSONDict, proposal_id: str, kind: str, user: str
    ) -> bool:
        click = await self.clicks.press(record, kind, user, plan.round_id, proposal_id)
        if kind == "accept":
            # The gateway answers an Accept "pending" once its decision inbox
            # keeps it (a retry of a click kept already may carry the round's
            # answer from the inbox): acknowledged, it must reach the ledger,
            # which the invariants read.
            if click.acknowledged and click.outcome in ("taken", "pending"):
                plan.decided.add(proposal_id)
                plan.votes[proposal_id] = plan.votes.get(proposal_id, 0) + 1
                return True
            return False
        if not click.modal_opened or click.trigger_id is None:
            return False
        view = await self.clicks.opened_view(click.trigger_id)
        if view is None:
            return False
        values = {"comment": f"{kind} by a simulated reviewer"}
        if kind == "modify":
            values["text"] = (
                "Modified by a simulated reviewer: say plainly what the assistant will not do."
            )
        submitted = await self.clicks.submit(view, values, user, plan.round_id, proposal_id)
        if submitted.acknowledged:
            plan.decided.add(proposal_id)
            plan.votes[proposal_id] = plan.votes.get(proposal_id, 0) + 1
            return True
        return False

    async def _pending(self, round_id: str, proposal_id: str) -> bool:
        """Whether the round still waits for a decision on the proposal."""
        for _ in range(10):
            status = await self.status(round_id)
            if status is not None:
                return any(
                    p["proposal"]["id"] == proposal_id and p["state"] == "posted"
                    for p in status.get("proposals", [])
                )
            await asyncio.sleep(2)
        return True

    async def _override(self, round_id: str, proposal_id: str, kind: str) -> None:
        """The message is gone: an operator decides in the reviewers' stead."""
        body = {"proposal_id": proposal_id, "kind": kind, "reason": "its Slack message was deleted"}
        if kind == "modify":
            body["text"] = "Modified by an operator: say plainly what the assistant will not do."
        for _ in range(10):
            try:
                response = await self.stack.api("POST", f"/rounds/{round_id}/decisions", json=body)
                if response.status_code == 200:
                    self.plans[round_id].decided.add(proposal_id)
                    votes = self.plans[round_id].votes
                    votes[proposal_id] = votes.get(proposal_id, 0) + 1
                    return
                print(
                    f"  override of {round_id}/{proposal_id}: "
                    f"{response.status_code} {response.text[:160]}",
                    flush=True,
                )
            except httpx.HTTPError:
                pass
            await asyncio.sleep(3)


def _is(status: JSONDict, ready: str) -> bool:
    state = status["state"]
    if ready == "posted":
        proposals = status.get("proposals") or []
        return state == "in_review" and bool(proposals) and all(p.get("message") for p in proposals)
    if ready == "some posted":
        return any(p.get("message") for p in status.get("proposals") or [])
    if ready == "retraining":
        return state in IN_RETRAINING
    if ready == "proposing":
        return state in ("proposing", "in_review")
    if ready == "ended":
        return state in ENDED
    raise ValueError(ready)


def _has_buttons(record: JSONDict) -> bool:
    return any(
        e.get("action_id") == "accept"
        for b in record.get("blocks") or []
        for e in (b.get("elements") or [])
        if isinstance(e, dict)
    )
