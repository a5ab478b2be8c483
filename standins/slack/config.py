"""How the Slack stand-in behaves: the workspace it plays and the limits it enforces.

Not frozen: `POST /_standin/usergroups` changes the user groups of a running
stand-in, as an admin would in a real workspace.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class SlackStandInConfig(BaseModel):
    """How the Slack Web API stand-in behaves; the defaults suit the dev stack.

    The rate limit and trigger expiry are off by default and turned on by the
    tests that show amend living with them, as it must with real Slack.
    """

    bot_token: str = "xoxb-amend-stand-in"
    app_token: str = "xapp-amend-stand-in"  # Socket Mode's apps.connections.open
    channels: list[str] = Field(default_factory=lambda: ["C0AMENDREVIEW"])
    # chat.postMessage faster than this, per channel, gets a 429 like real Slack.
    post_message_per_second: float | None = None
    # Display names; a channel without one is named after its id.
    channel_names: dict[str, str] = Field(default_factory=lambda: {"C0AMENDREVIEW": "amend-review"})
    # users.info names; an unlisted U.../W... id gets a made-up name.
    users: dict[str, str] = Field(default_factory=dict)
    # User group id -> member user ids, for usergroups.users.list.
    usergroups: dict[str, list[str]] = Field(default_factory=dict)
    # Registered trigger ids older than this are `expired_trigger_id` (Slack: 3 s).
    # None: they never expire. Unregistered trigger ids are accepted unless
    # `strict_triggers`, in which case they are `invalid_trigger_id`.
    trigger_ttl_seconds: float | None = None
    strict_triggers: bool = False
    team_id: str = "T0AMEND"
    team_name: str = "amend"
    team_domain: str = "amend"
    bot_user_id: str = "U0AMENDBOT"
    bot_user_name: str = "amend"
    bot_id: str = "B0AMENDBOT"
    app_id: str = "A0AMEND"
