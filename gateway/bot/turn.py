"""One turn of a conversation: what a handler gets while one customer message is processed, and
the steps a turn is made of beyond the conversation's state (a bot reply, an escalation), which
the inbox's automatic messages (survey thanks, out-of-hours notes) use too.

The conversation worker (`gateway.pipeline.processor`) builds a `Turn` and hands it to the inbox's handler:
the bot (`gateway.bot.flow_handler`), the agents' queue or the echo bot below. A turn changes the
conversation row through its `Draft`, which the worker writes once when the turn ends.

A turn taken in a batch (`outside_calls=False`) shares its transaction with other conversations'
turns, so it must not wait on the outside world: where it would (a flow's HTTP action), it raises
`OutsideCallNeeded` before any request goes out, and the worker redoes it on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Protocol

import asyncpg

from gateway.app.log import get_logger
from gateway.app.settings import Settings
from gateway.channels.modes import routing_policy
from gateway.domain import conversation, thread
from gateway.domain.hooks import Hooks
from gateway.domain.types import Effects, Purpose
from gateway.infra.deferred import Deferred

log = get_logger(__name__)


class OutsideCallNeeded(BaseException):
    """A batched turn would wait on an outside call. A BaseException, so that nothing on the way
    (the flow engine turns an action's exceptions into results) mistakes it for a failure."""


class NoOutsideCalls:
    """Stands in for the HTTP session of a batched turn: using it raises OutsideCallNeeded."""

    def __getattr__(self, name: str):
        raise OutsideCallNeeded(name)


class Batch:
    """What the turns of one batch round share (`gateway.pipeline.processor`): facts read once for
    all of its conversations, on first use, in the round's transaction (the conversation rows are
    locked by then). A round that is redone starts a new Batch."""

    def __init__(self, conn: asyncpg.Connection, rows: Mapping[int, Mapping[str, Any]], settings: Settings):
        self.conn = conn
        self.rows = rows              # conversation id -> its row, read under its lock
        self.settings = settings
        self._cache: dict[str, Any] = {}
        # the turns' last writes, which nothing in the round reads again (a turn's conversation row,
        # its flow timers, its new episode and thread entries), run together at the round's end
        self.writes = Deferred(conn, turns=len(rows))

    @property
    def contact_ids(self) -> list[int]:
        return sorted({r["contact_id"] for r in self.rows.values()})

    async def once(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """`load()`'s result, loaded for the whole round on the first call with `key`."""
        if key not in self._cache:
            self._cache[key] = await load()
        return self._cache[key]

    async def route_facts(self, conversation_id: int) -> thread.RouteFacts | None:
        """What routing a reply to this conversation reads (thread.RouteFacts)."""
        if conversation_id not in self.rows:
            return None
        facts = await self.once("route_facts", lambda: thread.read_route_facts(
            self.conn, list(self.rows.values()), purpose=Purpose.REPLY, policy=routing_policy(self.settings)))
        return facts[conversation_id]


@dataclass
class Turn:
    """Everything a handler may use while one inbound message is processed."""

    conn: asyncpg.Connection
    draft: conversation.Draft
    message: asyncpg.Record
    effects: Effects
    settings: Settings
    hooks: Hooks | None = None
    new_episode: bool = False          # this message opened a new episode (per-episode counters reset)
    outside_calls: bool = True         # False in a batch: see OutsideCallNeeded
    contact_attributes: dict | None = None   # read with the batch, when it was
    batch: Batch | None = None               # the batch round this turn is taken in, if any

    @property
    def conversation(self) -> Mapping[str, Any]:
        """The conversation row as this turn sees it (its own changes included)."""
        return self.draft.view

    @property
    def conversation_id(self) -> int:
        return self.draft.id

    async def route_facts(self) -> thread.RouteFacts | None:
        """What routing this turn's replies reads, read for its whole batch (None: not batched)."""
        return await self.batch.route_facts(self.conversation_id) if self.batch is not None else None

    async def reply(self, text: str, **kwargs) -> int | None:
        return await send_bot_reply(self.conn, self.conversation_id, text, settings=self.settings,
                                    effects=self.effects, draft=self.draft, facts=await self.route_facts(),
                                    **kwargs)


async def send_bot_reply(conn: asyncpg.Connection, conversation_id: int, text: str, *, settings: Settings,
                         effects: Effects, **kwargs) -> int | None:
    """Queue a bot/system reply; when no channel may carry it (opted out, window closed, no live
    provider) the thread records why instead, and the turn goes on."""
    kwargs.setdefault("author_type", "bot")
    kwargs.setdefault("policy", routing_policy(settings))
    kwargs.setdefault("max_attempts", settings.outbox_max_attempts)
    try:
        return await thread.queue_outbound(conn, conversation_id, text=text, effects=effects, **kwargs)
    except thread.NoRoute as exc:
        await thread.reply_dropped(conn, conversation_id, exc, kwargs.get("draft"))
        return None


class Handler(Protocol):
    async def handle(self, turn: Turn) -> None: ...


async def escalate(conn: asyncpg.Connection, draft: conversation.Draft, *, reason: str, summary: str | None,
                   effects: Effects, author_type: str = "bot", team: str | None = None,
                   out_of_hours_said: bool = False, hooks: Hooks | None = None) -> None:
    """Move the conversation to the agent queue (idempotent within an episode), then let the
    escalation hooks route it (to `team` when named, else by the routing rules). The draft is
    written before the hooks run: they read and change the row themselves."""
    await conversation.escalate(conn, draft, reason)
    text = f"Escalated to agents ({reason})" + (f": {summary}" if summary else "")
    await thread.add_event(conn, draft.id, text, event="escalated", details={"reason": reason, "summary": summary},
                           author_type=author_type, draft=draft)
    await draft.flush(conn)
    effects.emit("conversation.updated", conversation_id=draft.id, mode=conversation.Mode.AGENT.value,
                 reason=reason)
    log.info("conversation escalated", conversation_id=draft.id, reason=reason, team=team)
    if hooks is not None:
        await hooks.on_escalated(conn, draft.id, team=team, out_of_hours_said=out_of_hours_said, effects=effects)


class AgentQueueHandler:
    """The no-bot inbox: every conversation goes to the agents' queue."""

    async def handle(self, turn: Turn) -> None:
        await escalate(turn.conn, turn.draft, reason="no_bot", summary=None, effects=turn.effects,
                       author_type="system", hooks=turn.hooks)


class EchoHandler:
    """A development bot that answers with what it received (handy with sandbox channels)."""

    async def handle(self, turn: Turn) -> None:
        text = turn.message["body"] or "(no text)"
        await turn.reply(f"You said: {text}")
