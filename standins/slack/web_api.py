"""The Slack stand-in's Web API endpoint: `/api/<method>`, dispatched to the method areas.

Every call goes through here, so every call is recorded (`GET
/_standin/calls`), may take a queued fault, and has its token checked
before its method runs, in the order Slack does them. Methods are served at
`POST /api/<method>` (`GET` works too, as slack_sdk sends a few read methods
that way); anything unknown answers `{"ok": false, "error":
"unknown_method"}`.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from standins.slack import auth, chat, conversations, socket_mode, usergroups, users, views
from standins.slack.auth import auth_error
from standins.slack.state import SlackState, WebAPIMethod
from standins.slack.wire import JSONDict, SlackError, read_params

METHODS: dict[str, WebAPIMethod] = {
    **auth.METHODS,
    **chat.METHODS,
    **views.METHODS,
    **conversations.METHODS,
    **users.METHODS,
    **usergroups.METHODS,
    **socket_mode.METHODS,
}
"""Every Web API method the stand-in answers, by Slack's name."""

CHANGES_WORKSPACE = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "chat.delete",
        "chat.postEphemeral",
        "views.open",
        "views.update",
    }
)
"""The methods after which the workspace is kept (see `SlackStandInState.keep`)."""

router = APIRouter()


@router.api_route("/api/{method}", methods=["POST", "GET"])
async def web_api(method: str, request: Request, state: SlackState) -> JSONResponse:
    """Answer one Web API call: record it, apply a queued fault, check the token, run it."""
    call: JSONDict = {"method": method, "at": time.time()}
    state.calls.append(call)

    def reply(
        body: JSONDict, status: int = 200, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        call.update(status=status, ok=bool(body.get("ok")), error=body.get("error"))
        return JSONResponse(body, status_code=status, headers=headers)

    if method not in METHODS:
        return reply({"ok": False, "error": "unknown_method", "req_method": method})
    fault = state.take_fault(method)
    hold_s = fault.hold_s if fault is not None and fault.kind == "slow_answer" else 0.0
    if fault is not None and not hold_s:
        if fault.kind == "rate_limited":
            headers = {"Retry-After": str(fault.retry_after)}
            return reply({"ok": False, "error": "ratelimited"}, 429, headers)
        if fault.kind == "server_error":
            return reply({"ok": False, "error": "internal_error"}, 500)
        return reply({"ok": False, "error": fault.error})
    try:
        params = await read_params(request)
        error = auth_error(state, request, params, method)
        if error is not None:
            return reply({"ok": False, "error": error})
        result = METHODS[method](state, params)
    except SlackError as exc:
        return reply({"ok": False, "error": exc.error}, exc.status, exc.headers)
    if method in CHANGES_WORKSPACE:
        state.keep()
    if hold_s:
        await asyncio.sleep(hold_s)
    return reply(result)
