"""The outbox sender: delivers queued outbound messages through the channel senders.

Rows are claimed with FOR UPDATE SKIP LOCKED by any number of senders; a claim carries a lease
(`locked_until`) so a sender killed mid-send releases its rows when the lease runs out. Consent is
checked here, at send time. Transient errors are retried with exponential backoff and jitter up to
`max_attempts`, then dead-lettered; provider rate limits slow the sender down; a channel that cannot
reach the customer now (WhatsApp window, not on WhatsApp) falls back to another route.
"""
from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from dataclasses import dataclass
from typing import Mapping

import asyncpg
import redis.asyncio as aioredis

from gateway import consent, realtime, routing, thread
from gateway.channels.base import ChannelSender
from gateway.log import get_logger
from gateway.queue import Keys
from gateway.settings import Settings
from gateway.types import (Attachment, Button, Channel, OutgoingMessage, Purpose, SendOutcome,
                           SendResult, TemplateRef)

log = get_logger(__name__)

LEASE_SECONDS = 120


def backoff_delay(attempt: int, *, base: float, cap: float, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter; a provider's Retry-After is a floor."""
    r = rng or random
    delay = r.uniform(0, min(cap, base * (2 ** max(attempt - 1, 0))))
    delay = max(delay, base / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass
class SendStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    fallbacks: int = 0


class OutboxSender:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis | None, keys: Keys, settings: Settings,
                 senders: Mapping[Channel, ChannelSender], *, concurrency: int = 32,
                 rate_limiter=None):
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.senders = dict(senders)
        self.concurrency = concurrency
        self.rate_limiter = rate_limiter
        self.stats = SendStats()
        self._wake = asyncio.Event()
        self._events: list[tuple[str, dict]] = []   # realtime events of this pass, published together

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event, poll_interval: float = 0.5) -> None:
        listener = asyncio.create_task(self._listen_for_wakeups(stop)) if self.redis is not None else None
        last_reap = 0.0
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() - last_reap > 10:
                        last_reap = time.monotonic()
                        await self.release_expired_leases()
                    n = await self.send_due()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("outbox pass failed", error=str(exc))
                    n = 0
                if n:
                    continue  # more may be due right away
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), poll_interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            if listener is not None:
                listener.cancel()

    async def _listen_for_wakeups(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(self.keys.outbox_wake())
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(1.0)

    async def release_expired_leases(self) -> int:
        result = await self.pool.execute(
            """UPDATE outbox SET state = 'pending', locked_until = NULL, updated_at = now()
               WHERE state = 'sending' AND locked_until < now()""")
        return int(result.split()[-1])

    async def claim(self, limit: int) -> list[asyncpg.Record]:
        """Lease up to `limit` due rows, each with what sending needs from its message (one round trip)."""
        return await self.pool.fetch(
            """WITH due AS (
                   SELECT id FROM outbox o1 WHERE state = 'pending' AND next_attempt_at <= now()
                       -- in order per conversation: not while an earlier message is in flight or
                       -- waiting for a retry (earlier ones that are due go in this same batch, first)
                       AND NOT EXISTS (SELECT 1 FROM outbox o0 WHERE o0.conversation_id = o1.conversation_id
                                       AND o0.id < o1.id AND o0.state IN ('pending', 'sending')
                                       AND (o0.state = 'sending' OR o0.next_attempt_at > now()))
                   ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED),
               claimed AS (
                   UPDATE outbox o SET state = 'sending', attempts = o.attempts + 1,
                       locked_until = now() + make_interval(secs => $2), updated_at = now()
                   FROM due WHERE o.id = due.id RETURNING o.*)
               SELECT c.*, m.body, m.content, m.seq, m.author_type, m.author_id
               FROM claimed c JOIN messages m ON m.id = c.message_id""", limit, LEASE_SECONDS)

    async def send_due(self) -> int:
        rows = await self.claim(self.settings.outbox_batch)
        if not rows:
            return 0
        sem = asyncio.Semaphore(self.concurrency)
        by_conversation: dict[int, list] = {}
        for row in rows:
            by_conversation.setdefault(row["conversation_id"], []).append(row)

        async def in_order(conversation_rows):
            # one conversation's messages leave one after the other, in the order they were written
            async with sem:
                ordered = sorted(conversation_rows, key=lambda r: r["id"])
                for i, row in enumerate(ordered):
                    try:
                        finished = await self.deliver(row)
                    except Exception as exc:  # never lose the row: the lease expires and it is retried
                        log.exception("outbox delivery crashed", outbox_id=row["id"], error=str(exc))
                        finished = False
                    if not finished:  # a retry is pending: later messages wait for it
                        await self._unclaim([r["id"] for r in ordered[i + 1:]])
                        break

        await asyncio.gather(*(in_order(group) for group in by_conversation.values()))
        await self._publish()
        return len(rows)

    async def _unclaim(self, ids: list[int]) -> None:
        if ids:
            await self.pool.execute(
                """UPDATE outbox SET state = 'pending', locked_until = NULL, attempts = attempts - 1
                   WHERE id = ANY($1::bigint[]) AND state = 'sending'""", ids)

    async def deliver(self, row: asyncpg.Record) -> bool:
        """Send one claimed row. True when the row is finished (sent, failed, skipped, dead)."""
        content = row["content"] or {}
        channel = Channel(row["channel"])
        kind = (row["payload"] or {}).get("kind", "phone")
        reason = await consent.blocked_reason(
            self.pool, kind=kind, address=row["to_address"], channel=channel.value,
            purpose=row["purpose"], compliance=bool(content.get("compliance")))
        if reason:
            await self._finish(row, state="skipped", status="failed", error_code=reason,
                               error_message=f"not sent: {reason}")
            self.stats.skipped += 1
            return True
        sender = self.senders.get(channel)
        if sender is None:
            await self._finish(row, state="failed", status="failed", error_code="no_sender",
                               error_message=f"no sender configured for {channel.value}")
            self.stats.failed += 1
            return True
        outgoing = self.build_outgoing(row)
        if channel is Channel.EMAIL:
            from gateway.email_intake import outbound_fields

            async with self.pool.acquire() as conn:
                fields = await outbound_fields(conn, self.settings, row["conversation_id"], outgoing.subject)
            outgoing = dataclasses.replace(outgoing, **fields)
        if self.rate_limiter is not None:
            await self.rate_limiter.acquire(self.sender_key(channel))
        result = await sender.send(outgoing)
        return await self.record(row, result)

    def build_outgoing(self, row) -> OutgoingMessage:
        """The channel-neutral message to send, from a claimed row (outbox columns + message body)."""
        content = row["content"] or {}
        template = None
        if content.get("template"):
            t = content["template"]
            template = TemplateRef(t["name"], t.get("language", "en_US"), tuple(t.get("parameters", ())),
                                   t.get("variables", {}))
        elif content.get("needs_template"):
            template = self.reengage_template(row["body"])
        return OutgoingMessage(
            message_id=row["message_id"], channel=Channel(row["channel"]), to=row["to_address"], text=row["body"],
            attachments=tuple(Attachment(**a) for a in content.get("attachments", ())),
            buttons=tuple(Button(**b) for b in content.get("buttons", ())),
            button_label=content.get("button_label"),
            template=template, purpose=Purpose(row["purpose"]), subject=content.get("subject"),
            html=content.get("html"), in_reply_to=content.get("in_reply_to"),
            references=tuple(content.get("references", ())), reply_to=content.get("reply_to"),
            status_callback_url=self.status_callback_url(Channel(row["channel"])),
            metadata={"conversation_id": row["conversation_id"], "seq": row["seq"]},
        )

    def sender_key(self, channel: Channel) -> str:
        """Which of our senders (number, WhatsApp number id, mailbox) a channel sends from."""
        s = self.settings
        sender = {Channel.SMS: s.twilio_from_number or s.twilio_messaging_service_sid,
                  Channel.WHATSAPP: s.whatsapp_phone_number_id if s.whatsapp_cloud_enabled else s.twilio_whatsapp_from,
                  Channel.EMAIL: s.email_from}.get(channel)
        return f"{channel.value}:{sender or 'default'}"

    def reengage_template(self, text: str) -> TemplateRef | None:
        s = self.settings
        if s.whatsapp_cloud_enabled and s.whatsapp_reengage_template:
            return TemplateRef(s.whatsapp_reengage_template, s.whatsapp_template_language, (text,))
        if s.twilio_whatsapp_template_sid:
            return TemplateRef(s.twilio_whatsapp_template_sid, variables={"1": text})
        if s.whatsapp_reengage_template:
            return TemplateRef(s.whatsapp_reengage_template, s.whatsapp_template_language, (text,))
        return None

    def status_callback_url(self, channel: Channel) -> str | None:
        if channel in (Channel.SMS, Channel.WHATSAPP):
            return f"{self.settings.base_url}/webhooks/twilio/status"
        return None

    async def record(self, row, result: SendResult) -> bool:
        """Record a provider's answer. True when the row is finished, False when a retry is due."""
        outcome = result.outcome
        if outcome is SendOutcome.SENT:
            await self._finish(row, state="done", status=result.status or "sent",
                               provider_message_id=result.provider_message_id, segments=result.segments)
            self.stats.sent += 1
        elif outcome in (SendOutcome.RETRY, SendOutcome.THROTTLED):
            if outcome is SendOutcome.THROTTLED and self.rate_limiter is not None:
                await self.rate_limiter.penalize(self.sender_key(Channel(row["channel"])), result.retry_after)
            if row["attempts"] >= min(row["max_attempts"], self.settings.outbox_max_attempts):
                await self._finish(row, state="dead", status="failed", error_code=result.error_code or "dead_letter",
                                   error_message=f"gave up after {row['attempts']} attempts: {result.error_message}")
                self.stats.dead += 1
                log.warning("outbox dead-lettered", outbox_id=row["id"], error_code=result.error_code)
            else:
                delay = backoff_delay(row["attempts"], base=self.settings.outbox_base_delay,
                                      cap=self.settings.outbox_max_delay, retry_after=result.retry_after)
                await self.pool.execute(
                    """UPDATE outbox SET state = 'pending', locked_until = NULL, last_error = $2,
                           next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
                       WHERE id = $1""", row["id"], f"{result.error_code}: {result.error_message}", delay)
                self.stats.retried += 1
                return False
        elif outcome is SendOutcome.OPTED_OUT:
            async with self.pool.acquire() as conn, conn.transaction():
                await consent.set_consent(conn, kind=(row["payload"] or {}).get("kind", "phone"),
                                          address=row["to_address"], channel=row["channel"],
                                          purpose=consent.ALL, granted=False,
                                          source=f"provider:{result.error_code}")
                await thread.add_event(conn, row["conversation_id"],
                                       f"Provider reports {row['to_address']} opted out on {row['channel']}",
                                       event="opted_out", details={"channel": row["channel"],
                                                                   "source": result.error_code})
            await self._finish(row, state="failed", status="failed", error_code=result.error_code,
                               error_message=result.error_message)
            self.stats.failed += 1
        elif outcome is SendOutcome.FALLBACK:
            await self._finish(row, state="failed", status="failed", error_code=result.error_code,
                               error_message=result.error_message)
            await self.fall_back(row, result)
        else:
            await self._finish(row, state="failed", status="failed", error_code=result.error_code,
                               error_message=result.error_message)
            self.stats.failed += 1
        return True

    async def fall_back(self, row, result: SendResult) -> None:
        """Re-send the same content on another route (e.g. SMS when WhatsApp cannot reach them)."""
        failed_channel = Channel(row["channel"])
        effects = thread.Effects()
        async with self.pool.acquire() as conn, conn.transaction():
            msg = await conn.fetchrow("SELECT * FROM messages WHERE id = $1", row["message_id"])
            content = dict(msg["content"] or {})
            tried = set(content.get("fallback_tried", [])) | {failed_channel.value}
            options = await thread.route_options(
                conn, row["conversation_id"], purpose=Purpose(row["purpose"]),
                policy=routing.Policy(False, routing.policy_from_settings(self.settings).live))
            candidates = [c for c in options.routes if c.value not in tried and c is not Channel.WEBCHAT]
            if not candidates:
                await thread.add_event(conn, row["conversation_id"],
                                       f"Message {msg['seq']} could not be delivered on any channel",
                                       event="undeliverable", details={"message_id": msg["id"],
                                                                       "tried": sorted(tried)})
                self.stats.failed += 1
                return
            content["fallback_tried"] = sorted(tried)
            content["fallback_from"] = msg["id"]
            content.pop("needs_template", None)
            keep = {k: v for k, v in content.items() if k in ("buttons", "button_label", "attachments",
                                                                "subject", "html", "compliance",
                                                                "fallback_tried", "fallback_from")}
            new_id = await thread.queue_outbound(
                conn, row["conversation_id"], text=msg["body"], author_type=msg["author_type"] or "system",
                author_id=msg["author_id"], purpose=Purpose(row["purpose"]), channel=candidates[0],
                extra=keep, effects=effects, max_attempts=row["max_attempts"])
            await conn.execute("UPDATE outbox SET fallback_from = $2 WHERE message_id = $1", new_id, row["id"])
        self.stats.fallbacks += 1
        log.info("outbound fell back to another channel", from_channel=failed_channel.value,
                 to_channel=candidates[0].value, reason=result.error_code)
        if self.redis is not None:
            await realtime.publish(self.redis, self.keys, effects.events)
        self.wake()

    async def _finish(self, row, *, state: str, status: str, provider_message_id: str | None = None,
                      error_code: str | None = None, error_message: str | None = None,
                      segments: int | None = None) -> None:
        """Close the outbox row and record the outcome on its message: one statement, one round trip."""
        await self.pool.execute(
            """WITH done AS (
                   UPDATE outbox SET state = $2, locked_until = NULL, updated_at = now(),
                       last_error = coalesce($7, last_error) WHERE id = $1 RETURNING message_id)
               UPDATE messages SET status = CASE WHEN status IN ('delivered', 'read') THEN status ELSE $3 END,
                   provider_message_id = coalesce($4, provider_message_id),
                   error_code = $5, error_message = $6, segments = coalesce($8, segments),
                   status_updated_at = now()
               WHERE id = (SELECT message_id FROM done)""",
            row["id"], state, status, provider_message_id, error_code, error_message,
            f"{error_code}: {error_message}" if error_code else None, segments)
        self._events.append(("message.status", {"conversation_id": row["conversation_id"],
                                                "message_id": row["message_id"], "status": status,
                                                "error_code": error_code}))

    async def _publish(self) -> None:
        events, self._events = self._events, []
        if events and self.redis is not None:
            await realtime.publish(self.redis, self.keys, events)
