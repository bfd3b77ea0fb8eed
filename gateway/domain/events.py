"""Business events: stored once per event key, shown in the contact's thread, handed to hooks.

Used by `POST /api/v1/events` and by conversation flows whose actions emit events (`quote_sent`).
Everything happens in the caller's transaction: the event row, its thread entry and whatever the
hooks do (journey enrollment, goal exits) commit together.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from gateway.domain import conversation, thread

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

# What an event name may be (the API, flows and journey definitions check it here).
EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


async def record_event(conn: asyncpg.Connection, runtime: Runtime, *, contact_id: int, name: str, properties: dict,
                       occurred_at: datetime, event_key: str, source: str,
                       effects: thread.Effects) -> tuple[asyncpg.Record, bool]:
    """Store an event (idempotent by event_key). Returns (row, created); a duplicate does nothing."""
    row = await conn.fetchrow(
        """INSERT INTO events (event_key, contact_id, name, properties, occurred_at, source)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_key) DO NOTHING RETURNING *""",
        event_key, contact_id, name, properties, occurred_at, source)
    if row is None:
        return await conn.fetchrow("SELECT * FROM events WHERE event_key = $1", event_key), False
    conversation_id = await conversation.for_contact(conn, contact_id)
    await thread.add_event(conn, conversation_id, f"Event: {name}", event="business_event",
                           details={"name": name, "event_id": row["id"], "event_key": event_key,
                                    "properties": properties, "source": source,
                                    "occurred_at": occurred_at.isoformat()})
    await runtime.hooks.on_event(conn, row, effects)
    effects.emit("contact.event", contact_id=contact_id, conversation_id=conversation_id, event_id=row["id"],
                 name=name)
    return row, True


async def contact_events(conn: asyncpg.Connection, contact_id: int, *, name: str | None, limit: int) -> list:
    """A contact's events, newest first (optionally only those named `name`)."""
    return await conn.fetch(
        """SELECT id, event_key, name, properties, occurred_at, source, created_at FROM events
           WHERE contact_id = $1 AND ($2::text IS NULL OR name = $2)
           ORDER BY occurred_at DESC, id DESC LIMIT $3""", contact_id, name, limit)


async def emit_event(conn: asyncpg.Connection, runtime: Runtime, contact_id: int, name: str, properties: dict | None,
                     effects: thread.Effects, source: str = "flow", event_key: str | None = None) -> asyncpg.Record:
    """An event raised inside the gateway (a flow action, a journey): stored and hooked like an API one."""
    if not EVENT_NAME.match(name or ""):
        raise ValueError(f"{name!r} is not an event name (letters, digits, _ . : -)")
    row, _ = await record_event(conn, runtime, contact_id=contact_id, name=name, properties=properties or {},
                                occurred_at=runtime.clock.now(), event_key=event_key or f"{source}:{uuid.uuid4().hex}",
                                source=source, effects=effects)
    return row
