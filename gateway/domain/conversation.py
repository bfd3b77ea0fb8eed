"""A conversation's state: the only module that writes the `conversations` row.

It owns the row's mode (bot or agent), status (open, pending, snoozed, resolved), episode, assignee,
team, labels, flow state and thread counters, and the episode marks that go with a change of them
(escalated, resolved, reopened), and the marks of the metrics' rolled-up days such a change alters
(see the end of the module). Every change is a named operation here, run inside the caller's
transaction; callers write their own thread events and audit entries and publish `Effects` after commit.

A turn of the conversation worker collects its changes in a `Draft` and writes the row once at its
end, thread seqs included (see `Draft`). The agents' operations return the realtime `Effects` of the
change (the `conversation.updated` event that says what changed), for the caller to publish after commit.
"""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Iterable, Mapping

import asyncpg

from gateway.domain import timers
from gateway.domain.types import Effects
from gateway.infra.deferred import Deferred

SNOOZE_TIMER = "snooze"


class Mode(str, enum.Enum):
    """Who answers the customer."""

    BOT = "bot"
    AGENT = "agent"

    def __str__(self) -> str:
        return self.value


class Status(str, enum.Enum):
    OPEN = "open"
    PENDING = "pending"          # waiting on the customer
    SNOOZED = "snoozed"          # set aside until a time, or until the customer writes
    RESOLVED = "resolved"        # the episode ended; the thread stays

    def __str__(self) -> str:
        return self.value


# Statuses that count against an agent's capacity.
ACTIVE_STATUSES = (Status.OPEN.value, Status.PENDING.value, Status.SNOOZED.value)
# SQL: the conversation is in the agents' queue (open, with agents).
IN_AGENT_QUEUE = f"mode = '{Mode.AGENT.value}' AND status = '{Status.OPEN.value}'"


class Draft:
    """Changes to one conversation row collected during a turn, written by one UPDATE at `flush`.

    Thread entries appended with the draft (`thread.append(..., draft=)`) take their seq from it:
    the row is locked (FOR UPDATE) when the first one is taken, so no one else takes a seq before the
    flush commits, and the flush writes `last_seq` with the rest. Flush before the connection goes to
    code that appends to the thread without the draft (hooks, business events): its seqs would
    otherwise collide with the draft's.

    In a batch round of turns the draft carries the round's `writes` (`gateway.infra.deferred`):
    the entries appended with it and a new episode are written with the other turns' at the
    round's end, their ids taken ahead; `settle` (and `flush`) write them before anything reads them.
    """

    def __init__(self, row: Mapping[str, Any], *, locked: bool = False, writes: Deferred | None = None):
        self.id: int = row["id"]
        self.writes = writes
        self.view: dict[str, Any] = dict(row)     # the row as this turn sees it, pending changes included
        self._set: dict[str, tuple[str, tuple]] = {}
        self._last_seq: int | None = None          # known (and the row locked) once a seq was taken
        self._locked = locked                      # `row` was read under its row lock (FOR UPDATE)

    def set(self, **values: Any) -> None:
        for column, value in values.items():
            self._set[column] = ("{}", (value,))
            self.view[column] = value

    def set_sql(self, column: str, sql: str, *values: Any) -> None:
        """A change computed from the row (`{}` marks where each value goes)."""
        self._set[column] = (sql, values)

    async def lock(self, conn: asyncpg.Connection) -> None:
        """Take the row lock now, as an UPDATE would, and see the row as it is under it."""
        if self._locked:
            return
        row = await conn.fetchrow("SELECT * FROM conversations WHERE id = $1 FOR UPDATE", self.id)
        self.view.update({k: v for k, v in row.items() if k not in self._set})

    @property
    def pending(self) -> bool:
        return bool(self._set) or self._last_seq is not None

    async def take_seq(self, conn: asyncpg.Connection) -> tuple[int, int | None]:
        """The next thread seq and the episode an entry appended now belongs to."""
        if self._last_seq is None:
            self._last_seq = self.view["last_seq"] if self._locked else await conn.fetchval(
                "SELECT last_seq FROM conversations WHERE id = $1 FOR UPDATE", self.id)
            if self._last_seq is None:
                raise LookupError(f"conversation {self.id} does not exist")
            self._set["last_message_at"] = ("now()", ())
        self._last_seq += 1
        self._set["last_seq"] = ("{}", (self._last_seq,))
        return self._last_seq, self.view["current_episode_id"]

    async def settle(self, conn: asyncpg.Connection) -> None:
        """Write what the round put off (this turn's entries, its new episode) before a read of them."""
        if self.writes is not None:
            await self.writes.run()

    async def flush(self, conn: asyncpg.Connection) -> None:
        """Write what changed (nothing: no write), what the round put off first."""
        await self.settle(conn)
        statement = self.flush_statement()
        if statement is not None:
            await conn.execute(statement[0], *statement[1])

    def flush_statement(self) -> tuple[str, tuple] | None:
        """The UPDATE that `flush` runs (None: nothing changed), the draft then being flushed: for
        a batch of turns, which runs the drafts' statements together at its end (drafts that
        changed the same columns share the statement's text, `flush_together`)."""
        if not self._set:
            return None
        assignments, args = [], [self.id]
        for column, (sql, values) in self._set.items():
            marks = []
            for value in values:
                args.append(value)
                marks.append(f"${len(args)}")
            assignments.append(f"{column} = {sql.format(*marks)}")
        self._set.clear()
        self._last_seq = None   # others may append after a flush: the next seq is read again
        self._locked = False    # (and the row they change is read again under its lock)
        return f"UPDATE conversations SET {', '.join(assignments)}, updated_at = now() WHERE id = $1", tuple(args)


async def load(conn: asyncpg.Connection, conversation_id: int, *, lock: bool = False) -> Draft | None:
    """The conversation as a draft to change (`lock`: take its row lock now)."""
    row = await conn.fetchrow("SELECT * FROM conversations WHERE id = $1" + (" FOR UPDATE" if lock else ""),
                              conversation_id)
    return Draft(row) if row is not None else None


async def take_seq(conn: asyncpg.Connection, conversation_id: int) -> tuple[int, int | None]:
    """The next thread seq (and the current episode) for one entry appended outside a turn."""
    row = await conn.fetchrow(
        """UPDATE conversations SET last_seq = last_seq + 1, last_message_at = now(), updated_at = now()
           WHERE id = $1 RETURNING last_seq, current_episode_id""", conversation_id)
    if row is None:
        raise LookupError(f"conversation {conversation_id} does not exist")
    return row["last_seq"], row["current_episode_id"]


async def for_contact(conn: asyncpg.Connection, contact_id: int) -> int:
    """The contact's one thread, created when the contact is known only from events."""
    await conn.execute("INSERT INTO conversations (contact_id) VALUES ($1) ON CONFLICT (contact_id) DO NOTHING",
                       contact_id)
    return await conn.fetchval("SELECT id FROM conversations WHERE contact_id = $1", contact_id)


# -- a customer message arrives (the worker's turn) -------------------------------------------------

EPISODE_IDS = "episodes_id_seq"
# a new episode, and the customer message that opened it in it
OPEN_EPISODE = """WITH e AS (INSERT INTO episodes (conversation_id, channel) VALUES ($1, $2) RETURNING id),
                       m AS (UPDATE messages SET episode_id = e.id FROM e WHERE messages.id = $3)
                  SELECT id FROM e"""
OPEN_EPISODE_WITH_ID = """WITH e AS (INSERT INTO episodes (id, conversation_id, channel) VALUES ($1, $2, $3))
                          UPDATE messages SET episode_id = $1 WHERE id = $4"""


async def open_for_message(conn: asyncpg.Connection, draft: Draft, message: asyncpg.Record) -> bool:
    """The conversation, reopened for a customer message. True when a new episode starts with it
    (none yet, or the last one resolved): bot mode, unassigned, not waiting."""
    conv = draft.view
    if conv["current_episode_id"] is None or conv["status"] != Status.OPEN:
        # held from here, as before: an agent acting meanwhile (assign, snooze) waits for this turn
        await draft.lock(conn)
    if conv["current_episode_id"] is None or conv["status"] == Status.RESOLVED:
        if draft.writes is not None:    # a batch round: written with the other turns' at its end
            episode_id = await draft.writes.take_id(EPISODE_IDS)
            draft.writes.add((OPEN_EPISODE_WITH_ID, (episode_id, draft.id, message["channel"], message["id"])))
        else:
            episode_id = await conn.fetchval(OPEN_EPISODE, draft.id, message["channel"], message["id"])
        draft.set(current_episode_id=episode_id, status=Status.OPEN.value, mode=Mode.BOT.value,
                  assignee_id=None, waiting_since=None, snoozed_until=None)
        return True
    if conv["status"] in (Status.SNOOZED, Status.PENDING):
        await unsnooze(conn, draft)
    return False


async def unsnooze(conn: asyncpg.Connection, draft: Draft) -> None:
    """Open now, whatever it was set aside for."""
    draft.set(status=Status.OPEN.value, snoozed_until=None)
    await timers.cancel(conn, kind=SNOOZE_TIMER, conversation_id=draft.id)


def customer_waits(draft: Draft) -> None:
    """The customer wrote to an agent conversation: it waits for an answer (since the first unanswered)."""
    draft.set_sql("waiting_since", "coalesce(waiting_since, now())")


def save_flow_state(draft: Draft, flow: str | None = None, version: str | None = None,
                    state: str | None = None, data: dict | None = None) -> None:
    """Where the bot is (no flow: the flow ended)."""
    draft.set(flow_name=flow, flow_version=version, flow_state=state, flow_data=data or {})


def add_labels(draft: Draft, labels: Iterable[str]) -> None:
    draft.set_sql("labels", "ARRAY(SELECT DISTINCT unnest(labels || {}::text[]))", list(labels))


async def escalate(conn: asyncpg.Connection, draft: Draft, reason: str) -> None:
    """To the agents' queue (counted once per episode, with the first reason)."""
    draft.set(mode=Mode.AGENT.value, status=Status.OPEN.value)
    customer_waits(draft)
    await draft.settle(conn)     # the episode may be this turn's, not written yet
    await _escalate_episode(conn, draft.view["current_episode_id"], reason)


async def _escalate_episode(conn: asyncpg.Connection, episode_id: int | None, reason: str) -> None:
    """Mark the episode escalated (the first time only); an episode opened on an earlier day changes
    that day's bot containment, so the day's rollup is marked for recomputing."""
    row = await conn.fetchrow(
        """UPDATE episodes SET escalated_at = coalesce(escalated_at, now()),
               escalation_reason = coalesce(escalation_reason, $2) WHERE id = $1
           RETURNING opened_at, escalated_at = now() AND opened_at < date_trunc('day', now(), 'UTC') AS past""",
        episode_id, reason)
    if row is not None and row["past"]:
        await _mark_rollup_days(conn, [row["opened_at"]])


async def to_bot(conn: asyncpg.Connection, draft: Draft) -> None:
    """An agent hands the conversation back to the bot: open, unassigned, nobody waiting."""
    draft.set(mode=Mode.BOT.value, assignee_id=None, waiting_since=None)
    await unsnooze(conn, draft)


async def hand_to_flow(conn: asyncpg.Connection, conversation_id: int, flow: str, state: str) -> bool:
    """Someone else (a journey step) puts the conversation in a flow state; the bot picks up from
    there with the flow's current version. False when an agent has the open conversation."""
    moved = await conn.fetchval(
        """UPDATE conversations SET flow_name = $2, flow_state = $3, flow_version = NULL, mode = $4,
               updated_at = now()
           WHERE id = $1 AND NOT (mode = $5 AND status <> $6) RETURNING id""",
        conversation_id, flow, state, Mode.BOT.value, Mode.AGENT.value, Status.RESOLVED.value)
    return moved is not None


# -- what agents do ---------------------------------------------------------------------------------

async def take_over(conn: asyncpg.Connection, conv: Mapping[str, Any], reason: str) -> None:
    """An agent acting on a bot conversation takes it over: agent mode, counted as an escalation."""
    if conv["mode"] == Mode.AGENT:
        return
    await conn.execute("UPDATE conversations SET mode = $2, updated_at = now() WHERE id = $1",
                       conv["id"], Mode.AGENT.value)
    await _escalate_episode(conn, conv["current_episode_id"], reason)


async def assign(conn: asyncpg.Connection, conversation_id: int, agent_id: int | None) -> None:
    await conn.execute("UPDATE conversations SET assignee_id = $2, updated_at = now() WHERE id = $1",
                       conversation_id, agent_id)


async def claim(conn: asyncpg.Connection, conversation_id: int, agent_id: int) -> asyncpg.Record | None:
    """Assign an unassigned conversation; None when someone has it. Of two agents claiming at once
    exactly one wins: the conditional UPDATE re-checks after waiting for the other's row lock."""
    return await conn.fetchrow(
        """UPDATE conversations SET assignee_id = $2, updated_at = now()
           WHERE id = $1 AND assignee_id IS NULL RETURNING *""", conversation_id, agent_id)


async def set_team(conn: asyncpg.Connection, conversation_id: int, team_id: int | None,
                   previous_team_id: int | None) -> Effects:
    """To another team's queue (both teams' agents hear of it)."""
    await conn.execute("UPDATE conversations SET team_id = $2, updated_at = now() WHERE id = $1",
                       conversation_id, team_id)
    await _mark_rollup_conversation(conn, conversation_id)     # its episodes count for the new team
    return _updated(conversation_id, team_id=team_id, previous_team_id=previous_team_id)


def _updated(conversation_id: int, **changed: Any) -> Effects:
    effects = Effects()
    effects.emit("conversation.updated", conversation_id=conversation_id, **changed)
    return effects


async def snooze(conn: asyncpg.Connection, conversation_id: int, until: datetime) -> Effects:
    """Set aside until `until` (a timer wakes it; a customer message wakes it sooner)."""
    await conn.execute("UPDATE conversations SET status = $3, snoozed_until = $2, updated_at = now() WHERE id = $1",
                       conversation_id, until, Status.SNOOZED.value)
    await timers.cancel(conn, kind=SNOOZE_TIMER, conversation_id=conversation_id)
    await timers.schedule(conn, kind=SNOOZE_TIMER, due_at=until, conversation_id=conversation_id,
                          payload={"until": until.isoformat()})
    return _updated(conversation_id, status=Status.SNOOZED.value, snoozed_until=until.isoformat())


async def wake(conn: asyncpg.Connection, conversation_ids: list[int]) -> list[int]:
    """These snoozes ended: the conversations still snoozed open again, and an agent conversation
    waits again (one statement for all). Returns those woken (each one's event: `woken`)."""
    rows = await conn.fetch(
        """UPDATE conversations SET status = $2, snoozed_until = NULL,
               waiting_since = CASE WHEN mode = $3 THEN coalesce(waiting_since, now()) END,
               updated_at = now()
           WHERE id = ANY($1::bigint[]) AND status = $4 RETURNING id""",
        sorted(set(conversation_ids)), Status.OPEN.value, Mode.AGENT.value, Status.SNOOZED.value)
    return [r["id"] for r in rows]


def woken(conversation_id: int) -> Effects:
    return _updated(conversation_id, status=Status.OPEN.value)


async def resolve(conn: asyncpg.Connection, conv: Mapping[str, Any], resolved_by: int | None) -> Effects:
    """End the episode (bot only when it was never escalated)."""
    await conn.execute(
        """UPDATE conversations SET status = $2, waiting_since = NULL, snoozed_until = NULL,
               updated_at = now() WHERE id = $1""", conv["id"], Status.RESOLVED.value)
    await conn.execute(
        """UPDATE episodes SET resolved_at = now(), resolved_by = $2,
               handled_by_bot_only = (escalated_at IS NULL) WHERE id = $1""",
        conv["current_episode_id"], resolved_by)
    await timers.cancel(conn, kind=SNOOZE_TIMER, conversation_id=conv["id"])
    return _updated(conv["id"], status=Status.RESOLVED.value)


async def reopen(conn: asyncpg.Connection, conv: Mapping[str, Any]) -> Effects:
    """The resolved episode goes on, with an agent."""
    await conn.execute("UPDATE conversations SET status = $2, mode = $3, updated_at = now() WHERE id = $1",
                       conv["id"], Status.OPEN.value, Mode.AGENT.value)
    was_resolved_at = await conn.fetchval(
        """UPDATE episodes e SET resolved_at = NULL, resolved_by = NULL, handled_by_bot_only = NULL
           FROM episodes o WHERE e.id = $1 AND o.id = e.id RETURNING o.resolved_at""",
        conv["current_episode_id"])
    await _mark_rollup_days(conn, [was_resolved_at])      # no longer resolved that day
    return _updated(conv["id"], status=Status.OPEN.value, mode=Mode.AGENT.value)


async def change_labels(conn: asyncpg.Connection, conversation_id: int, add: list[str],
                        remove: list[str]) -> tuple[list[str], Effects]:
    """The labels now (sorted), and the event that says so."""
    labels = list(await conn.fetchval(
        """UPDATE conversations SET updated_at = now(), labels = ARRAY(
               SELECT DISTINCT l FROM unnest(labels || $2::text[]) l WHERE l <> ALL($3::text[]) ORDER BY l)
           WHERE id = $1 RETURNING labels""", conversation_id, add, remove))
    return labels, _updated(conversation_id, labels=labels)


async def agent_answered(conn: asyncpg.Connection, conversation_id: int, agent_id: int | None,
                         episode_id: int | None = None) -> None:
    """An agent replied: nobody waits any more, the conversation is theirs if it was no one's, and an
    escalated episode has its first response (the first reply only)."""
    await conn.execute(
        """UPDATE conversations SET waiting_since = NULL, assignee_id = coalesce(assignee_id, $2),
               updated_at = now() WHERE id = $1""", conversation_id, agent_id)
    if episode_id is not None:
        # answered an escalation of an earlier day: that day's first response times change
        row = await conn.fetchrow(
            """UPDATE episodes SET first_response_at = now()
               WHERE id = $1 AND escalated_at IS NOT NULL AND first_response_at IS NULL
               RETURNING escalated_at, escalated_at < date_trunc('day', now(), 'UTC') AS past""", episode_id)
        if row is not None and row["past"]:
            await _mark_rollup_days(conn, [row["escalated_at"]])


async def rate_episode(conn: asyncpg.Connection, conversation_id: int, episode_id: int, score: int,
                       message_id: int) -> asyncpg.Record | None:
    """A survey answer on the episode it rates, with the agent (the assignee, else who resolved it)
    and the team it rates; None when the episode already has an answer."""
    return await conn.fetchrow(
        """UPDATE episodes e SET csat_score = $3, csat_at = now(), csat_message_id = $4,
               csat_agent_id = coalesce(c.assignee_id, e.resolved_by), csat_team_id = c.team_id
           FROM conversations c WHERE e.id = $2 AND c.id = $1 AND e.conversation_id = c.id AND e.csat_score IS NULL
           RETURNING e.csat_agent_id, e.csat_team_id""", conversation_id, episode_id, score, message_id)


# -- contacts merged or erased ----------------------------------------------------------------------

async def move_to_contact(conn: asyncpg.Connection, conversation_id: int, contact_id: int) -> None:
    await conn.execute("UPDATE conversations SET contact_id = $1 WHERE id = $2", contact_id, conversation_id)


async def absorb(conn: asyncpg.Connection, dst: Mapping[str, Any], src: Mapping[str, Any]) -> None:
    """After two threads' messages were joined into `dst`: `dst` is as active as the more active of
    the two, keeps both labels, the earliest wait and the latest inbound; `src` is left empty and
    resolved, pointing at `dst`."""
    d, s = dst["id"], src["id"]
    active = src if (src["status"] != Status.RESOLVED and dst["status"] == Status.RESOLVED) else dst
    await conn.execute(
        """UPDATE conversations SET
               last_seq = (SELECT coalesce(max(seq), 0) FROM messages WHERE conversation_id = $1),
               status = $2, mode = $3, current_episode_id = $4,
               assignee_id = coalesce(assignee_id, $5), team_id = coalesce(team_id, $6),
               labels = ARRAY(SELECT DISTINCT l FROM unnest(labels || $7::text[]) l ORDER BY l),
               waiting_since = LEAST(waiting_since, $8),
               last_inbound_channel = CASE WHEN $9 > coalesce(last_inbound_at, '-infinity') THEN $10
                                           ELSE last_inbound_channel END,
               last_inbound_at = GREATEST(last_inbound_at, $9),
               last_message_at = GREATEST(last_message_at, $11), updated_at = now()
           WHERE id = $1""",
        d, active["status"], active["mode"], active["current_episode_id"], src["assignee_id"],
        src["team_id"], list(src["labels"] or []), src["waiting_since"], src["last_inbound_at"],
        src["last_inbound_channel"], src["last_message_at"])
    await conn.execute(
        """UPDATE conversations SET status = $3, mode = $4, assignee_id = NULL, waiting_since = NULL,
               snoozed_until = NULL, current_episode_id = NULL, last_seq = 0, labels = '{}',
               flow_data = flow_data || jsonb_build_object('merged_into', $2::bigint), updated_at = now()
           WHERE id = $1""", s, d, Status.RESOLVED.value, Mode.BOT.value)
    # the joined thread's episodes count for dst's team, and its inbound days for one conversation
    await _mark_rollup_conversation(conn, d, messages=True)


async def erase(conn: asyncpg.Connection, conversation_ids: list[int], redacted: str) -> None:
    """An erased contact's threads: resolved, unassigned, no labels, no flow data; their episodes'
    escalation reasons (which may quote the customer) replaced by `redacted`."""
    await conn.execute(
        """UPDATE episodes SET escalation_reason = CASE WHEN escalation_reason IS NULL THEN NULL ELSE $2 END
           WHERE conversation_id = ANY($1::bigint[])""", conversation_ids, redacted)
    await conn.execute(
        """UPDATE conversations SET status = $2, flow_data = '{}'::jsonb, labels = '{}',
               assignee_id = NULL, waiting_since = NULL, snoozed_until = NULL, updated_at = now()
           WHERE id = ANY($1::bigint[])""", conversation_ids, Status.RESOLVED.value)


# -- the metrics' daily rollups (gateway/inbox/rollups.py) ------------------------------------------
# A change here to a day that ended before this transaction began may already be rolled up (or be
# being rolled up): the day is marked for the next pass to recompute. Today's days are not marked:
# no pass rolls a day up while a transaction that began in it is running.

_PAST = "(ts < date_trunc('day', now(), 'UTC'))"


async def _mark_rollup_days(conn: asyncpg.Connection, stamps: Iterable[datetime | None]) -> None:
    """The UTC days of `stamps` that ended before this transaction began are to be recomputed."""
    stamps = [s for s in stamps if s is not None]
    if stamps:
        await conn.execute(
            f"""INSERT INTO rollup_dirty (day)
                SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM unnest($1::timestamptz[]) ts WHERE {_PAST}""",
            stamps)


async def _mark_rollup_conversation(conn: asyncpg.Connection, conversation_id: int, *, messages: bool = False) -> None:
    """Every past day with an event of the conversation's episodes (its team counts them), and with
    `messages`, every past day it had an inbound message (its inbox reach counts it)."""
    await conn.execute(
        f"""INSERT INTO rollup_dirty (day)
            SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM episodes e,
                   unnest(ARRAY[e.opened_at, e.escalated_at, e.resolved_at]) ts
            WHERE e.conversation_id = $1 AND ts IS NOT NULL AND {_PAST}""", conversation_id)
    if messages:
        await conn.execute(
            f"""INSERT INTO rollup_dirty (day)
                SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date
                FROM (SELECT created_at AS ts FROM messages
                      WHERE conversation_id = $1 AND direction = 'in' AND kind = 'message') m WHERE {_PAST}""",
            conversation_id)
