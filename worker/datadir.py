"""One stack per data directory: the claim `amend dev` and `amend demo` hold on it.

The data directory holds the embedded PostgreSQL and Temporal's SQLite file.
Two stacks on one directory would share the database server, and the second
to stop would stop it under the first; so each stack claims the directory
with an exclusive `flock` on `amend.lock` for as long as it runs. The kernel
drops the claim when the process ends, however it ends, so a killed stack
never leaves a stale lock behind. The file also says who holds it, for the
one line the next process prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from worker.failures import DataDirBusy

LOCK_FILE = "amend.lock"


class Holder(BaseModel):
    """The process holding a data directory, as it wrote itself into the lock file."""

    pid: int
    command: str
    since: datetime

    def describe(self) -> str:
        return f"`{self.command}` (pid {self.pid}, since {self.since:%Y-%m-%d %H:%M} UTC)"


def _read_holder(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        return Holder.model_validate(json.loads(raw))
    except ValueError:
        return None


def holder(data_dir: Path) -> Holder | None:
    """Who holds the data directory now; None when no stack runs on it.

    Looking never claims it: the probe is a shared lock, let go at once.
    """
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        found = _read_holder(fd)
        return found or Holder(pid=0, command="amend", since=datetime.now(UTC))
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def claimed(data_dir: Path, command: str) -> Iterator[None]:
    """Hold the data directory for this process while the block runs.

    Raises:
        DataDirBusy: Another process holds it; the message names that process
            and the setting that points this one elsewhere.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        found = _read_holder(fd)
        os.close(fd)
        who = found.describe() if found else "another amend process"
        raise DataDirBusy(
            f"the data directory {data_dir.resolve()} is in use by {who}; stop it first, "
            "or set AMEND_DATA_DIR to another directory"
        ) from None
    try:
        me = Holder(pid=os.getpid(), command=command, since=datetime.now(UTC))
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.model_dump_json().encode(), 0)
        yield
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def command_line() -> str:
    """How this process was started, as a person would type it (`amend dev`)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
