"""Prometheus metrics: counters bumped where things happen, gauges read from PostgreSQL.

The gauges cost five counts over big tables, so a scrape recounts only when the last count is older
than GATEWAY_METRICS_CACHE_SECONDS, and concurrent scrapes share one recount (`GaugeCache`).
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.app.log import get_logger

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)

REGISTRY = CollectorRegistry()

INBOUND = Counter("gateway_inbound_total", "Inbound messages received", ["channel", "result"], registry=REGISTRY)
REJECTED = Counter("gateway_rejected_total", "Rejected webhook/API requests", ["endpoint", "reason"],
                   registry=REGISTRY)
STATUS_UPDATES = Counter("gateway_status_updates_total", "Delivery status reports", ["channel", "applied"],
                         registry=REGISTRY)
INGEST_SECONDS = Histogram("gateway_ingest_seconds", "Time to commit one inbound message", ["channel"],
                           registry=REGISTRY)
OUTBOX_ATTEMPTS = Counter("gateway_outbox_attempts_total",
                          "Provider send attempts by outcome (sent, retry, throttled, failed, ...) and error code",
                          ["provider", "outcome", "error"], registry=REGISTRY)
OUTBOX_DEAD_LETTERS = Counter("gateway_outbox_dead_letters_total", "Messages given up after their last attempt",
                              ["provider", "error"], registry=REGISTRY)
OUTBOX_LOOKUPS = Counter("gateway_outbox_lookups_total",
                         "Attempts of unknown outcome looked up at the provider before resending",
                         ["provider", "found"], registry=REGISTRY)   # found: yes | no | failed
OUTBOX_LEASES_LOST = Counter("gateway_outbox_leases_lost_total",
                             "Sends whose lease another sender took over before they finished", ["provider"],
                             registry=REGISTRY)
OUTBOX_PAUSES = Counter("gateway_outbox_pauses_total", "Sender pauses (provider 429/Retry-After, 5xx storms)",
                        ["sender", "reason"], registry=REGISTRY)
OUTBOX_PENDING = Gauge("gateway_outbox_pending", "Outbound messages waiting to be sent", registry=REGISTRY)
OUTBOX_DEAD = Gauge("gateway_outbox_dead", "Outbound messages dead-lettered", registry=REGISTRY)
UNPROCESSED = Gauge("gateway_inbound_unprocessed", "Inbound messages not yet processed", registry=REGISTRY)
TIMERS_DUE = Gauge("gateway_timers_due", "Timers due and not yet fired", registry=REGISTRY)
AGENT_QUEUE = Gauge("gateway_agent_queue", "Open conversations waiting for an agent", registry=REGISTRY)
GAUGES_AGE = Gauge("gateway_metrics_gauges_age_seconds", "Age of the database-derived gauges at this scrape",
                   registry=REGISTRY)
REPLIES_DROPPED = Counter("gateway_replies_dropped_total",
                          "Bot and system replies no channel could carry (consent, closed window, no address)",
                          ["reasons"], registry=REGISTRY)
FEED_EVENTS_READ = Counter("gateway_feed_events_read_total",
                           "Events this API process read from the realtime stream for its agents' sockets (none "
                           "while no socket listens)", registry=REGISTRY)
REALTIME_DROPPED = Counter("gateway_realtime_dropped_total",
                           "Realtime events (agents' feed, chat pokes) that could not be published", ["reason"],
                           registry=REGISTRY)


class GaugeCache:
    """Recount the database gauges at most every `max_age` seconds; one recount at a time."""

    def __init__(self, max_age: float, clock=time.monotonic):
        self.max_age = max_age
        self.clock = clock
        self.counted_at: float | None = None
        self.recounts = 0
        self._lock = asyncio.Lock()

    async def refresh(self, runtime: Runtime) -> None:
        if self._fresh():
            GAUGES_AGE.set(self.clock() - self.counted_at)
            return
        async with self._lock:
            if not self._fresh():   # another scrape may have recounted while we waited
                try:
                    async with asyncio.timeout(5):
                        await refresh(runtime)
                except Exception as exc:   # PostgreSQL away: the counters still go out, gauges as last counted
                    log.warning("metrics gauges not recounted; serving the last counts", error=str(exc))
                else:
                    self.counted_at = self.clock()
                    self.recounts += 1
        if self.counted_at is not None:
            GAUGES_AGE.set(self.clock() - self.counted_at)

    def _fresh(self) -> bool:
        return self.counted_at is not None and self.clock() - self.counted_at < self.max_age


async def refresh(runtime: Runtime) -> None:
    row = await runtime.pool.fetchrow(
        """SELECT
             (SELECT count(*) FROM outbox WHERE state = 'pending') AS pending,
             (SELECT count(*) FROM outbox WHERE state = 'dead') AS dead,
             (SELECT count(*) FROM messages WHERE direction = 'in' AND processed_at IS NULL) AS unprocessed,
             (SELECT count(*) FROM timers WHERE state = 'pending' AND due_at <= now()) AS due,
             (SELECT count(*) FROM conversations WHERE mode = 'agent' AND status = 'open'
                AND waiting_since IS NOT NULL) AS queue""")
    OUTBOX_PENDING.set(row["pending"])
    OUTBOX_DEAD.set(row["dead"])
    UNPROCESSED.set(row["unprocessed"])
    TIMERS_DUE.set(row["due"])
    AGENT_QUEUE.set(row["queue"])
