"""PostgreSQL settings the gateway's speed depends on: a start on a server without autovacuum says
so (at warning, once), and the bench, on such a server, vacuums and analyzes its database as
autovacuum would."""
from __future__ import annotations

import asyncio

import structlog

from gateway.devtools.bench.harness import AutoVacuum
from gateway.infra import db


async def test_the_start_warns_when_autovacuum_is_off(pool):
    off = await pool.fetchval("SHOW autovacuum") == "off"
    with structlog.testing.capture_logs() as logs:
        problems = await db.check_server(pool)
    warned = [e for e in logs if e.get("setting") == "autovacuum" and e["log_level"] == "warning"]
    assert problems == (["autovacuum"] if off else [])
    assert len(warned) == (1 if off else 0)


async def test_the_bench_analyzes_a_table_whose_rows_changed(pool, database_url):
    await pool.execute("CREATE TABLE bench_autoanalyze (id int)")
    try:
        await pool.execute("INSERT INTO bench_autoanalyze SELECT generate_series(1, 500)")
        analyzer = AutoVacuum(database_url, every=0.1)
        analyzer.start()
        try:
            for _ in range(100):
                # the statistics collector may report the insert a moment later (PG 15: at commit)
                if await pool.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'bench_autoanalyze'") == 500:
                    break
                await asyncio.sleep(0.1)
        finally:
            analyzer.stop()
        assert not analyzer.is_alive()
        # ANALYZE (not a guess from the file size) set the row count the planner uses
        assert await pool.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'bench_autoanalyze'") == 500
        assert await pool.fetchval("SELECT n_mod_since_analyze FROM pg_stat_user_tables "
                                   "WHERE relname = 'bench_autoanalyze'") == 0
    finally:
        await pool.execute("DROP TABLE bench_autoanalyze")


async def test_the_bench_vacuums_a_table_with_many_dead_rows(pool, database_url):
    await pool.execute("CREATE TABLE bench_autovacuum (id int)")
    try:
        await pool.execute("INSERT INTO bench_autovacuum SELECT generate_series(1, 500)")
        await pool.execute("DELETE FROM bench_autovacuum WHERE id <= 300")     # 300 dead > 50 + 20% of 200
        vacuumer = AutoVacuum(database_url, every=0.1)
        vacuumer.start()
        try:
            for _ in range(100):
                if await pool.fetchval("SELECT coalesce(last_vacuum, last_autovacuum) IS NOT NULL FROM pg_stat_user_tables "
                                       "WHERE relname = 'bench_autovacuum'"):
                    break
                await asyncio.sleep(0.1)
        finally:
            vacuumer.stop()
        assert not vacuumer.is_alive()
        assert await pool.fetchval("SELECT coalesce(last_vacuum, last_autovacuum) IS NOT NULL FROM pg_stat_user_tables "
                                   "WHERE relname = 'bench_autovacuum'")
        assert await pool.fetchval("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'bench_autovacuum'") == 0
    finally:
        await pool.execute("DROP TABLE bench_autovacuum")
