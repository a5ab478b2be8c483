"""Who a write is recorded as, when no token names the caller.

The gateway knows its callers by their tokens. A process on an operator's own
machine (the CLI, the dev stack seeding its first version) is the user it runs
as: `getpass.getuser()`, which reads LOGNAME, USER, LNAME and USERNAME and then
the password database, so it names someone even where `$USER` is unset (cron,
containers, `sudo -i`). Actors are written `operator:<name>` everywhere.
"""

from __future__ import annotations

import getpass
import os

OPERATOR_PREFIX = "operator:"


def operator_actor(name: str) -> str:
    """`name` as an actor: `operator:<name>` (a name already so written is kept)."""
    return name if name.startswith(OPERATOR_PREFIX) else f"{OPERATOR_PREFIX}{name}"


def local_operator() -> str:
    """The actor for the user this process runs as."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no variable set and no password entry for the uid
        name = f"uid-{os.getuid()}"
    return operator_actor(name)
