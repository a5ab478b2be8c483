"""Slack interactions over Socket Mode, for workspaces where Slack cannot reach
the gateway's HTTP endpoint (no public URL).

The gateway opens the websocket itself (slack_sdk's Socket Mode client, with
the app-level `xapp-` token); each interactive envelope is handled exactly as
a verified HTTP interaction and acknowledged on the socket, with the modal's
`response_action` as the ack payload. Requests arrive over a connection the
gateway opened with its own token, so there is no signature to check.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, Protocol

from fastapi.responses import Response
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse


class Interaction(Protocol):
    def __call__(self, payload: object, *, redelivery: bool = False) -> Awaitable[Response]: ...


class SocketModeReceiver:
    def __init__(self, client: SocketModeClient, handle: Interaction) -> None:
        self.client = client
        self.handle = handle
        client.socket_mode_request_listeners.append(self._on_request)  # type: ignore[arg-type]

    async def start(self) -> None:
        await self.client.connect()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        await self.client.close()  # type: ignore[no-untyped-call]

    async def _on_request(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        ack: dict[str, Any] | None = None
        if request.type == "interactive":
            payload = request.payload if isinstance(request.payload, dict) else {}
            # Slack redelivers an envelope it saw no ack for, as it retries HTTP.
            response = await self.handle(payload, redelivery=bool(request.retry_attempt))
            # Slack reads an answer only for a modal submission (errors or clear).
            if payload.get("type") == "view_submission" and response.body:
                ack = json.loads(bytes(response.body))
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=request.envelope_id, payload=ack)
        )
