"""Search across messages and contacts (PostgreSQL full-text search, GIN indexes of 0003)."""
from __future__ import annotations

import asyncpg

from gateway.inbox.scope import Scope

# Where to look first: the newest messages, walked newest first, stop at the page; a word in many
# messages fills the page within a few thousand. Only a rarer query then looks its matches up in
# the GIN index and sorts them (few, by then). The planner cannot tell the two apart from its
# statistics: one plan for both walked every message for a rare word, or sorted every match of a
# common one.
RECENT_WINDOW = 2000


async def search_messages(conn: asyncpg.Connection, scope: Scope, q: str, *, limit: int = 20) -> list[dict]:
    """Customer and agent messages and private notes matching `q` (web-search syntax: words,
    "quoted phrases", -exclusions, or), newest first, in conversations the caller may see."""
    recent = f"""(SELECT * FROM messages WHERE id IN (
        SELECT id FROM messages ORDER BY created_at DESC, id DESC LIMIT {RECENT_WINDOW}))"""
    rows = await _search(conn, scope, q, limit, source=recent)
    if len(rows) < limit:
        rows = await _search(conn, scope, q, limit, source="""(
            WITH hits AS MATERIALIZED (SELECT id FROM messages WHERE search @@ websearch_to_tsquery('simple', $1))
            SELECT * FROM messages WHERE id IN (SELECT id FROM hits))""")
    return rows


async def _search(conn: asyncpg.Connection, scope: Scope, q: str, limit: int, *, source: str) -> list[dict]:
    args: list = [q, limit]
    rows = await conn.fetch(
        f"""SELECT m.id, m.conversation_id, m.seq, m.direction, m.kind, m.channel, m.created_at,
                   ts_headline('simple', m.body, query, 'MaxFragments=1, MaxWords=20, MinWords=5') AS snippet
            FROM {source} m JOIN conversations c ON c.id = m.conversation_id,
                 websearch_to_tsquery('simple', $1) AS query
            WHERE m.search @@ query AND m.kind IN ('message', 'note') AND {scope.sql('c', args)}
            ORDER BY m.created_at DESC, m.id DESC LIMIT $2""", *args)
    return [dict(r) for r in rows]


def contact_matches(query: str, prefix: str) -> str:
    """SQL: contact `ct` matches the search `query` (name, external id, string attributes) or one of
    its addresses starts with `prefix` (the lowercased query; 3 characters at least)."""
    return f"""(ct.search @@ websearch_to_tsquery('simple', {query})
                OR ct.id IN (SELECT contact_id FROM identities
                             WHERE address LIKE replace(replace({prefix}, '%', ''), '_', '\\_') || '%'
                                   AND length({prefix}) >= 3))"""


async def search_contacts(conn: asyncpg.Connection, scope: Scope, q: str, *, limit: int = 20) -> list[dict]:
    """Contacts whose name, external id or string attributes match `q`, or one of whose
    addresses starts with it (a phone number, an email)."""
    args: list = [q, q.strip().lower(), limit]
    rows = await conn.fetch(
        f"""SELECT ct.id, ct.name, ct.external_id, ct.attributes, c.id AS conversation_id
            FROM contacts ct LEFT JOIN conversations c ON c.contact_id = ct.id
            WHERE ct.merged_into IS NULL AND ct.erased_at IS NULL
              AND {contact_matches("$1", "$2")}
              AND (c.id IS NULL AND {str(scope.everything).upper()} OR c.id IS NOT NULL AND {scope.sql('c', args)})
            ORDER BY ct.id DESC LIMIT $3""", *args)
    return [dict(r) for r in rows]
