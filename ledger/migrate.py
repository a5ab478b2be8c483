"""Versioned SQL migrations, applied under a PostgreSQL advisory lock.

Two processes starting at once (a worker and a gateway, say) both call
`migrate`; the lock makes the second wait and then find nothing to do, so it is
safe to run twice and concurrently. A migration already applied whose file
has since changed is refused rather than silently skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

# An arbitrary constant shared by every amend process: the lock's name.
MIGRATION_LOCK_KEY = 0x616D656E64  # "amend"


class MigrationError(RuntimeError):
    """The database's migrations disagree with the ones shipped."""


@dataclass(frozen=True)
class Migration:
    """One shipped SQL file, named by its version (the file name without `.sql`)."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        """What `migrate` compares with the applied one, to refuse an edited migration."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def shipped_migrations() -> list[Migration]:
    """The migrations in the installed package, in the order they apply."""
    folder = resources.files("ledger") / "migrations"
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [Migration(entry.name.removesuffix(".sql"), entry.read_text()) for entry in files]


async def migrate(connection: asyncpg.Connection) -> list[str]:
    """Apply every shipped migration not yet applied; return the versions applied now."""
    applied_now: list[str] = []
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await connection.fetch("SELECT version, checksum FROM schema_migrations")
        done = {row["version"]: row["checksum"] for row in rows}
        for migration in shipped_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version} was applied with different content; "
                        "write a new migration instead of editing an applied one"
                    )
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    migration.version,
                    migration.checksum,
                )
            applied_now.append(migration.version)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def migrate_url(dsn: str) -> list[str]:
    """`migrate` on a connection of its own, for processes that have no pool yet."""
    connection = await asyncpg.connect(dsn)
    try:
        return await migrate(connection)
    finally:
        await connection.close()
