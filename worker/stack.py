"""The service in one process: stand-ins where no real service is configured,
the worker and the gateway.

`amend dev`, `amend demo` and the end-to-end tests all run this; they differ
only in where Temporal and PostgreSQL come from (see `worker.devstack`).
Stand-ins are used only when the settings name no real model server or Slack
workspace, and are announced as stand-ins.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import SecretStr
from temporalio.client import Client

from ledger.pool import create_pool
from ledger.store import Ledger
from standins.model.app import create_app as create_model_stand_in
from standins.model.config import ScriptedModelConfig
from standins.reviewer import SIMULATED_REVIEWER
from standins.serving import PortInUse, Served, listening_socket, serve
from standins.slack.app import create_app as create_slack_stand_in
from standins.slack.config import SlackStandInConfig
from worker.failures import PortBusy
from worker.runtime import gateway_app, running_worker
from worker.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stack:
    settings: Settings  # as the processes run it: stand-in URLs filled in
    gateway_url: str
    model_stand_in_url: str | None
    slack_stand_in_url: str | None
    operator_token: str  # made for this run, so the demo and tests can use the API
    worker_health_url: str | None = None  # with `worker_health_bind` set


# Where the Slack stand-in keeps its workspace, under the data directory.
SLACK_STAND_IN_FILE = "slack-stand-in.json"

# The workspace the dev stack's Slack stand-in plays: besides the review
# channel, the leads' channel and the safety group that the README's spec
# example names, so that the example runs as written. The simulated reviewer
# is in the group, so a round naming only the group can be decided in the demo.
DEV_CHANNELS = ("C0LEADS",)
DEV_USER_GROUPS = {"S0SAFETY": [SIMULATED_REVIEWER, "U0SAFETY2"]}


async def _serve(
    stack: AsyncExitStack,
    app: Any,
    host: str,
    port: int,
    setting: str,
    sock: socket.socket | None = None,
) -> Served:
    """Serve `app` until `stack` closes; a busy port names the `setting` that moves it."""
    try:
        return await stack.enter_async_context(serve(app, host, port, sock=sock))
    except PortInUse as error:
        raise PortBusy(setting, error.host, error.port) from None


async def _revoke(ledger: Ledger, token_id: str) -> None:
    """Revoke the run's token; a database already gone has nothing to revoke it in."""
    with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        await ledger.revoke_token(token_id)


@asynccontextmanager
async def running_stack(
    settings: Settings,
    database_url: str,
    temporal: Client,
    *,
    any_port: bool = False,
    model_stand_in: ScriptedModelConfig | None = None,
) -> AsyncIterator[Stack]:
    """Start stand-ins as needed, the worker and the gateway; stop them on exit.

    `any_port` picks free ports (tests); otherwise the configured ones are used.
    The Slack stand-in keeps its workspace under the data directory, so a
    restart on the same directory finds the messages of rounds in review.
    `model_stand_in` configures the model stand-in (a server without structured
    outputs, fine-tuning, ...); its API key is the settings' either way.
    """
    async with AsyncExitStack() as stack:
        model_url = slack_url = None
        host = "127.0.0.1"
        if settings.uses_stand_in_model:
            model = create_model_stand_in(
                (model_stand_in or ScriptedModelConfig()).model_copy(
                    update={"api_key": settings.model_api_key.get_secret_value()}
                )
            )
            port = 0 if any_port else settings.stand_in_port_model
            served = await _serve(stack, model, host, port, "AMEND_STAND_IN_PORT_MODEL")
            model_url = served.url
            settings = settings.model_copy(update={"model_base_url": f"{served.url}/v1"})
            log.info(
                "model: the scripted stand-in model server at %s (no AMEND_MODEL_BASE_URL)",
                served.url,
            )
        if settings.uses_stand_in_slack:
            interval = settings.slack_post_interval_s
            config = SlackStandInConfig(
                channels=[settings.slack_review_channel, *DEV_CHANNELS],
                usergroups={name: list(members) for name, members in DEV_USER_GROUPS.items()},
                # Slack's per-channel rate, enforced with 429s like Slack does.
                post_message_per_second=1 / interval if interval > 0 else None,
            )
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            slack = create_slack_stand_in(config, store=settings.data_dir / SLACK_STAND_IN_FILE)
            port = 0 if any_port else settings.stand_in_port_slack
            served = await _serve(stack, slack, host, port, "AMEND_STAND_IN_PORT_SLACK")
            slack_url = served.url
            settings = settings.model_copy(
                update={
                    "slack_api_url": served.url,
                    "slack_bot_token": SecretStr(config.bot_token),
                }
            )
            log.info(
                "slack: the Slack Web API stand-in at %s (no AMEND_SLACK_BOT_TOKEN)", served.url
            )
        gateway_socket = None
        if any_port:  # bound before the worker, whose Slack links name the gateway
            gateway_socket = listening_socket(settings.gateway_host, 0)
            stack.callback(gateway_socket.close)
            settings = settings.model_copy(
                update={"gateway_port": int(gateway_socket.getsockname()[1])}
            )
        running = await stack.enter_async_context(running_worker(settings, database_url, temporal))
        gateway = gateway_app(settings, database_url, temporal)
        served = await _serve(
            stack,
            gateway,
            settings.gateway_host,
            settings.gateway_port,
            "AMEND_GATEWAY_PORT",
            sock=gateway_socket,
        )
        # An operator token for this run only (the demo and tests use the API
        # with it); revoked when the stack stops.
        pool = await create_pool(database_url, max_size=1)
        stack.push_async_callback(pool.close)
        ledger = Ledger(pool)
        made, token = await ledger.create_token("dev-stack", "operator")
        stack.push_async_callback(_revoke, ledger, made.token_id)
        yield Stack(
            settings=settings,
            gateway_url=served.url,
            model_stand_in_url=model_url,
            slack_stand_in_url=slack_url,
            operator_token=token,
            worker_health_url=running.health_url,
        )
