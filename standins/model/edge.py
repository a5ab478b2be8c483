"""What the model stand-in does to every request, whichever area serves it.

Every response carries an `x-request-id`, as OpenAI's do (unless configured
without, as many other servers are); with an API key
configured, `/v1` requests without it get OpenAI's 401 (the `/_standin`
routes never need it); every request is counted per route for the stats; and
every error, FastAPI's own included, leaves in OpenAI's error JSON, so the
`openai` client raises what it would against a real server.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from standins.model.state import ModelServerState
from standins.model.wire import StandInAPIError


class EdgeMiddleware:
    """Request ids, API-key check and per-endpoint counts for every request.

    A plain ASGI middleware rather than `@app.middleware("http")`: the latter
    buffers responses through a stream, which would turn the `drop` fault's
    half-sent response into something else.
    """

    def __init__(self, app: ASGIApp, state: ModelServerState) -> None:
        """Wrap `app`, counting and checking into `state` (which holds the API key)."""
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, stamped, checked and counted."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        request_id = self.state.new_id("req_", 32, method, path)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: ASGIMessage) -> None:
            if message["type"] == "http.response.start" and self.state.config.request_ids:
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        if self.state.config.api_key is not None and path.startswith("/v1"):
            error = self._auth_error(scope)
            if error is not None:
                self.state.requests[f"{method} {path}"] += 1
                await error.response()(scope, receive, send_with_id)
                return
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or path
            self.state.requests[f"{method} {template}"] += 1

    def _auth_error(self, scope: Scope) -> StandInAPIError | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return StandInAPIError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        token = token.strip()
        if token != self.state.config.api_key:
            masked = (
                token[:3] + "*" * max(0, len(token) - 7) + token[-4:] if len(token) > 7 else "****"
            )
            return StandInAPIError(
                401, f"Incorrect API key provided: {masked}.", code="invalid_api_key"
            )
        return None


async def answer_api_error(request: Request, error: StandInAPIError) -> Response:
    """A `StandInAPIError` raised by a route, answered in OpenAI's shape."""
    return error.response()


async def answer_validation_error(request: Request, error: RequestValidationError) -> Response:
    """FastAPI's parameter validation, answered as OpenAI's 400 naming the parameter."""
    first = error.errors()[0] if error.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    return StandInAPIError(400, str(first.get("msg", "Invalid request.")), param=param).response()


async def answer_http_error(request: Request, error: StarletteHTTPException) -> Response:
    """Starlette's HTTP errors; an unknown route reads "Invalid URL", as on OpenAI."""
    if error.status_code in (404, 405):
        message = f"Invalid URL ({request.method} {request.url.path})"
    else:
        message = str(error.detail)
    return StandInAPIError(error.status_code, message).response()
