"""Who may call the Slack stand-in: the token check every Web API call passes, and `auth.test`.

Tokens are checked the way Slack checks them, as a bearer header or a
`token` argument, and the bot token can be revoked (`POST /_standin/revoke`),
so amend's handling of a missing, wrong or revoked token is tested against
Slack's own error codes. Socket Mode's `apps.connections.open` wants the app
token instead.
"""

from __future__ import annotations

from fastapi import Request

from standins.slack.state import SlackStandInState, WebAPIMethod
from standins.slack.wire import JSONDict, str_field


def auth_error(
    state: SlackStandInState, request: Request, params: JSONDict, method: str
) -> str | None:
    """Slack's error code for the call's token, or None when it may make the call.

    The codes are Slack's own (`not_authed`, `invalid_auth`, `token_revoked`),
    so slack_sdk and amend react to them as they would to Slack.
    """
    config = state.config
    header = request.headers.get("authorization")
    token: str | None = None
    if header is not None:
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
        if token is None or not token:
            return "invalid_auth"
    else:
        token = str_field(params, "token")
    if token is None:
        return "not_authed"
    wanted = config.app_token if method == "apps.connections.open" else config.bot_token
    if token != wanted:
        return "invalid_auth"
    if state.revoked:
        return "token_revoked"
    return None


def auth_test(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`auth.test`: the workspace and bot the token belongs to."""
    config = state.config
    return {
        "ok": True,
        "url": f"https://{config.team_domain}.slack.com/",
        "team": config.team_name,
        "user": config.bot_user_name,
        "team_id": config.team_id,
        "user_id": config.bot_user_id,
        "bot_id": config.bot_id,
        "is_enterprise_install": False,
    }


METHODS: dict[str, WebAPIMethod] = {"auth.test": auth_test}
"""The Web API methods this module answers."""
