"""The model stand-in's FastAPI app, built from its API areas.

Each call makes an independent stand-in with its own `ModelServerState`, so a
test can run one with its own configuration beside the dev stack's.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from standins.model import batches, chat, control, files, fine_tuning
from standins.model.config import ScriptedModelConfig
from standins.model.edge import (
    EdgeMiddleware,
    answer_api_error,
    answer_http_error,
    answer_validation_error,
)
from standins.model.state import ModelServerState
from standins.model.wire import StandInAPIError


def create_app(config: ScriptedModelConfig | None = None) -> FastAPI:
    """Build a fresh stand-in with its own state; each call is independent.

    The state is on `app.state.standin`, where tests read it directly.
    """
    state = ModelServerState(config or ScriptedModelConfig())
    app = FastAPI(
        title="amend scripted model stand-in",
        description="Scripted, deterministic stand-in for an OpenAI-compatible model server.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.standin = state
    app.add_middleware(EdgeMiddleware, state=state)
    app.exception_handler(StandInAPIError)(answer_api_error)
    app.exception_handler(RequestValidationError)(answer_validation_error)
    app.exception_handler(StarletteHTTPException)(answer_http_error)
    # An area the config turns off is absent, so it answers 404 as on servers without it.
    areas = [chat, files, control]
    areas += [fine_tuning] if state.config.fine_tuning else []
    areas += [batches] if state.config.batch_api else []
    for area in areas:
        app.include_router(area.router)
    return app
