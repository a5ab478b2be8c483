"""The `amend` command line: one module per noun (`round`, `constitution`,
`audit`, `token`), the processes it runs (`processes`), the check of every
dependency (`doctor`), how it reaches the services (`services`) and how it
prints (`render`).

Exit codes: 0 success, 1 the operation failed, 2 bad arguments or input
(typer's own usage errors are 2 as well), 3 a service could not be reached.
"""

from __future__ import annotations

import typer

from worker.cli import audit, constitution, doctor, processes, round, token
from worker.cli.render import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE

app = typer.Typer(
    help="amend: the amendment lifecycle of a dynamic AI constitution.",
    no_args_is_help=True,
    add_completion=False,
)
for command in (
    processes.dev,
    processes.demo,
    processes.worker,
    processes.gateway,
    processes.migrate,
    doctor.doctor,
):
    app.command()(command)
app.add_typer(round.app, name="round")
app.add_typer(constitution.app, name="constitution")
app.add_typer(audit.app, name="audit")
app.add_typer(token.app, name="token")

__all__ = ["EXIT_FAILED", "EXIT_UNREACHABLE", "EXIT_USAGE", "app", "main"]


def main() -> None:
    """The `amend` console script."""
    app()
