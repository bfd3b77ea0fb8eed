"""Reading the inbox: conversation lists (keyset pagination), one conversation, its history."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.domain.inputs import loads
from gateway.inbox import Invalid, NotFound
from gateway.inbox.scope import Scope, visible_conversation

STATUSES = ("open", "pending", "snoozed", "resolved")
MODES = ("bot", "agent")
SORTS = ("waiting", "newest")

# Sort key expressions; they match the expression indexes of migration 0003 exactly.
_KEYS = {
    "waiting": ("coalesce(c.waiting_since, 'infinity'::timestamptz)", "ASC", ">"),
    "newest": ("coalesce(c.last_message_at, '-infinity'::timestamptz)", "DESC", "<"),
}

CONVERSATION_COLUMNS = """c.id, c.contact_id, c.status, c.mode, c.team_id, c.assignee_id, c.labels,
    c.flow_name, c.flow_state, c.last_seq, c.last_inbound_at, c.last_inbound_channel, c.last_message_at,
    c.waiting_since, c.snoozed_until, c.current_episode_id, c.created_at, c.updated_at,
    (SELECT m.inbox_id FROM messages m WHERE m.conversation_id = c.id AND m.direction = 'in'
     ORDER BY m.seq DESC LIMIT 1) AS inbox_id"""

MESSAGE_COLUMNS = """id, conversation_id, seq, episode_id, direction, kind, channel, body, content, status,
    error_code, error_message, author_type, author_id, sender_address, recipient_address, purpose, inbox_id,
    created_at, status_updated_at, expired_at,
    (content #>> '{extra,sender_auth,verified}')::boolean AS sender_verified,
    content ->> 'sent_text' AS sent_text,
    provider_message_id, (SELECT o.attempts FROM outbox o WHERE o.message_id = messages.id) AS attempts,
    (SELECT o.last_error FROM outbox o WHERE o.message_id = messages.id) AS last_error"""


@dataclass(frozen=True)
class ConversationFilter:
    status: str | None = None
    mode: str | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    team_id: int | None = None
    channel: str | None = None          # the channel the customer last wrote from
    inbox_id: int | None = None         # the inbox the customer last wrote to
    label: str | None = None
    waiting_before: datetime | None = None
    sort: str = "waiting"


def encode_cursor(sort: str, key: str, row_id: int) -> str:
    raw = json.dumps([sort, key, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got_sort, key, row_id = loads(raw, field="cursor")   # InputError is a ValueError
        if got_sort != sort or not isinstance(key, str) or not isinstance(row_id, int):
            raise ValueError
        if key not in ("infinity", "-infinity"):
            datetime.fromisoformat(key.replace(" ", "T"))
        if not 0 < row_id < 2**63:
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError):
        raise Invalid("invalid_cursor", "cursor is not valid for this list and sort") from None
    return key, row_id


def list_query(scope: Scope, f: ConversationFilter, *, limit: int, cursor: str | None) -> tuple[str, list]:
    """The SQL of one page (limit + 1 rows, to know whether there is a next page) and its args."""
    key_sql, direction, op = _KEYS[f.sort]
    args: list = []
    where = [scope.sql("c", args), "ct.merged_into IS NULL"]

    def add(clause: str, value) -> None:
        args.append(value)
        where.append(clause.format(f"${len(args)}"))

    if f.status:
        add("c.status = {}", f.status)
    if f.mode:
        add("c.mode = {}", f.mode)
    if f.assignee_id is not None:
        add("c.assignee_id = {}", f.assignee_id)
    if f.unassigned:
        where.append("c.assignee_id IS NULL")
    if f.team_id is not None:
        add("c.team_id = {}", f.team_id)
    if f.channel:
        add("c.last_inbound_channel = {}", f.channel)
    if f.inbox_id is not None:
        add("""(SELECT m.inbox_id FROM messages m WHERE m.conversation_id = c.id AND m.direction = 'in'
               ORDER BY m.seq DESC LIMIT 1) = {}""", f.inbox_id)
    if f.label:
        add("c.labels @> ARRAY[{}]::text[] AND c.labels <> '{{}}'", f.label)   # the partial GIN index (0018)
    if f.waiting_before is not None:
        add("c.waiting_since <= {}", f.waiting_before)
    if cursor:
        key, row_id = decode_cursor(cursor, f.sort)
        args.extend([key, row_id])
        where.append(f"({key_sql}, c.id) {op} (${len(args) - 1}::text::timestamptz, ${len(args)})")
    args.append(limit + 1)
    sql = f"""SELECT {CONVERSATION_COLUMNS}, {key_sql}::text AS sort_key, ct.name AS contact_name
              FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
              WHERE {' AND '.join(where)}
              ORDER BY {key_sql} {direction}, c.id {direction}
              LIMIT ${len(args)}"""
    return sql, args


async def list_conversations(conn: asyncpg.Connection, scope: Scope, f: ConversationFilter, *,
                             limit: int = 25, cursor: str | None = None) -> tuple[list[dict], str | None]:
    """One page of conversations and the cursor of the next page (None at the end).

    Keyset pagination on (sort key, id): a page costs the same at any depth, and rows inserted
    or moved meanwhile never make a page repeat or skip rows that kept their place.
    """
    sql, args = list_query(scope, f, limit=limit, cursor=cursor)
    rows = await conn.fetch(sql, *args)
    page = rows[:limit]
    next_cursor = encode_cursor(f.sort, page[-1]["sort_key"], page[-1]["id"]) if len(rows) > limit else None
    return [_conversation(r) for r in page], next_cursor


def _conversation(r) -> dict:
    d = dict(r)
    d.pop("sort_key", None)
    d["labels"] = list(d["labels"] or [])
    return d


async def contact_detail(conn: asyncpg.Connection, contact_id: int) -> dict:
    contact = await conn.fetchrow(
        """SELECT id, name, external_id, attributes, locale, timezone, created_at, updated_at
           FROM contacts WHERE id = $1""", contact_id)
    identities = await conn.fetch(
        "SELECT id, kind, address, verified, created_at FROM identities WHERE contact_id = $1 ORDER BY id",
        contact_id)
    conversation_id = await conn.fetchval("SELECT id FROM conversations WHERE contact_id = $1", contact_id)
    return {**dict(contact), "identities": [dict(i) for i in identities], "conversation_id": conversation_id}


async def conversation_detail(conn: asyncpg.Connection, scope: Scope, conversation_id: int) -> dict:
    """The conversation, its contact (all identities and attributes), episode, assignee and team."""
    args: list = [conversation_id]
    conv = await conn.fetchrow(
        f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1 AND {scope.sql('c', args)}", *args)
    if conv is None:
        raise NotFound(f"conversation {conversation_id}")
    out = _conversation(conv)
    out["contact"] = await contact_detail(conn, conv["contact_id"])
    episode = await conn.fetchrow(
        """SELECT id, opened_at, escalated_at, first_response_at, resolved_at, resolved_by,
                  escalation_reason, channel, csat_score, csat_at FROM episodes WHERE id = $1""",
        conv["current_episode_id"])
    out["episode"] = dict(episode) if episode else None
    out["episodes"] = await conn.fetchval("SELECT count(*) FROM episodes WHERE conversation_id = $1",
                                          conversation_id)
    assignee = await conn.fetchrow("SELECT id, name, email FROM agents WHERE id = $1", conv["assignee_id"]) \
        if conv["assignee_id"] else None
    out["assignee"] = dict(assignee) if assignee else None
    team = await conn.fetchrow("SELECT id, name FROM teams WHERE id = $1", conv["team_id"]) \
        if conv["team_id"] else None
    out["team"] = dict(team) if team else None
    return out


async def list_messages(conn: asyncpg.Connection, scope: Scope, conversation_id: int, *,
                        after_seq: int | None = None, before_seq: int | None = None,
                        limit: int = 50) -> dict:
    """A window of the thread in seq order: after a seq (forward), before one (backward) or the
    latest page. Messages, delivery statuses, private notes and system events, across every
    channel and episode."""
    await visible_conversation(conn, scope, conversation_id)
    if after_seq is not None:
        rows = await conn.fetch(
            f"""SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND seq > $2
                ORDER BY seq LIMIT $3""", conversation_id, after_seq, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        has_before = after_seq > 0 and await _exists(conn, conversation_id, "seq <= $2", after_seq)
        has_after = more
    else:
        bound = before_seq if before_seq is not None else 2**62
        rows = await conn.fetch(
            f"""SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND seq < $2
                ORDER BY seq DESC LIMIT $3""", conversation_id, bound, limit + 1)
        has_before = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        has_after = before_seq is not None and await _exists(conn, conversation_id, "seq >= $2", before_seq)
    return {"messages": [dict(r) for r in rows], "has_more_before": has_before, "has_more_after": has_after}


async def _exists(conn, conversation_id: int, clause: str, value: int) -> bool:
    return bool(await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1 AND {clause})",
        conversation_id, value))


async def get_message(conn: asyncpg.Connection, message_id: int) -> dict:
    return dict(await conn.fetchrow(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1", message_id))
