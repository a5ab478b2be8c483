"""The Slack stand-in's FastAPI app, built from its Web API and control routers.

Each call makes an independent stand-in with its own `SlackStandInState` and
its own Socket Mode websocket, which starts and stops with the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from standins.slack import control, web_api
from standins.slack.config import SlackStandInConfig
from standins.slack.state import SlackStandInState, standin_state


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Serve Socket Mode's websocket while the app runs."""
    socket = standin_state(app).socket
    await socket.start()
    try:
        yield
    finally:
        await socket.stop()


def create_app(config: SlackStandInConfig | None = None, store: Path | None = None) -> FastAPI:
    """Build the Slack Web API stand-in app.

    The state is on `app.state.slack`; tests read it with `standin_state(app)`.
    With `store`, the workspace is kept in that file and read back from it.
    """
    app = FastAPI(title="Slack Web API stand-in", lifespan=lifespan)
    state = SlackStandInState(config=config or SlackStandInConfig(), store=store)
    state.load()
    app.state.slack = state
    app.include_router(web_api.router)
    app.include_router(control.router)
    return app
