"""The design's promises, each tried against real PostgreSQL, Redis and worker processes."""
from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest

from gateway.app.embedded import EmbeddedRedis
from gateway.devtools.testing import (assert_each_processed_once_in_order, inbound, kill_a_worker_mid_batch, post_all,
                                      running_gateway, settings_env, splice, wait_for)

ADMIN = {"Authorization": "Bearer admin-test-token"}


async def test_same_inbound_twenty_times_concurrently_is_stored_once(settings, pool, clean, redis_client):
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        async with aiohttp.ClientSession() as http:
            results = await post_all(http, url, [inbound("dup-1", "c-1", "hi")] * 20, concurrency=20)
    assert len({r["message_id"] for r in results}) == 1
    assert sum(1 for r in results if not r["duplicate"]) == 1
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'") == 1
    assert await pool.fetchval("SELECT last_seq FROM conversations") == 1  # no seq burnt by losers
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 1


async def test_first_messages_from_one_new_customer_race_into_one_contact(settings, pool, clean, redis_client):
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        async with aiohttp.ClientSession() as http:
            await post_all(http, url, [inbound(f"m{i}", "new-cust", f"t{i}") for i in range(10)], concurrency=10)
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 1
    assert await pool.fetchval("SELECT count(*) FROM conversations") == 1
    seqs = [r["seq"] for r in await pool.fetch("SELECT seq FROM messages ORDER BY seq")]
    assert seqs == list(range(1, 11))


async def test_fifty_conversations_through_two_worker_processes_in_order(settings, pool, clean, redis_client,
                                                                         spawn, tmp_path):
    settings = settings.with_(default_handler="echo")
    env = settings_env(settings)
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        workers = [spawn(["worker"], env, tmp_path / f"w{i}.log") for i in range(2)]
        bodies = [inbound(f"{c}-{i}", f"cust-{c}", f"c{c} m{i}") for i in range(20) for c in range(50)]
        async with aiohttp.ClientSession() as http:
            await post_all(http, url, bodies, concurrency=40)

        async def all_replied():
            return await pool.fetchval(
                "SELECT count(*) FROM messages WHERE direction = 'out'") == 1000
        await wait_for(all_replied, timeout=90, message="not every message was answered")
        assert all(w.poll() is None for w in workers), "a worker died"
    await assert_each_processed_once_in_order(pool, 20, 50)
    consumers = await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'")
    assert consumers == 1000


async def test_worker_killed_mid_batch_loses_and_duplicates_nothing(settings, pool, clean, redis_client,
                                                                    spawn, tmp_path):
    await kill_a_worker_mid_batch(settings, pool, spawn, tmp_path)


async def test_redis_wiped_mid_run_sweeper_recovers_everything(settings, pool, clean, tmp_path):
    private = EmbeddedRedis(tmp_path / "private-redis")
    redis_url = private.start()
    try:
        settings = settings.with_(redis_url=redis_url, default_handler="echo", sweeper_interval=0.3)
        async with running_gateway(settings, roles=("http",)) as (api_rt, url):
            async with aiohttp.ClientSession() as http:
                await post_all(http, url, [inbound(f"a{i}", f"cust-{i % 10}", f"m{i}") for i in range(100)])
            # Redis restarts with empty memory: streams, groups and pending entries are gone.
            await api_rt.redis.flushall()
            assert await api_rt.redis.dbsize() == 0
            async with running_gateway(settings, roles=("worker",)):
                async with aiohttp.ClientSession() as http:
                    await post_all(http, url, [inbound(f"b{i}", f"cust-{i % 10}", f"n{i}") for i in range(50)])

                async def all_done():
                    return await pool.fetchval(
                        "SELECT count(*) FROM messages WHERE direction = 'in' AND processed_at IS NULL") == 0
                await wait_for(all_done, timeout=60)
        # 150 inbound over 10 customers = 15 each, all answered once and in order
        await assert_each_processed_once_in_order(pool, 15, 10)
    finally:
        private.stop()


class PgProxy:
    """A TCP proxy in front of PostgreSQL that can be cut and restored (a network outage)."""

    def __init__(self, dsn: str):
        parsed = urlparse(dsn)
        host_q = parse_qs(parsed.query).get("host", [None])[0]
        self.unix = None
        if host_q and host_q.startswith("/"):
            self.unix = os.path.join(host_q, f".s.PGSQL.{parsed.port or 5432}")
        self.target = (parsed.hostname or "127.0.0.1", parsed.port or 5432)
        self.user = parsed.username or "postgres"
        self.dbname = parsed.path.lstrip("/")
        self.server = None
        self.port = None
        self.conns: set = set()

    async def _handle(self, reader, writer):
        try:
            if self.unix:
                up_r, up_w = await asyncio.open_unix_connection(self.unix)
            else:
                up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.conns.update({writer, up_w})
        await splice(reader, writer, up_r, up_w)

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port or 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self):
        self.server.close()
        await self.server.wait_closed()
        for w in list(self.conns):
            w.transport.abort()
        self.conns.clear()

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"


async def test_postgres_unreachable_answers_503_stores_nothing_and_recovers(settings, pool, clean, redis_client):
    proxy = PgProxy(settings.database_url)
    await proxy.start()
    async with running_gateway(settings.with_(database_url=proxy.dsn), roles=("http",)) as (rt, url):
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/v1/inbound", json=inbound("ok-1", "c", "before"),
                                 headers=ADMIN) as resp:
                assert resp.status == 201
            await proxy.cut()
            for i in range(3):
                async with http.post(f"{url}/api/v1/inbound", json=inbound(f"down-{i}", f"new-{i}", "during"),
                                     headers=ADMIN) as resp:
                    assert resp.status == 503, await resp.text()
                    assert resp.headers.get("Retry-After")
            async with http.get(f"{url}/readyz") as resp:
                assert resp.status == 503
            assert await pool.fetchval("SELECT count(*) FROM messages") == 1
            assert await pool.fetchval("SELECT count(*) FROM contacts") == 1
            await proxy.start()  # same port again: PostgreSQL is back

            async def accepted():
                async with http.post(f"{url}/api/v1/inbound", json=inbound("down-0", "new-0", "during"),
                                     headers=ADMIN) as resp:
                    return resp.status == 201
            await wait_for(accepted, timeout=20, interval=0.3)
    assert await pool.fetchval("SELECT count(*) FROM messages") == 2
    await proxy.cut()


@pytest.mark.parametrize("headers,body,status,code", [
    ({}, {"client_message_id": "x", "contact": {"external_id": "a"}, "text": "hi"}, 401, "unauthorized"),
    ({"Authorization": "Bearer gw_nope_nope"}, {"client_message_id": "x", "contact": {"external_id": "a"},
                                                "text": "hi"}, 401, "unauthorized"),
    (ADMIN, "not json", 400, "invalid_json"),
    (ADMIN, [1, 2], 400, "invalid_json"),
    (ADMIN, {"contact": {"external_id": "a"}, "text": "hi"}, 400, "invalid_field"),
    (ADMIN, {"client_message_id": "x", "text": "hi"}, 400, "invalid_contact"),
    (ADMIN, {"client_message_id": "x", "contact": {"phone": "12"}, "text": "hi"}, 400, "invalid_contact"),
    (ADMIN, {"client_message_id": "x", "contact": {"email": "nope"}, "text": "hi"}, 400, "invalid_contact"),
    (ADMIN, {"client_message_id": "x", "contact": {"phone": 14155550100}, "text": "hi"}, 400, "invalid_contact"),
    (ADMIN, {"client_message_id": "x", "contact": {"email": ["a@b.co"]}, "text": "hi"}, 400, "invalid_contact"),
    (ADMIN, {"client_message_id": "x", "contact": {"external_id": "a"}, "text": ""}, 400, "invalid_field"),
    (ADMIN, {"client_message_id": "x", "contact": {"external_id": "a"}, "text": "hi",
             "attachments": [{"url": "file:///etc/passwd"}]}, 400, "invalid_field"),
    (ADMIN, {"client_message_id": "x", "contact": {"contact_id": 999999}, "text": "hi"}, 400, "invalid_contact"),
])
async def test_bad_requests_get_clear_errors_and_store_nothing(settings, pool, clean, redis_client,
                                                               headers, body, status, code):
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        async with aiohttp.ClientSession() as http:
            if isinstance(body, str):
                kwargs = {"data": body, "headers": {**headers, "Content-Type": "application/json"}}
            else:
                kwargs = {"json": body, "headers": headers}
            async with http.post(f"{url}/api/v1/inbound", **kwargs) as resp:
                assert resp.status == status
                assert (await resp.json())["error"]["code"] == code
    for table in ("messages", "contacts", "identities", "conversations"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_oversized_body_is_413_and_stores_nothing(settings, pool, clean, redis_client):
    async with running_gateway(settings.with_(max_body_bytes=4096), roles=("http",)) as (rt, url):
        async with aiohttp.ClientSession() as http:
            body = inbound("big", "c", "x" * 5000)
            async with http.post(f"{url}/api/v1/inbound", json=body, headers=ADMIN) as resp:
                assert resp.status == 413
                assert (await resp.json())["error"]["code"] == "too_large"
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0


async def test_wrong_content_type_is_415(settings, pool, clean, redis_client):
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/v1/inbound", data="a=b", headers=ADMIN) as resp:
                assert resp.status == 415
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0
