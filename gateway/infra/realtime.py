"""Fan-out of thread events to agents' feeds and chat tabs across processes.

Events go to one Redis Stream (`gw:{feed}:events`): every API process tails it and pushes to its
own WebSockets, and a reconnecting client replays from its last event id. Chat visitors get their
conversation's events over a pub/sub channel. Publishing happens after commit; a lost publish only
delays a screen, never loses data (clients refetch from PostgreSQL by seq).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from gateway.app.log import get_logger
from gateway.app.metrics import REALTIME_DROPPED
from gateway.infra.redis_client import shard_publish
from gateway.pipeline.queue import Keys

if TYPE_CHECKING:
    from gateway.domain.types import Effects

log = get_logger(__name__)
FEED_MAXLEN = 50_000


async def publish(redis: aioredis.Redis, keys: Keys, events: list[tuple[str, dict]]) -> None:
    """The events, to the agents' feed and each conversation's chat channel, in one round trip."""
    if not events:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for event_type, payload in events:
                data = json.dumps({"type": event_type, **payload}, default=str)
                pipe.xadd(keys.stream_events(), {"e": data}, maxlen=FEED_MAXLEN, approximate=True)
                cid = payload.get("conversation_id")
                if cid is not None:
                    shard_publish(pipe, keys.chat_channel(int(cid)), data)
            await pipe.execute()
    except Exception as exc:  # Redis down: screens refetch; the data is in PostgreSQL
        dropped(len(events), exc, "feed")


def dropped(count: int, exc: BaseException, where: str) -> None:
    """Count and log realtime events that could not be published (screens catch up by refetching)."""
    REALTIME_DROPPED.labels(reason=type(exc).__name__).inc(count)
    log.warning("realtime publish failed; events dropped", where=where, events=count, error=str(exc))


async def wake_outbox(redis: aioredis.Redis, keys: Keys) -> None:
    try:
        await redis.publish(keys.outbox_wake(), "1")
    except Exception as exc:
        log.warning("outbox wake failed", error=str(exc))


async def publish_effects(redis: aioredis.Redis, keys: Keys, effects: Effects) -> None:
    """After commit: a unit of work's realtime events, and a wake-up for every outbox sender when it
    queued a message, that one first (a send waits on it, a screen does not). Never raises (a lost
    publish only delays a screen or a send)."""
    if effects.wake_outbox:
        await wake_outbox(redis, keys)
    await publish(redis, keys, effects.events)
