"""The processes `amend` runs: the dev stack, the demo, a worker, a gateway,
and the ledger's migrations. Each stops in order on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ledger.migrate import MigrationError
from worker.cli.render import EXIT_UNREACHABLE, console, fail
from worker.cli.services import (
    configure_logging,
    migration_hint,
    required_database_url,
    run,
    settings,
    temporal_client,
    until_interrupted,
)


def dev(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run the whole stack locally: Temporal dev server, PostgreSQL, worker,
    gateway, and stand-ins for anything not configured. Ctrl-C stops it all."""
    from worker.devstack import StackError, dev_stack

    s = settings()
    configure_logging(verbose, s)

    async def main(stop: asyncio.Event) -> None:
        async with dev_stack(s) as running:
            rs = running.stack.settings
            console.print("[bold green]amend dev stack is up[/bold green]")
            console.print(f"  gateway      {running.stack.gateway_url}")
            console.print(f"  pages        {running.stack.gateway_url}/rounds")
            console.print(f"  API token    {running.stack.operator_token} (operator, this run)")
            console.print(f"  Temporal UI  {s.temporal_ui_url}")
            console.print(
                f"  Temporal     {s.temporal_address} (task queue {s.temporal_task_queue})"
            )
            console.print(f"  data         {s.data_dir.resolve()}")
            if running.stack.model_stand_in_url:
                console.print(f"  model        stand-in: scripted model at {rs.model_base_url}")
            if running.stack.slack_stand_in_url:
                console.print(f"  slack        stand-in: Slack Web API at {rs.slack_api_url}")
            console.print("Press Ctrl-C to stop.")
            await stop.wait()
            console.print("stopping…")

    try:
        run(until_interrupted(main))
    except StackError as error:
        raise fail(str(error), EXIT_UNREACHABLE) from error
    except MigrationError as error:
        raise fail(migration_hint(error, s)) from error
    console.print("stopped")


def demo(
    reviewer: Annotated[
        list[str] | None,
        typer.Option(
            help="Slack user id allowed to decide (repeatable). Default: the simulated reviewer."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run one round on the sample constitution end to end and print its
    constitution diff and ledger timeline. Without Slack settings a simulated
    reviewer accepts one proposal, modifies one and rejects one."""
    from worker.demo import run_demo
    from worker.devstack import StackError

    s = settings()
    configure_logging(verbose, s)
    outcome: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        outcome.append(await run_demo(s, reviewer or [], console, stop))

    try:
        run(until_interrupted(main))
        code = outcome[0]
    except StackError as error:
        raise fail(str(error), EXIT_UNREACHABLE) from error
    except MigrationError as error:
        raise fail(migration_hint(error, s)) from error
    raise typer.Exit(code)


def worker(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run a worker on the task queue (needs Temporal and AMEND_DATABASE_URL)."""
    from worker.runtime import running_worker

    s = settings()
    configure_logging(verbose, s)
    database_url = required_database_url(s)

    async def main(stop: asyncio.Event) -> None:
        client = await temporal_client(s, metrics=True)
        async with running_worker(s, database_url, client):
            console.print(f"worker polling {s.temporal_task_queue} on {s.temporal_address}")
            if s.worker_metrics_bind:
                console.print(f"metrics on http://{s.worker_metrics_bind}/metrics")
            if s.worker_health_bind:
                console.print(f"health on http://{s.worker_health_bind}/healthz and /readyz")
            await stop.wait()
            console.print(
                "stopping: no new tasks; activities in flight have "
                f"{s.worker_graceful_shutdown_s:g} s to finish"
            )

    run(until_interrupted(main))


def gateway(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Serve the gateway (Slack interactions, operator API) on the configured port."""
    from standins.serving import serve
    from worker.runtime import gateway_app

    s = settings()
    configure_logging(verbose, s)
    database_url = required_database_url(s)

    async def main(stop: asyncio.Event) -> None:
        client = await temporal_client(s)
        app_ = gateway_app(s, database_url, client)
        async with serve(
            app_, s.gateway_host, s.gateway_port, graceful_shutdown_s=s.gateway_graceful_shutdown_s
        ) as served:
            console.print(f"gateway on {served.url}")
            await stop.wait()
            console.print(
                "stopping: no new connections; accepted requests and decisions have "
                f"{s.gateway_graceful_shutdown_s:g} s to be answered"
            )

    run(until_interrupted(main))


def migrate(
    seed: Annotated[
        bool, typer.Option(help="Store the sample constitution as v1 if none.")
    ] = False,
) -> None:
    """Apply the ledger's migrations (safe to run twice or concurrently)."""
    from ledger.migrate import migrate_url
    from worker.devstack import StackError, embedded_database, seed_sample_constitution

    s = settings()

    async def on(url: str) -> tuple[list[str], bool]:
        return await migrate_url(url), (await seed_sample_constitution(url) if seed else False)

    async def main() -> None:
        # Not `ledger_database`: it migrates first, and what was applied would go unreported.
        if s.ledger_url is not None:
            applied, seeded = await on(s.ledger_url)
        else:
            async with embedded_database(s.data_dir) as url:
                applied, seeded = await on(url)
        console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
        if seeded:
            console.print("seeded the sample constitution as v1")

    try:
        run(main())
    except MigrationError as error:
        raise fail(str(error)) from error
    except StackError as error:
        raise fail(str(error), EXIT_UNREACHABLE) from error
    except OSError as error:
        raise fail(f"cannot reach the database: {error}", EXIT_UNREACHABLE) from error
