"""How the CLI prints: results for people (rich) and for programs (`--json`),
errors as one line with the documented exit code, and the views of a round
that `round show`, `round watch`, `round list`, `round timeline` and the
demo draw.

Ids (rounds, proposals, jobs) are never cut, at any width and whether or not
stdout is a terminal: their columns do not wrap, and the other columns wrap
around them instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import typer
from pydantic_core import to_jsonable_python
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from constitution import TERMINAL_ROUND_STATES, ConstitutionVersion, ProposalKind
from constitution.contracts import ProposalStatus, RoundStatus
from constitution.failures import EvaluationFailure, describe_failures
from ledger.chain import TransitionRow
from ledger.reads import RoundRow
from worker.cli.exit_codes import EXIT_FAILED as EXIT_FAILED
from worker.cli.exit_codes import EXIT_UNREACHABLE as EXIT_UNREACHABLE
from worker.cli.exit_codes import EXIT_USAGE as EXIT_USAGE

console = Console()
# Errors are one line each, whatever the width: never wrapped, so they grep and log whole.
err = Console(stderr=True, soft_wrap=True)

# Help of the options every command that prints or changes something shares.
JSON_HELP = "Print the result as JSON."
AS_HELP = "Operator name recorded (default: the AMEND_API_TOKEN holder, else the OS user)."


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print `message` as one error line; the caller raises what this returns."""
    # The message carries paths, user input and exception text: print it as text, not markup.
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def emit_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout, never wrapped."""
    typer.echo(json.dumps(to_jsonable_python(data), indent=2))


def id_table(*columns: str, ids: Sequence[str] = (), id_column: int = 0) -> Table:
    """A table whose `id_column` holds ids: it never wraps and is as wide as the longest id."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for i, name in enumerate(columns):
        if i == id_column:
            table.add_column(name, no_wrap=True, min_width=max(map(len, ids), default=0))
        else:
            table.add_column(name, overflow="fold")
    return table


def rounds_table(rounds: Sequence[RoundRow]) -> Table:
    """`round list`: one round a row, its id whole."""
    table = id_table(
        "round", "state", "base", "result", "started", "updated", ids=[r.round_id for r in rounds]
    )
    for r in rounds:
        table.add_row(
            r.round_id,
            r.state,
            f"v{r.base_version}" if r.base_version else "-",
            f"v{r.result_version}" if r.result_version else "-",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.updated_at:%Y-%m-%d %H:%M}",
        )
    return table


def timeline_table(rows: Sequence[TransitionRow], width: int) -> Table:
    """A round's ledger rows (`round timeline`, the demo): what changed, from what to what,
    who did it and why.

    Where `width` leaves the change room beside the entity, one row a line;
    otherwise each entity has a line of its own, from the first column, above
    its change, so even the longest (a proposal of a 63-character round) is
    printed whole at 80 columns.
    """
    entities = [row.entity for row in rows]
    changes = [_change(row) for row in rows]
    beside = width - max(map(len, entities), default=0) - len("  #  hh:mm:ss.mmm    ")
    if beside >= 24:
        table = id_table("#", "at", "entity", "change", ids=entities, id_column=2)
        table.columns[0].justify = "right"
        table.columns[1].no_wrap = True
        for row, change in zip(rows, changes, strict=True):
            table.add_row(str(row.sequence), _time(row), row.entity, change)
        return table
    table = Table.grid(padding=(0, 0))
    table.add_column("entity, then # at change")
    for row, change in zip(rows, changes, strict=True):
        table.add_row(row.entity)
        table.add_row(Padding(f"#{row.sequence}  {_time(row)}  {change}", (0, 0, 0, 4)))
    return table


def _time(row: TransitionRow) -> str:
    return f"{row.at:%H:%M:%S.%f}"[:-3]


def _change(row: TransitionRow) -> str:
    change = f"{row.from_state} → {row.to_state}" if row.from_state else row.to_state
    change += f" by {row.actor}"
    return escape(f"{change}: {row.reason}" if row.reason else change)


def watch_line(status: RoundStatus) -> str:
    """`round watch` when stdout is not a terminal: one plain line per change."""
    pending = len(status.pending)
    settled = sum(1 for p in status.proposals if p.settled)
    line = (
        f"round {status.spec.round_id} {status.state.value}: proposals {settled} settled, "
        f"{pending} pending"
    )
    if status.reminders_sent:
        line += f", reminders sent {status.reminders_sent}"
    if status.progress is not None and status.state not in TERMINAL_ROUND_STATES:
        p = status.progress
        line += f"; {p.stage} {p.done}/{p.total or '?'}" + (f" ({p.detail})" if p.detail else "")
    if status.blocked:
        line += f"; blocked: {status.blocked}"
    if status.error:
        line += f"; error: {status.error}"
    return line


@dataclass(frozen=True)
class ShownRound:
    """What `round show` prints: the live status, with what the ledger adds to it.

    `base` is the version the round amends (for each proposal's current text)
    and `evidence` the summaries of the items its proposals cite.
    """

    status: RoundStatus
    base: ConstitutionVersion | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)
    failures: Sequence[EvaluationFailure] = ()


def print_status(shown: ShownRound) -> None:
    """`round show`: one section after another; a new part of the round's
    status adds its own section to STATUS_SECTIONS."""
    for section in STATUS_SECTIONS:
        rendered = section(shown)
        if rendered is not None:
            console.print(rendered)


def _status_header(shown: ShownRound) -> Any:
    status = shown.status
    return (
        f"[bold]round {escape(status.spec.round_id)}[/bold]  state [cyan]{status.state.value}"
        f"[/cyan]  base v{status.base_version}  result "
        f"{'v' + str(status.result_version) if status.result_version else '-'}"
    )


def _status_blocked(shown: ShownRound) -> Any:
    status = shown.status
    if not status.blocked:
        return None
    return (
        f"[bold red]blocked[/bold red]: Slack refuses the round's calls "
        f"({escape(status.blocked)}); retried every {status.spec.slack_retry_interval}, or now "
        f"with `amend round retry-slack {status.spec.round_id}`"
    )


def _status_waiting(shown: ShownRound) -> Any:
    waiting = shown.status.waiting
    return f"[yellow]{escape(waiting.describe())}[/yellow]" if waiting else None


def _status_resumed(shown: ShownRound) -> Any:
    resumptions = shown.status.resumptions
    return "\n".join(escape(r.describe()) for r in resumptions) if resumptions else None


def _status_preflight(shown: ShownRound) -> Any:
    checked = shown.status.preflight
    if checked is None:
        return None
    if checked.passed:
        return f"preflight: passed ({escape('; '.join(checked.checked))})"
    problems = escape("; ".join(checked.problems))
    if checked.overridden_by:
        who = escape(checked.overridden_by)
        return f"[yellow]preflight: overridden by {who}[/yellow] (refused: {problems})"
    return f"[red]preflight: refused[/red]: {problems}"


def _status_proposals(shown: ShownRound) -> Any:
    status = shown.status
    if not status.proposals:
        return None
    table = id_table(
        "proposal", "kind", "target", "state", "decided by",
        ids=[p.proposal.id for p in status.proposals],
    )  # fmt: skip
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


def proposal_lines(
    item: ProposalStatus, base: ConstitutionVersion | None, evidence: Mapping[str, str]
) -> list[str]:
    """One proposal as `round show` prints it (rich markup): what it changes, as a diff of
    the current and proposed text, why, what it rests on, and what the checks found."""
    from constitution.amendment import sentence_diff
    from constitution.findings import proposal_summary

    proposal = item.proposal
    draft = proposal.draft
    head, *findings = proposal_summary(proposal)
    lines = [f"[bold]{escape(head)}[/bold]  ({item.state.value})"]
    current = base.principle(draft.target) if base is not None and draft.target else None
    if draft.kind is ProposalKind.add:
        lines.append(f"  [green]+ {escape(draft.title or '')}: {escape(draft.text or '')}[/green]")
    elif current is None:
        known = "" if base is not None else " (the ledger's copy of the base version is missing)"
        lines.append(f"  {draft.target}: not in the base version{known}")
        if draft.text:
            lines.append(f"  [green]+ {escape(draft.text)}[/green]")
    elif draft.kind is ProposalKind.retire:
        lines.append(f"  [red]- {escape(current.title)}: {escape(current.text)}[/red]")
    else:
        lines.append(f"  {escape(current.id)} {escape(current.title)}:")
        colours = {"+": "green", "-": "red"}
        for line in sentence_diff(current.text, draft.text or ""):
            colour = colours.get(line[:1])
            text = escape(line)
            lines.append(f"    [{colour}]{text}[/{colour}]" if colour else f"    {text}")
    decided = item.final_decision
    if decided is not None and decided.text and decided.text != draft.text:
        lines.append(f"  [green]adopted as edited by {escape(decided.reviewer)}:[/green]")
        lines.append(f"    {escape(decided.text)}")
    lines.append(f"  rationale: {escape(draft.rationale)}")
    for evidence_id in draft.evidence:
        summary = evidence.get(evidence_id)
        lines.append(
            f"  evidence {escape(evidence_id)}" + (f": {escape(summary)}" if summary else "")
        )
    lines += [escape(line) for line in findings if not line.startswith("  evidence:")]
    return lines


def _status_proposal_details(shown: ShownRound) -> Any:
    from rich.console import Group

    lines = [
        line
        for item in shown.status.proposals
        for line in ["", *proposal_lines(item, shown.base, shown.evidence)]
    ]
    return Group(*lines) if lines else None


def _status_retraining(shown: ShownRound) -> Any:
    from rich.console import Group

    from constitution.gate import retraining_summary

    lines = retraining_summary(shown.status)
    return Group(*(escape(line) for line in lines)) if lines else None


def _status_evaluation(shown: ShownRound) -> Any:
    from rich.console import Group

    from constitution.gate import evaluation_details, gate_summary

    evaluation = shown.status.evaluation
    if evaluation is None:
        return None
    lines = [*gate_summary(evaluation), *evaluation_details(evaluation)]
    told = describe_failures(shown.status.spec.round_id, shown.failures)
    return Group(*map(escape, [*lines, *([told] if told else [])]))


def _status_error(shown: ShownRound) -> Any:
    error = shown.status.error
    return f"[red]error:[/red] {escape(error)}" if error else None


STATUS_SECTIONS: list[Callable[[ShownRound], Any]] = [
    _status_header,
    _status_blocked,
    _status_waiting,
    _status_resumed,
    _status_preflight,
    _status_proposals,
    _status_proposal_details,
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
