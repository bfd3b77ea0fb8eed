"""Processing a conversation: its unprocessed inbound messages, one at a time, in seq order.

Each message is handled in its own transaction holding the conversation's advisory lock, so across
every worker process and machine a conversation is processed by one worker at a time, always
taking the lowest unprocessed seq. Whatever the handler writes (state, outbound messages via the
outbox) commits together with the "processed" mark: a worker killed at any instant leaves either
nothing or everything, and the message is simply redone.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import asyncpg
import redis.asyncio as aioredis
import structlog

from gateway import consent, realtime, thread
from gateway.channels.modes import routing_policy
from gateway.inbox import csat
from gateway.hooks import Hooks
from gateway.identity import address_kind
from gateway.log import get_logger
from gateway.queue import Keys
from gateway.settings import Settings
from gateway.types import Channel, Purpose

log = get_logger(__name__)

MAX_PROCESS_ATTEMPTS = 3
KEYWORD_CHANNELS = {Channel.SMS.value, Channel.WHATSAPP.value}


@dataclass
class Turn:
    """Everything a handler may use while one inbound message is processed."""

    conn: asyncpg.Connection
    conversation: asyncpg.Record
    message: asyncpg.Record
    effects: thread.Effects
    settings: Settings
    hooks: Hooks | None = None
    new_episode: bool = False          # this message opened a new episode (per-episode counters reset)

    @property
    def conversation_id(self) -> int:
        return self.conversation["id"]

    async def reply(self, text: str, **kwargs) -> int | None:
        return await send_bot_reply(self.conn, self.conversation_id, text, settings=self.settings,
                                    effects=self.effects, **kwargs)


async def send_bot_reply(conn: asyncpg.Connection, conversation_id: int, text: str, *, settings: Settings,
                         effects: thread.Effects, **kwargs) -> int | None:
    """Queue a bot/system reply; when no channel may carry it (opted out, window closed, no live
    provider) the thread records why instead, and the turn goes on."""
    kwargs.setdefault("author_type", "bot")
    kwargs.setdefault("policy", routing_policy(settings))
    kwargs.setdefault("max_attempts", settings.outbox_max_attempts)
    try:
        return await thread.queue_outbound(conn, conversation_id, text=text, effects=effects, **kwargs)
    except thread.NoRoute as exc:
        await thread.reply_dropped(conn, conversation_id, exc)
        return None


class Handler(Protocol):
    async def handle(self, turn: Turn) -> None: ...


async def escalate(conn: asyncpg.Connection, conversation_id: int, *, reason: str,
                   summary: str | None, effects: thread.Effects, author_type: str = "bot",
                   team: str | None = None, out_of_hours_said: bool = False, hooks: Hooks | None = None) -> None:
    """Move the conversation to the agent queue (idempotent within an episode), then let the
    escalation hooks route it (to `team` when named, else by the routing rules)."""
    conv = await conn.fetchrow(
        """UPDATE conversations SET mode = 'agent', status = 'open',
               waiting_since = coalesce(waiting_since, now()), updated_at = now()
           WHERE id = $1 RETURNING current_episode_id, mode""", conversation_id)
    await conn.execute(
        """UPDATE episodes SET escalated_at = coalesce(escalated_at, now()),
               escalation_reason = coalesce(escalation_reason, $2) WHERE id = $1""",
        conv["current_episode_id"], reason)
    text = f"Escalated to agents ({reason})" + (f": {summary}" if summary else "")
    await thread.add_event(conn, conversation_id, text, event="escalated",
                           details={"reason": reason, "summary": summary}, author_type=author_type)
    effects.emit("conversation.updated", conversation_id=conversation_id, mode="agent", reason=reason)
    log.info("conversation escalated", conversation_id=conversation_id, reason=reason, team=team)
    if hooks is not None:
        await hooks.on_escalated(conn, conversation_id, team=team, out_of_hours_said=out_of_hours_said,
                                 effects=effects)


class AgentQueueHandler:
    """The no-bot inbox: every conversation goes to the agents' queue."""

    async def handle(self, turn: Turn) -> None:
        await escalate(turn.conn, turn.conversation_id, reason="no_bot", summary=None,
                       effects=turn.effects, author_type="system", hooks=turn.hooks)


class EchoHandler:
    """A development bot that answers with what it received (handy with sandbox channels)."""

    async def handle(self, turn: Turn) -> None:
        text = turn.message["body"] or "(no text)"
        await turn.reply(f"You said: {text}")


class Processor:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys, settings: Settings,
                 handler: Handler, hooks: Hooks | None = None):
        self.pool = pool
        self.hooks = hooks or Hooks()
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.handler = handler

    async def drain(self, conversation_id: int) -> int:
        """Process every pending inbound message of one conversation. Returns how many."""
        done = 0
        async with self.pool.acquire() as conn:
            while True:
                effects = thread.Effects()
                try:
                    processed = await self._process_next(conn, conversation_id, effects)
                except Exception as exc:  # a handler bug must not wedge the conversation forever
                    log.exception("processing failed", conversation_id=conversation_id, error=str(exc))
                    if await self._record_failure(conn, conversation_id, str(exc)):
                        continue
                    raise
                if not processed:
                    break
                done += 1
                await self._after_commit(effects)
        return done

    async def _after_commit(self, effects: thread.Effects) -> None:
        await realtime.publish(self.redis, self.keys, effects.events)
        if effects.wake_outbox:
            await realtime.wake_outbox(self.redis, self.keys)

    async def _process_next(self, conn, conversation_id: int, effects: thread.Effects) -> bool:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", conversation_id)
            msg = await conn.fetchrow(
                """SELECT * FROM messages WHERE conversation_id = $1 AND direction = 'in'
                   AND processed_at IS NULL ORDER BY seq LIMIT 1""", conversation_id)
            if msg is None:
                return False
            with structlog.contextvars.bound_contextvars(
                    conversation_id=conversation_id, channel=msg["channel"], message_id=msg["id"]):
                if await csat.take_answer(conn, msg, effects, settings=self.settings):
                    conv, new_episode = None, False   # the survey's answer: recorded, never the bot's
                else:
                    conv, new_episode = await self._open_episode(conn, conversation_id, msg, effects)
                effects.emit("message.created", conversation_id=conversation_id, message_id=msg["id"],
                             seq=msg["seq"], direction="in", channel=msg["channel"])
                if conv is not None:
                    await self._dispatch(Turn(conn, conv, msg, effects, self.settings, self.hooks, new_episode))
                await conn.execute(
                    """UPDATE messages SET processed_at = now(), process_attempts = process_attempts + 1,
                           process_order = nextval('message_process_order') WHERE id = $1""", msg["id"])
                log.debug("message processed", seq=msg["seq"])
            return True

    async def _record_failure(self, conn, conversation_id: int, error: str) -> bool:
        """Count a failed attempt; after MAX_PROCESS_ATTEMPTS park the message. True: go on."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", conversation_id)
            msg = await conn.fetchrow(
                """UPDATE messages SET process_attempts = process_attempts + 1
                   WHERE id = (SELECT id FROM messages WHERE conversation_id = $1 AND direction = 'in'
                               AND processed_at IS NULL ORDER BY seq LIMIT 1)
                   RETURNING id, seq, process_attempts""", conversation_id)
            if msg is None:
                return True
            if msg["process_attempts"] < MAX_PROCESS_ATTEMPTS:
                await asyncio.sleep(0.2 * msg["process_attempts"])
                return True
            await conn.execute(
                """UPDATE messages SET processed_at = now(), process_order = nextval('message_process_order'),
                       content = content || jsonb_build_object('processing_error', $2::text) WHERE id = $1""",
                msg["id"], error[:500])
            await thread.add_event(conn, conversation_id, f"Message {msg['seq']} could not be processed",
                                   event="processing_failed", details={"seq": msg["seq"]})
            return True

    async def _open_episode(self, conn, conversation_id: int, msg, effects) -> tuple[asyncpg.Record, bool]:
        """The conversation, reopened for this message; True when a new episode starts with it."""
        conv = await conn.fetchrow("SELECT * FROM conversations WHERE id = $1", conversation_id)
        if conv["current_episode_id"] is None or conv["status"] == "resolved":
            episode_id = await conn.fetchval(
                "INSERT INTO episodes (conversation_id, channel) VALUES ($1, $2) RETURNING id",
                conversation_id, msg["channel"])
            await conn.execute("UPDATE messages SET episode_id = $2 WHERE id = $1", msg["id"], episode_id)
            conv = await conn.fetchrow(
                """UPDATE conversations SET current_episode_id = $2, status = 'open', mode = 'bot',
                       assignee_id = NULL, waiting_since = NULL, snoozed_until = NULL, updated_at = now()
                   WHERE id = $1 RETURNING *""", conversation_id, episode_id)
            effects.emit("conversation.updated", conversation_id=conversation_id, status="open")
            return conv, True
        if conv["status"] in ("snoozed", "pending"):
            conv = await conn.fetchrow(
                """UPDATE conversations SET status = 'open', snoozed_until = NULL, updated_at = now()
                   WHERE id = $1 RETURNING *""", conversation_id)
            await conn.execute(
                "UPDATE timers SET state = 'cancelled' WHERE conversation_id = $1 AND kind = 'snooze' AND state = 'pending'",
                conversation_id)
            effects.emit("conversation.updated", conversation_id=conversation_id, status="open")
        return conv, False

    async def _dispatch(self, turn: Turn) -> None:
        msg, conv = turn.message, turn.conversation
        await self.hooks.on_inbound(turn)
        if msg["channel"] in KEYWORD_CHANNELS and msg["kind"] == "message":
            keyword = consent.classify_keyword(msg["body"] or "", self.settings.global_stop_words)
            if keyword is not None:
                await self._handle_keyword(turn, keyword)
                return
        if (msg["content"] or {}).get("auto_generated"):
            await thread.add_event(turn.conn, conv["id"], "Automatic message received; not answered",
                                   event="auto_generated_ignored", details={"seq": msg["seq"]})
            return
        if msg["channel"] == "email" and await self._over_email_reply_ceiling(turn):
            return
        if conv["mode"] == "agent":
            await turn.conn.execute(
                "UPDATE conversations SET waiting_since = coalesce(waiting_since, now()) WHERE id = $1",
                conv["id"])
            turn.effects.emit("conversation.updated", conversation_id=conv["id"], mode="agent")
            return
        await self.handler.handle(turn)

    async def _over_email_reply_ceiling(self, turn: Turn) -> bool:
        """Two robots mailing each other stop here: at most N automatic email replies per hour."""
        ceiling = self.settings.email_reply_ceiling
        sent = await turn.conn.fetchval(
            """SELECT count(*) FROM messages WHERE conversation_id = $1 AND direction = 'out'
               AND channel = 'email' AND author_type IN ('bot', 'system')
               AND created_at > now() - interval '1 hour'""", turn.conversation_id)
        if sent < ceiling:
            return False
        await thread.add_event(turn.conn, turn.conversation_id,
                               f"Automatic email replies paused: {sent} sent in the last hour",
                               event="reply_ceiling", details={"sent": sent, "ceiling": ceiling})
        return True

    async def _handle_keyword(self, turn: Turn, keyword: str) -> None:
        msg, conn = turn.message, turn.conn
        channel, address = msg["channel"], msg["sender_address"]
        outcome = await consent.apply_keyword(
            conn, contact_id=turn.conversation["contact_id"], kind=address_kind(channel, address),
            address=address, channel=channel,
            keyword=keyword, word=msg["body"] or "", help_text=self.settings.help_text)
        if outcome.event:
            await thread.add_event(conn, turn.conversation_id, outcome.summary, event=outcome.event,
                                   details=outcome.details)
        await turn.reply(outcome.reply, channel=Channel(channel), to_address=address, author_type="system",
                         purpose=Purpose.TRANSACTIONAL, compliance=True)
