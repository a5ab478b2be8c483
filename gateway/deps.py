"""What every route of the gateway depends on, typed.

The gateway builds its services once (the Temporal client when the app is
made, the ledger's pool when it starts) and keeps them in one `Services`
object on the app; routes reach them through the dependencies below, so no
route reads `app.state` and nothing is typed `Any`. Tests replace a
dependency with `app.dependency_overrides` rather than building a half app.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, SecretStr
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client

from gateway.metrics import GatewayMetrics
from ledger.dashboards import Dashboards
from ledger.store import Ledger


class GatewayConfig(BaseModel):
    """What the gateway needs from the settings; secrets stay out of reprs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    signing_secret: SecretStr
    task_queue: str
    database_url: SecretStr
    slack: AsyncWebClient
    max_body_bytes: int = 1_048_576
    trainer_secret: SecretStr | None = None  # unset: trainer callbacks are refused
    # The round page links each round's workflow here: <url>/namespaces/<ns>/workflows/<id>.
    temporal_ui_url: str | None = None
    temporal_namespace: str = "default"
    # Datasets stored as file:// under this root are downloadable from the round page.
    artifacts_root: Path | None = None
    page_refresh_s: float = 5.0  # how often a live round's page refreshes itself
    # The fixed model the trend compares every promoted version with (AMEND_REFERENCE_MODEL).
    reference_model: str = "amend-base"
    # Set: interactions also arrive over Socket Mode (see gateway.socket_mode).
    socket_mode: SocketModeClient | None = None
    # On shutdown, how long decisions already acknowledged may take to be answered.
    shutdown_grace_s: float = 20.0
    # How long a round started here waits out outages when its spec does not say.
    outage_patience: timedelta = timedelta(hours=6)


@dataclass(frozen=True)
class Services:
    """The gateway's clients and stores, built once per app."""

    config: GatewayConfig
    temporal: Client
    ledger: Ledger
    dashboards: Dashboards
    metrics: GatewayMetrics


class NotStarted(RuntimeError):
    """A request reached the app before its lifespan built the services."""


def services(request: Request) -> Services:
    """The services of the app serving `request`."""
    found = getattr(request.app.state, "services", None)
    if not isinstance(found, Services):
        raise NotStarted("the gateway has not started: its services are not built yet")
    return found


def config(request: Request) -> GatewayConfig:
    """The gateway's settings."""
    return services(request).config


def temporal(request: Request) -> Client:
    """The Temporal client rounds are started, read and decided through."""
    return services(request).temporal


def ledger(request: Request) -> Ledger:
    """The ledger: every write, and the reads of single rows."""
    return services(request).ledger


def dashboards(request: Request) -> Dashboards:
    """The read models behind the dashboard API and the pages."""
    return services(request).dashboards


ServicesDep = Annotated[Services, Depends(services)]
ConfigDep = Annotated[GatewayConfig, Depends(config)]
TemporalDep = Annotated[Client, Depends(temporal)]
LedgerDep = Annotated[Ledger, Depends(ledger)]
DashboardsDep = Annotated[Dashboards, Depends(dashboards)]
