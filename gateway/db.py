"""PostgreSQL access: the pool (JSON codecs registered once) and the migration runner.

Migrations are plain numbered SQL files in `migrations/` (`0001_name.sql`); applied versions are
recorded in `schema_migrations`. A session-level advisory lock makes concurrent starts (several
`gateway api`/`gateway worker` processes) apply each file exactly once.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import asyncpg

from gateway.assets import migrations_dir
from gateway.log import get_logger

log = get_logger(__name__)

# Negative: never collides with the per-conversation advisory locks (keyed by positive ids).
_MIGRATION_LOCK = -7_340_001
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# The database refused a value, not the server failing: SQLSTATE classes 22 (data exception) and
# 23 (a constraint, e.g. the id widths of migrations/0007), and asyncpg's client-side DataError (a
# parameter it cannot encode, such as an integer beyond 64 bits; an InterfaceError and ValueError).
STORAGE_REFUSED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
                   asyncpg.exceptions._base.DataError)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=_dumps, decoder=json.loads, schema="pg_catalog")


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20, **kwargs) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection,
        command_timeout=60, **kwargs,
    )


def migration_files(directory: Path | None = None) -> list[tuple[int, str, Path]]:
    directory = directory or migrations_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name {path.name!r} must look like 0001_name.sql")
        found.append((int(match.group(1)), path.stem, path))
    versions = [v for v, _, _ in found]
    if len(versions) != len(set(versions)):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return found


async def migrate(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """Apply pending migrations in order, each in its own transaction. Returns applied names."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version int PRIMARY KEY, name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, path in migration_files(directory):
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            log.info("migration applied", migration=name)
            applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def migrate_dsn(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
