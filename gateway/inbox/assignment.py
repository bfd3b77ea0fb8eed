"""Agent presence and automatic assignment.

An agent is online while their heartbeats keep coming (`PRESENCE_TTL`). Waiting conversations
(agent mode, open, unassigned) go round robin to online agents of the conversation's team (any
online agent for the unrouted queue) that have room under their capacity: the agent assigned
longest ago goes first. Agent rows are taken FOR UPDATE SKIP LOCKED, so assigners in several
processes never hand one agent more than their capacity.
"""
from __future__ import annotations


import asyncpg

from gateway.app.log import get_logger
from gateway.domain import conversation, thread
from gateway.domain.conversation import ACTIVE_STATUSES, IN_AGENT_QUEUE
from gateway.infra import periodic

log = get_logger(__name__)

PRESENCE_TTL_SECONDS = 60
PRESENCES = ("online", "away", "offline")


async def heartbeat(conn: asyncpg.Connection, agent_id: int, presence: str, effects: thread.Effects) -> dict:
    """Record a heartbeat; emits a presence event when the visible presence changes."""
    row = await conn.fetchrow(
        f"""WITH before AS (
                SELECT CASE WHEN presence = 'online' AND last_seen_at > now() - interval '{PRESENCE_TTL_SECONDS} seconds'
                            THEN 'online' WHEN presence = 'away' AND last_seen_at > now() - interval
                            '{PRESENCE_TTL_SECONDS} seconds' THEN 'away' ELSE 'offline' END AS was
                FROM agents WHERE id = $1 FOR UPDATE)
            UPDATE agents SET presence = $2, last_seen_at = now() FROM before
            WHERE id = $1 AND deactivated_at IS NULL RETURNING id, name, presence, last_seen_at, before.was""",
        agent_id, presence)
    if row is None:
        return {}
    if row["was"] != presence:
        effects.emit("presence", agent_id=agent_id, presence=presence)
    return {"agent_id": row["id"], "presence": row["presence"], "last_seen_at": row["last_seen_at"]}


ONLINE_SQL = f"a.presence = 'online' AND a.last_seen_at > now() - interval '{PRESENCE_TTL_SECONDS} seconds'"


async def _pick_agent(conn: asyncpg.Connection, team_id: int | None) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT a.id, a.name FROM agents a
            WHERE a.deactivated_at IS NULL AND {ONLINE_SQL}
              AND ($1::bigint IS NULL OR EXISTS (
                    SELECT 1 FROM team_members tm WHERE tm.agent_id = a.id AND tm.team_id = $1))
              AND (SELECT count(*) FROM conversations c
                   WHERE c.assignee_id = a.id AND c.status = ANY($2::text[])) < a.capacity
            ORDER BY a.last_assigned_at NULLS FIRST, a.id
            LIMIT 1 FOR UPDATE OF a SKIP LOCKED""", team_id, list(ACTIVE_STATUSES))


async def auto_assign(conn: asyncpg.Connection, conversation_id: int, effects: thread.Effects) -> int | None:
    """Assign one waiting conversation if an agent has room. Returns the agent id or None."""
    conv = await conn.fetchrow(
        f"""SELECT id, team_id FROM conversations WHERE id = $1 AND {IN_AGENT_QUEUE}
               AND assignee_id IS NULL FOR UPDATE SKIP LOCKED""", conversation_id)
    if conv is None:
        return None
    agent = await _pick_agent(conn, conv["team_id"])
    if agent is None:
        return None
    await conversation.assign(conn, conversation_id, agent["id"])
    await conn.execute("UPDATE agents SET last_assigned_at = clock_timestamp() WHERE id = $1", agent["id"])
    await thread.add_event(conn, conversation_id, f"Auto-assigned to {agent['name']}", event="auto_assigned",
                           details={"assignee_id": agent["id"]})
    await conn.execute(
        """INSERT INTO audit_log (actor_type, action, conversation_id, details)
           VALUES ('system', 'auto_assign', $1, $2)""", conversation_id, {"assignee_id": agent["id"]})
    effects.emit("assignment", conversation_id=conversation_id, assignee_id=agent["id"],
                 previous_assignee_id=None, team_id=conv["team_id"], auto=True)
    return agent["id"]


async def assign_waiting(conn: asyncpg.Connection, effects: thread.Effects, *, batch: int = 50) -> int:
    """One pass over the waiting queue, longest waiting first. Returns how many were assigned."""
    if not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM agents a WHERE {ONLINE_SQL})"):
        return 0
    ids = await conn.fetch(
        f"""SELECT id FROM conversations WHERE {IN_AGENT_QUEUE} AND assignee_id IS NULL
           ORDER BY coalesce(waiting_since, 'infinity'::timestamptz), id LIMIT $1""", batch)
    assigned = 0
    full_teams: set = set()
    for r in ids:
        team = await conn.fetchval("SELECT team_id FROM conversations WHERE id = $1", r["id"])
        if team in full_teams:
            continue
        async with conn.transaction():
            agent = await auto_assign(conn, r["id"], effects)
        if agent is None:
            full_teams.add(team)
        else:
            assigned += 1
    return assigned


class AutoAssigner:
    """Runs `assign_waiting` every `interval` seconds (in each API process; SKIP LOCKED keeps
    several of them from colliding)."""

    def __init__(self, pool: asyncpg.Pool, publish, *, interval: float = 1.0):
        self.pool = pool
        self.publish = publish
        self.interval = interval

    async def run_once(self) -> int:
        effects = thread.Effects()
        async with self.pool.acquire() as conn:
            n = await assign_waiting(conn, effects)
        if effects.events:
            await self.publish(effects)
        return n

    async def run(self, stop) -> None:
        await periodic.every(self.interval, stop, self.run_once, log=log, failed="auto-assignment pass failed",
                             errors=(OSError, asyncpg.PostgresError, asyncpg.InterfaceError))
