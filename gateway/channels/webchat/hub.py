"""Per-process fan-in of chat events: one Redis pub/sub connection shared by every local socket.

A socket registers a listener for its conversation's channel (`Keys.chat_channel`) and its visitor's
channel (`visitor_channel`); the hub subscribes in Redis while at least one local listener wants a
channel. Events are hints ("something changed in conversation N"): sockets read the messages
themselves from PostgreSQL by seq, so an event lost while Redis restarts costs latency, not data.
After a pub/sub failure every listener gets a synthetic `chat.resync` so it re-reads.
On Redis Cluster the channels are sharded (SSUBSCRIBE; publishers use `redis_client.shard_publish`),
so a chat event is carried only by the node that owns its channel's slot.
"""
from __future__ import annotations

import asyncio
import json
from typing import Callable

import redis.asyncio as aioredis

from gateway.app.log import get_logger
from gateway.infra.redis_client import is_cluster
from gateway.pipeline.queue import Keys

log = get_logger(__name__)

Listener = Callable[[dict], None]


def visitor_channel(keys: Keys, visitor_id: str) -> str:
    """Events for all tabs of one visitor, before and across threads (bound, identified)."""
    return f"{keys.prefix}:chat:v:{visitor_id}"


class ChatHub:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.sharded = is_cluster(redis)
        self.listeners: dict[str, set[Listener]] = {}
        self._wanted = asyncio.Event()
        self._stale = False          # Redis subscriptions may not match `listeners`: redo them
        self._task: asyncio.Task | None = None
        # redis-py's PubSub takes a pool connection on first use without a lock: concurrent first
        # subscribes each take one and all but one leak. (Un)subscribes go one at a time.
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chat-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.pubsub.aclose()

    async def subscribe(self, channel: str, listener: Listener) -> None:
        listeners = self.listeners.setdefault(channel, set())
        first = not listeners
        listeners.add(listener)
        if first:
            try:
                async with self._lock:
                    await self._subscribe(channel)
            except Exception as exc:  # Redis down: the run loop resubscribes and sockets resync
                log.warning("chat subscribe failed", error=str(exc))
                self._stale = True
            self._wanted.set()

    async def unsubscribe(self, channel: str, listener: Listener) -> None:
        listeners = self.listeners.get(channel)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self.listeners[channel]
            try:
                async with self._lock:
                    await (self.pubsub.sunsubscribe if self.sharded else self.pubsub.unsubscribe)(channel)
            except Exception as exc:
                log.debug("chat unsubscribe failed", error=str(exc))

    async def _run(self) -> None:
        while True:
            if not self.listeners:
                self._wanted.clear()
                await self._wanted.wait()
                continue
            try:
                if self._stale:
                    async with self._lock:
                        await self._subscribe(*self.listeners)
                    self._stale = False
                    log.info("chat pub/sub connection restored")
                    self._broadcast({"type": "chat.resync"})
                message = await self._next_message()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._stale:
                    log.warning("chat pub/sub connection lost; retrying", error=str(exc))
                self._stale = True
                await asyncio.sleep(1.0)
                continue
            if message and message.get("type") in ("message", "smessage"):
                self._dispatch(message)

    async def _subscribe(self, *channels: str) -> None:
        await (self.pubsub.ssubscribe if self.sharded else self.pubsub.subscribe)(*channels)

    async def _next_message(self) -> dict | None:
        if self.sharded:
            # one connection per node, polled in turn: a blocking wait on one node would hold up
            # messages waiting on another, so poll without waiting and pause briefly when idle
            message = await self.pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0)
            if message is None:
                await asyncio.sleep(0.02)
            return message
        return await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)

    def _dispatch(self, message: dict) -> None:
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            event = json.loads(message["data"])
        except (ValueError, TypeError):
            return
        if not isinstance(event, dict):
            return
        for listener in list(self.listeners.get(channel, ())):
            listener(event)

    def _broadcast(self, event: dict) -> None:
        for listeners in list(self.listeners.values()):
            for listener in list(listeners):
                listener(event)
