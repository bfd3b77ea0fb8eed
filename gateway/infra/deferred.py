"""Writes of one transaction gathered and run together later in it, and ids taken ahead for them.

A batch round of the conversation worker (`gateway.pipeline.processor`) writes for many turns in
one transaction. A write whose row nothing in the round reads again (a turn's conversation row, its
flow timers, its new episode, the messages it appends) need not cost a round trip each: `add` keeps
it, and `run` sends those of the same text as one pipelined `executemany`. Where the turn needs the
new row's id (a message's id goes into its realtime event, an episode's into the conversation row)
it takes it ahead with `take_id`: ids for the whole round come from the sequence in one statement.

Each statement added must be complete on its own (no later statement of the same turn changes what
it means), so running them early is always correct: `run` is called before anything that reads
what they write (an escalation's hooks, a business event's handlers) and at the round's end,
before the messages are marked processed. Unused ids leave gaps in the sequence, as a rolled-back
INSERT's do.
"""
from __future__ import annotations

import asyncpg


class Deferred:
    def __init__(self, conn: asyncpg.Connection, *, turns: int = 1):
        self.conn = conn
        self.turns = max(1, turns)                         # how many turns share it: ids are taken for all
        self._runs: dict[str, list[tuple]] = {}            # statement text -> the args of each run
        self._ids: dict[str, list[int]] = {}               # sequence -> ids taken ahead, next last

    def add(self, statement: tuple[str, tuple] | None) -> None:
        """Run this write (sql, args) later in the transaction (None: nothing to write)."""
        if statement is not None:
            self._runs.setdefault(statement[0], []).append(statement[1])

    async def take_id(self, sequence: str, *, per_turn: int = 1) -> int:
        """The next value of `sequence` for a row written later; when none is left, `per_turn`
        for each turn sharing this are taken in one statement."""
        ids = self._ids.get(sequence)
        if not ids:
            taken = await self.conn.fetchval(
                "SELECT array_agg(nextval($1::regclass)) FROM generate_series(1, $2)", sequence,
                per_turn * self.turns)
            ids = self._ids[sequence] = sorted(taken, reverse=True)
        return ids.pop()

    async def run(self) -> None:
        """Every write added so far, those of the same text together."""
        runs, self._runs = self._runs, {}
        for sql, args in runs.items():
            if len(args) == 1:
                await self.conn.execute(sql, *args[0])
            else:
                await self.conn.executemany(sql, args)
