"""/metrics: optionally behind a bearer token, and the database gauges recounted at most every
GATEWAY_METRICS_CACHE_SECONDS however often (and however concurrently) Prometheus scrapes."""
from __future__ import annotations

import asyncio
import re

import aiohttp

from gateway.devtools.testing import running_gateway


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in the scrape"
    return float(match.group(1))


async def scrape(http, url, headers=None) -> tuple[int, str]:
    async with http.get(url + "/metrics", headers=headers or {}) as resp:
        return resp.status, await resp.text()


async def waiting_conversation(pool) -> None:
    contact = await pool.fetchval("INSERT INTO contacts (name) VALUES ('m') RETURNING id")
    await pool.execute("""INSERT INTO conversations (contact_id, status, mode, waiting_since)
                          VALUES ($1, 'open', 'agent', now())""", contact)


async def test_metrics_token_is_required_when_set(settings, clean):
    async with running_gateway(settings.with_(metrics_token="scrape-secret")) as (rt, url), \
            aiohttp.ClientSession() as http:
        assert (await scrape(http, url))[0] == 401
        assert (await scrape(http, url, {"Authorization": "Bearer wrong"}))[0] == 401
        status, text = await scrape(http, url, {"Authorization": "Bearer scrape-secret"})
        assert status == 200 and "gateway_agent_queue" in text
    async with running_gateway(settings) as (rt, url), aiohttp.ClientSession() as http:
        assert (await scrape(http, url))[0] == 200     # unset: open, as before


async def test_scrapes_share_one_recount_within_the_cache_age(settings, pool, clean):
    async with running_gateway(settings.with_(metrics_cache_seconds=3600)) as (rt, url), \
            aiohttp.ClientSession() as http:
        before = gauge((await scrape(http, url))[1], "gateway_agent_queue")
        await waiting_conversation(pool)
        results = await asyncio.gather(*(scrape(http, url) for _ in range(20)))
        assert {gauge(text, "gateway_agent_queue") for _, text in results} == {before}
        assert max(gauge(text, "gateway_metrics_gauges_age_seconds") for _, text in results) > 0
    async with running_gateway(settings.with_(metrics_cache_seconds=0)) as (rt, url), \
            aiohttp.ClientSession() as http:
        assert gauge((await scrape(http, url))[1], "gateway_agent_queue") == before + 1


async def test_a_realtime_publish_that_cannot_reach_redis_is_counted():
    import redis.asyncio as aioredis

    from gateway.app.metrics import REALTIME_DROPPED
    from gateway.devtools.testing import free_port
    from gateway.infra import realtime
    from gateway.pipeline.queue import Keys

    def total() -> float:
        return sum(s.value for m in REALTIME_DROPPED.collect() for s in m.samples if s.name.endswith("_total"))

    before = total()
    gone = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        await realtime.publish(gone, Keys("gwgone"), [("message.created", {"conversation_id": 1}),
                                                      ("typing", {"conversation_id": 1})])
    finally:
        await gone.aclose()
    assert total() == before + 2


async def test_a_scrape_while_postgres_is_away_still_serves_the_counters(database_url):
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from gateway.app import metrics
    from gateway.infra import db

    gone = await db.create_pool(database_url, min_size=1, max_size=1)
    await gone.close()                                   # every query now fails, as with PostgreSQL down
    cache = metrics.GaugeCache(max_age=0)
    await cache.refresh(SimpleNamespace(pool=gone))     # no exception: the scrape goes on
    assert cache.recounts == 0 and b"gateway_inbound_total" in generate_latest(metrics.REGISTRY)
