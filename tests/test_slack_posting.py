"""The Slack activities against the Slack Web API stand-in, with its
per-channel rate enforced by 429s as Slack does: posting is paced under it, and
retried posts land once."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.slack import ChannelPacer, SlackActivities
from constitution import (
    Proposal,
    ProposalDraft,
    ProposalKind,
    ProposalState,
    RoundSpec,
    RoundState,
)
from constitution.contracts import (
    PostProposalInput,
    ProposalStatus,
    ReminderInput,
    RoundSummaryInput,
    SlackMessageRef,
    Voters,
)
from constitution.models import ReviewPolicy
from constitution.samples import sample_constitution
from ledger.store import Ledger
from standins.serving import serve
from standins.slack.app import create_app
from standins.slack.config import SlackStandInConfig
from standins.slack.state import standin_state
from worker.runtime import slack_client
from worker.settings import Settings

CHANNEL = "C0AMENDREVIEW"
RATE = 50.0  # messages per second per channel, enforced by the stand-in


@pytest.fixture
async def slack() -> AsyncIterator[tuple[str, Any]]:
    app = create_app(SlackStandInConfig(channels=[CHANNEL], post_message_per_second=RATE))
    async with serve(app) as served:
        yield served.url, app


def activities(ledger: Ledger, url: str, interval_s: float, retries: int = 0) -> SlackActivities:
    settings = Settings(
        _env_file=None,
        slack_api_url=url,
        slack_bot_token=SecretStr("xoxb-amend-stand-in"),
        slack_rate_limit_retries=retries,
    )
    return SlackActivities(slack_client(settings), CHANNEL, ledger, post_interval_s=interval_s)


async def proposals(ledger: Ledger, round_id: str, count: int) -> list[ProposalStatus]:
    await ledger.save_version(sample_constitution())
    await ledger.open_round(RoundSpec(round_id=round_id, reviewers=["U0ALICE"]), 1)
    made = [
        Proposal(
            id=f"{round_id}-p{n}",
            round_id=round_id,
            draft=ProposalDraft(
                kind=ProposalKind.add,
                title=f"Principle {n}",
                text=f"Text of principle {n}.",
                rationale="Evidence asks for it.",
            ),
            prompt_version="propose.v1",
            model="stand-in",
        )
        for n in range(1, count + 1)
    ]
    await ledger.save_proposals(made)
    return [ProposalStatus(proposal=p) for p in made]


async def post_all(acts: SlackActivities, items: list[ProposalStatus]) -> list[Any]:
    env = ActivityEnvironment()
    requests = [
        PostProposalInput(
            workflow_id="round-x",
            status=item,
            constitution=sample_constitution(),
            voters=Voters(reviewers=["U0ALICE"], policy=ReviewPolicy()),
        )
        for item in items
    ]
    results: list[Any] = await asyncio.gather(
        *(env.run(acts.post_proposal, r) for r in requests), return_exceptions=True
    )
    return results


async def test_a_hundred_proposals_to_one_channel_stay_under_slacks_rate(
    ledger: Ledger, slack: tuple[str, Any]
) -> None:
    url, app = slack
    items = await proposals(ledger, "hundred", 100)
    # Without pacing the stand-in answers a burst with 429s, as Slack does.
    unpaced = await post_all(activities(ledger, url, 0.0), items[:5])
    assert any(isinstance(r, Exception) for r in unpaced)
    limited = [c for c in standin_state(app).calls if c["status"] == 429]
    assert limited
    standin_state(app).calls.clear()
    # The burst's one accepted post opened the channel's window; a fresh pacer
    # (another worker's, as here) knows nothing of it, so let it pass first.
    await asyncio.sleep(2 / RATE)

    paced = await post_all(activities(ledger, url, 1 / RATE), items)
    assert not [r for r in paced if isinstance(r, Exception)]
    calls = standin_state(app).calls
    assert [c for c in calls if c["status"] == 429] == []
    posted = [m for m in standin_state(app).messages.values() if m["channel"] == CHANNEL]
    assert len(posted) == 100
    assert len({(m["channel"], m["ts"]) for m in posted}) == 100
    # Each proposal's message is recorded once; posting again finds it.
    again = await post_all(activities(ledger, url, 1 / RATE), items[:3])
    assert [r.ts for r in again] == [r.ts for r in paced[:3]]
    assert len(standin_state(app).messages) == 100


async def test_a_retried_reminder_does_not_post_twice_in_any_thread(
    ledger: Ledger, slack: tuple[str, Any]
) -> None:
    url, app = slack
    acts = activities(ledger, url, 1 / RATE)
    items = await proposals(ledger, "remind", 3)
    refs = await post_all(acts, items)
    pending = [
        item.model_copy(update={"state": ProposalState.posted, "message": ref})
        for item, ref in zip(items, refs, strict=True)
    ]
    request = ReminderInput(round_id="remind", pending=pending, reminder_number=1, escalate_to=None)
    # The first try replies in the first thread, then Slack fails the second.
    broken = pending[1].model_copy(
        update={"message": SlackMessageRef(channel=CHANNEL, ts="1.000001")}
    )
    first_try = request.model_copy(update={"pending": [pending[0], broken, pending[2]]})
    with pytest.raises(SlackApiError, match="thread_not_found"):
        await ActivityEnvironment().run(acts.post_reminder, first_try)
    await ActivityEnvironment().run(acts.post_reminder, request)  # the retry
    await ActivityEnvironment().run(acts.post_reminder, request)  # and once more
    replies = [m for m in standin_state(app).messages.values() if m["thread_ts"]]
    assert sorted(m["thread_ts"] for m in replies) == sorted(r.ts for r in refs)
    assert all(m["text"].startswith("Reminder 1:") for m in replies)


async def test_a_post_whose_turn_is_far_off_asks_to_be_retried_then_instead_of_waiting(
    slack: tuple[str, Any],
) -> None:
    """Many rounds posting to one channel: a post does not sit in its activity
    past the pacer's bound (its timeout would cut it off); Temporal retries it
    near its turn."""
    url, _ = slack
    settings = Settings(
        _env_file=None, slack_api_url=url, slack_bot_token=SecretStr("xoxb-amend-stand-in")
    )
    pacer = ChannelPacer(interval_s=1.0, max_wait_s=2.5)
    client = slack_client(settings)
    posts = [pacer.post(client, channel=CHANNEL, text=f"post {n}") for n in range(4)]
    outcomes = await asyncio.gather(*posts, return_exceptions=True)
    posted = [o for o in outcomes if not isinstance(o, BaseException)]
    [deferred] = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert len(posted) == 3 and all(p["ok"] for p in posted)
    assert deferred.type == "SlackChannelBusy" and not deferred.non_retryable
    assert deferred.next_retry_delay is not None
    assert deferred.next_retry_delay.total_seconds() > 0


async def test_posts_to_two_channels_are_each_paced_and_not_made_to_wait_for_each_other() -> None:
    """Slack's limit is per channel: the pacer spaces each channel's posts,
    shared by every activity of the worker, and lets another channel's go
    between them."""
    other = "C0AMENDOTHER"
    interval_s = 0.2
    app = create_app(
        SlackStandInConfig(channels=[CHANNEL, other], post_message_per_second=1 / interval_s)
    )
    async with serve(app) as served:
        settings = Settings(
            _env_file=None,
            slack_api_url=served.url,
            slack_bot_token=SecretStr("xoxb-amend-stand-in"),
            slack_rate_limit_retries=0,  # a 429 fails the post here, for all to see
        )
        client, pacer = slack_client(settings), ChannelPacer(interval_s)
        env = ActivityEnvironment()
        started = time.monotonic()
        await asyncio.gather(
            *(
                env.run(pacer.post, client, channel=channel, text=f"post {n}")
                for n in range(6)
                for channel in (CHANNEL, other)
            )
        )
        elapsed = time.monotonic() - started
    state = standin_state(app)
    assert [c for c in state.calls if c["status"] != 200] == []
    landed = {
        channel: sorted(float(m["ts"]) for m in state.messages.values() if m["channel"] == channel)
        for channel in (CHANNEL, other)
    }
    for times in landed.values():
        assert len(times) == 6
        assert min(b - a for a, b in itertools.pairwise(times)) >= interval_s
    # Each channel's posts land between the other's, closer to them than the interval.
    merged = sorted(landed[CHANNEL] + landed[other])
    assert min(b - a for a, b in itertools.pairwise(merged)) < interval_s / 2
    # Five intervals per channel, side by side; one after the other would be eleven.
    assert elapsed < 8 * interval_s


async def test_a_post_cancelled_while_it_waits_its_turn_gives_up_its_place(
    slack: tuple[str, Any],
) -> None:
    """Its round was cancelled: the post never lands, and the one behind it
    takes the turn it would have had, not one after it."""
    url, app = slack
    settings = Settings(
        _env_file=None, slack_api_url=url, slack_bot_token=SecretStr("xoxb-amend-stand-in")
    )
    client, pacer = slack_client(settings), ChannelPacer(interval_s=1.0)
    beats: list[tuple[Any, ...]] = []
    waiting = ActivityEnvironment()
    waiting.on_heartbeat = lambda *details: beats.append(details)
    await ActivityEnvironment().run(pacer.post, client, channel=CHANNEL, text="first")
    cancelled = asyncio.create_task(
        waiting.run(pacer.post, client, channel=CHANNEL, text="cancelled")
    )
    behind = asyncio.create_task(
        ActivityEnvironment().run(pacer.post, client, channel=CHANNEL, text="behind")
    )
    await asyncio.sleep(0.3)
    assert beats  # heartbeats while it waits: how Temporal's cancel reaches it
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await behind
    texts = sorted((float(m["ts"]), m["text"]) for m in standin_state(app).messages.values())
    assert [text for _, text in texts] == ["first", "behind"]
    # One interval after the first; had the cancelled post kept its turn, two.
    assert 1.0 <= texts[1][0] - texts[0][0] < 2.0


class LedgerDownAfterPosting(Ledger):
    """The ledger as a PostgreSQL outage leaves it: the first record of a post fails."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger.pool)
        self.failures = 0

    def _fail_once(self) -> None:
        if self.failures == 0:
            self.failures += 1
            raise asyncpg.CannotConnectNowError("the database system is starting up")

    async def set_proposal_message(self, proposal_id: str, channel: str, ts: str) -> None:
        self._fail_once()
        await super().set_proposal_message(proposal_id, channel, ts)

    async def record_slack_post(self, post_key: str, round_id: str, channel: str, ts: str) -> None:
        self._fail_once()
        await super().record_slack_post(post_key, round_id, channel, ts)


def retry_of(env: ActivityEnvironment) -> ActivityEnvironment:
    """The same activity's next attempt, as Temporal runs it after a failure."""
    again = ActivityEnvironment()
    again.info = dataclasses.replace(env.info, attempt=env.info.attempt + 1)
    return again


async def test_a_proposal_whose_record_failed_after_posting_is_posted_once_on_retry(
    ledger: Ledger, slack: tuple[str, Any]
) -> None:
    url, app = slack
    down = LedgerDownAfterPosting(ledger)
    acts = activities(down, url, 1 / RATE)
    [item] = await proposals(ledger, "outage", 1)
    request = PostProposalInput(
        workflow_id="round-outage",
        status=item,
        constitution=sample_constitution(),
        voters=Voters(reviewers=["U0ALICE"], policy=ReviewPolicy()),
    )
    first = ActivityEnvironment()
    with pytest.raises(asyncpg.CannotConnectNowError):
        await first.run(acts.post_proposal, request)
    assert len(standin_state(app).messages) == 1  # Slack took the post before the write failed
    ref = await retry_of(first).run(acts.post_proposal, request)
    [message] = standin_state(app).messages.values()
    assert ref == SlackMessageRef(channel=CHANNEL, ts=message["ts"])
    assert message["metadata"]["event_type"] == "amend_post"
    assert await ledger.proposal_message(item.proposal.id) == (CHANNEL, message["ts"])


async def test_a_summary_and_a_reminder_whose_record_failed_are_posted_once_on_retry(
    ledger: Ledger, slack: tuple[str, Any]
) -> None:
    url, app = slack
    [item] = await proposals(ledger, "quiet", 1)
    down = LedgerDownAfterPosting(ledger)
    acts = activities(down, url, 1 / RATE)
    down.failures = 1  # the proposal's own post goes through
    [ref] = await post_all(acts, [item])
    pending = [item.model_copy(update={"state": ProposalState.posted, "message": ref})]
    posts = [
        (
            "post_reminder",
            ReminderInput(round_id="quiet", pending=pending, reminder_number=1, escalate_to=None),
        ),
        (
            "post_round_summary",
            RoundSummaryInput(
                round_id="quiet",
                state=RoundState.completed_unchanged,
                proposals=pending,
                result_version=None,
            ),
        ),
    ]
    for name, request in posts:
        down.failures = 0  # the outage begins as this post is made
        first = ActivityEnvironment()
        with pytest.raises(asyncpg.CannotConnectNowError):
            await first.run(getattr(acts, name), request)
        await retry_of(first).run(getattr(acts, name), request)
        await retry_of(retry_of(first)).run(getattr(acts, name), request)
    messages = list(standin_state(app).messages.values())
    assert len([m for m in messages if m["thread_ts"] == ref.ts]) == 1
    assert len([m for m in messages if m["text"].startswith("Round `quiet`")]) == 1
    assert len(messages) == 3
