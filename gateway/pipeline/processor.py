"""Processing conversations: their unprocessed inbound messages, one at a time each, in seq order.

A message is handled in a transaction holding its conversation's advisory lock, so across every
worker process and machine a conversation is processed by one worker at a time, always taking the
lowest unprocessed seq. Whatever the handler writes (state, outbound messages via the outbox)
commits together with the "processed" mark: a worker killed at any instant leaves either nothing
or everything, and the message is simply redone.

`drain_rounds` takes the next message of many conversations in one transaction (a round): their
locks (try-locks: a conversation another worker holds is drained on its own, waiting for it) with
their messages, then the conversation rows (locked) with the contacts' attributes, every turn
decided and written (the writes nothing in the round reads again together at its end), then one
statement marks them all processed. A turn that needs an outside call (a flow's HTTP action) is
taken out before any request goes out and left to be drained on its own (`drain_alone`), so no
batch waits on it; a round that fails is rolled back and each of its conversations is left to be
drained on its own, so one bad message fails alone.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence

import asyncpg
import structlog

from gateway.app.log import get_logger
from gateway.app.settings import Settings
from gateway.bot.turn import Batch, Handler, OutsideCallNeeded, Turn
from gateway.domain import consent, conversation, thread
from gateway.domain.conversation import Mode
from gateway.domain.hooks import Hooks
from gateway.domain.identity import address_kind
from gateway.domain.types import Channel, Effects, Purpose

log = get_logger(__name__)

MAX_PROCESS_ATTEMPTS = 3
KEYWORD_CHANNELS = {Channel.SMS.value, Channel.WHATSAPP.value}

NEXT_MESSAGE = """SELECT * FROM messages WHERE conversation_id = $1 AND direction = 'in'
                  AND processed_at IS NULL ORDER BY seq LIMIT 1"""
# A round's first read: the try-lock of each conversation and, for those locked, their next two
# messages (the second says whether there is more); `locked_id` is there for every lock taken.
TAKE_NEXT = """SELECT c.id AS locked_id, m.* FROM unnest($1::bigint[]) AS c(id)
               CROSS JOIN LATERAL (SELECT pg_try_advisory_xact_lock(c.id) AS locked) l
               LEFT JOIN LATERAL (SELECT * FROM messages WHERE conversation_id = c.id AND direction = 'in'
                                  AND processed_at IS NULL ORDER BY seq LIMIT 2) m ON true
               WHERE l.locked ORDER BY c.id, m.seq"""
# The round's conversation rows, locked, with their contacts' attributes.
LOCK_ROWS = """SELECT c.*, ct.attributes AS contact_attributes FROM conversations c
               LEFT JOIN contacts ct ON ct.id = c.contact_id
               WHERE c.id = ANY($1::bigint[]) ORDER BY c.id FOR UPDATE OF c"""
MARK_PROCESSED = """UPDATE messages SET processed_at = now(), process_attempts = process_attempts + 1,
                        process_order = nextval('message_process_order') WHERE id = ANY($1::bigint[])"""


@dataclass
class Round:
    """What one batch round did: messages processed, conversations with more to take, and those
    to drain on their own (held by another worker, needing an outside call, or in a failed round)."""

    done: int = 0
    more: list[int] = field(default_factory=list)
    alone: list[int] = field(default_factory=list)
    effects: Effects = field(default_factory=Effects)   # to publish: empty when the round rolled back


class Processor:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, handler: Handler, *,
                 after_commit: Callable[[Effects], Awaitable[None]], hooks: Hooks | None = None):
        self.pool = pool
        # what a committed unit of work's effects go to: the runtime's (wakes this process's outbox
        # sender at once, then publishes through Redis)
        self.after_commit = after_commit
        self.hooks = hooks or Hooks()
        self.settings = settings
        self.handler = handler

    async def drain(self, conversation_id: int) -> int:
        """Process every pending inbound message of one conversation. Returns how many."""
        done = 0
        async with self.pool.acquire() as conn:
            while True:
                effects = Effects()
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
                await self.after_commit(effects)
        return done

    async def _process_next(self, conn, conversation_id: int, effects: Effects) -> bool:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", conversation_id)
            msg = await conn.fetchrow(NEXT_MESSAGE, conversation_id)
            if msg is None:
                return False
            await self._take(conn, msg, effects)
            await conn.execute(MARK_PROCESSED, [msg["id"]])
            return True

    async def drain_rounds(self, conversation_ids: Sequence[int]) -> tuple[int, list[int]]:
        """The pending messages of many conversations, a round (one transaction) per message depth.
        Returns (messages processed, conversations to drain on their own: held by another worker,
        needing an outside call, or in a failed round)."""
        pending, alone, done = sorted(set(conversation_ids)), [], 0
        while pending:
            async with self.pool.acquire() as conn:
                taken = await self._round(conn, pending)
            await self.after_commit(taken.effects)
            done += taken.done
            alone += taken.alone
            pending = taken.more
        return done, sorted(set(alone))

    async def drain_alone(self, conversation_ids: Sequence[int]) -> tuple[int, list[int]]:
        """Each conversation drained on its own, at once. Returns (messages processed, those that failed)."""
        done, failed = 0, []
        outcomes = await asyncio.gather(*(self.drain(c) for c in conversation_ids), return_exceptions=True)
        for cid, outcome in zip(conversation_ids, outcomes):
            if isinstance(outcome, BaseException):
                log.warning("conversation drain failed; will be retried", conversation_id=cid, error=str(outcome))
                failed.append(cid)
            else:
                done += outcome
        return done, failed

    async def _round(self, conn, conversation_ids: list[int]) -> Round:
        current, effects = None, Effects()
        try:
            async with conn.transaction():
                # the try-locks, then each locked conversation's next two messages, in one statement
                # (the lateral lock is taken per conversation before its messages are read)
                locked: set[int] = set()
                first: dict[int, asyncpg.Record] = {}
                more: list[int] = []
                for m in await conn.fetch(TAKE_NEXT, conversation_ids):
                    locked.add(m["locked_id"])
                    if m["id"] is None:
                        continue
                    if m["conversation_id"] in first:
                        more.append(m["conversation_id"])
                    else:
                        first[m["conversation_id"]] = m
                taken = Round(more=more, alone=sorted(set(conversation_ids) - locked), effects=effects)
                if not first:
                    return taken
                rows, attributes = {}, {}
                for r in await conn.fetch(LOCK_ROWS, list(first)):
                    row = dict(r)
                    attributes[row["contact_id"]] = dict(row.pop("contact_attributes") or {})
                    rows[row["id"]] = row
                batch = Batch(conn, rows, self.settings)
                for current, msg in sorted(first.items()):
                    row = rows[current]
                    await self._take(conn, msg, effects, conversation.Draft(row, locked=True, writes=batch.writes),
                                     attributes.get(row["contact_id"]), batch=batch)
                current = None
                await batch.writes.run()
                await conn.execute(MARK_PROCESSED, [m["id"] for m in first.values()])
                taken.done = len(first)
                return taken
        except OutsideCallNeeded:
            # the rest goes on as a batch; this conversation is drained on its own
            rest = [c for c in conversation_ids if c != current]
            return Round(more=rest, alone=[current])
        except Exception as exc:
            log.warning("batch of turns failed; each conversation is retried on its own",
                        conversations=len(conversation_ids), conversation_id=current, error=str(exc))
            return Round(alone=list(conversation_ids))

    async def _take(self, conn, msg: asyncpg.Record, effects: Effects, draft: conversation.Draft | None = None,
                    contact_attributes: dict | None = None, batch: Batch | None = None) -> None:
        """One customer message's turn (`draft`, `contact_attributes`: read by a `batch`, which
        shares its transaction: the turn may not wait on outside calls)."""
        conversation_id = msg["conversation_id"]
        with structlog.contextvars.bound_contextvars(
                conversation_id=conversation_id, channel=msg["channel"], message_id=msg["id"]):
            new_episode = False
            if await self.hooks.take_answer(conn, msg, effects):
                draft = None
            else:
                draft = draft or await conversation.load(conn, conversation_id)
                new_episode = await conversation.open_for_message(conn, draft, msg)
                if draft.pending:
                    effects.emit("conversation.updated", conversation_id=conversation_id,
                                 status=conversation.Status.OPEN.value)
            effects.emit("message.created", conversation_id=conversation_id, message_id=msg["id"],
                         seq=msg["seq"], direction="in", channel=msg["channel"])
            if draft is not None:
                await self._dispatch(Turn(conn, draft, msg, effects, self.settings, self.hooks, new_episode,
                                          outside_calls=batch is None, contact_attributes=contact_attributes,
                                          batch=batch))
                if batch is not None:   # the turn's one write of the conversation row
                    batch.writes.add(draft.flush_statement())
                else:
                    await draft.flush(conn)
            log.debug("message processed", seq=msg["seq"])

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
                                   event="auto_generated_ignored", details={"seq": msg["seq"]}, draft=turn.draft)
            return
        if msg["channel"] == "email" and await self._over_email_reply_ceiling(turn):
            return
        if conv["mode"] == Mode.AGENT:
            conversation.customer_waits(turn.draft)
            turn.effects.emit("conversation.updated", conversation_id=conv["id"], mode=Mode.AGENT.value)
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
                               event="reply_ceiling", details={"sent": sent, "ceiling": ceiling}, draft=turn.draft)
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
                                   details=outcome.details, draft=turn.draft)
        await turn.reply(outcome.reply, channel=Channel(channel), to_address=address, author_type="system",
                         purpose=Purpose.TRANSACTIONAL, compliance=True)
