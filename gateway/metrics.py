"""The gateway's Prometheus metrics, served at /metrics.

Each app has its own registry (several gateways may share a process in the
tests). Requests are labelled by route template, never by raw path, so a
crawler cannot make the label set grow without bound; every route has its
template, the ones FastAPI serves itself (`/docs`, `/openapi.json`) and
`/metrics` included, and only a path no route matches is `unmatched`.

Besides the requests, the gauges alerts are written on (`deploy/prometheus/`):
proposals waiting and the age of the oldest, rounds by state and rounds whose
Slack posting is blocked. They are read from the ledger at each scrape, so
any gateway reports the same figures and none keeps state between scrapes;
`amend_ledger_up` is 0, and the gauges are absent, while the ledger cannot be
read, so an alert never fires on a stale figure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from constitution import RoundState
from ledger.dashboards import AlertFigures, Dashboards

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"


class LedgerGauges(Collector):
    """The business gauges, from the figures the last scrape read."""

    def __init__(self) -> None:
        self.figures: AlertFigures | None = None

    def collect(self) -> Iterator[Metric]:
        figures = self.figures
        yield GaugeMetricFamily(
            "amend_ledger_up",
            "1 when the gateway read the ledger for this scrape; 0: the gauges below are absent.",
            value=0 if figures is None else 1,
        )
        if figures is None:
            return
        yield GaugeMetricFamily(
            "amend_proposals_pending",
            "Proposals posted to reviewers and not yet settled.",
            value=figures.pending,
        )
        yield GaugeMetricFamily(
            "amend_proposal_oldest_pending_seconds",
            "How long the longest waiting proposal has waited since it was posted; 0: none.",
            value=figures.oldest_pending_s,
        )
        rounds = GaugeMetricFamily(
            "amend_rounds",
            "Rounds in the ledger by state (every state, 0 included).",
            labels=["state"],
        )
        for state in RoundState:
            rounds.add_metric([state.value], figures.rounds_by_state.get(state.value, 0))
        yield rounds
        yield GaugeMetricFamily(
            "amend_rounds_blocked",
            "Rounds that have not ended whose Slack posting is blocked (see `round show`).",
            value=figures.blocked,
        )


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "amend_gateway_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "amend_gateway_request_seconds",
            "Time to answer, by route template.",
            ["route"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "amend_gateway_decisions",
            "Decisions from Slack by outcome (taken, refused).",
            ["outcome"],
            registry=self.registry,
        )
        self.ledger = LedgerGauges()
        self.registry.register(self.ledger)

    async def exposition(self, dashboards: Dashboards) -> Response:
        """The scrape's answer: the gauges read from the ledger now, then every metric."""
        try:
            self.ledger.figures = await dashboards.alert_figures()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("metrics: cannot read the ledger (%s); amend_ledger_up is 0", error)
            self.ledger.figures = None
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """ASGI middleware counting every HTTP request once it is answered."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recorded)
        finally:
            route = route_template(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The template of the route that served `scope`, or `unmatched`.

    FastAPI notes its own API routes in the scope; the routes Starlette serves
    directly (the docs, the OpenAPI document) are found by matching again.
    """
    found = getattr(scope.get("route"), "path", None)
    if found is not None:
        return str(found)
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", UNMATCHED))
    return UNMATCHED
