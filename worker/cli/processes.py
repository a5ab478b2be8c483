"""The processes `amend` runs: the dev stack, the demo, a worker, a gateway,
and the ledger's migrations. Each stops in order on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
from typing import Annotated

import typer
from rich.markup import escape

from ledger.migrate import MigrationError
from worker.cli.render import (
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    console,
    emit_json,
    err,
    fail,
)
from worker.cli.services import (
    configure_logging,
    migration_hint,
    operator_name,
    required_database_url,
    run,
    settings,
    temporal_client,
    until_interrupted,
)
from worker.failures import ChildDied, StackError

VERBOSE_HELP = "Log at debug level, amend's and its libraries'."


def stack_failure(error: StackError) -> typer.Exit:
    """A stack that would not start or stopped, as one line and its exit code.

    A busy port or data directory is fixed with a setting (2); a server that
    died under the stack is a failure (1); anything else did not answer (3).
    """
    from worker.failures import ChildDied, DataDirBusy, PortBusy

    if isinstance(error, PortBusy | DataDirBusy):
        return fail(str(error), EXIT_USAGE)
    if isinstance(error, ChildDied):
        return fail(f"{error}; everything else was stopped", EXIT_FAILED)
    return fail(str(error), EXIT_UNREACHABLE)


def dev(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    """Run the whole stack locally: Temporal dev server, PostgreSQL, worker, gateway, and
    stand-ins for anything not configured. Ctrl-C stops it all.

    One stack per data directory (AMEND_DATA_DIR): a second `amend dev` or `amend demo` on it
    is refused. If the Temporal server or PostgreSQL it started stops, it says which and stops
    everything (exit 1)."""
    from worker.devstack import dev_stack

    s = settings()
    configure_logging(verbose, s)

    def died(error: ChildDied) -> None:
        err.print(f"[red]error:[/red] {escape(str(error))}; stopping everything")

    async def main(stop: asyncio.Event) -> None:
        async with dev_stack(s, on_death=died) as running:
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
            await running.guard(stop.wait())
            console.print("stopping…")

    try:
        run(until_interrupted(main))
    except ChildDied:
        raise typer.Exit(EXIT_FAILED) from None  # said when it was noticed
    except StackError as error:
        raise stack_failure(error) from None
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
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the round's outcome as JSON instead.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    """Run one round on the latest constitution end to end, print its constitution diff and
    ledger timeline, and stop. Without Slack settings a simulated reviewer accepts one
    proposal, modifies one and rejects one.

    It starts its own stack on the data directory, so it is refused while `amend dev` runs
    on the same one: stop that first or set AMEND_DATA_DIR to another directory."""
    from worker.demo import run_demo

    s = settings()
    configure_logging(verbose, s)
    outcome: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        outcome.append(await run_demo(s, reviewer or [], console, stop, as_json=as_json))

    try:
        run(until_interrupted(main))
        code = outcome[0]
    except StackError as error:
        raise stack_failure(error) from None
    except MigrationError as error:
        raise fail(migration_hint(error, s)) from error
    raise typer.Exit(code)


def worker(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    """Run a worker on the task queue (needs Temporal and AMEND_DATABASE_URL).

    Started while PostgreSQL is down, it says so and tries again, with backoff,
    until the database answers (Ctrl-C or SIGTERM stops it meanwhile)."""
    from ledger.pool import create_pool_when_reachable
    from worker.runtime import running_worker

    s = settings()
    configure_logging(verbose, s)
    database_url = required_database_url(s)

    async def main(stop: asyncio.Event) -> None:
        client = await temporal_client(s, metrics=True)
        pool = await create_pool_when_reachable(database_url, stop)
        if pool is None:
            console.print("stopped before the ledger database answered")
            return
        async with running_worker(s, database_url, client, pool) as running:
            console.print(f"worker polling {s.temporal_task_queue} on {s.temporal_address}")
            if s.worker_metrics_bind:
                console.print(f"metrics on http://{s.worker_metrics_bind}/metrics")
            if running.health_url:
                console.print(f"health on {running.health_url}/healthz and /readyz")
            await stop.wait()
            console.print(
                "stopping: no new tasks; activities in flight have "
                f"{s.worker_graceful_shutdown_s:g} s to finish"
            )

    run(until_interrupted(main))


def gateway(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    """Serve the gateway (Slack interactions, operator API) on the configured port."""
    from standins.serving import PortInUse, serve
    from worker.failures import PortBusy
    from worker.runtime import gateway_app

    s = settings()
    configure_logging(verbose, s)
    database_url = required_database_url(s)

    async def main(stop: asyncio.Event) -> None:
        client = await temporal_client(s)
        app_ = gateway_app(s, database_url, client)
        try:
            async with serve(
                app_,
                s.gateway_host,
                s.gateway_port,
                graceful_shutdown_s=s.gateway_graceful_shutdown_s,
            ) as served:
                console.print(f"gateway on {served.url}")
                # What the gateway built to start (modules, the app, the SDKs'
                # tables) lives as long as it does: out of the collector's
                # sight, a full collection no longer walks it. It took 85-101
                # ms, twice in a run of `bench decisions`, each time in a burst
                # of clicks, all of whose acks waited for it (issue 14).
                gc.freeze()
                await stop.wait()
                console.print(
                    "stopping: no new connections; accepted requests and decisions have "
                    f"{s.gateway_graceful_shutdown_s:g} s to be answered"
                )
        except PortInUse as error:
            raise PortBusy("AMEND_GATEWAY_PORT", error.host, error.port) from None

    try:
        run(until_interrupted(main))
    except StackError as error:
        raise stack_failure(error) from None


def migrate(
    seed: Annotated[
        bool, typer.Option(help="Store the sample constitution as v1 if none.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Apply the ledger's migrations (safe to run twice or concurrently).

    With no AMEND_DATABASE_URL it migrates the embedded PostgreSQL under the data directory:
    the one a running `amend dev` holds (left running), or else one started for this and
    stopped after."""
    from ledger.migrate import migrate_url
    from worker.database import DATABASE_NAME, running_embedded_url
    from worker.datadir import claimed, command_line, holder
    from worker.devstack import embedded_database, seed_sample_constitution
    from worker.identity import local_operator

    s = settings()
    actor = operator_name(None) if seed else local_operator()

    async def on(url: str) -> tuple[list[str], bool]:
        applied = await migrate_url(url)
        return applied, (await seed_sample_constitution(url, actor) if seed else False)

    async def main() -> tuple[list[str], bool]:
        # Not `ledger_database`: it migrates first, and what was applied would go unreported.
        if s.ledger_url is not None:
            return await on(s.ledger_url)
        if holder(s.data_dir) is not None:
            url = running_embedded_url(s.data_dir)
            if url is None:
                raise fail(
                    f"the database is down: the dev stack on {s.data_dir} has no PostgreSQL "
                    "running",
                    EXIT_UNREACHABLE,
                )
            return await on(url)
        with claimed(s.data_dir, command_line()):
            async with embedded_database(s.data_dir) as embedded:
                return await on(embedded.url(DATABASE_NAME))

    try:
        applied, seeded = run(main())
    except MigrationError as error:
        raise fail(str(error)) from error
    except StackError as error:
        raise stack_failure(error) from None
    except OSError as error:
        raise fail(f"cannot reach the database: {error}", EXIT_UNREACHABLE) from error
    if as_json:
        emit_json({"applied": applied, "seeded": seeded})
        return
    console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
    if seeded:
        console.print("seeded the sample constitution as v1")
