"""Slack Web API calls as activities, through `slack_sdk`'s async client.

One retry layer: the client keeps only its default connection-error handler
and Temporal retries the activity on anything else (429 and 5xx included), so
a rate limit backs off with the activity's retry policy instead of two layers
hammering the channel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from constitution import ProposalState
from constitution.contracts import (
    PostProposalInput,
    ReminderInput,
    RoundSummaryInput,
    SlackMessageRef,
    UpdateProposalMessageInput,
)
from ledger.store import Ledger
from review.messages import (
    fallback_text,
    proposal_blocks,
    reminder_text,
    summary_text,
)

# Errors that retrying cannot fix; the round fails with the reason visible.
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
                f"Slack refused the call: {code}", type="SlackPermanentError", non_retryable=True
            ) from error
        raise


class SlackActivities:
    def __init__(
        self, client: AsyncWebClient, channel: str, ledger: Ledger, dashboard_url: str | None = None
    ) -> None:
        self.client = client
        self.channel = channel
        self.ledger = ledger
        self.dashboard_url = dashboard_url

    @activity.defn(name="post_proposal")
    async def post_proposal(self, request: PostProposalInput) -> SlackMessageRef:
        status = request.status
        # A retry after Slack accepted the post must not post it again.
        known = await self.ledger.proposal_message(status.proposal.id)
        current = (status.message.channel, status.message.ts) if status.message else None
        # A re-post is new until the ledger names a message other than the round's own.
        if known is not None and not (request.repost and known == current):
            return SlackMessageRef(channel=known[0], ts=known[1])
        posted = status.model_copy(update={"state": ProposalState.posted})
        with _slack_call():
            response = await self.client.chat_postMessage(
                channel=self.channel,
                text=fallback_text(posted),
                blocks=proposal_blocks(
                    request.workflow_id, posted, request.constitution, self.dashboard_url
                ),
                unfurl_links=False,
            )
        ref = SlackMessageRef(channel=str(response["channel"]), ts=str(response["ts"]))
        await self.ledger.set_proposal_message(status.proposal.id, ref.channel, ref.ts)
        return ref

    @activity.defn(name="update_proposal_message")
    async def update_proposal_message(self, request: UpdateProposalMessageInput) -> None:
        status = request.status
        if status.message is None:
            return
        with _slack_call():
            await self.client.chat_update(
                channel=status.message.channel,
                ts=status.message.ts,
                text=fallback_text(status),
                blocks=proposal_blocks(
                    request.workflow_id, status, request.constitution, self.dashboard_url
                ),
            )

    @activity.defn(name="post_reminder")
    async def post_reminder(self, request: ReminderInput) -> None:
        text = reminder_text(request.pending, request.reminder_number, request.escalate_to)
        threads = sorted({(p.message.channel, p.message.ts) for p in request.pending if p.message})
        with _slack_call():
            for channel, ts in threads:
                await self.client.chat_postMessage(channel=channel, thread_ts=ts, text=text)

    @activity.defn(name="post_round_summary")
    async def post_round_summary(self, request: RoundSummaryInput) -> None:
        with _slack_call():
            await self.client.chat_postMessage(
                channel=self.channel,
                text=summary_text(
                    request.round_id, request.state.value, request.proposals, request.result_version
                ),
            )
