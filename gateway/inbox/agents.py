"""Agents, teams and memberships (administration)."""
from __future__ import annotations

import asyncpg

from gateway.domain import auth
from gateway.inbox import Conflict, Invalid, NotFound, sign_in
from gateway.inbox.assignment import PRESENCE_TTL_SECONDS

AGENT_COLUMNS = f"""a.id, a.name, a.email, a.role, a.password_hash IS NOT NULL AS has_password, a.capacity, a.last_seen_at, a.created_at, a.deactivated_at,
    CASE WHEN a.presence <> 'offline' AND a.last_seen_at > now() - interval '{PRESENCE_TTL_SECONDS} seconds'
         THEN a.presence ELSE 'offline' END AS presence,
    ARRAY(SELECT tm.team_id FROM team_members tm WHERE tm.agent_id = a.id ORDER BY tm.team_id) AS team_ids"""


async def _check_teams(conn, team_ids: list[int]) -> None:
    found = await conn.fetchval("SELECT count(*) FROM teams WHERE id = ANY($1::bigint[])", team_ids)
    if found != len(set(team_ids)):
        raise Invalid("unknown_team", "team_ids names a team that does not exist")


async def create_agent(conn: asyncpg.Connection, *, name: str, email: str | None, capacity: int,
                       team_ids: list[int], role: str = "agent") -> dict:
    await _check_teams(conn, team_ids)
    try:
        agent_id = await conn.fetchval(
            "INSERT INTO agents (name, email, capacity, role) VALUES ($1, $2, $3, $4) RETURNING id",
            name, email, capacity, role)
    except asyncpg.UniqueViolationError:
        raise Conflict("email_taken", "an agent with this email exists") from None
    await conn.execute(
        "INSERT INTO team_members (team_id, agent_id) SELECT unnest($1::bigint[]), $2 ON CONFLICT DO NOTHING",
        sorted(set(team_ids)), agent_id)
    return await get_agent(conn, agent_id)


async def update_agent(conn: asyncpg.Connection, agent_id: int, *, name: str | None = None,
                       capacity: int | None = None, team_ids: list[int] | None = None,
                       active: bool | None = None, role: str | None = None) -> dict:
    """Change an agent. Deactivating revokes every token of the agent (reactivating does not bring
    them back: issue new ones) and ends its console sessions (`access.still_allowed` refuses them
    at once anyway)."""
    if not await conn.fetchval("SELECT 1 FROM agents WHERE id = $1", agent_id):
        raise NotFound(f"agent {agent_id}")
    await conn.execute(
        """UPDATE agents SET name = coalesce($2, name), capacity = coalesce($3, capacity),
               deactivated_at = CASE WHEN $4::boolean IS NULL THEN deactivated_at
                                     WHEN $4 THEN NULL ELSE coalesce(deactivated_at, now()) END,
               role = coalesce($5, role)
           WHERE id = $1""", agent_id, name, capacity, active, role)
    if active is False:
        await auth.revoke_agent_tokens(conn, agent_id)
        await sign_in.end_sessions(conn, agent_id)
    if team_ids is not None:
        await _check_teams(conn, team_ids)
        await conn.execute("DELETE FROM team_members WHERE agent_id = $1 AND team_id <> ALL($2::bigint[])",
                           agent_id, team_ids)
        await conn.execute(
            "INSERT INTO team_members (team_id, agent_id) SELECT unnest($1::bigint[]), $2 ON CONFLICT DO NOTHING",
            sorted(set(team_ids)), agent_id)
    return await get_agent(conn, agent_id)


async def get_agent(conn: asyncpg.Connection, agent_id: int) -> dict:
    row = await conn.fetchrow(f"SELECT {AGENT_COLUMNS} FROM agents a WHERE a.id = $1", agent_id)
    if row is None:
        raise NotFound(f"agent {agent_id}")
    return {**dict(row), "team_ids": list(row["team_ids"])}


async def list_agents(conn: asyncpg.Connection) -> list[dict]:
    rows = await conn.fetch(f"SELECT {AGENT_COLUMNS} FROM agents a ORDER BY a.id")
    return [{**dict(r), "team_ids": list(r["team_ids"])} for r in rows]


async def create_team(conn: asyncpg.Connection, name: str) -> dict:
    try:
        row = await conn.fetchrow("INSERT INTO teams (name) VALUES ($1) RETURNING id, name, created_at", name)
    except asyncpg.UniqueViolationError:
        raise Conflict("name_taken", "a team with this name exists") from None
    return dict(row)


async def list_teams(conn: asyncpg.Connection) -> list[dict]:
    rows = await conn.fetch(
        """SELECT t.id, t.name, t.created_at,
                  ARRAY(SELECT agent_id FROM team_members tm WHERE tm.team_id = t.id ORDER BY agent_id) AS agent_ids
           FROM teams t ORDER BY t.id""")
    return [{**dict(r), "agent_ids": list(r["agent_ids"])} for r in rows]
