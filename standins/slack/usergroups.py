"""User groups in the Slack stand-in: `usergroups.users.list`.

amend can name a user group as the reviewers of a round; the members come
from the configuration or from `POST /_standin/usergroups`, so a test can
change who may decide while a round runs.
"""

from __future__ import annotations

from standins.slack.state import SlackStandInState, WebAPIMethod
from standins.slack.wire import JSONDict, SlackError, str_field


def usergroups_users_list(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`usergroups.users.list`: a group's members; an unknown group is `no_such_subteam`."""
    group = str_field(params, "usergroup")
    if group is None:
        raise SlackError("invalid_arguments")
    if group not in state.config.usergroups:
        raise SlackError("no_such_subteam")
    return {"ok": True, "users": list(state.config.usergroups[group])}


METHODS: dict[str, WebAPIMethod] = {"usergroups.users.list": usergroups_users_list}
"""The Web API methods this module answers."""
