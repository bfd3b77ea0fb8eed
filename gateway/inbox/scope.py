"""Who may see which conversations.

Rule: admins and read-only tokens see every conversation. An agent sees the conversations routed
to one of their teams, the unrouted queue (team_id NULL, the shared triage queue every agent
works), and anything assigned to them. A contact, and everything hanging off it (events, consents,
identities, journeys), is visible exactly when its conversation is (`visible_contact`); a contact
without a conversation only to those who see everything. Integration tokens see nothing unless they
carry a read scope (`events:read`), which lets them read every contact's events. Everything the
API shows (lists, one conversation, its contact, events, search, the realtime feed) goes through
`Scope`, so the rule lives here only.
"""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.domain.auth import Principal
from gateway.inbox import NotFound


@dataclass(frozen=True)
class Scope:
    everything: bool
    agent_id: int | None = None
    team_ids: frozenset[int] = frozenset()
    unrouted: bool = True           # sees the shared triage queue (team_id NULL)

    def sql(self, alias: str, args: list) -> str:
        """A WHERE fragment over conversations `alias`; appends its parameters to `args`."""
        if self.everything:
            return "TRUE"
        args.append(sorted(self.team_ids))
        clause = (f"({alias}.team_id IS NULL AND {str(self.unrouted).upper()} "
                  f"OR {alias}.team_id = ANY(${len(args)}::bigint[])")
        if self.agent_id is not None:
            args.append(self.agent_id)
            clause += f" OR {alias}.assignee_id = ${len(args)}"
        return clause + ")"

    def sees(self, team_id: int | None, assignee_id: int | None) -> bool:
        """The same rule in Python, for events pushed on the realtime feed."""
        if self.everything or team_id is None and self.unrouted or team_id in self.team_ids:
            return True
        return self.agent_id is not None and assignee_id == self.agent_id


READ_SCOPES = frozenset({"events:read"})


async def scope_for(conn: asyncpg.Connection, principal: Principal) -> Scope:
    """What `principal` may see (its teams are read now: a team change applies to the next call)."""
    if principal.role in ("admin", "readonly"):
        return Scope(everything=True, agent_id=principal.agent_id)
    if principal.role == "integration":
        return Scope(everything=bool(principal.scopes & READ_SCOPES), unrouted=False)
    if principal.agent_id is None:
        return Scope(everything=False)
    rows = await conn.fetch("SELECT team_id FROM team_members WHERE agent_id = $1", principal.agent_id)
    return Scope(everything=False, agent_id=principal.agent_id, team_ids=frozenset(r["team_id"] for r in rows))


async def visible_conversation(conn: asyncpg.Connection, scope: Scope, conversation_id: int, *,
                               lock: bool = False) -> asyncpg.Record:
    """The conversation row, or NotFound when it does not exist or is not the caller's."""
    args: list = [conversation_id]
    row = await conn.fetchrow(
        f"SELECT * FROM conversations c WHERE c.id = $1 AND {scope.sql('c', args)}"
        + (" FOR UPDATE" if lock else ""), *args)
    if row is None:
        raise NotFound(f"conversation {conversation_id}")
    return row


async def may_see(conn: asyncpg.Connection, scope: Scope, conversation_id: int) -> bool:
    """Whether the conversation exists and is the caller's (no row read, no error)."""
    args: list = [conversation_id]
    return bool(await conn.fetchval(f"SELECT 1 FROM conversations c WHERE c.id = $1 AND {scope.sql('c', args)}",
                                    *args))


async def owners(conn, conversation_ids) -> dict[int, tuple[int | None, int | None]]:
    """{conversation id: (team_id, assignee_id)} of the given conversations (`conn` may be a pool):
    what decides which agents' feeds see an event about them."""
    rows = await conn.fetch("SELECT id, team_id, assignee_id FROM conversations WHERE id = ANY($1::bigint[])",
                            sorted(conversation_ids))
    return {r["id"]: (r["team_id"], r["assignee_id"]) for r in rows}


async def visible_contact(conn: asyncpg.Connection, scope: Scope, contact_id: int) -> asyncpg.Record:
    """A contact the caller may see: through its conversation (a contact without one: admins only)."""
    args: list = [contact_id]
    row = await conn.fetchrow(
        f"""SELECT ct.* FROM contacts ct LEFT JOIN conversations c ON c.contact_id = ct.id
            WHERE ct.id = $1 AND ct.merged_into IS NULL AND ct.erased_at IS NULL
              AND (c.id IS NOT NULL AND {scope.sql('c', args)} OR c.id IS NULL AND {str(scope.everything).upper()})""",
        *args)
    if row is None:
        raise NotFound(f"contact {contact_id}")
    return row
