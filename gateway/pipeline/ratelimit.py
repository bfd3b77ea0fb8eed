"""Per-sender rate limits: a token bucket in Redis, shared by every outbox sender process.

A burst of sends from one number is spread out so the provider's limits are never tripped; a
provider 429 for that sender pauses it (`penalize`) instead of failing messages. Time comes from
Redis (TIME), so several machines agree.
"""
from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from gateway.app.log import get_logger
from gateway.pipeline.queue import Keys

log = get_logger(__name__)

# Reserve one token; returns the seconds to wait before using it (0 when one was available).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or burst
local ts = tonumber(data[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
local pause = redis.call('PTTL', KEYS[2])
local wait = 0
if tokens < 0 then wait = -tokens / rate end
if pause > 0 then wait = math.max(wait, pause / 1000) end
return tostring(wait)
"""

# How many tokens could be taken now, and how long the sender is paused (ms): nothing is taken.
_PEEK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tokens = burst
if rate > 0 then
  local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  tokens = tonumber(data[1]) or burst
  local ts = tonumber(data[2]) or now
  tokens = math.min(burst, tokens + (now - ts) * rate)
end
return {tostring(tokens), redis.call('PTTL', KEYS[2])}
"""


def parse_limits(spec: str) -> dict[str, float]:
    """"sms:+15550001111=1,whatsapp:+15550002222=20" -> {sender key: sends per second}."""
    limits = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.rpartition("=")
        if not key:
            raise ValueError(f"rate limit {part!r} must look like channel:sender=per_second")
        limits[key.strip()] = float(value)
    return limits


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, default_rate: float, burst: int,
                 per_sender: dict[str, float] | None = None):
        self.redis = redis
        self.keys = keys
        self.default_rate = default_rate
        self.burst = burst
        self.per_sender = per_sender or {}
        self._take = redis.register_script(_TAKE)
        self._peek = redis.register_script(_PEEK)

    def rate_for(self, sender_key: str) -> float:
        return self.per_sender.get(sender_key, self.default_rate)

    async def acquire(self, sender_key: str) -> float:
        """Wait until this sender may send one more message; returns the seconds waited."""
        rate = self.rate_for(sender_key)
        if rate <= 0:
            return 0.0
        try:
            wait = float(await self._take(keys=[self.keys.rate_bucket(sender_key), self.keys.throttle(sender_key)],
                                          args=[rate, max(self.burst, 1)]))
        except aioredis.RedisError as exc:  # limiter down: send anyway, the provider's 429 still protects
            log.warning("rate limiter unavailable", error=str(exc))
            return 0.0
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    async def available(self, sender_key: str) -> tuple[int, float]:
        """(sends this sender may start now, seconds it stays paused), without taking anything.

        With no rate configured the count is unbounded (a large number) unless a pause is set. The
        outbox claims no more rows than this, so a lease never waits behind the rate limit.
        """
        rate = self.rate_for(sender_key)
        try:
            tokens, pause_ms = await self._peek(
                keys=[self.keys.rate_bucket(sender_key), self.keys.throttle(sender_key)],
                args=[max(rate, 0), max(self.burst, 1)])
        except aioredis.RedisError as exc:
            log.warning("rate limiter unavailable", error=str(exc))
            return (1 << 30 if rate <= 0 else max(self.burst, 1)), 0.0
        pause = max(int(pause_ms), 0) / 1000
        if pause > 0:
            return 0, pause
        return (1 << 30 if rate <= 0 else max(int(float(tokens)), 0)), 0.0

    async def penalize(self, sender_key: str, retry_after: float | None) -> None:
        """The provider said 429 for this sender: pause it for Retry-After (default 1 s)."""
        pause_ms = int(max(retry_after or 1.0, 0.05) * 1000)
        try:
            await self.redis.set(self.keys.throttle(sender_key), "1", px=pause_ms)
        except aioredis.RedisError as exc:
            log.warning("rate limiter unavailable", error=str(exc))
