"""Extension points: subsystems (journeys, metrics) subscribe to what happens in a thread.

Every hook runs inside the transaction of the work that triggered it, so its writes commit or roll
back together with that work (a status update, a processed inbound message, a stored event).
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

import asyncpg

from gateway.domain.types import Effects

InboundHook = Callable[[Any], Awaitable[None]]                      # (turn.Turn)
StatusHook = Callable[[asyncpg.Connection, asyncpg.Record, str, Effects], Awaitable[None]]
EventHook = Callable[[asyncpg.Connection, asyncpg.Record, Effects], Awaitable[None]]
EscalatedHook = Callable[..., Awaitable[None]]   # (conn, conversation_id, *, team, out_of_hours_said, effects)
AnswerHook = Callable[[asyncpg.Connection, asyncpg.Record, Effects], Awaitable[bool]]


class Hooks:
    def __init__(self) -> None:
        self.answers: list[AnswerHook] = []
        self.inbound: list[InboundHook] = []
        self.status: list[StatusHook] = []
        self.event: list[EventHook] = []
        self.escalated: list[EscalatedHook] = []
        # (conn, manifest): a deployment made new flow/journey versions current (gateway.flows.deploy)
        self.deployed: list[Callable[[asyncpg.Connection, dict], Awaitable[None]]] = []

    async def take_answer(self, conn: asyncpg.Connection, message: asyncpg.Record, effects: Effects) -> bool:
        """A customer message may answer something asked outside the conversation (a satisfaction
        survey): the first hook that takes it records it (True), and it then reopens nothing and never
        reaches the bot."""
        for hook in self.answers:
            if await hook(conn, message, effects):
                return True
        return False

    async def on_inbound(self, turn) -> None:
        """A customer message is being processed (before the bot or agent routing). The turn holds
        the conversation's changes until it ends: change the row or the thread through `turn.draft`."""
        for hook in self.inbound:
            await hook(turn)

    async def on_status(self, conn: asyncpg.Connection, message: asyncpg.Record, status: str,
                        effects: Effects) -> None:
        """An outbound message's status moved forward (message: id, conversation_id, status before)."""
        for hook in self.status:
            await hook(conn, message, status, effects)

    async def on_event(self, conn: asyncpg.Connection, event: asyncpg.Record, effects: Effects) -> None:
        """A business event was stored (events table row)."""
        for hook in self.event:
            await hook(conn, event, effects)

    async def on_escalated(self, conn: asyncpg.Connection, conversation_id: int, *, team: str | None,
                           out_of_hours_said: bool, effects: Effects) -> None:
        """A conversation moved to the agents' queue (team: the one the escalation named, if any)."""
        for hook in self.escalated:
            await hook(conn, conversation_id, team=team, out_of_hours_said=out_of_hours_said, effects=effects)
