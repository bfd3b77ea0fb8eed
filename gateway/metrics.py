"""Prometheus metrics: counters bumped where things happen, gauges read from PostgreSQL on scrape."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

INBOUND = Counter("gateway_inbound_total", "Inbound messages received", ["channel", "result"], registry=REGISTRY)
REJECTED = Counter("gateway_rejected_total", "Rejected webhook/API requests", ["endpoint", "reason"],
                   registry=REGISTRY)
STATUS_UPDATES = Counter("gateway_status_updates_total", "Delivery status reports", ["channel", "applied"],
                         registry=REGISTRY)
INGEST_SECONDS = Histogram("gateway_ingest_seconds", "Time to commit one inbound message", ["channel"],
                           registry=REGISTRY)
OUTBOX_PENDING = Gauge("gateway_outbox_pending", "Outbound messages waiting to be sent", registry=REGISTRY)
OUTBOX_DEAD = Gauge("gateway_outbox_dead", "Outbound messages dead-lettered", registry=REGISTRY)
UNPROCESSED = Gauge("gateway_inbound_unprocessed", "Inbound messages not yet processed", registry=REGISTRY)
TIMERS_DUE = Gauge("gateway_timers_due", "Timers due and not yet fired", registry=REGISTRY)
AGENT_QUEUE = Gauge("gateway_agent_queue", "Open conversations waiting for an agent", registry=REGISTRY)


async def refresh(runtime) -> None:
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
