"""The runtime: shared resources (pool, Redis, HTTP client, senders) and the background roles.

The channels it runs are the packages in `channels` (gateway.channels.registry.CHANNELS by default):
their senders, the outbox's per-channel steps and their listeners come from there, by name.

`Runtime` is an async context manager. Roles:
  - "worker": queue consumer + sweeper + outbox sender + timers
  - "http": nothing here; the aiohttp app (gateway.http.app) uses the runtime's resources
`gateway run` starts both in one process; `gateway api` / `gateway worker` split them.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from gateway import retention
from gateway.app import plugins
from gateway.app.log import get_logger
from gateway.app.settings import Settings
from gateway.bot.turn import AgentQueueHandler, EchoHandler, Handler
from gateway.channels import registry
from gateway.channels.base import ChannelSender
from gateway.channels.senders import build_senders, outgoing_steps
from gateway.domain.hooks import Hooks
from gateway.domain.timers import Batch, Clock, TimerHandler, TimerService
from gateway.domain.types import Channel, Effects
from gateway.inbox.rollups import Rollups
from gateway.inboxes.defaults import sync_defaults
from gateway.inboxes.senders import InboxSenders
from gateway.infra import db, realtime, redis_client
from gateway.infra.guarded_fetch import GuardedFetcher
from gateway.pipeline.batcher import IngestBatcher
from gateway.pipeline.intake import enqueue_committed
from gateway.pipeline.outbox import OutboxSender
from gateway.pipeline.processor import Processor
from gateway.pipeline.queue import Keys
from gateway.pipeline.ratelimit import RateLimiter, parse_limits
from gateway.pipeline.worker import QueueConsumer, Sweeper

if TYPE_CHECKING:
    from gateway.bot.flow_handler import FlowHandler
    from gateway.flows.deploy import DeployListener
    from gateway.inbox.team_routing import TeamRouter
    from gateway.journeys.engine import JourneyEngine

log = get_logger(__name__)

PLUGINS = ("gateway.journeys.plugin", "gateway.inbox.plugin")


@dataclass(eq=False)
class Runtime:
    """One process's shared resources and background roles, handed as `rt` to whatever needs them.

    Constructed with settings, roles and optional overrides (clock, handler); every resource below
    the marker exists once the runtime is entered (`async with Runtime(settings) as rt`). Optional
    ones are None when this process does not run their role or subsystem.
    """

    settings: Settings
    roles: tuple[str, ...] = ("http", "worker")
    clock: Clock = field(default_factory=Clock)
    handler: Handler | None = None                   # the turn handler; default from settings
    hooks: Hooks = field(default_factory=Hooks)
    timer_handlers: dict[str, TimerHandler | Batch] = field(default_factory=dict)   # filled by plugins
    plugin_modules: tuple[str, ...] = PLUGINS   # modules whose setup(runtime) runs at start
    channels: tuple[str, ...] = registry.CHANNELS   # the channel packages this process runs
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    # -- set by __aenter__ ---------------------------------------------------------------------
    pool: asyncpg.Pool = field(init=False)
    redis: aioredis.Redis = field(init=False)
    http: aiohttp.ClientSession = field(init=False)
    fetcher: GuardedFetcher = field(init=False)
    keys: Keys = field(init=False)
    senders: dict[Channel, ChannelSender] = field(init=False, default_factory=dict)
    processor: Processor = field(init=False)
    outbox: OutboxSender = field(init=False)
    timers: TimerService = field(init=False)
    deploys: DeployListener = field(init=False)
    batcher: IngestBatcher | None = field(init=False, default=None)          # "http" role
    consumer: QueueConsumer | None = field(init=False, default=None)         # "worker" role
    # set by plugins and the flow handler when they are installed and chosen
    flow_handler: FlowHandler | None = field(init=False, default=None)
    team_router: TeamRouter | None = field(init=False, default=None)
    journeys: JourneyEngine | None = field(init=False, default=None)
    _tasks: list[asyncio.Task] = field(init=False, default_factory=list)
    _exit: contextlib.AsyncExitStack = field(init=False, default_factory=contextlib.AsyncExitStack)

    async def __aenter__(self) -> Runtime:
        try:
            return await self._start()
        except BaseException:   # a start that fails half-way closes what it opened
            await self.__aexit__(None, None, None)
            raise

    async def _start(self) -> Runtime:
        s = self.settings
        self.keys = Keys(s.redis_prefix, s.queue_partitions)
        self.pool = await _connect_pg(s.database_url, pooler=s.database_pooler)
        self._exit.push_async_callback(self.pool.close)
        await db.migrate_dsn(s.session_database_url, pooler=s.database_pooler)
        await db.check_server(self.pool)
        await sync_defaults(self.pool, s)
        self.redis = connect_redis(s)
        self._exit.push_async_callback(self.redis.aclose)
        await redis_client.ready(self.redis)
        self.http = aiohttp.ClientSession()
        self._exit.push_async_callback(self.http.close)
        self.fetcher = GuardedFetcher.from_settings(s)
        self._exit.push_async_callback(self.fetcher.close)
        self.senders = build_senders(self, self.channels)
        if "http" in self.roles:
            self.batcher = IngestBatcher(self.pool, partial(enqueue_committed, self))
            self._exit.push_async_callback(self.batcher.close)
        self.processor = Processor(self.pool, s, self.handler or default_handler(self),
                                   after_commit=self.publish_effects, hooks=self.hooks)
        if self.flow_handler is not None:
            from gateway.bot.flow_handler import store_versions

            await store_versions(self.pool, self.flow_handler.registry)
        # always there: a provider's 429 pauses its sender for every process, rate limits or not
        limiter = RateLimiter(self.redis, self.keys, default_rate=s.rate_limit_per_second,
                              burst=s.rate_limit_burst, per_sender=parse_limits(s.rate_limits))
        self.outbox = OutboxSender(self.pool, self.redis, self.keys, s, self.senders, rate_limiter=limiter,
                                   hooks=self.hooks, prepare=outgoing_steps(self.channels),
                                   inbox_senders=InboxSenders(self.pool, s, self.http, self.fetcher,
                                                              channels=self.channels))
        self.timers = TimerService(self.pool, self.timer_handlers, clock=self.clock,
                                   after_commit=self.publish_effects)
        for setup in plugin_setups(self.plugin_modules):
            await setup(self)
        from gateway.flows.deploy import DeployListener

        self.deploys = DeployListener(self)
        await self.deploys.start_from_latest()
        self._tasks.append(asyncio.create_task(self.deploys.run(self.stop_event), name="deploys"))
        if "worker" in self.roles:
            self.start_workers()
        return self

    def start_workers(self) -> None:
        s = self.settings
        self.consumer = QueueConsumer(self.redis, self.keys, self.processor,
                                      concurrency=s.worker_concurrency, batch_size=s.worker_batch,
                                      reclaim_idle_ms=s.reclaim_idle_ms)
        sweeper = Sweeper(self.pool, self.redis, self.keys, interval=s.sweeper_interval)
        self._tasks.append(asyncio.create_task(
            Rollups(self.pool, s.rollup_interval).run(self.stop_event), name="rollups"))
        if retention.enabled(s):
            self._tasks.append(asyncio.create_task(
                retention.Retention(self.pool, s, clock=self.clock).run(self.stop_event), name="retention"))
        for name, coro in (("consumer", self.consumer.run(self.stop_event)),
                           ("sweeper", sweeper.run(self.stop_event)),
                           ("outbox", self.outbox.run(self.stop_event)),
                           ("timers", self.timers.run(self.stop_event))):
            self._tasks.append(asyncio.create_task(coro, name=name))

    async def start_listeners(self) -> list:
        """The channels' own listeners (`<package>.intake.start`: inbound SMTP), where configured;
        their closers, for the server to call after its HTTP side has stopped."""
        closers = []
        for start in registry.parts(self.channels, "intake", "start", required=False):
            closer = await start(self)
            if closer is not None:
                closers.append(closer)
        return closers

    async def publish_effects(self, effects: Effects) -> None:
        if effects.wake_outbox:
            self.outbox.wake()      # this process's sender at once; the others through Redis
        await realtime.publish_effects(self.redis, self.keys, effects)

    async def __aexit__(self, *exc) -> None:
        self.stop_event.set()
        if (outbox := getattr(self, "outbox", None)) is not None:
            outbox.wake()   # its loop sees the stop now, not after its poll interval
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=15)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._exit.aclose()


def plugin_setups(names=PLUGINS):
    """`async setup(runtime)` of each subsystem that registers timer handlers and hooks.

    Called in every process (api and worker roles alike) before the workers start, so a timer
    kind or hook is known wherever timers fire or statuses arrive. A plugin that does not import
    stops the start (gateway.app.plugins.PluginError).
    """
    return plugins.load(names, "setup")


def default_handler(runtime: Runtime) -> Handler:
    choice = runtime.settings.default_handler
    if choice == "echo":
        return EchoHandler()
    if choice == "flow":
        from gateway.bot.flow_handler import build_flow_handler

        return build_flow_handler(runtime)
    return AgentQueueHandler()


def connect_redis(s: Settings) -> aioredis.Redis:
    """A client whose pool holds GATEWAY_REDIS_MAX_CONNECTIONS connections; a caller finding them all
    busy waits up to GATEWAY_REDIS_POOL_TIMEOUT seconds for one instead of failing at once.
    A `redis+cluster://` URL gives a RedisCluster client (that many connections per node)."""
    if redis_client.is_cluster_url(s.redis_url):
        return redis_client.connect_cluster(s.redis_url, max_connections=s.redis_max_connections)
    pool = aioredis.BlockingConnectionPool.from_url(
        s.redis_url, max_connections=s.redis_max_connections, timeout=s.redis_pool_timeout,
        socket_connect_timeout=5, health_check_interval=30)
    return aioredis.Redis.from_pool(pool)


async def _connect_pg(dsn: str, attempts: int = 30, pooler: str = "none") -> asyncpg.Pool:
    for attempt in range(1, attempts + 1):
        try:
            return await db.create_pool(dsn, timeout=5, pooler=pooler)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if attempt == attempts:
                raise
            log.warning("postgres not reachable yet, retrying", attempt=attempt, error=str(exc))
            await asyncio.sleep(1.0)
    raise RuntimeError("unreachable")
