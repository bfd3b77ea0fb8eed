"""The outbox sender: delivers queued outbound messages through the channel senders.

Any number of sender processes share the work. Each one:
  - claims only conversation heads (a message goes after the previous one of its conversation is
    accepted or finally failed), only as many as it can start now (free slots of that provider
    sender, tokens of its rate limit, no pause), with a lease owned by a claim token;
  - runs every send as its own task, so a slow or hung send holds only its own conversation and
    slot, with the provider's own timeout;
  - beats a heartbeat that also renews the leases it holds, and puts back the rows of senders
    whose heartbeat stopped (killed) or whose lease ran out (frozen);
  - writes a durable "attempt started" mark before each provider call: an attempt whose outcome is
    unknown (crash, timeout, dropped connection) is looked up at the provider before it is resent,
    where the provider allows it (Twilio); elsewhere it is resent (at least once, see README).
A provider's 429 (or 503 with Retry-After) pauses that sender for every process; a run of 5xx
backs it off. Consent is checked at send time. Transient errors are retried with exponential
backoff and jitter up to `max_attempts`, then dead-lettered (thread event, log, metric, API).
"""
from __future__ import annotations

import asyncio
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Mapping

import asyncpg
import redis.asyncio as aioredis

from gateway.app.log import get_logger
from gateway.app.metrics import OUTBOX_ATTEMPTS, OUTBOX_LEASES_LOST, OUTBOX_LOOKUPS, OUTBOX_PAUSES
from gateway.app.settings import Settings
from gateway.channels.base import ChannelSender
from gateway.domain import consent, status, thread
from gateway.domain.types import Channel, OutgoingMessage, SendOutcome, SendResult
from gateway.infra import realtime
from gateway.pipeline.outbox import outcomes, store
from gateway.pipeline.outbox.coalesce import Coalescer
from gateway.pipeline.outbox.compose import build_outgoing, sender_key
from gateway.pipeline.outbox.gate import SenderGate
from gateway.pipeline.queue import Keys

log = get_logger(__name__)

HEARTBEAT_EVERY = 1.0       # seconds between heartbeats (each renews the leases held)
RECOVER_EVERY = 2.0         # seconds between orphan sweeps
LEASE_MARGIN = 5.0          # a lease outlives the provider timeout by this much
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

# A channel's last step before a send, when the message depends on its conversation (email: subject,
# threading headers, Reply-To, display name): (connection, settings, outbox row, message) -> message.
# The runtime passes one per channel that needs it, so the outbox knows no channel in particular.
PrepareOutgoing = Callable[[asyncpg.Connection, Settings, Mapping, OutgoingMessage], Awaitable[OutgoingMessage]]


def backoff_delay(attempt: int, *, base: float, cap: float, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter; a provider's Retry-After is a floor."""
    r = rng or random
    delay = r.uniform(0, min(cap, base * (2 ** max(attempt - 1, 0))))
    delay = max(delay, base / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def provider_name(sender: object | None, channel: Channel) -> str:
    """The metrics label of a sender: its `provider` attribute, else the channel."""
    return getattr(sender, "provider", None) or channel.value


def sender_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class OutboxSender:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis | None, keys: Keys, settings: Settings,
                 senders: Mapping[Channel, ChannelSender], *, concurrency: int | None = None,
                 rate_limiter=None, hooks=None, name: str | None = None,
                 prepare: Mapping[Channel, PrepareOutgoing] | None = None, inbox_senders=None):
        self.pool = pool
        self.prepare = dict(prepare or {})
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.senders = dict(senders)
        self.inbox_senders = inbox_senders   # gateway.inboxes.senders: an inbox's own credentials
        self.rate_limiter = rate_limiter
        self.hooks = hooks
        self.name = name or sender_name()
        self.gate = SenderGate(concurrency or settings.outbox_concurrency, settings.outbox_max_concurrency)
        timeouts = [getattr(s, "timeout_seconds", 10.0) for s in self.senders.values()]
        self.lease = max(timeouts, default=10.0) + LEASE_MARGIN
        self._held: dict[int, uuid.UUID] = {}          # rows being sent by this process
        self._tasks: set[asyncio.Task] = set()
        # the attempt marks and the finishes of concurrent sends share round trips
        self._marks = Coalescer(self._write_marks, key=lambda item: item[0])
        self._finishes = Coalescer(self._write_finishes, key=lambda item: item[0]["id"])
        self._registered = False
        self._remote_checked: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._events: list[tuple[str, dict]] = []   # realtime events, published together

    def wake(self) -> None:
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, poll_interval: float = 0.5) -> None:
        listener = asyncio.create_task(self._listen_for_wakeups(stop)) if self.redis is not None else None
        keepalive = asyncio.create_task(self._keepalive(stop))
        log.info("outbox sender started", sender=self.name, concurrency=self.gate.concurrency, lease=self.lease)
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    n = await self.dispatch()
                    await self._publish()
                except DB_ERRORS as exc:
                    log.warning("outbox pass failed", error=str(exc))
                    n = 0
                except Exception as exc:  # the loop must outlive any one pass (pool timeouts, Redis)
                    log.exception("outbox pass crashed", error=str(exc))
                    n = 0
                    await asyncio.sleep(1.0)
                if n:
                    await asyncio.sleep(0)
                    continue  # more may be claimable right away
                try:
                    await asyncio.wait_for(self._wake.wait(), poll_interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            for task in (listener, keepalive):
                if task is not None:
                    task.cancel()
            await self._stop_sending()

    async def _stop_sending(self, timeout: float = 10.0) -> None:
        """Let sends in flight finish; give back what did not, then leave (others recover at once)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._publish()
            await store.forget_sender(self.pool, self.name)
        except DB_ERRORS as exc:
            log.warning("outbox sender could not sign off", error=str(exc))

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

    async def _keepalive(self, stop: asyncio.Event) -> None:
        last_recover = 0.0
        while not stop.is_set():
            try:
                await self._beat()
                if time.monotonic() - last_recover >= RECOVER_EVERY:
                    last_recover = time.monotonic()
                    if await self.release_expired_leases():
                        self.wake()
                await self.apply_early_statuses()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a missed beat is retried; missing several loses our leases
                log.warning("outbox heartbeat failed", error=str(exc))
            try:
                await asyncio.wait_for(stop.wait(), HEARTBEAT_EVERY)
            except asyncio.TimeoutError:
                pass

    async def _beat(self) -> None:
        held = list(self._held.items())
        owned = await store.heartbeat(self.pool, self.name, self.lease, held)
        self._registered = True
        for row_id, token in held:
            if row_id not in owned and self._held.get(row_id) == token:
                log.warning("outbox lease lost while sending", outbox_id=row_id, sender=self.name)

    async def release_expired_leases(self) -> int:
        """Put back rows of dead senders (no heartbeat) and expired leases; returns how many."""
        n = await store.recover_orphans(self.pool, self.settings.outbox_orphan_after, self.lease)
        if n:
            log.warning("outbox rows recovered from a stopped sender", rows=n)
        return n

    async def apply_early_statuses(self) -> int:
        """Apply status reports that arrived before their send's answer, now that the id is known."""
        effects = thread.Effects()
        async with self.pool.acquire() as conn:
            n = await status.apply_early(conn, self.hooks, effects)
        if n and self.redis is not None:
            await realtime.publish(self.redis, self.keys, effects.events)
        return n

    # --- claiming -------------------------------------------------------------------------------
    async def claim(self, limit: int, channels: list[str] | None = None) -> list[asyncpg.Record]:
        """Lease up to `limit` due conversation heads (all channels unless named)."""
        if not self._registered:
            await self._beat()
        return await store.claim(self.pool, limit=limit, lease=self.lease, owner=self.name,
                                 channels=channels or [c.value for c in Channel])

    async def _claimable(self) -> list[tuple[list[str], int]]:
        """(channels, how many rows) this process may claim now: free slots, rate tokens, no pause."""
        unlimited: list[tuple[str, int]] = []
        groups: list[tuple[list[str], int]] = []
        for channel in Channel:
            key = sender_key(self.settings, channel)
            free = self.gate.free(key)
            if free <= 0:
                continue
            rated = self.rate_limiter is not None and self.rate_limiter.rate_for(key) > 0
            now = time.monotonic()
            if self.rate_limiter is not None and (rated or now - self._remote_checked.get(key, 0.0) > 0.25):
                self._remote_checked[key] = now
                tokens, pause = await self.rate_limiter.available(key)
                if pause > 0:
                    self.gate.pause(key, pause)   # another process saw the 429
                    continue
                if rated:
                    if tokens > 0:
                        groups.append(([channel.value], min(free, tokens)))
                    continue
            unlimited.append((channel.value, free))
        if unlimited:
            groups.insert(0, ([c for c, _ in unlimited], min(f for _, f in unlimited)))
        return groups

    async def dispatch(self, due_by=None) -> int:
        """Claim what can start now and start each send as its own task; returns rows claimed."""
        total = 0
        for channels, limit in await self._claimable():
            if not self._registered:
                await self._beat()
            limit = min(limit, self.settings.outbox_batch)
            rows = await store.claim(self.pool, limit=limit, lease=self.lease, channels=channels, owner=self.name,
                                     due_by=due_by)
            claimed = {row["channel"] for row in rows}
            for channel in channels:   # a full claim: more is waiting than slots (more may open)
                self.gate.backlogged[sender_key(self.settings, Channel(channel))] = (
                    len(rows) == limit and channel in claimed)
            for row in rows:
                self._start(row)
            total += len(rows)
        return total

    def _start(self, row) -> None:
        key = sender_key(self.settings, Channel(row["channel"]))
        self.gate.started(key)
        self._held[row["id"]] = row["claim_token"]
        task = asyncio.create_task(self._send_one(row, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_one(self, row, key: str) -> None:
        try:
            await self.deliver(row)
        except asyncio.CancelledError:
            await self._give_back(row, delay=0.0)
            raise
        except Exception as exc:  # never lose the row: it goes back with a delay
            log.exception("outbox delivery crashed", outbox_id=row["id"], conversation_id=row["conversation_id"],
                          error=str(exc))
            await self._give_back(row, delay=self.settings.outbox_base_delay)
        finally:
            self.gate.ended(key)
            self._held.pop(row["id"], None)
            self._wake.set()

    async def _give_back(self, row, delay: float) -> None:
        try:
            await asyncio.shield(store.release(self.pool, row, delay, count_attempt=True))
        except Exception as exc:  # the lease expires and the row is recovered anyway
            log.warning("outbox row not given back", outbox_id=row["id"], error=str(exc))

    async def send_due(self) -> int:
        """Send everything due now, waiting for the sends (tests and one-shot tools); returns rows.

        Passes repeat while they make progress (the next message of a conversation becomes due
        when the previous one finishes); a row retried during the call waits for a later call.
        """
        started = await self.pool.fetchval("SELECT now()")
        total = 0
        while True:
            n = await self.dispatch(due_by=started)
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await self._publish()
            if not n:
                return total
            total += n

    # --- one send -------------------------------------------------------------------------------
    async def deliver(self, row) -> bool:
        """Send one claimed row. True when the row is finished (sent, failed, skipped, dead)."""
        content = row["content"] or {}
        channel = Channel(row["channel"])
        if row["undeliverable_code"]:
            return await self._finish(row, state="failed", status="failed", error_code="address_undeliverable",
                                      error_message=f"{row['to_address']} cannot receive {channel.value} messages "
                                                    f"(provider error {row['undeliverable_code']})")
        # consent as the claim read it, a moment ago (a STOP stored since then stops the next claim)
        reason = None if content.get("compliance") else consent.decide_from_facts(
            row, purpose=row["purpose"], channel=channel.value, regimes=self.settings.consent_regimes)
        if reason:
            return await self._finish(row, state="skipped", status="failed", error_code=reason,
                                      error_message=f"not sent: {reason}")
        sender = self.senders.get(channel)
        if sender is not None and self.inbox_senders is not None and row.get("inbox_id") is not None:
            sender = await self.inbox_senders.sender_for(row["inbox_id"], sender)
        if sender is None:
            return await self._finish(row, state="failed", status="failed", error_code="no_sender",
                                      error_message=f"no sender configured for {channel.value}")
        outgoing = build_outgoing(self.settings, row)
        prepare = self.prepare.get(channel)
        if prepare is not None:
            async with self.pool.acquire() as conn:
                outgoing = await prepare(conn, self.settings, row, outgoing)
        key = sender_key(self.settings, channel)
        if self.rate_limiter is not None:   # the rate limit is the inbox's (its address); pauses stay the channel's
            await self.rate_limiter.acquire(sender_key(self.settings, channel, outgoing.sender))
        provider = provider_name(sender, channel)
        if row["attempt_started_at"] is not None and hasattr(sender, "lookup"):
            # an earlier attempt's outcome is unknown: if the provider has it, do not send again
            recorded = await store.recent_provider_ids(self.pool, row, row["attempt_started_at"])
            found = await sender.lookup(outgoing, row["attempt_started_at"], exclude=recorded)
            OUTBOX_LOOKUPS.labels(provider, "no" if found is None else
                                  "yes" if found.outcome is SendOutcome.SENT else "failed").inc()
            if found is not None and found.outcome is SendOutcome.SENT:
                log.info("earlier attempt found at the provider; not resent", outbox_id=row["id"],
                         conversation_id=row["conversation_id"], provider_message_id=found.provider_message_id)
            if found is not None:   # found, or the look-up failed (a retry that keeps the mark)
                return await self.record(row, found)
        paused = self.gate.paused_for(key)
        if paused:
            await store.release(self.pool, row, paused, count_attempt=False)
            return False
        if not await self._mark(row):
            OUTBOX_LEASES_LOST.labels(provider).inc()
            log.warning("outbox lease lost before sending; not sent", outbox_id=row["id"])
            return True
        result = await sender.send(outgoing)
        return await self.record(row, result)

    async def _mark(self, row) -> bool:
        """The durable attempt mark, batched: concurrent sends share one round trip."""
        return await self._marks.submit((row["id"], row["claim_token"]))

    async def _write_marks(self, held: list[tuple[int, uuid.UUID]]) -> set[int]:
        return await store.mark_attempts(self.pool, held)

    async def _write_finishes(self, finished: list[tuple[asyncpg.Record, dict]]) -> set[int]:
        return await store.finish_many(self.pool, finished)

    async def record(self, row, result: SendResult) -> bool:
        """Record a provider's answer. True when the row is finished, False when a retry is due."""
        channel = Channel(row["channel"])
        key = sender_key(self.settings, channel)
        provider = provider_name(self.senders.get(channel), channel)
        outcome = result.outcome
        OUTBOX_ATTEMPTS.labels(provider, outcome.value, result.error_code or "").inc()
        if outcome is SendOutcome.SENT:
            self.gate.succeeded(key)
            return await self._finish(row, state="done", status=result.status or "sent",
                                      provider_message_id=result.provider_message_id, segments=result.segments,
                                      sent_text=result.sent_text)
        if outcome in (SendOutcome.RETRY, SendOutcome.THROTTLED):
            await self._slow_down(key, result)
            if row["attempts"] >= min(row["max_attempts"], self.settings.outbox_max_attempts):
                if not await outcomes.dead_letter(self.pool, row, result, provider):
                    self._lease_lost(row, provider)
                self._status_event(row, "failed", result.error_code or "dead_letter")
                return True
            delay = backoff_delay(row["attempts"], base=self.settings.outbox_base_delay,
                                  cap=self.settings.outbox_max_delay, retry_after=result.retry_after)
            if not await store.schedule_retry(self.pool, row, delay, f"{result.error_code}: {result.error_message}",
                                              outcome_unknown=bool(result.extra.get("outcome_unknown"))):
                self._lease_lost(row, provider)
            return False
        if outcome is SendOutcome.OPTED_OUT:
            done = await outcomes.opted_out(self.pool, row, result)
        elif outcome is SendOutcome.FALLBACK:
            effects = thread.Effects()
            done, _ = await outcomes.fall_back(self.pool, self.settings, row, result, effects)
            self._events.extend(effects.events)
            self.wake()
        elif result.extra.get("address_undeliverable"):
            done = await outcomes.undeliverable(self.pool, row, result)
        else:
            return await self._finish(row, state="failed", status="failed", error_code=result.error_code,
                                      error_message=result.error_message)
        if done:
            self._status_event(row, "failed", result.error_code)
        return True

    async def _slow_down(self, key: str, result: SendResult) -> None:
        """A 429 (or 503 with Retry-After) pauses this sender; a run of transient failures backs it off."""
        if result.outcome is SendOutcome.THROTTLED:
            pause, reason = (result.retry_after if result.retry_after is not None else 1.0), "throttled"
            self.gate.pause(key, pause)
        else:
            pause, reason = self.gate.failed_transiently(key), "errors"
        if pause <= 0:
            return
        OUTBOX_PAUSES.labels(key, reason).inc()
        log.info("sender paused", sender=key, seconds=round(pause, 2), reason=reason, error_code=result.error_code)
        if self.rate_limiter is not None:
            await self.rate_limiter.penalize(key, pause)

    async def _finish(self, row, **outcome) -> bool:
        """Close the row with its outcome (one statement shared with the sends finishing alongside);
        True (finished) even when the lease was lost."""
        if await self._finishes.submit((row, outcome)):
            self._status_event(row, outcome["status"], outcome.get("error_code"))
        else:
            self._lease_lost(row, provider_name(self.senders.get(Channel(row["channel"])), Channel(row["channel"])))
        return True

    def _lease_lost(self, row, provider: str) -> None:
        OUTBOX_LEASES_LOST.labels(provider).inc()
        log.warning("outbox outcome not recorded: the lease had been taken over", outbox_id=row["id"],
                    conversation_id=row["conversation_id"], message_id=row["message_id"])

    def _status_event(self, row, status_: str, error_code: str | None) -> None:
        self._events.append(("message.status", {"conversation_id": row["conversation_id"],
                                                "message_id": row["message_id"], "status": status_,
                                                "error_code": error_code}))

    async def _publish(self) -> None:
        events, self._events = self._events, []
        if events and self.redis is not None:
            await realtime.publish(self.redis, self.keys, events)
