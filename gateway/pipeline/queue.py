"""Work queue on Redis Streams, partitioned by conversation, with one consumer group.

Every Redis key the gateway uses is built here. Stream keys carry a hash tag per partition
(`gw:{p3}:inbound`) so that on Redis Cluster each partition lives on one node; keys used together
in one command or script share a tag (a sender's rate bucket and its throttle). No command names
keys of two slots (tests/scale/test_scale_redis_cluster.py runs the core promises on a cluster).

A stream entry only says "conversation N has work"; the work itself (unprocessed inbound rows) is
in PostgreSQL. Entries are acknowledged after the conversation was drained, so a dead worker's
entries stay pending and are reclaimed with XAUTOCLAIM. Redis may lose everything: the sweeper
re-enqueues conversations that still have unprocessed messages.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Sequence

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gateway.app.log import get_logger
from gateway.infra.redis_client import is_cluster

log = get_logger(__name__)

GROUP = "workers"
STREAM_MAXLEN = 200_000


@dataclass(frozen=True)
class Keys:
    prefix: str = "gw"
    partitions: int = 8

    def stream(self, partition: int) -> str:
        return f"{self.prefix}:{{p{partition}}}:inbound"

    def streams(self) -> list[str]:
        return [self.stream(p) for p in range(self.partitions)]

    def partition_of(self, conversation_id: int) -> int:
        return conversation_id % self.partitions

    def stream_for(self, conversation_id: int) -> str:
        return self.stream(self.partition_of(conversation_id))

    # fan-out and small state
    def events_channel(self) -> str:
        return f"{self.prefix}:events"

    def chat_channel(self, conversation_id: int) -> str:
        return f"{self.prefix}:chat:{conversation_id}"

    def rate_bucket(self, sender_key: str) -> str:
        return f"{self.prefix}:rate:{{{sender_key}}}"

    def throttle(self, sender_key: str) -> str:
        return f"{self.prefix}:throttle:{{{sender_key}}}"

    def heartbeat(self, role: str, name: str) -> str:
        return f"{self.prefix}:health:{role}:{name}"

    def replay_guard(self, scope: str, token: str) -> str:
        return f"{self.prefix}:seen:{scope}:{token}"

    def stream_events(self) -> str:
        return f"{self.prefix}:{{feed}}:events"

    def typing(self, conversation_id: int, who: str) -> str:
        return f"{self.prefix}:typing:{conversation_id}:{who}"

    def presence(self, agent_id: int) -> str:
        return f"{self.prefix}:presence:{agent_id}"

    def login_failures(self, kind: str, digest: str) -> str:
        return f"{self.prefix}:login:{kind}:{digest}"

    def outbox_wake(self) -> str:
        return f"{self.prefix}:wake:outbox"

    def deploys_channel(self) -> str:
        """Pub/sub: a deployment of flows and journeys was recorded (gateway.flows.deploy)."""
        return f"{self.prefix}:deploys"

    def rights_channel(self) -> str:
        """Pub/sub: a right ended or changed (token revoked, agent deactivated, teams changed)."""
        return f"{self.prefix}:rights"


async def enqueue(redis: aioredis.Redis, keys: Keys, conversation_id: int) -> None:
    await redis.xadd(keys.stream_for(conversation_id), {"c": str(conversation_id)},
                     maxlen=STREAM_MAXLEN, approximate=True)


async def enqueue_many(redis: aioredis.Redis, keys: Keys, conversation_ids) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for cid in set(conversation_ids):
            pipe.xadd(keys.stream_for(cid), {"c": str(cid)}, maxlen=STREAM_MAXLEN, approximate=True)
        await pipe.execute()


async def enqueue_or_log(redis: aioredis.Redis, keys: Keys, conversation_ids: Sequence[int], *,
                         why: str | None = None) -> None:
    """Tell the workers that these conversations have committed messages to process.

    A failure is logged, not raised: the messages are durable already and the sweeper enqueues
    them later."""
    if not conversation_ids:
        return
    try:
        if len(conversation_ids) == 1:
            await enqueue(redis, keys, conversation_ids[0])
        else:
            await enqueue_many(redis, keys, conversation_ids)
    except Exception as exc:
        log.warning("enqueue failed; the sweeper will pick the messages up", why=why,
                    conversation_ids=list(conversation_ids)[:20], error=str(exc))


async def ensure_groups(redis: aioredis.Redis, keys: Keys) -> None:
    """Create the consumer group on every partition (idempotent; after a Redis restart too).

    Created at id 0 so entries added before the group existed are still consumed.
    """
    for stream in keys.streams():
        try:
            await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


@dataclass(frozen=True)
class Entry:
    stream: str
    entry_id: str
    conversation_id: int


def _entries(stream: str, items) -> list[Entry]:
    out = []
    for entry_id, fields in items:
        if not fields:  # deleted entry still in the PEL
            continue
        raw = fields.get(b"c") or fields.get("c")
        try:
            cid = int(raw)
        except (TypeError, ValueError):
            continue
        out.append(Entry(_s(stream), _s(entry_id), cid))
    return out


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def read(redis: aioredis.Redis, keys: Keys, consumer: str, count: int, block_ms: int) -> list[Entry]:
    """New entries for `consumer` from every partition, waiting up to `block_ms` when there are none."""
    if is_cluster(redis):
        return await _read_partitions(redis, keys, consumer, count, block_ms)
    try:
        reply = await redis.xreadgroup(GROUP, consumer, {s: ">" for s in keys.streams()},
                                       count=count, block=block_ms)
    except ResponseError as exc:
        if "NOGROUP" in str(exc):  # Redis restarted empty: recreate and carry on
            await ensure_groups(redis, keys)
            return []
        raise
    entries: list[Entry] = []
    for stream, items in reply or []:
        entries.extend(_entries(stream, items))
    return entries


# On a cluster an idle worker waits this long per round (all partitions at once, one command each).
CLUSTER_BLOCK_MS = 100


async def _read_partitions(redis, keys: Keys, consumer: str, count: int, block_ms: int) -> list[Entry]:
    """Redis Cluster: one XREADGROUP per partition (a multi-stream read would cross slots).

    First a non-blocking pass over every partition; only when all are empty, one short blocking
    round (so work on one partition never waits for the others' timeouts for long).
    """
    async def one(stream: str, block: int | None) -> list[Entry]:
        reply = await redis.xreadgroup(GROUP, consumer, {stream: ">"}, count=count, block=block)
        return [e for s, items in reply or [] for e in _entries(s, items)]

    for block in (None, min(block_ms, CLUSTER_BLOCK_MS)):
        try:
            found = await asyncio.gather(*(one(s, block) for s in keys.streams()))
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                await ensure_groups(redis, keys)
                return []
            raise
        entries = [e for part in found for e in part]
        if entries:
            return entries
    return []


async def ack(redis: aioredis.Redis, entries: list[Entry]) -> None:
    if not entries:
        return
    by_stream: dict[str, list[str]] = {}
    for e in entries:
        by_stream.setdefault(e.stream, []).append(e.entry_id)
    async with redis.pipeline(transaction=False) as pipe:
        for stream, ids in by_stream.items():
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
        await pipe.execute()


async def reclaim(redis: aioredis.Redis, keys: Keys, consumer: str, min_idle_ms: int,
                  count: int = 100) -> list[Entry]:
    """Take over entries another consumer read but never acknowledged (it died)."""
    claimed: list[Entry] = []
    for stream in keys.streams():
        try:
            result = await redis.xautoclaim(stream, GROUP, consumer, min_idle_time=min_idle_ms,
                                            start_id="0-0", count=count)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                await ensure_groups(redis, keys)
                continue
            raise
        claimed.extend(_entries(stream, result[1]))
    return claimed
