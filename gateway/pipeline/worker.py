"""The conversation worker: consumes the Redis Streams queue and drains conversations.

Ready conversations are drained in batches (up to `batch_size` conversations, a message of each per
transaction: `Processor.drain_rounds`), at most `concurrency` batches at a time (default 2): while
they run, the conversations that become ready wait for the next batch, so a busy worker runs fewer,
bigger rounds instead of many of one or two turns (at 200 turns/s, 16 batches in flight measured a
p99 of 304 ms, 2 of 48 ms). The conversations a round leaves to be drained on their own (a flow's
HTTP action, a lock another worker holds) are drained beside the batches, at most ALONE_AT_ONCE at a
time, so an outside call holds no batch. Within one process a conversation is in one batch at a
time; entries that arrive meanwhile mark it dirty, so it is drained again before those entries are
acknowledged. Across processes the advisory locks in
gateway.pipeline.processor serialize. Entries are acked only after their conversation was
drained, so a killed worker's entries are reclaimed by another (XAUTOCLAIM) and redone
idempotently. The sweeper re-enqueues conversations with unprocessed messages that no entry
points at any more (Redis restarted empty, an enqueue lost after commit).
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid

import asyncpg
import redis.asyncio as aioredis

from gateway.app.log import get_logger
from gateway.infra import periodic
from gateway.pipeline import queue
from gateway.pipeline.processor import Processor
from gateway.pipeline.queue import Keys

log = get_logger(__name__)


HEARTBEAT_EVERY = 5.0
ALONE_AT_ONCE = 8          # conversations drained on their own at once (each holds a connection)
READ_AHEAD = 256           # conversations a worker holds entries of, at least
HEARTBEAT_TTL = 20


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class QueueConsumer:
    def __init__(self, redis: aioredis.Redis, keys: Keys, processor: Processor, *,
                 concurrency: int = 2, batch_size: int = 32, reclaim_idle_ms: int = 30_000, block_ms: int = 500):
        self.redis = redis
        self.keys = keys
        self.processor = processor
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.reclaim_idle_ms = reclaim_idle_ms
        self.block_ms = block_ms
        self.name = consumer_name()
        self._active: dict[int, list[queue.Entry]] = {}   # conversation -> entries awaiting ack
        self._ready: list[int] = []                         # conversations waiting for a batch
        self._dirty: set[int] = set()
        self._tasks: set[asyncio.Task] = set()           # batches in flight
        self._alone_tasks: set[asyncio.Task] = set()     # conversations drained on their own
        self._alone_gate = asyncio.Semaphore(ALONE_AT_ONCE)
        self.processed = 0

    async def run(self, stop: asyncio.Event) -> None:
        await self._retrying(queue.ensure_groups, self.redis, self.keys)
        last_reclaim = last_beat = 0.0
        log.info("worker started", consumer=self.name, concurrency=self.concurrency, batch_size=self.batch_size)
        while not stop.is_set():
            try:
                if time.monotonic() - last_beat > HEARTBEAT_EVERY:
                    last_beat = time.monotonic()
                    await self.redis.set(self.keys.heartbeat("worker", socket.gethostname()),
                                         str(time.time()), ex=HEARTBEAT_TTL)
                if time.monotonic() - last_reclaim > max(self.reclaim_idle_ms / 2000, 1.0):
                    last_reclaim = time.monotonic()
                    for entry in await queue.reclaim(self.redis, self.keys, self.name, self.reclaim_idle_ms):
                        self._schedule(entry)
                    self._start_batches()
                free = max(self.concurrency * self.batch_size, READ_AHEAD) - len(self._active)
                if free <= 0:
                    await asyncio.sleep(0.01)
                    continue
                entries = await queue.read(self.redis, self.keys, self.name, count=free,
                                           block_ms=self.block_ms)
                for entry in entries:
                    self._schedule(entry)
                self._start_batches()
            except (ConnectionError, OSError, aioredis.RedisError) as exc:
                log.warning("queue unavailable, retrying", error=str(exc))
                await asyncio.sleep(1.0)
        await self.drain_tasks()

    async def drain_tasks(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (self._tasks or self._alone_tasks) and time.monotonic() < deadline:   # a batch may start more
            await asyncio.wait(list(self._tasks | self._alone_tasks), timeout=deadline - time.monotonic())

    def _schedule(self, entry: queue.Entry) -> None:
        cid = entry.conversation_id
        if cid in self._active:
            self._active[cid].append(entry)
            self._dirty.add(cid)
            return
        self._active[cid] = [entry]
        self._ready.append(cid)

    def _start_batches(self) -> None:
        while self._ready and len(self._tasks) < self.concurrency:
            batch, self._ready = self._ready[:self.batch_size], self._ready[self.batch_size:]
            task = asyncio.create_task(self._work(batch))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._start_batches()

    async def _work(self, batch: list[int]) -> None:
        try:
            while batch:
                self._dirty.difference_update(batch)
                done, left = await self.processor.drain_rounds(batch)
                alone = set(left)
                self.processed += done
                if alone:
                    task = asyncio.create_task(self._alone(left))
                    self._alone_tasks.add(task)
                    task.add_done_callback(self._alone_tasks.discard)
                batch = await self._ack_drained([cid for cid in batch if cid not in alone])
        except Exception as exc:
            for cid in batch:
                self._active.pop(cid, None)
                self._dirty.discard(cid)
            log.warning("conversation batch failed; will be retried", conversations=len(batch), error=str(exc))

    async def _alone(self, conversation_ids: list[int]) -> None:
        """Conversations a round left: drained one by one beside the batches; those that got more
        entries meanwhile go back in line for a batch."""
        async with self._alone_gate:
            try:
                done, failed = await self.processor.drain_alone(conversation_ids)
            except Exception as exc:
                log.warning("conversation drain failed; will be retried", conversations=len(conversation_ids),
                            error=str(exc))
                done, failed = 0, conversation_ids
            self.processed += done
            for cid in failed:
                # Not acked: the entries stay pending and are reclaimed after reclaim_idle_ms.
                self._active.pop(cid, None)
                self._dirty.discard(cid)
            drained = [cid for cid in conversation_ids if cid not in failed]
            try:
                again = await self._ack_drained(drained)
            except Exception as exc:   # as for a batch: left unacked, reclaimed and redone
                for cid in drained:
                    self._active.pop(cid, None)
                    self._dirty.discard(cid)
                log.warning("conversation drain not acknowledged; will be retried", conversations=len(drained),
                            error=str(exc))
                return
        if again:
            self._ready.extend(again)
            self._start_batches()

    async def _ack_drained(self, drained: list[int]) -> list[int]:
        """Acknowledge the entries of drained conversations; returns those that got more meanwhile."""
        again = [cid for cid in drained if cid in self._dirty and cid in self._active]
        finished = [cid for cid in drained if cid not in self._dirty and cid in self._active]
        await queue.ack(self.redis, [e for cid in finished for e in self._active.pop(cid)])
        return again

    @staticmethod
    async def _retrying(fn, *args):
        while True:
            try:
                return await fn(*args)
            except (ConnectionError, OSError, aioredis.RedisError) as exc:
                log.warning("redis unavailable, retrying", error=str(exc))
                await asyncio.sleep(1.0)


class Sweeper:
    """Re-enqueues conversations whose inbound messages are still unprocessed after `grace`."""

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys, *,
                 interval: float = 5.0, grace: float = 3.0):
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.interval = interval
        self.grace = grace

    async def sweep_once(self) -> int:
        rows = await self.pool.fetch(
            """SELECT DISTINCT conversation_id FROM messages
               WHERE direction = 'in' AND processed_at IS NULL
                 AND created_at < now() - make_interval(secs => $1)
               LIMIT 5000""", self.grace)
        ids = [r["conversation_id"] for r in rows]
        if ids:
            await queue.ensure_groups(self.redis, self.keys)
            await queue.enqueue_many(self.redis, self.keys, ids)
            log.info("sweeper re-enqueued conversations", count=len(ids))
        return len(ids)

    async def run(self, stop: asyncio.Event) -> None:
        await periodic.every(self.interval, stop, self.sweep_once, log=log, failed="sweep failed")
