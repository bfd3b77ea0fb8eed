"""PostgreSQL access: the pool (JSON codecs registered once) and the migration runner.

Migrations are plain numbered SQL files in `migrations/` (`0001_name.sql`); applied versions are
recorded in `schema_migrations`. Each file is applied in its own transaction under a
transaction-level advisory lock, so concurrent starts (several `gateway api`/`gateway worker`
processes) apply it exactly once, on a direct connection and behind PgBouncer alike.

Behind PgBouncer in transaction mode (`GATEWAY_DATABASE_POOLER=transaction`) a server connection
belongs to a client only for one transaction: nothing may outlive a transaction (no prepared
statement cache, no session advisory lock, no LISTEN, no session SET). `pool_options` turns off what
asyncpg would otherwise keep per session; work that wants a session uses
`Settings.session_database_url` (`GATEWAY_DATABASE_DIRECT_URL` when set).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import asyncpg

from gateway.app.log import get_logger
from gateway.infra.assets import migrations_dir

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


POOLERS = ("none", "transaction")


def pool_options(pooler: str = "none") -> dict:
    """asyncpg options for the way PostgreSQL is reached: direct (`none`) or through a
    transaction-mode pooler, where a named prepared statement cached on one server connection would
    be missing (or another client's) on the next transaction's connection."""
    if pooler == "transaction":
        return {"statement_cache_size": 0, "max_cached_statement_lifetime": 0}
    return {}


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20, pooler: str = "none",
                      **kwargs) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_nothing_to_reset,
        command_timeout=60, **{**pool_options(pooler), **kwargs},
    )


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """A connection going back to the pool needs no reset query: nothing the gateway does outlives
    a transaction (see above; PgBouncer's transaction mode relies on it too), and asyncpg still rolls
    back a transaction left open. asyncpg's default (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL)
    would cost a round trip and a statement in PostgreSQL on every release: per ingest batch, per
    outbox pass, several times per turn."""


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
    """Apply pending migrations in order, each in its own transaction. Returns applied names.

    The lock is taken per transaction (never held by a session), so this runs unchanged through a
    transaction-mode pooler; a second process waits for the file in progress, then sees it applied.
    """
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
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
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            if await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", version):
                continue  # another process applied it while we waited for the lock
            await conn.execute(path.read_text(encoding="utf-8"))
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
        log.info("migration applied", migration=name)
        applied_now.append(name)
    return applied_now


async def check_server(pool) -> list[str]:
    """Server settings the gateway's performance depends on, each logged at warning when wrong.

    autovacuum off: nothing ANALYZEs the tables as they grow, so the planner keeps the estimates of
    empty tables and a turn's statements turn into scans (measured: 80 instead of 408 turns/s, and
    PostgreSQL's CPU per turn 13 ms instead of 2, in `gateway bench --scenarios turns`)."""
    problems = []
    if await pool.fetchval("SHOW autovacuum") == "off":
        problems.append("autovacuum")
        log.warning("PostgreSQL runs with autovacuum off: table statistics go stale as tables grow and "
                    "queries slow down; turn it on (or ANALYZE regularly)", setting="autovacuum")
    return problems


async def migrate_dsn(dsn: str, pooler: str = "none") -> list[str]:
    """Apply pending migrations over a connection of their own (pass the session URL)."""
    conn = await asyncpg.connect(dsn, **pool_options(pooler))
    try:
        return await migrate(conn)
    finally:
        await conn.close()
