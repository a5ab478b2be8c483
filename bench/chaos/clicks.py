"""Clicks as Slack sends them, and what became of each.

Slack gives an interaction request 3 s. A request not answered 200 in that
time is sent again, up to three more times, with `X-Slack-Retry-Num` (1, 2,
3) and `X-Slack-Retry-Reason`; the payload, its `action_ts` and its signature
scheme are the same, so the gateway can tell a retry from a new click. The
suite's reviewers are simulated (`standins.reviewer.SimulatedReviewer` builds
their payloads, as that stand-in's users); this module only adds Slack's
clock and retries, and keeps a `Click` record of every attempt for the
invariants.

Slack retries interactions sooner than events (minutes); the delays here are
seconds so a run stays bounded, and long enough for a killed gateway to be
started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from standins.reviewer import JSONDict, SimulatedReviewer

SLACK_TIMEOUT_S = 3.0
SLACK_RETRIES = 3
RETRY_DELAYS_S = (1.0, 3.0, 6.0)
SIGNING_SECRET = "chaos-signing-secret"
# httpx errors of a connection refused or cut: no process there to answer.
CONNECTION_LOST = frozenset({"ConnectError", "ReadError", "WriteError", "RemoteProtocolError"})

# The simulated reviewers: two allowed to decide, one who is not.
ALICE = "U0SIMALICE"
BOB = "U0SIMBOB"
OUTSIDER = "U0SIMOUTSIDER"


@dataclass(frozen=True)
class Attempt:
    """One HTTP request of a click: its retry number and how it was answered.

    `status` None: no answer within Slack's 3 s (a timeout or a refused
    connection)."""

    retry_num: int
    status: int | None
    seconds: float
    outcome: str | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.status == 200 and self.seconds <= SLACK_TIMEOUT_S


@dataclass
class Click:
    """One click (or modal submission) by a simulated reviewer, with Slack's retries."""

    round_id: str
    proposal_id: str
    user: str
    action: str  # accept | modify | reject | submit
    sent_at: float  # wall clock, to line up with the faults
    attempts: list[Attempt] = field(default_factory=list)
    # For a Modify…/Reject… click: whether its modal opened (Slack's trigger
    # id lives 3 s, so a modal opened later fails to open at all).
    modal_opened: bool | None = None
    trigger_id: str | None = None

    @property
    def acknowledged(self) -> bool:
        """Slack saw a 200 within 3 s for one of its attempts."""
        return any(a.answered for a in self.attempts)

    @property
    def met_a_dead_gateway(self) -> bool:
        """Its first request lost its connection: the gateway was killed under
        it or not yet started again (a timeout, by contrast, is a live gateway
        that was too slow).

        Slack shows "not responding"; the one gateway is back only after the
        trigger id expired, so nothing could open this click's modal. The
        reviewer clicks again (`bench.chaos.rounds`), and that click is owed one."""
        return bool(self.attempts) and self.attempts[0].error in CONNECTION_LOST

    @property
    def outcome(self) -> str | None:
        """What the gateway said of it, when answered: pending for an Accept
        (kept in the decision inbox; a retry may carry the round's answer from
        there, taken or refused), opened/refused/unavailable for a modal's
        button; None for a submitted modal (its answer is Slack's response_action)."""
        return next((a.outcome for a in self.attempts if a.answered), None)


class SlackClicks:
    """Sends simulated reviewers' clicks to the gateway as Slack does, and keeps them."""

    def __init__(self, gateway_url: str, slack_url: str, channel: str) -> None:
        self.gateway_url = gateway_url
        self.slack_url = slack_url
        self.channel = channel
        self.clicks: list[Click] = []
        self._http = httpx.AsyncClient(timeout=SLACK_TIMEOUT_S)

    async def close(self) -> None:
        await self._http.aclose()

    def reviewer(self, user: str) -> SimulatedReviewer:
        return SimulatedReviewer(
            self.gateway_url, SIGNING_SECRET, user, slack_api_url=self.slack_url
        )

    async def press(
        self, message: JSONDict, action: str, user: str, round_id: str, proposal_id: str
    ) -> Click:
        """Press `action` on `message` as `user`; for Modify…/Reject…, note
        whether its modal opened."""
        reviewer = self.reviewer(user)
        payload = reviewer.block_actions_payload(message, action, channel_id=self.channel)
        # Slack itself may be down: the click still reaches the gateway.
        with contextlib.suppress(httpx.HTTPError):
            await reviewer.register_trigger(payload["trigger_id"])
        click = Click(
            round_id, proposal_id, user, action, time.time(), trigger_id=payload["trigger_id"]
        )
        self.clicks.append(click)
        await self._send(reviewer, payload, click)
        if action in ("modify", "reject"):
            click.modal_opened = await self._modal(payload["trigger_id"]) is not None
        return click

    async def submit(
        self, view: JSONDict, values: dict[str, str], user: str, round_id: str, proposal_id: str
    ) -> Click:
        """Submit the modal `view` (a `/_standin/views` record) as `user`."""
        reviewer = self.reviewer(user)
        payload = reviewer.view_submission_payload(view, values)
        click = Click(round_id, proposal_id, user, "submit", time.time())
        self.clicks.append(click)
        await self._send(reviewer, payload, click)
        return click

    async def opened_view(self, trigger_id: str) -> JSONDict | None:
        return await self._modal(trigger_id, wait_s=0)

    async def _send(self, reviewer: SimulatedReviewer, payload: JSONDict, click: Click) -> None:
        body = reviewer.encode(payload)
        for retry_num in range(SLACK_RETRIES + 1):
            if retry_num:
                await asyncio.sleep(RETRY_DELAYS_S[retry_num - 1])
            attempt = await self._attempt(reviewer, body, retry_num)
            click.attempts.append(attempt)
            if attempt.answered:
                return

    async def _attempt(self, reviewer: SimulatedReviewer, body: bytes, retry_num: int) -> Attempt:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": reviewer.sign(body, timestamp),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        if retry_num:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        started = time.monotonic()
        try:
            response = await self._http.post(
                reviewer.interactions_url, content=body, headers=headers
            )
        except httpx.HTTPError as error:
            return Attempt(retry_num, None, time.monotonic() - started, error=type(error).__name__)
        seconds = time.monotonic() - started
        outcome: Any = None
        try:
            answer = response.json()
            outcome = answer.get("outcome") if isinstance(answer, dict) else None
        except ValueError:
            pass
        return Attempt(retry_num, response.status_code, seconds, outcome)

    async def _modal(self, trigger_id: str, wait_s: float = SLACK_TIMEOUT_S + 1) -> JSONDict | None:
        """The view opened with `trigger_id`, if one was (looked for up to `wait_s`)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                views = (await self._http.get(f"{self.slack_url}/_standin/views")).json()
                found = next((v for v in views if v.get("trigger_id") == trigger_id), None)
                if found is not None:
                    return dict(found)
            except httpx.HTTPError:
                pass
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.2)
