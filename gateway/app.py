"""The HTTP edge, assembled: Slack interactions, trainer callbacks, the
operator and dashboard APIs, the built-in pages, metrics and health.

Each concern is a router of its own module; this one builds the services
they share (`gateway.deps`) once, when the app starts, and answers the
round's refusals in HTTP with exception handlers, so routes only say what
they do. A ledger database that is away is one of them: every route answers
503 with a reason and `Retry-After` (a page says it in HTML), never 500, and
the gateway starts and stays up while the database is down.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client
from temporalio.service import RPCError

from gateway import dashboard, operators, pages, slack, trainer
from gateway.deps import DashboardsDep, GatewayConfig, Services
from gateway.health import Probe, health_router, postgres_probe, temporal_probe
from gateway.limits import BodyLimit
from gateway.metrics import GatewayMetrics, RequestMetrics
from gateway.socket_mode import SocketModeReceiver
from ledger.dashboards import Dashboards
from ledger.errors import DATABASE_AWAY
from ledger.pool import create_pool, database_address
from ledger.store import Ledger
from workflows.client import RoundExists, RoundNotFound, RoundRefused

log = logging.getLogger(__name__)

__all__ = ["GatewayConfig", "create_app"]


async def _not_found(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=404)


async def _conflict(_: Request, error: Exception) -> JSONResponse:
    """The round refused the order, or it is already so: nothing changed."""
    return JSONResponse({"detail": str(error)}, status_code=409)


async def _temporal_unreachable(_: Request, error: Exception) -> JSONResponse:
    message = error.message if isinstance(error, RPCError) else str(error)
    log.warning("Temporal did not answer: %s", message)
    return JSONResponse({"detail": f"Temporal did not answer: {message}"}, status_code=503)


# How long a client is told to wait before trying again while the ledger is away.
LEDGER_RETRY_AFTER_S = 5
LEDGER_AWAY_DETAIL = "the ledger database is unavailable; try again shortly"
# One attempt to reach the database: a request waits at most this long for a
# connection before it is answered 503.
CONNECT_TIMEOUT_S = 5.0


async def _ledger_away(request: Request, error: Exception) -> Response:
    """The ledger's database is away: 503 and when to try again, as JSON for
    the API and as a readable page for the built-in pages."""
    log.warning("%s %s: the ledger is unavailable: %s", request.method, request.url.path, error)
    headers = {"Retry-After": str(LEDGER_RETRY_AFTER_S)}
    route = request.scope.get("route")
    if pages.PAGES_TAG not in getattr(route, "tags", ()):
        return JSONResponse({"detail": LEDGER_AWAY_DETAIL}, status_code=503, headers=headers)
    page = pages.render(
        request,
        "unavailable.html",
        "Unavailable for a moment",
        503,
        message="The ledger database is unavailable, so this page cannot be read now.",
        again=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        retry_after=LEDGER_RETRY_AFTER_S,
    )
    page.headers.update(headers)
    return page


@asynccontextmanager
async def slack_session(slack: AsyncWebClient) -> AsyncIterator[None]:
    """One HTTP session for the gateway's Slack calls while it runs.

    Without one the SDK opens and closes a session, and a connection, per
    call: about 0.5 ms of the gateway's CPU for each ephemeral answer to a
    click (py-spy, issue 14). A client given a session of its own keeps it.
    """
    if slack.session is not None:
        yield
        return
    # The SDK puts the client's timeout on the sessions it makes; this one too.
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=slack.timeout))
    slack.session = session
    try:
        yield
    finally:
        if slack.session is session:
            slack.session = None
        await session.close()


def create_app(config: GatewayConfig, temporal: Client) -> FastAPI:
    """The gateway for one Temporal client; the ledger's pool opens when it starts."""
    metrics = GatewayMetrics()
    probes: dict[str, Probe] = {}  # filled once the pool is open

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # No connection is opened until one is needed, so the gateway starts
        # (and answers 503, and Slack clicks) while the database is down.
        dsn = config.database_url.get_secret_value()
        pool = await create_pool(
            dsn,
            min_size=0,
            max_size=5,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            report_unavailable=True,
        )
        try:
            await pool.execute("SELECT 1")
        except DATABASE_AWAY as error:
            log.warning(
                "ledger database at %s unavailable (%s); answering 503 until it is back",
                database_address(dsn),
                error,
            )
        probes.update(postgres=postgres_probe(pool), temporal=temporal_probe(temporal))
        services = Services(
            config=config,
            temporal=temporal,
            ledger=Ledger(pool),
            dashboards=Dashboards(pool),
            metrics=metrics,
        )
        async with slack_session(config.slack):
            interactions = slack.SlackInteractions(services)
            app.state.services = services
            app.state.slack_interactions = interactions
            # Clicks kept in the decision inbox that no gateway sends (one died) are sent.
            interactions.start()
            receiver = None
            if config.socket_mode is not None:
                receiver = SocketModeReceiver(config.socket_mode, interactions.handle)
                await receiver.start()
            try:
                yield
            finally:
                probes.clear()
                if receiver is not None:
                    await receiver.stop()
                # Decisions already acknowledged to Slack are seen through, and
                # their reviewers told, before the pool they may need is closed.
                await interactions.drain(config.shutdown_grace_s)
                # What is still unsent stays in the inbox, given back to other gateways.
                await interactions.close()
                await pool.close()

    # /docs and /redoc from the gateway's own copies of Swagger UI and ReDoc
    # (the fastapi-offline wheel), never a CDN: they work offline. /redoc is
    # served by `gateway.pages`, which keeps ReDoc's logo off its CDN too.
    app = FastAPIOffline(
        title="amend gateway",
        version="0.1.0",
        lifespan=lifespan,
        favicon_url="/static/favicon.svg",
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(dashboards: DashboardsDep) -> Response:
        """Prometheus' scrape: requests by route, and the gauges read from the ledger."""
        return await metrics.exposition(dashboards)

    app.include_router(health_router(lambda: probes))
    app.include_router(slack.router)
    app.include_router(trainer.router)
    app.include_router(operators.router)
    app.include_router(dashboard.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")

    app.add_exception_handler(RoundNotFound, _not_found)
    app.add_exception_handler(RoundRefused, _conflict)
    app.add_exception_handler(RoundExists, _conflict)
    app.add_exception_handler(RPCError, _temporal_unreachable)
    for away in DATABASE_AWAY:
        app.add_exception_handler(away, _ledger_away)
    app.add_exception_handler(pages.SignIn, pages.sign_in)

    return app
