"""Behind PgBouncer in transaction mode (Debian's pgbouncer, started here in front of the machine's
PostgreSQL): GATEWAY_DATABASE_POOLER=transaction keeps nothing per session, migrations run through
it or on GATEWAY_DATABASE_DIRECT_URL, and the core promises hold (ingest once, ordered processing
across worker processes, the outbox)."""
from __future__ import annotations

import asyncio
import secrets

import aiohttp
import asyncpg
import pytest
from scale_support import PgBouncer, pgbouncer_missing

from gateway.devtools.testing import (assert_each_processed_once_in_order, inbound, post_all, running_gateway,
                                      settings_env, wait_for)
from gateway.infra import db

pytestmark = pytest.mark.skipif(bool(pgbouncer_missing()), reason=pgbouncer_missing() or "")


@pytest.fixture(scope="module")
def bouncer(infra):
    admin_dsn, _ = infra
    try:
        server = PgBouncer(admin_dsn, pool_size=3).start()
    except ValueError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def pooled(settings, bouncer):
    """Settings that reach PostgreSQL through the pooler, with the direct URL for session work."""
    return settings.with_(database_url=bouncer.dsn_for(settings.database_url), database_pooler="transaction",
                          database_direct_url=settings.database_url)


async def _concurrent_queries(dsn: str, pooler: str) -> list[str]:
    pool = await db.create_pool(dsn, min_size=8, max_size=8, pooler=pooler)
    errors: list[str] = []

    async def one(i: int) -> None:
        try:
            async with pool.acquire() as conn:
                assert await conn.fetchval(f"SELECT $1::int + {i % 7}", i) == i + i % 7
                assert (await conn.fetchrow("SELECT $1::jsonb AS j", {"n": i}))["j"] == {"n": i}
        except asyncpg.PostgresError as exc:
            errors.append(type(exc).__name__)
    try:
        await asyncio.gather(*(one(i) for i in range(200)))
    finally:
        await pool.close()
    return errors


async def _moved_statement(dsn: str, pooler: str) -> str | None:
    """A client's cached statement meets a server connection that never saw it, made to happen
    rather than hoped for: B holds server connection 1 in a transaction while A prepares on
    connection 2; B's commit makes 1 the most recently freed one, which PgBouncer (LIFO) hands to A's
    next query. Returns the error's name, or None when the query worked."""
    a = await asyncpg.connect(dsn, **db.pool_options(pooler))
    b = await asyncpg.connect(dsn, **db.pool_options(pooler))
    try:
        tx = b.transaction()
        await tx.start()
        await b.fetchval("SELECT 1")                                   # B holds a server connection
        assert await a.fetchval("SELECT $1::int + 1", 1) == 2          # A prepares on another one
        await tx.commit()
        try:
            assert await a.fetchval("SELECT $1::int + 1", 2) == 3      # A again: on B's, most likely
        except asyncpg.PostgresError as exc:
            return type(exc).__name__
        return None
    finally:
        await a.close()
        await b.close()


async def test_statement_cache_breaks_behind_the_pooler_and_the_setting_turns_it_off(database_url, bouncer):
    through = bouncer.dsn_for(database_url)
    # without the setting: the cached statement is missing on the next transaction's connection
    assert await _moved_statement(through, pooler="none") == "InvalidSQLStatementNameError"
    broken = await _concurrent_queries(through, pooler="none")   # and under load (how many varies)
    assert set(broken) <= {"InvalidSQLStatementNameError", "DuplicatePreparedStatementError"}
    # with it: nothing is cached, nothing breaks, in the same two ways
    assert await _moved_statement(through, pooler="transaction") is None
    assert await _concurrent_queries(through, pooler="transaction") == []


async def test_concurrent_migrations_through_the_pooler_apply_each_file_once(infra, bouncer):
    admin_dsn, _ = infra
    name = f"gwtest_mig_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        direct = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
        through = bouncer.dsn_for(direct)
        results = await asyncio.wait_for(asyncio.gather(
            *(db.migrate_dsn(through, pooler="transaction") for _ in range(3))), timeout=120)
        files = [stem for _, stem, _ in db.migration_files()]
        assert sorted(sum(results, [])) == files, "each file applied by exactly one of the three"
        check = await asyncpg.connect(direct)
        try:
            assert await check.fetchval("SELECT count(*) FROM schema_migrations") == len(files)
            # nothing left holding a session lock on a server connection the pooler hands out again
            assert await check.fetchval("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                                      "WHERE l.locktype = 'advisory' AND d.datname = $1", name) == 0
        finally:
            await check.close()
        assert await db.migrate_dsn(through, pooler="transaction") == []
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def test_core_promises_hold_behind_pgbouncer(pooled, pool, clean, redis_client, spawn, tmp_path):
    settings = pooled.with_(default_handler="echo")
    env = settings_env(settings)
    assert env["GATEWAY_DATABASE_POOLER"] == "transaction"
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        workers = [spawn(["worker"], env, tmp_path / f"w{i}.log") for i in range(2)]
        bodies = [inbound(f"{c}-{i}", f"cust-{c}", f"c{c} m{i}") for i in range(10) for c in range(20)]
        async with aiohttp.ClientSession() as http:
            # a 503 (storage unavailable: seen when the shared server's backends are cut under
            # load) is retried as a provider would; what was acknowledged must be stored once
            first, again = await asyncio.gather(
                post_all(http, url, bodies, concurrency=24, retry_unavailable=True),
                post_all(http, url, bodies, concurrency=24, retry_unavailable=True))
        assert {r["message_id"] for r in first} == {r["message_id"] for r in again}

        async def all_sent():
            return await pool.fetchval("SELECT count(*) FROM outbox WHERE state = 'done'") == 200
        await wait_for(all_sent, timeout=120, message="not every reply went out through the outbox")
        assert all(w.poll() is None for w in workers), "a worker died behind the pooler"
    await assert_each_processed_once_in_order(pool, 10, 20)
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'out' AND status <> 'sent'") == 0
    logs = "".join((tmp_path / f"w{i}.log").read_text(errors="replace") for i in range(2))
    assert "prepared statement" not in logs
