"""The `amend` command line: one module per noun (`round`, `constitution`,
`audit`, `token`), the processes it runs (`processes`), the check of every
dependency (`doctor`), how it reaches the services (`services`) and how it
prints (`render`).

Exit codes: 0 success, 1 the operation failed, 2 bad arguments or input
(typer's own usage errors are 2 as well), 3 a service could not be reached.
"""

from __future__ import annotations

import atexit
import inspect
import os
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from worker.cli import audit, constitution, doctor, processes, round, token
from worker.cli.render import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE

app = typer.Typer(
    help="amend: the amendment lifecycle of a dynamic AI constitution.",
    no_args_is_help=True,
    add_completion=False,
)


def installed_version() -> str:
    try:
        return version("amend")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"amend {installed_version()}")
        raise typer.Exit()


@app.callback()
def amend(
    _: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print amend's version and exit.",
        ),
    ] = False,
) -> None:
    """amend: the amendment lifecycle of a dynamic AI constitution."""


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


def reflowed(text: str) -> str:
    """Help text with each paragraph on one line: the terminal wraps it to its width.

    Typer keeps the line breaks of a docstring's later paragraphs as they are
    in the source, which breaks sentences mid-line in a narrow terminal.
    """
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def reflow_help(typer_app: typer.Typer) -> None:
    """Give every command of `typer_app` (and of its groups) its help text reflowed."""
    for info in typer_app.registered_commands:
        text = info.help or inspect.getdoc(info.callback)
        if text:
            info.help = reflowed(text)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


reflow_help(app)

__all__ = ["EXIT_FAILED", "EXIT_UNREACHABLE", "EXIT_USAGE", "app", "main"]


def main() -> None:
    """The `amend` console script.

    It ends the process with `os._exit` once the command, the exit handlers
    (`atexit`: an embedded PostgreSQL is stopped there) and the output are
    done, skipping only the interpreter's own finalisation. The Temporal
    client's Rust threads outlive the event loop, and one that touches Python
    while the interpreter finalises aborts the process after the command has
    succeeded (`Fatal Python error: PyGILState_Release`, exit 134;
    temporalio/sdk-python#300): `amend round start` did, about once in twenty.
    """
    code = 0
    try:
        app()
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            code = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
