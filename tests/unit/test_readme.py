"""The README's commands run as written from a fresh clone."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_temporal_cli_commands_name_the_venvs_binary_and_the_address() -> None:
    commands = re.findall(r"`([^`]*\btemporal (?:workflow|operator)\b[^`]*)`", README)
    assert commands, "the README shows no Temporal CLI command"
    for command in commands:
        assert command.startswith(".venv/bin/temporal "), command
        assert "--address " in command, command
