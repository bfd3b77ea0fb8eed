"""Canned responses: saved replies with {{variables}}.

Known variables: contact.name, contact.external_id, contact.attributes.<key>, agent.name, plus
whatever the caller passes. An unknown variable is an error (a reply must not go out with a
hole in it).
"""
from __future__ import annotations

import re

import asyncpg

from gateway.inbox import Invalid, NotFound

VARIABLE = re.compile(r"\{\{\s*([a-zA-Z0-9_.]+)\s*\}\}")


def render(body: str, variables: dict[str, str]) -> str:
    missing = sorted({m.group(1) for m in VARIABLE.finditer(body) if m.group(1) not in variables})
    if missing:
        raise Invalid("missing_variables", "no value for: " + ", ".join(missing))
    return VARIABLE.sub(lambda m: str(variables[m.group(1)]), body)


async def variables_for(conn: asyncpg.Connection, conversation_id: int, agent_id: int | None) -> dict[str, str]:
    contact = await conn.fetchrow(
        """SELECT ct.name, ct.external_id, ct.attributes FROM contacts ct
           JOIN conversations c ON c.contact_id = ct.id WHERE c.id = $1""", conversation_id)
    out = {"contact.name": contact["name"] or "", "contact.external_id": contact["external_id"] or ""}
    for key, value in (contact["attributes"] or {}).items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            out[f"contact.attributes.{key}"] = str(value)
    if agent_id is not None:
        out["agent.name"] = await conn.fetchval("SELECT name FROM agents WHERE id = $1", agent_id) or ""
    return out


async def get(conn: asyncpg.Connection, canned_id: int, team_ids: frozenset[int] | None) -> asyncpg.Record:
    """A canned response the caller may use (team_ids None: every one)."""
    row = await conn.fetchrow("SELECT * FROM canned_responses WHERE id = $1", canned_id)
    if row is None or (team_ids is not None and row["team_id"] is not None and row["team_id"] not in team_ids):
        raise NotFound(f"canned response {canned_id}")
    return row


async def list_all(conn: asyncpg.Connection, team_ids: frozenset[int] | None) -> list[dict]:
    rows = await conn.fetch(
        """SELECT id, short_code, title, body, team_id, created_at, updated_at FROM canned_responses
           WHERE $1::bigint[] IS NULL OR team_id IS NULL OR team_id = ANY($1::bigint[]) ORDER BY short_code""",
        sorted(team_ids) if team_ids is not None else None)
    return [dict(r) for r in rows]


async def create(conn: asyncpg.Connection, *, short_code: str, title: str, body: str,
                 team_id: int | None) -> dict | None:
    """A new canned response, or None when its short code is taken (Invalid for an unknown team)."""
    if team_id is not None and not await conn.fetchval("SELECT 1 FROM teams WHERE id = $1", team_id):
        raise Invalid("unknown_team", f"no team with id {team_id}")
    row = await conn.fetchrow(
        """INSERT INTO canned_responses (short_code, title, body, team_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT (short_code) DO NOTHING
           RETURNING id, short_code, title, body, team_id, created_at, updated_at""",
        short_code, title, body, team_id)
    return dict(row) if row is not None else None


async def delete(conn: asyncpg.Connection, canned_id: int) -> bool:
    """Delete a canned response; False when there is none with that id."""
    return await conn.fetchval("DELETE FROM canned_responses WHERE id = $1 RETURNING id", canned_id) is not None
