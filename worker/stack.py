"""The service in one process: stand-ins where no real service is configured,
the worker and the gateway.

`amend dev`, `amend demo` and the end-to-end tests all run this; they differ
only in where Temporal and PostgreSQL come from (see `worker.devstack`).
Stand-ins are used only when the settings name no real model server or Slack
workspace, and are announced as stand-ins.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from pydantic import SecretStr
from temporalio.client import Client

from ledger.pool import create_pool
from ledger.store import Ledger
from standins.model.app import create_app as create_model_stand_in
from standins.model.config import ScriptedModelConfig
from standins.serving import free_port, serve
from standins.slack.app import create_app as create_slack_stand_in
from standins.slack.config import SlackStandInConfig
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
    `model_stand_in` configures the model stand-in (a server without structured
    outputs, fine-tuning, ...); its API key is the settings' either way.
    """
    async with AsyncExitStack() as stack:
        model_url = slack_url = None
        if settings.uses_stand_in_model:
            served = await stack.enter_async_context(
                serve(
                    create_model_stand_in(
                        (model_stand_in or ScriptedModelConfig()).model_copy(
                            update={"api_key": settings.model_api_key.get_secret_value()}
                        )
                    ),
                    port=0 if any_port else settings.stand_in_port_model,
                )
            )
            model_url = served.url
            settings = settings.model_copy(update={"model_base_url": f"{served.url}/v1"})
            log.info(
                "model: the scripted stand-in model server at %s (no AMEND_MODEL_BASE_URL)",
                served.url,
            )
        if settings.uses_stand_in_slack:
            interval = settings.slack_post_interval_s
            config = SlackStandInConfig(
                channels=[settings.slack_review_channel],
                # Slack's per-channel rate, enforced with 429s like Slack does.
                post_message_per_second=1 / interval if interval > 0 else None,
            )
            served = await stack.enter_async_context(
                serve(
                    create_slack_stand_in(config),
                    port=0 if any_port else settings.stand_in_port_slack,
                )
            )
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
        if any_port:  # chosen before the worker, whose Slack links name the gateway
            settings = settings.model_copy(
                update={"gateway_port": free_port(settings.gateway_host)}
            )
        await stack.enter_async_context(running_worker(settings, database_url, temporal))
        gateway = gateway_app(settings, database_url, temporal)
        served = await stack.enter_async_context(
            serve(gateway, host=settings.gateway_host, port=settings.gateway_port)
        )
        # An operator token for this run only (the demo and tests use the API
        # with it); revoked when the stack stops.
        pool = await create_pool(database_url, max_size=1)
        stack.push_async_callback(pool.close)
        ledger = Ledger(pool)
        made, token = await ledger.create_token("dev-stack", "operator")
        stack.push_async_callback(ledger.revoke_token, made.token_id)
        yield Stack(
            settings=settings,
            gateway_url=served.url,
            model_stand_in_url=model_url,
            slack_stand_in_url=slack_url,
            operator_token=token,
        )
