"""The `amend` command line: one module per noun (`round`, `constitution`,
`audit`, `token`), the processes it runs (`processes`), the check of every
dependency (`doctor`), how it reaches the services (`services`) and how it
prints (`render`).

Exit codes: 0 success, 1 the operation failed, 2 bad arguments or input
(typer's own usage errors are 2 as well), 3 a service could not be reached.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from worker.cli.exit_codes import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE

if TYPE_CHECKING:
    # The click that typer builds on (typer 0.29 carries its own copy).
    from typer._click import Command

# Where each command is defined, in the order `amend --help` lists them. A
# command's module is imported when that command is looked up, not when
# `amend` starts: `amend dev` needs neither the ledger's tables nor the round's
# views, and each module brings its own libraries (issue 14).
COMMANDS: dict[str, str] = {
    "dev": "worker.cli.processes:dev",
    "demo": "worker.cli.processes:demo",
    "worker": "worker.cli.processes:worker",
    "gateway": "worker.cli.processes:gateway",
    "migrate": "worker.cli.processes:migrate",
    "doctor": "worker.cli.doctor:doctor",
    "round": "worker.cli.round:app",
    "constitution": "worker.cli.constitution:app",
    "audit": "worker.cli.audit:app",
    "token": "worker.cli.token:app",
}


class CommandsOnDemand(MutableMapping[str, "Command"]):
    """A group's commands by name, each built by `build` the first time it is
    asked for. Listing them (help, a misspelt command's suggestion) builds all."""

    def __init__(
        self,
        names: Iterable[str],
        build: Callable[[str], Command],
        built: MutableMapping[str, Command],
    ) -> None:
        self._build = build
        self._commands: dict[str, Command | None] = dict.fromkeys(names)
        self._commands.update(built)

    def __getitem__(self, name: str) -> Command:
        command = self._commands[name]
        if command is None:
            command = self._commands[name] = self._build(name)
        return command

    def __setitem__(self, name: str, command: Command) -> None:
        self._commands[name] = command

    def __delitem__(self, name: str) -> None:
        del self._commands[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._commands)

    def __len__(self) -> int:
        return len(self._commands)


class AmendGroup(TyperGroup):
    """`amend` itself: its commands (`COMMANDS`) are built on demand, each as
    typer builds a command registered on the app (`app.command()`,
    `app.add_typer`), with its help reflowed."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = CommandsOnDemand(COMMANDS, self._command, self.commands)

    def _command(self, name: str) -> Command:
        module, _, attribute = COMMANDS[name].partition(":")
        defined = getattr(importlib.import_module(module), attribute)
        # Registered on an app of their own, as on `app`: typer fills in the same defaults.
        holder = typer.Typer(add_completion=False)
        if isinstance(defined, typer.Typer):
            reflow_help(defined)
            holder.add_typer(defined, name=name)
            return typer.main.get_group_from_info(
                holder.registered_groups[0],
                pretty_exceptions_short=app.pretty_exceptions_short,
                suggest_commands=self.suggest_commands,
                rich_markup_mode=self.rich_markup_mode,
            )
        holder.command()(defined)
        reflow_help(holder)
        return typer.main.get_command_from_info(
            holder.registered_commands[0],
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=self.rich_markup_mode,
        )


app = typer.Typer(
    cls=AmendGroup,
    help="amend: the amendment lifecycle of a dynamic AI constitution.",
    no_args_is_help=True,
    add_completion=False,
)


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

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
