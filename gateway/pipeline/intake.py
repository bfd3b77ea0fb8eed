"""Accepting an inbound message: commit it, then enqueue its conversation.

Webhook handlers call `accept` and answer 2xx only after it returns: the message is durable in
PostgreSQL by then. A failed enqueue is logged, not fatal: the sweeper finds the message.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.app.log import get_logger
from gateway.app.metrics import INBOUND, INGEST_SECONDS, STATUS_UPDATES
from gateway.domain import contacts, inputs, status, thread
from gateway.domain.types import Inbound, StatusUpdate
from gateway.pipeline import queue
from gateway.pipeline.ingest import IngestResult, ingest_inbound, ingest_item

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)


async def accept(rt: Runtime, inbound: Inbound, *, contact_id: int | None = None,
                 contact_ref: contacts.ContactRef | None = None) -> IngestResult:
    """Store the message (and, with `contact_ref`, its contact) in one transaction, then enqueue.

    Raises InputError (gateway.domain.inputs) or AddressError for a message that cannot be stored; that
    message alone fails, never the others it would have been batched with. (`ingest_item` checks
    and cleans the message.)"""
    channel = inbound.channel.value
    with INGEST_SECONDS.labels(channel).time():
        if contact_ref is None and rt.batcher is not None:
            result = await rt.batcher.submit(ingest_item(inbound, contact_id))  # enqueued after its commit
        else:
            async with rt.pool.acquire(timeout=5) as conn:
                async with conn.transaction():
                    if contact_ref is not None:
                        contact_id = await contacts.resolve(conn, contact_ref)
                    result = await ingest_inbound(conn, inbound, contact_id=contact_id)
            if not result.duplicate:
                await enqueue_committed(rt, [result.conversation_id])
    accepted(channel, result)
    return result


async def enqueue_committed(rt: Runtime, conversation_ids: list[int]) -> None:
    """Tell the workers that these conversations have committed messages to process (never raises)."""
    await queue.enqueue_or_log(rt.redis, rt.keys, conversation_ids)


def accepted(channel: str, result: IngestResult) -> None:
    """Count and log an inbound message that is now durable (a duplicate of a stored one too)."""
    INBOUND.labels(channel, "duplicate" if result.duplicate else "stored").inc()
    log.info("inbound accepted", channel=channel, conversation_id=result.conversation_id,
             message_id=result.message_id, duplicate=result.duplicate)


async def record_status(rt: Runtime, update: StatusUpdate) -> bool:
    """Apply a provider's delivery status monotonically (kept for later when it arrived before the
    send's answer); a provider opt-out code revokes consent. Every channel's status callback calls this.

    Raises InputError (a PayloadError) for a report whose ids cannot be stored."""
    update = inputs.clean_status(update)
    effects = thread.Effects()
    async with rt.pool.acquire(timeout=5) as conn, conn.transaction():
        applied = await status.record(conn, update, rt.hooks, effects)
    STATUS_UPDATES.labels(update.channel.value, "yes" if applied else "no").inc()
    await rt.publish_effects(effects)
    return applied is not None
