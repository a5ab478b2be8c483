"""Slack Web API calls as activities, through `slack_sdk`'s async client.

Retries: the client (built in `worker.runtime`) honours a 429's Retry-After
with slack_sdk's rate-limit handler, which Temporal's backoff cannot know;
5xx and anything else transient fail the activity and Temporal retries it.
Errors no retry can fix are raised non-retryable, and the workflow holds the
round in its `blocked` condition until Slack answers again.

Posting is paced per channel (`post_interval_s`, Slack allows about one
message a second per channel), so a round of a hundred proposals does not set
off a storm of 429s.

Every post is idempotent across retries. Each carries a key (proposal and
how many times it was posted, reminder n, digest n, summary) in the ledger and
in the message's own Slack `metadata` (`event_type` `amend_post`, the key in
its payload). The ledger is written after Slack answers, so a try that posted
and then failed (the database down, the worker killed, Slack's answer lost)
left no record; its retry looks the key up in the channel
(`conversations.history`, or `conversations.replies` for a thread, with
`include_all_metadata`) from when the activity was first scheduled, and
records the message it finds instead of posting again.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from constitution import ProposalState
from constitution.contracts import (
    DigestInput,
    PostProposalInput,
    ProposalMessagesInput,
    ProposalStatus,
    ReminderInput,
    ResolveGroupsInput,
    RoundSummaryInput,
    SlackMessageRef,
    UpdateProposalMessageInput,
)
from constitution.errors import ErrorType
from ledger.store import Ledger
from review.messages import (
    digest_text,
    fallback_text,
    proposal_blocks,
    reminder_text,
    round_url,
    summary_text,
)
from workflows import activities as defined

# The Slack `metadata` event type of every message amend posts; its payload's
# `key` names the post (see `SlackActivities._post_keyed`).
POST_EVENT = "amend_post"
# How far before the activity was first scheduled a retry looks for its post:
# the worker's and Slack's clocks may disagree a little.
CLOCK_SKEW = timedelta(minutes=2)
# How often a post waiting its turn on a channel heartbeats, so a cancel reaches
# it (the worker's heartbeat throttle, two seconds, bounds what reaches Temporal).
WAIT_BEAT_S = 0.5
# Pages of channel history a retry reads before it concludes its post never landed.
LOOKUP_PAGES = 20

# What `chat.update` answers for a message that is no longer there to update.
MESSAGE_GONE = {"message_not_found", "channel_not_found"}

# Errors that retrying cannot fix: the round blocks, showing the reason, until an
# operator fixes Slack and the round posts again.
PERMANENT_SLACK_ERRORS = {
    "channel_not_found",
    "not_in_channel",
    "invalid_auth",
    "token_revoked",
    "account_inactive",
    "is_archived",
    "missing_scope",
    "not_authed",
    "invalid_blocks",
    "msg_too_long",
    "no_such_subteam",
    "channel_is_archived",
    "restricted_action",
}


@contextmanager
def _slack_call() -> Iterator[None]:
    """Errors retrying cannot fix fail the activity for good, with Slack's
    code as the reason; anything else (429, 5xx) is left to Temporal's retry."""
    try:
        yield
    except SlackApiError as error:
        code = str(error.response.get("error", "unknown"))
        if code in PERMANENT_SLACK_ERRORS:
            raise ApplicationError(
                f"Slack refused the call: {code}",
                type=ErrorType.slack_permanent_error,
                non_retryable=True,
            ) from error
        raise


@asynccontextmanager
async def _listening_for_cancel() -> AsyncIterator[None]:
    """Heartbeat while a post waits its turn: Temporal tells an activity it
    was cancelled (its round cancelled) only in the answer to a heartbeat, and
    a post that never heard would still land, seconds after its round ended,
    with buttons nobody can use. Cancelled, the wait ends and nothing is posted."""
    if not activity.in_activity():
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(WAIT_BEAT_S)

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        beating.cancel()


class ChannelPacer:
    """Spaces posts to one channel at least `interval_s` apart, measured from
    when Slack answered the previous one (so a slow answer never lets two
    posts land closer than that). One pacer serves every activity of the
    worker, so rounds posting to one channel together share its rate; posts
    to different channels do not wait for each other. A post with more than
    `max_wait_s` of posts queued ahead of it does not wait inside its
    activity, where the start-to-close timeout would cut it off while it holds
    a worker slot: it asks Temporal to retry it about when the queue has
    drained (many rounds posting to one channel at once). A post cancelled
    while it waits gives up its place: the next one's turn is still counted
    from the last post Slack answered."""

    def __init__(self, interval_s: float, max_wait_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self.max_wait_s = max_wait_s
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._last: dict[str, float] = {}
        self._queued: defaultdict[str, int] = defaultdict(int)

    async def post(self, client: AsyncWebClient, **message: Any) -> Any:
        channel = str(message["channel"])
        ahead = self._queued[channel] * self.interval_s
        if ahead > self.max_wait_s:
            raise ApplicationError(
                f"channel {channel} has {ahead:.0f} s of posts queued ahead; posting later",
                type=ErrorType.slack_channel_busy,
                next_retry_delay=timedelta(seconds=ahead - self.max_wait_s / 2),
            )
        self._queued[channel] += 1
        try:
            async with _listening_for_cancel(), self._locks[channel]:
                last = self._last.get(channel)
                if last is not None:
                    await asyncio.sleep(max(0.0, last + self.interval_s - time.monotonic()))
                try:
                    return await client.chat_postMessage(**message)
                finally:
                    self._last[channel] = time.monotonic()
        finally:
            self._queued[channel] -= 1


class SlackActivities(defined.SlackActivities):
    def __init__(
        self,
        client: AsyncWebClient,
        channel: str,
        ledger: Ledger,
        dashboard_url: str | None = None,
        post_interval_s: float = 1.0,
    ) -> None:
        self.client = client
        self.channel = channel
        self.ledger = ledger
        self.dashboard_url = dashboard_url
        self.pacer = ChannelPacer(post_interval_s)

    async def _evidence(self, status: ProposalStatus) -> dict[str, str]:
        proposal = status.proposal
        return await self.ledger.evidence_summaries(proposal.round_id, proposal.draft.evidence)

    async def _post_keyed(self, key: str, **message: Any) -> SlackMessageRef:
        """Post `message` tagged with `key`, unless an earlier try of this activity did.

        Only a retry looks (attempt 2 on): the first try cannot have posted
        before, and whatever an earlier activity posted is in the ledger.
        """
        channel = str(message["channel"])
        thread_ts = message.get("thread_ts")
        if activity.info().attempt > 1:
            found = await self._find_post(
                key, channel, None if thread_ts is None else str(thread_ts)
            )
            if found is not None:
                activity.logger.info("found post %s from an earlier try: %s", key, found.ts)
                return found
        metadata = {"event_type": POST_EVENT, "event_payload": {"key": key}}
        with _slack_call():
            response = await self.pacer.post(self.client, metadata=metadata, **message)
        return SlackMessageRef(channel=str(response["channel"]), ts=str(response["ts"]))

    async def _find_post(
        self, key: str, channel: str, thread_ts: str | None
    ) -> SlackMessageRef | None:
        """The message posted under `key` since this activity was first scheduled, if any."""
        oldest = activity.info().scheduled_time - CLOCK_SKEW
        cursor: str | None = None
        with _slack_call():
            for _ in range(LOOKUP_PAGES):
                page: dict[str, Any] = {
                    "channel": channel,
                    "oldest": f"{max(oldest.timestamp(), 0):.6f}",
                    "include_all_metadata": True,
                    "limit": 200,
                    **({"cursor": cursor} if cursor else {}),
                }
                if thread_ts is None:
                    response = await self.client.conversations_history(**page)
                else:
                    response = await self.client.conversations_replies(ts=thread_ts, **page)
                for message in response.get("messages") or []:
                    metadata = message.get("metadata") or {}
                    payload = metadata.get("event_payload") or {}
                    if metadata.get("event_type") == POST_EVENT and payload.get("key") == key:
                        return SlackMessageRef(channel=channel, ts=str(message["ts"]))
                cursor = (response.get("response_metadata") or {}).get("next_cursor")
                if not response.get("has_more") or not cursor:
                    return None
        return None

    async def _post_once(self, key: str, round_id: str, **message: Any) -> None:
        """Post unless a post under `key` was already made (by an earlier try)."""
        if await self.ledger.slack_post(key) is not None:
            return
        ref = await self._post_keyed(key, **message)
        await self.ledger.record_slack_post(key, round_id, ref.channel, ref.ts)

    @activity.defn
    async def post_proposal(self, request: PostProposalInput) -> SlackMessageRef:
        status = request.status
        # A retry after Slack accepted the post must not post it again.
        known = await self.ledger.proposal_message(status.proposal.id)
        current = (status.message.channel, status.message.ts) if status.message else None
        # A re-post is new until the ledger names a message other than the round's own.
        if known is not None and not (request.repost and known == current):
            return SlackMessageRef(channel=known[0], ts=known[1])
        posted = status.model_copy(update={"state": ProposalState.posted})
        # The first post is number 0; each re-post replaces the current message.
        number = len(status.earlier_messages) + 1 if request.repost else 0
        ref = await self._post_keyed(
            f"{request.workflow_id}:proposal:{status.proposal.id}:{number}",
            channel=self.channel,
            text=fallback_text(posted),
            blocks=proposal_blocks(
                request.workflow_id,
                posted,
                request.constitution,
                request.voters,
                self.dashboard_url,
                await self._evidence(posted),
            ),
            unfurl_links=False,
        )
        await self.ledger.set_proposal_message(status.proposal.id, ref.channel, ref.ts)
        return ref

    @activity.defn
    async def update_proposal_message(
        self, request: UpdateProposalMessageInput
    ) -> SlackMessageRef | None:
        """Rewrite the proposal's message, and every earlier one a re-post replaced:
        decisions on any of them count, so none may keep buttons once it is settled.

        A message that is gone (deleted in Slack, or its channel deleted or left)
        cannot be updated however often this is retried. While the proposal
        still waits for decisions a fresh message is posted in the review
        channel, recorded as the proposal's, and answered, so reviewers have
        buttons again; a settled or withdrawn proposal's lost message had
        nothing left to end.
        """
        status = request.status
        if status.message is None:
            return None
        text = fallback_text(status)
        blocks = proposal_blocks(
            request.workflow_id,
            status,
            request.constitution,
            request.voters,
            self.dashboard_url,
            await self._evidence(status),
        )
        with _slack_call():
            for earlier in status.earlier_messages:
                try:
                    await self.client.chat_update(
                        channel=earlier.channel, ts=earlier.ts, text=text, blocks=blocks
                    )
                except SlackApiError as error:
                    # Deleted (often why it was re-posted): it has no buttons left to end.
                    if error.response.get("error") not in MESSAGE_GONE:
                        raise
            try:
                await self.client.chat_update(
                    channel=status.message.channel, ts=status.message.ts, text=text, blocks=blocks
                )
                return None
            except SlackApiError as error:
                gone = error.response.get("error")
                if gone not in MESSAGE_GONE:
                    raise
        if status.state is not ProposalState.posted:
            return None
        activity.logger.warning(
            "proposal %s: its message %s is gone (%s); posting it again",
            status.proposal.id,
            status.message.ts,
            gone,
        )
        ref = await self._post_keyed(
            f"{request.workflow_id}:proposal:{status.proposal.id}:"
            f"{len(status.earlier_messages) + 1}",
            channel=self.channel,
            text=text,
            blocks=blocks,
            unfurl_links=False,
        )
        await self.ledger.set_proposal_message(status.proposal.id, ref.channel, ref.ts)
        return ref

    @activity.defn
    async def post_proposals(self, request: ProposalMessagesInput) -> list[SlackMessageRef]:
        """Post each in turn; a retry finds those posted already in the ledger
        (`post_proposal`), so none is posted twice."""
        posted = []
        for each in request.each():
            posted.append(await self.post_proposal(PostProposalInput(**dict(each))))
            activity.heartbeat(len(posted))
        return posted

    @activity.defn
    async def update_proposal_messages(
        self, request: ProposalMessagesInput
    ) -> list[SlackMessageRef | None]:
        fresh = []
        for each in request.each():
            fresh.append(await self.update_proposal_message(each))
            activity.heartbeat(len(fresh))
        return fresh

    @activity.defn
    async def post_reminder(self, request: ReminderInput) -> None:
        """One reply in each pending proposal's thread; a retry skips the
        threads already reminded."""
        text = reminder_text(request.pending, request.reminder_number, request.escalate_to)
        for item in request.pending:
            if item.message is None:
                continue
            await self._post_once(
                f"{request.round_id}:reminder:{request.reminder_number}:{item.proposal.id}",
                request.round_id,
                channel=item.message.channel,
                thread_ts=item.message.ts,
                text=text,
            )

    @activity.defn
    async def post_digest(self, request: DigestInput) -> None:
        await self._post_once(
            f"{request.round_id}:digest:{request.number}",
            request.round_id,
            channel=self.channel,
            text=digest_text(request.round_id, request.pending, request.number),
            unfurl_links=False,
        )

    @activity.defn
    async def post_round_summary(self, request: RoundSummaryInput) -> None:
        await self._post_once(
            f"{request.round_id}:summary",
            request.round_id,
            channel=self.channel,
            text=summary_text(
                request.round_id,
                request.state.value,
                request.proposals,
                request.result_version,
                round_url(self.dashboard_url, request.round_id),
            ),
        )

    @activity.defn
    async def resolve_reviewer_groups(self, request: ResolveGroupsInput) -> dict[str, list[str]]:
        """Members of each reviewer user group (usergroups.users.list)."""
        members: dict[str, list[str]] = {}
        with _slack_call():
            for group in request.groups:
                response = await self.client.usergroups_users_list(usergroup=group)
                users: list[str] = list(response.get("users") or [])
                members[group] = sorted(users)
        return members
