"""Why the dev stack would not start or stopped: each a sentence an operator can act on.

The CLI prints the message as one line and picks the exit code by type: a
setting to change (a busy port, a data directory in use) is bad input, a part
that died is a failure, anything else a service that could not be reached.
"""

from __future__ import annotations


class StackError(RuntimeError):
    """A part of the dev stack would not start; the message says which and why."""


class PortBusy(StackError):
    """A port the stack needs is taken; the message names the setting that moves it."""

    def __init__(self, setting: str, host: str, port: int) -> None:
        """`setting` is the environment variable that chooses the port."""
        super().__init__(
            f"port {port} on {host} is already in use: stop what listens there, "
            f"or set {setting} to a free port"
        )
        self.setting = setting
        self.port = port


class DataDirBusy(StackError):
    """Another amend process runs a stack on this data directory."""


class ChildDied(StackError):
    """The Temporal server or PostgreSQL the dev stack started has stopped under it."""
