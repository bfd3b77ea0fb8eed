"""On a real Redis Cluster (three masters from the machine's redis-server, created with
`redis-cli --cluster create`): the core promises, rate limits and the realtime fan-out work through
GATEWAY_REDIS_URL=redis+cluster://..., and no command crosses hash slots."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from redis.crc import key_slot
from scale_support import RedisClusterServers, redis_cluster_missing

from gateway.devtools.testing import (assert_each_processed_once_in_order, inbound, kill_a_worker_mid_batch, post_all,
                                      running_gateway, settings_env, wait_for)
from gateway.infra import realtime
from gateway.infra.redis_client import connect_cluster
from gateway.pipeline.queue import Keys
from gateway.pipeline.ratelimit import RateLimiter

pytestmark = pytest.mark.skipif(bool(redis_cluster_missing()), reason=redis_cluster_missing() or "")


@pytest.fixture(scope="module")
def cluster():
    servers = RedisClusterServers().start()
    yield servers
    servers.stop()


@pytest.fixture
async def cluster_client(cluster):
    client = connect_cluster(cluster.url, max_connections=50)
    await client.initialize()
    yield client
    await client.aclose()


def test_keys_used_together_share_a_slot_and_partitions_spread():
    keys = Keys("gw", 8)
    assert key_slot(keys.rate_bucket("sms:+15550001111").encode()) == key_slot(
        keys.throttle("sms:+15550001111").encode())
    slots = {key_slot(s.encode()) for s in keys.streams()}
    assert len(slots) == 8, "each partition is its own slot, so partitions spread over the nodes"


async def test_rate_limits_and_fan_out_on_the_cluster(cluster_client, prefix):
    keys = Keys(prefix, 8)
    limiter = RateLimiter(cluster_client, keys, default_rate=0.0, burst=1, per_sender={"sms:+1555": 20.0})
    assert await limiter.acquire("sms:+1555") == 0.0
    assert await limiter.acquire("sms:+1555") > 0, "the second send in the same instant waits for a token"
    await limiter.penalize("sms:+1555", 2.0)
    count, pause = await limiter.available("sms:+1555")
    assert count == 0 and 1.0 < pause <= 2.0

    from gateway.channels.webchat.hub import ChatHub

    hub = ChatHub(cluster_client)
    hub.start()
    got: list[dict] = []
    try:
        for cid in (1, 2, 3, 4, 5):   # channels on different nodes
            await hub.subscribe(keys.chat_channel(cid), got.append)
        await realtime.publish(cluster_client, keys, [("message.created", {"conversation_id": c, "seq": 1})
                                                      for c in (1, 2, 3, 4, 5)])
        await wait_for(lambda: _ready(len(got) == 5), timeout=10, message=f"chat events lost: {got}")
        assert sorted(e["conversation_id"] for e in got) == [1, 2, 3, 4, 5]
        assert await cluster_client.xlen(keys.stream_events()) == 5
    finally:
        await hub.close()

    # broadcasts every process hears (rights ended, outbox wake-ups) stay plain PUBLISH: the
    # cluster relays them to every node, whichever node a subscriber is connected to
    pubsub = cluster_client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(keys.rights_channel())
        await realtime.wake_outbox(cluster_client, keys)
        await cluster_client.publish(keys.rights_channel(), "revoked")

        async def heard():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            return message if message and message["type"] == "message" else None
        assert (await wait_for(heard, timeout=10))["data"] == b"revoked"
    finally:
        await pubsub.aclose()


def test_health_check_reads_the_heartbeat_on_the_cluster(cluster, prefix):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "GATEWAY_REDIS_URL": cluster.url, "GATEWAY_REDIS_PREFIX": prefix}
    done = subprocess.run([sys.executable, "-m", "gateway", "health"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "no recent heartbeat" in done.stdout, done.stdout + done.stderr


async def _ready(value):
    return value


async def test_core_promises_on_redis_cluster(settings, pool, clean, cluster, cluster_client, spawn, tmp_path):
    settings = settings.with_(redis_url=cluster.url, default_handler="echo", sweeper_interval=0.3,
                              reclaim_idle_ms=2000)
    env = settings_env(settings)
    first = [inbound(f"a{c}-{i}", f"cust-{c}", f"c{c} a{i}") for i in range(6) for c in range(12)]
    second = [inbound(f"b{c}-{i}", f"cust-{c}", f"c{c} b{i}") for i in range(4) for c in range(12)]
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        async with aiohttp.ClientSession() as http:
            once, twice = await asyncio.gather(post_all(http, url, first), post_all(http, url, first))
            assert {r["message_id"] for r in once} == {r["message_id"] for r in twice}
            assert await cluster_client.xlen(rt.keys.stream(0)) + await cluster_client.xlen(rt.keys.stream(1)) > 0
            # the cluster loses everything before any worker ran: streams, groups, entries on every master
            await cluster_client.flushall()
            assert await cluster_client.dbsize() == 0
            workers = [spawn(["worker"], env, tmp_path / f"w{i}.log") for i in range(2)]
            await post_all(http, url, second)

        async def all_answered():
            return await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE state = 'done'") == len(first) + len(second)
        await wait_for(all_answered, timeout=120, message="not every message was answered on the cluster")
        assert all(w.poll() is None for w in workers), "a worker died on the cluster"
    await assert_each_processed_once_in_order(pool, 10, 12)
    logs = "".join((tmp_path / f"w{i}.log").read_text(errors="replace") for i in range(2))
    assert "CROSSSLOT" not in logs


async def test_a_subscription_right_after_start_finds_its_node(cluster, settings):
    """Pub/sub connections pick their node from the slot map: the runtime loads it at start, so the
    rights listener and the chat hub subscribe at once instead of failing their first try."""
    from gateway.app.runtime import connect_redis
    from gateway.infra import redis_client

    client = connect_redis(settings.with_(redis_url=cluster.url))
    try:
        await redis_client.ready(client)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe("gw:rights")
        await pubsub.ssubscribe("gw:chat:7")
        await pubsub.aclose()
    finally:
        await client.aclose()


async def test_worker_killed_on_the_cluster_loses_and_duplicates_nothing(settings, pool, clean, cluster, spawn,
                                                                         tmp_path):
    """Its pending entries are reclaimed (XAUTOCLAIM, one partition at a time) by the next worker."""
    await kill_a_worker_mid_batch(settings.with_(redis_url=cluster.url), pool, spawn, tmp_path)
