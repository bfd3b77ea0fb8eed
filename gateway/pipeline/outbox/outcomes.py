"""What follows from a final provider answer beyond closing the row: opt-outs, fallbacks, invalid
addresses and dead letters, each written in one transaction with the row's outcome."""
from __future__ import annotations

from dataclasses import replace

import asyncpg

from gateway.app.log import get_logger
from gateway.app.metrics import OUTBOX_DEAD_LETTERS
from gateway.app.settings import Settings
from gateway.channels.modes import routing_policy
from gateway.domain import consent, routing, thread
from gateway.domain.types import Channel, Purpose, SendResult
from gateway.pipeline.outbox import store

log = get_logger(__name__)


async def opted_out(pool: asyncpg.Pool, row, result: SendResult) -> bool:
    """The provider says the recipient unsubscribed there: consent off for every purpose, or only for
    marketing when the provider says that is all they stopped (`extra["opted_out_of"]`)."""
    purpose = consent.MARKETING if result.extra.get("opted_out_of") == "marketing" else consent.ALL
    async with pool.acquire() as conn, conn.transaction():
        if not await store.finish(conn, row, state="failed", status="failed", error_code=result.error_code,
                                  error_message=result.error_message):
            return False
        outcome = await consent.provider_opt_out(
            conn, kind=row["payload"]["kind"],
            address=row["to_address"], channel=row["channel"], code=result.error_code, purpose=purpose)
        await thread.add_event(conn, row["conversation_id"], outcome.summary, event=outcome.event,
                               details=outcome.details)
    return True


async def undeliverable(pool: asyncpg.Pool, row, result: SendResult) -> bool:
    """The provider says the address cannot receive anything (Twilio 21211): later messages to it
    fail at once instead of each being tried, and agents see why in the thread."""
    async with pool.acquire() as conn, conn.transaction():
        if not await store.finish(conn, row, state="failed", status="failed", error_code=result.error_code,
                                  error_message=result.error_message):
            return False
        await store.mark_undeliverable(conn, row["channel"], row["to_address"], result.error_code or "invalid",
                                       result.error_message)
        await thread.add_event(conn, row["conversation_id"],
                               f"{row['to_address']} cannot receive {row['channel']} messages "
                               f"({result.error_code}: {result.error_message}); no more will be tried",
                               event="address_undeliverable",
                               details={"channel": row["channel"], "address": row["to_address"],
                                        "error_code": result.error_code, "message_id": row["message_id"]})
    return True


async def dead_letter(pool: asyncpg.Pool, row, result: SendResult, provider: str) -> bool:
    """Give up after the last attempt: the message fails, the thread says so, the log names it."""
    code = result.error_code or "dead_letter"
    async with pool.acquire() as conn, conn.transaction():
        if not await store.finish(conn, row, state="dead", status="failed", error_code=code,
                                  error_message=f"gave up after {row['attempts']} attempts: {result.error_message}"):
            return False
        await thread.add_event(conn, row["conversation_id"],
                               f"Message {row['seq']} to {row['to_address']} was not delivered after "
                               f"{row['attempts']} attempts ({code}); it can be requeued",
                               event="dead_letter",
                               details={"message_id": row["message_id"], "outbox_id": row["id"],
                                        "channel": row["channel"], "error_code": code,
                                        "attempts": row["attempts"]})
    OUTBOX_DEAD_LETTERS.labels(provider, code).inc()
    log.warning("outbox dead-lettered", conversation_id=row["conversation_id"], message_id=row["message_id"],
                outbox_id=row["id"], recipient=row["to_address"], channel=row["channel"], provider=provider,
                error_code=code, attempts=row["attempts"], error=result.error_message)
    return True


async def fall_back(pool: asyncpg.Pool, settings: Settings, row, result: SendResult,
                    effects: thread.Effects) -> tuple[bool, Channel | None]:
    """Close the row and queue the same content on another route (e.g. SMS when WhatsApp cannot
    reach them); returns (row closed by us, the channel chosen or None: the thread says so)."""
    failed_channel = Channel(row["channel"])
    async with pool.acquire() as conn, conn.transaction():
        if not await store.finish(conn, row, state="failed", status="failed", error_code=result.error_code,
                                  error_message=result.error_message):
            return False, None
        msg = await conn.fetchrow("SELECT * FROM messages WHERE id = $1", row["message_id"])
        content = dict(msg["content"] or {})
        tried = set(content.get("fallback_tried", [])) | {failed_channel.value}
        # the deployment's policy (live channels, consent regimes), but no template on the way down
        policy = replace(routing_policy(settings), whatsapp_template_available=False)
        options = await thread.route_options(conn, row["conversation_id"], purpose=Purpose(row["purpose"]),
                                             policy=policy)
        candidates = routing.prefer_live([c for c in options.routes if c.value not in tried
                                          and c is not Channel.WEBCHAT], options.live)
        if not candidates:
            await thread.add_event(conn, row["conversation_id"],
                                   f"Message {msg['seq']} could not be delivered on any channel",
                                   event="undeliverable", details={"message_id": msg["id"], "tried": sorted(tried)})
            return True, None
        content["fallback_tried"] = sorted(tried)
        content["fallback_from"] = msg["id"]
        content.pop("needs_template", None)
        keep = {k: v for k, v in content.items() if k in ("buttons", "button_label", "attachments",
                                                            "subject", "html", "compliance",
                                                            "fallback_tried", "fallback_from")}
        new_id = await thread.queue_outbound(
            conn, row["conversation_id"], text=msg["body"], author_type=msg["author_type"] or "system",
            author_id=msg["author_id"], purpose=Purpose(row["purpose"]), channel=candidates[0],
            extra=keep, effects=effects, max_attempts=row["max_attempts"], policy=policy)
        await conn.execute("UPDATE outbox SET fallback_from = $2 WHERE message_id = $1", new_id, row["id"])
    log.info("outbound fell back to another channel", conversation_id=row["conversation_id"],
             from_channel=failed_channel.value, to_channel=candidates[0].value, reason=result.error_code)
    return True, candidates[0]
