"""Channels in the Slack stand-in: which exist, what they are called, `conversations.info`.

The stand-in knows only the configured channels; a call naming another gets
`channel_not_found`, as a bot outside a channel does, so a misconfigured
review channel fails in tests the way it would in a workspace.
"""

from __future__ import annotations

from standins.slack.config import SlackStandInConfig
from standins.slack.state import SlackStandInState, WebAPIMethod
from standins.slack.wire import JSONDict, SlackError, str_field


def channel_name(config: SlackStandInConfig, channel: str) -> str:
    """The channel's display name; one without a configured name is named after its id."""
    return config.channel_names.get(channel, channel.lower())


def require_channel(config: SlackStandInConfig, params: JSONDict) -> str:
    """The call's `channel`, refused with `channel_not_found` unless configured."""
    channel = str_field(params, "channel")
    if channel is None or channel not in config.channels:
        raise SlackError("channel_not_found")
    return channel


def conversations_info(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`conversations.info`: a public channel the bot is a member of."""
    config = state.config
    channel = require_channel(config, params)
    name = channel_name(config, channel)
    return {
        "ok": True,
        "channel": {
            "id": channel,
            "name": name,
            "name_normalized": name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": False,
            "is_archived": False,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": True,
            "created": 1700000000,
            "creator": config.bot_user_id,
            "context_team_id": config.team_id,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        },
    }


METHODS: dict[str, WebAPIMethod] = {"conversations.info": conversations_info}
"""The Web API methods this module answers."""
