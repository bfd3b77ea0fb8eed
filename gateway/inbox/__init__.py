"""The shared inbox: plain SQL functions over an asyncpg connection.

Every function takes a connection so it composes inside the caller's transaction; parameters are
`$1..$n`. HTTP concerns (roles, JSON, status codes) live in gateway.http.inbox*; these modules
raise the small exceptions below and let the caller map them.
"""
from __future__ import annotations

from typing import Any


class NotFound(LookupError):
    """The thing does not exist, or the caller may not see it (indistinguishable on purpose)."""


class Conflict(Exception):
    """The action does not fit the current state (already assigned, not resolved, ...)."""

    def __init__(self, code: str, message: str, **extra):
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


class Invalid(ValueError):
    """A well-formed request that names something impossible (unknown agent, bad cursor)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


async def lock_contact_conversations(conn: Any, contact_ids: list[int]) -> list[int]:
    """Take the conversation worker's lock on every conversation of these contacts; their ids.

    Call it before touching the contacts' rows: the worker holds a conversation's lock while it
    writes that conversation's rows, so taking it first (lowest id first) cannot deadlock with it
    or with another caller. Conversations created while waiting are locked too.
    """
    locked: set[int] = set()
    while True:
        ids = {r["id"] for r in await conn.fetch(
            "SELECT id FROM conversations WHERE contact_id = ANY($1::bigint[])", contact_ids)}
        if ids <= locked:
            return sorted(locked)
        for conv_id in sorted(ids - locked):
            await conn.execute("SELECT pg_advisory_xact_lock($1)", conv_id)
        locked |= ids
