"""How the CLI prints: results for people (rich) and for programs (`--json`),
errors as one line with the documented exit code, and the views of a round
that `round show` and `round watch` draw."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.markup import escape

from constitution import TERMINAL_ROUND_STATES
from constitution.contracts import RoundStatus

console = Console()
err = Console(stderr=True)

# Exit codes: 0 success, 1 the operation failed, 2 bad arguments or input
# (typer's own usage errors are 2 as well), 3 a service could not be reached.
EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print `message` as one error line; the caller raises what this returns."""
    # The message carries paths, user input and exception text: print it as text, not markup.
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def emit_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout, never wrapped."""
    typer.echo(json.dumps(to_jsonable_python(data), indent=2))


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


def _status_waiting(status: RoundStatus) -> Any:
    return f"[yellow]{escape(status.waiting.describe())}[/yellow]" if status.waiting else None


def _status_preflight(status: RoundStatus) -> Any:
    checked = status.preflight
    if checked is None:
        return None
    if checked.passed:
        return f"preflight: passed ({escape('; '.join(checked.checked))})"
    problems = escape("; ".join(checked.problems))
    if checked.overridden_by:
        who = escape(checked.overridden_by)
        return f"[yellow]preflight: overridden by {who}[/yellow] (refused: {problems})"
    return f"[red]preflight: refused[/red]: {problems}"


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
    _status_waiting,
    _status_preflight,
    _status_proposals,
    _status_findings,
    _status_retraining,
    _status_evaluation,
    _status_error,
]


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
    if status.waiting is not None:
        parts.append(f"[yellow]{escape(status.waiting.describe())}[/yellow]")
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
