"""Per-sender token buckets in Redis: bursts are spread, 429s pause the sender, senders independent."""
from __future__ import annotations

import asyncio
import time

import pytest

from gateway.pipeline.queue import Keys
from gateway.pipeline.ratelimit import RateLimiter, parse_limits


async def test_burst_is_spread_at_the_configured_rate(redis_client, prefix):
    limiter = RateLimiter(redis_client, Keys(prefix), default_rate=20, burst=5)
    start = time.monotonic()
    await asyncio.gather(*(limiter.acquire("sms:+1555") for _ in range(25)))
    elapsed = time.monotonic() - start
    # 5 immediately (burst), the other 20 at 20/s: about one second, never much less
    assert elapsed >= 0.9


async def test_two_limiters_share_one_bucket_and_senders_are_independent(redis_client, prefix):
    a = RateLimiter(redis_client, Keys(prefix), default_rate=10, burst=2)
    b = RateLimiter(redis_client, Keys(prefix), default_rate=10, burst=2, per_sender={"sms:fast": 1000})
    waits = [await a.acquire("sms:x"), await b.acquire("sms:x"), await a.acquire("sms:x")]
    assert waits[0] == 0 and waits[1] == 0 and waits[2] > 0.05  # the third token is shared and missing
    assert await b.acquire("sms:fast") == 0 and await b.acquire("sms:fast") == 0


async def test_penalize_pauses_only_that_sender(redis_client, prefix):
    limiter = RateLimiter(redis_client, Keys(prefix), default_rate=100, burst=10)
    await limiter.penalize("whatsapp:1", 0.4)
    assert await limiter.acquire("whatsapp:1") >= 0.3
    assert await limiter.acquire("whatsapp:2") == 0


def test_parse_limits():
    assert parse_limits("sms:+15550001111=1, whatsapp:1065=20") == {"sms:+15550001111": 1.0, "whatsapp:1065": 20.0}
    with pytest.raises(ValueError):
        parse_limits("nonsense")
