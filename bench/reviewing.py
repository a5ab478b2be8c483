"""The simulated reviewer of `bench rounds` (a stand-in for the people who
review in Slack) as a process of its own: it reads the channel and clicks
Accept on every open proposal, through the gateway with signed requests. Run
apart, its CPU is not counted as the service's and it does not take turns on
the service's interpreter; in the benchmark's process it was 8% of the
samples (py-spy), most of it parsing the channel's history every 0.2 s.

    AMEND_SLACK_SIGNING_SECRET=... python -m bench.reviewing GATEWAY_URL SLACK_API_URL \\
        --user U0BENCHREVIEWER --channel C0AMENDREVIEW

It runs until it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from standins.reviewer import SimulatedReviewer, open_proposals

REPRESS_S = 5.0


async def accept_everything(slack_url: str, reviewer: SimulatedReviewer, channel: str) -> None:
    """Accept each open proposal, and press again on one still open a while
    later (a click can land before the round has noted the message as
    posted, and is then refused)."""
    clicked: dict[str, float] = {}
    while True:
        now = time.monotonic()
        due = [
            r
            for r in await open_proposals(slack_url, channel_id=channel)
            if now - clicked.get(r["ts"], -REPRESS_S) >= REPRESS_S
        ]
        clicked.update((r["ts"], now) for r in due)
        await asyncio.gather(*(reviewer.click(r, "accept", channel_id=channel) for r in due))
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gateway_url")
    parser.add_argument("slack_api_url")
    parser.add_argument("--user", required=True, help="the reviewer's Slack user id")
    parser.add_argument("--channel", required=True, help="the review channel's id")
    args = parser.parse_args()
    secret = os.environ.get("AMEND_SLACK_SIGNING_SECRET")
    if not secret:
        parser.error("set AMEND_SLACK_SIGNING_SECRET to the gateway's signing secret")
    reviewer = SimulatedReviewer(
        args.gateway_url, secret, args.user, slack_api_url=args.slack_api_url
    )
    asyncio.run(accept_everything(args.slack_api_url, reviewer, args.channel))


if __name__ == "__main__":
    main()
