"""People in the Slack stand-in: `users.info`.

Any `U...`/`W...` id is a user here (a configured name, or a made-up one),
so tests need not register every reviewer they invent before a client looks
one up.
"""

from __future__ import annotations

from standins.slack.state import SlackStandInState, WebAPIMethod
from standins.slack.wire import JSONDict, SlackError, str_field


def users_info(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`users.info`: the bot itself, a configured user, or a made-up one."""
    config = state.config
    user = str_field(params, "user")
    if user is None or user[0] not in "UW":
        raise SlackError("user_not_found")
    is_bot = user == config.bot_user_id
    name = config.bot_user_name if is_bot else config.users.get(user, f"user-{user.lower()}")
    return {
        "ok": True,
        "user": {
            "id": user,
            "team_id": config.team_id,
            "name": name,
            "deleted": False,
            "real_name": name,
            "tz": "Etc/UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "is_admin": False,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": 1700000000,
            "profile": {
                "real_name": name,
                "display_name": name,
                "real_name_normalized": name,
                "display_name_normalized": name,
                "team": config.team_id,
            },
        },
    }


METHODS: dict[str, WebAPIMethod] = {"users.info": users_info}
"""The Web API methods this module answers."""
