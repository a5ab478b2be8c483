"""Socket Mode for the Slack stand-in: the websocket an app connects to instead of a URL.

`apps.connections.open` (with the app token) hands out a `ws://` URL served
here; `POST /_standin/socket` then sends a payload as an envelope to the app
connected there and waits for its acknowledgement, as Slack would, giving up
after 3 s. So the gateway's Socket Mode path runs against the real protocol.
The websocket listens on a port of its own, beside the Web API's.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from standins.slack.wire import JSONDict

if TYPE_CHECKING:
    from standins.slack.state import SlackStandInState, WebAPIMethod


class SocketModeServer:
    """Socket Mode's websocket: one app connection, envelopes out, acks back."""

    def __init__(self) -> None:
        """Make a server that listens only once `start` is awaited, inside the app's loop."""
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._socket: web.WebSocketResponse | None = None
        self._acks: dict[str, asyncio.Future[JSONDict]] = {}

    async def start(self) -> None:
        """Listen on a free local port; `url` is where apps connect."""
        app = web.Application()
        app.router.add_get("/link", self._connect)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}/link"

    async def stop(self) -> None:
        """Close the app's connection and stop listening."""
        if self._socket is not None:
            await self._socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _connect(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._socket = socket
        await socket.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0AMEND"}}
        )
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            ack = json.loads(message.data)
            waiting = self._acks.pop(str(ack.get("envelope_id")), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(ack)
        return socket

    async def send(self, kind: str, payload: JSONDict) -> JSONDict:
        """Send one envelope and wait for the app's ack, as Slack does (up to 3 s).

        Returns:
            `acked`, and with an ack its `ack_payload` and `ack_ms`, so a test
            can check the app answered in time and with what.
        """
        if self._socket is None or self._socket.closed:
            return {"acked": False, "error": "no app is connected"}
        envelope_id = str(uuid.uuid4())
        waiting: asyncio.Future[JSONDict] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = waiting
        started = time.monotonic()
        await self._socket.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "accepts_response_payload": True,
                "payload": payload,
            }
        )
        try:
            ack = await asyncio.wait_for(waiting, 3.0)
        except TimeoutError:
            self._acks.pop(envelope_id, None)
            return {"acked": False, "error": "no ack within 3 s"}
        return {
            "acked": True,
            "ack_payload": ack.get("payload"),
            "ack_ms": (time.monotonic() - started) * 1000,
        }


def apps_connections_open(state: SlackStandInState, params: JSONDict) -> JSONDict:
    """`apps.connections.open`: where the app should connect its websocket."""
    return {"ok": True, "url": state.socket.url}


METHODS: dict[str, WebAPIMethod] = {"apps.connections.open": apps_connections_open}
"""The Web API methods this module answers."""
