"""`amend` imports a command's module when that command is looked up, not when
it starts (issue 14): `amend dev` no longer loads the ledger's tables, the
round's views or doctor's Slack SDK before it starts its servers."""

from __future__ import annotations

import json
import subprocess
import sys

LOOK_UP = """
import json, sys, typer, worker.cli
group = typer.main.get_command(worker.cli.app)
def loaded():
    return sorted(m for m in sys.modules if m.startswith(("worker.cli.", "ledger", "temporalio")))
at_start = loaded()
group.commands[sys.argv[1]]
print(json.dumps({"at_start": at_start, "after": loaded()}))
"""


def _modules(command: str) -> dict[str, list[str]]:
    """What a fresh interpreter has loaded once `amend` is built, and once
    `command` is looked up."""
    out = subprocess.run(
        [sys.executable, "-c", LOOK_UP, command], capture_output=True, text=True, check=True
    ).stdout
    loaded: dict[str, list[str]] = json.loads(out)
    return loaded


def test_amend_starts_without_any_commands_module_or_the_services_libraries() -> None:
    assert _modules("token")["at_start"] == ["worker.cli.exit_codes"]


def test_looking_up_a_command_loads_its_module_and_no_other_commands() -> None:
    after = set(_modules("token")["after"])
    assert "worker.cli.token" in after
    others = {"worker.cli.processes", "worker.cli.round", "worker.cli.doctor"}
    assert not others & after
    assert "worker.cli.constitution" not in after  # the command group, not the package
