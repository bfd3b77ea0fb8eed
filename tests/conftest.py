"""Test infrastructure: a real PostgreSQL and Redis for every run.

With GATEWAY_TEST_DATABASE_URL / GATEWAY_TEST_REDIS_URL set (CI sets them to the machine's
servers) those are used; otherwise embedded servers start under a temporary directory. Each run
(each pytest-xdist worker: `make test` runs two) gets a database of its own (created, migrated,
dropped), and each test a Redis key prefix of its own.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.app.settings import Settings, validate
from gateway.infra import db

TABLES = ("inboxes", "deployments", "retention_cursors", "early_statuses", "undeliverable_addresses", "outbox_senders", "agents", "canned_responses", "send_idempotency", "audit_log", "events", "blobs", "flow_versions", "api_tokens", "suppressions", "consents", "consent_history",
          "rollup_days", "rollup_dirty", "rollup_messages", "rollup_inbox_conversations", "rollup_inbox_reach",
          "rollup_agents", "rollup_episodes", "rollup_durations",
          "timers", "outbox", "messages", "episodes", "conversations", "teams", "identities", "contacts")


# Tests that must not run beside each other when `make test` runs the suite on two pytest-xdist workers
# (`--dist loadgroup`): each group runs on one worker, one test after the other. By node id prefix.
XDIST_GROUPS = {
    # each starts `gateway bench`; the interrupted-bench test checks that no gwbench_* database is left
    "tests/bench/": "bench",
    # the browser tests: the first one installs the browser (.ci/browser) when it is missing
    "tests/chat/test_chat_browser.py::": "browser",
    "tests/console/test_console_browser.py::": "browser",
    "tests/inbox/test_inbox_preferences.py::test_the_page_in_real_headless_chromium": "browser",
}


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` with the groups of XDIST_GROUPS (pytest-xdist 3.8 marks the `xdist_group`
    of a test in its node id, which pytest 9.2 no longer lets it change: pytest-xdist issue 1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class PrefixGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            for prefix, group in XDIST_GROUPS.items():
                if nodeid.startswith(prefix):
                    return f"group:{group}"
            return super()._split_scope(nodeid)
    return PrefixGroups(config, log)


def _with_db(dsn: str, name: str) -> str:
    parsed = urlparse(dsn)
    return urlunparse(parsed._replace(path="/" + name))


@pytest.fixture(scope="session")
def infra():
    """(admin_dsn, redis_url, cleanup) for this run."""
    tmp = None
    embedded = []
    admin_dsn = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if not admin_dsn or not redis_url:
        from gateway.app.embedded import EmbeddedPostgres, EmbeddedRedis

        tmp = tempfile.mkdtemp(prefix="gwtest-")
        if not admin_dsn:
            pg = EmbeddedPostgres(Path(tmp))
            admin_dsn = pg.start()
            embedded.append(pg)
        if not redis_url:
            rd = EmbeddedRedis(Path(tmp))
            redis_url = rd.start()
            embedded.append(rd)
    yield admin_dsn, redis_url
    for server in reversed(embedded):
        server.stop()


@pytest.fixture(scope="session")
async def database_url(infra):
    admin_dsn, _ = infra
    name = f"gwtest_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    if "?" in admin_dsn and "host=" in admin_dsn and urlparse(admin_dsn).path in ("/postgres", ""):
        # embedded: unix-socket DSN like postgresql://postgres:@/postgres?host=/dir
        dsn = admin_dsn.replace("/postgres?", f"/{name}?", 1)
    else:
        dsn = _with_db(admin_dsn, name)
    await db.migrate_dsn(dsn)
    yield dsn
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


@pytest.fixture(scope="session")
def redis_url(infra):
    return infra[1]


@pytest.fixture(scope="session")
async def pool(database_url):
    p = await db.create_pool(database_url, min_size=1, max_size=10)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def dirty_tables_query(pool) -> str:
    """A query naming the tables a blank slate must truncate: those among TABLES and the tables that
    reference them (what `TRUNCATE TABLES ... CASCADE` empties) that hold rows or whose own sequences
    were used since they were last restarted."""
    refs = await pool.fetch("SELECT conrelid::regclass::text AS child, confrelid::regclass::text AS parent "
                            "FROM pg_constraint WHERE contype = 'f'")
    tables, todo = set(TABLES), list(TABLES)
    while todo:
        parent = todo.pop()
        for r in refs:
            if r["parent"] == parent and r["child"] not in tables:
                tables.add(r["child"])
                todo.append(r["child"])
    names = sorted(tables)
    has_rows = ", ".join(f"CASE WHEN EXISTS (SELECT FROM {t}) THEN '{t}' END" for t in names)
    return f"""SELECT array_remove(ARRAY[{has_rows}], NULL) || ARRAY(
                 SELECT d.refobjid::regclass::text FROM pg_sequences s
                 JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                  AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass AND d.deptype IN ('a', 'i')
                 WHERE s.last_value IS NOT NULL AND d.refobjid::regclass::text = ANY('{{{",".join(names)}}}'::text[]))"""


@pytest.fixture
async def clean(pool, redis_url, dirty_tables_query):
    """Empty tables before a test that needs a blank slate: the same end state as
    `TRUNCATE <TABLES> RESTART IDENTITY CASCADE`, but only the tables that need it are truncated
    (each truncated table costs new files; most tests touch a few of them)."""
    dirty = sorted(set(await pool.fetchval(dirty_tables_query)))
    if dirty:
        await pool.execute(f"TRUNCATE {', '.join(dirty)} RESTART IDENTITY CASCADE")
    yield


@pytest.fixture
def prefix():
    return f"gwt{secrets.token_hex(4)}"


@pytest.fixture
async def redis_client(redis_url, prefix):
    client = aioredis.Redis.from_url(redis_url)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def settings(database_url, redis_url, prefix, tmp_path) -> Settings:
    return validate(Settings(
        database_url=database_url, redis_url=redis_url, redis_prefix=prefix, data_dir=tmp_path,
        secret_key="test-secret", admin_token="admin-test-token", default_handler="agent",
        sweeper_interval=0.5, reclaim_idle_ms=2000, outbox_base_delay=0.05, outbox_max_delay=0.5,
        log_format="console",
        # fake providers listen on 127.0.0.1 over http; tests of the fetch guard itself narrow this
        fetch_allow_networks=("127.0.0.0/8",), fetch_schemes=("http", "https"),
    ))


@pytest.fixture
def spawn():
    """Start `python -m gateway ...` subprocesses; all are killed at teardown."""
    import subprocess
    import sys

    procs = []

    def start(args, env, log_path=None):
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL
        proc = subprocess.Popen([sys.executable, "-m", "gateway", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


SALES_FLOW = """
name: sales
start: hello
states:
  hello:
    say: "Welcome to sales! What are you looking for?"
"""


@pytest.fixture
def sales_and_support_flows(tmp_path):
    """A flows directory of two one-state flows that greet differently: `sales` ("Welcome to
    sales! ...") and `support` ("Support here. ..."), to tell which flow a conversation started on."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "sales.yaml").write_text(SALES_FLOW)
    (flows / "support.yaml").write_text(SALES_FLOW.replace("sales", "support")
                                        .replace("Welcome to support!", "Support here."))
    return flows


@pytest.fixture
async def http():
    """A client session for talking to servers and fakes."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake_twilio():
    from gateway.devtools.fakes.twilio import FakeTwilio

    async with FakeTwilio() as fake:
        yield fake

