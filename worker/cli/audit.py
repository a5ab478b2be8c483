"""`amend audit`: check the ledger's hash chains."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ledger.chain import ChainBreak
from ledger.dashboards import Dashboards
from ledger.store import Ledger
from worker.cli.render import EXIT_FAILED, JSON_HELP, console, emit_json, err, fail
from worker.cli.services import on_ledger

app = typer.Typer(help="Check the ledger's hash chains.", no_args_is_help=True)


@app.command("verify")
def audit_verify(
    round_id: Annotated[str | None, typer.Option("--round", help="Only this round.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
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
