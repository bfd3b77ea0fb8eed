"""Consent: keywords, records, and the send-time check.

Keywords follow carrier practice: an exact single word, any case, trimmed. STOP revokes every
non-compliance message to that address on that channel; START restores it; HELP answers with the
configured help text. Email one-click unsubscribe revokes marketing on email only.
"""
from __future__ import annotations

import asyncpg

from gateway.identity import address_hash
from gateway.types import Purpose

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

ALL = "all"
MARKETING = "marketing"


def classify_keyword(text: str) -> str | None:
    """'stop' | 'start' | 'help' | None, for an exact single-word message."""
    word = text.strip().upper()
    if not word or any(ch.isspace() for ch in word):
        return None
    word = word.rstrip(".!")
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


async def set_consent(conn: asyncpg.Connection, *, kind: str, address: str, channel: str,
                      purpose: str, granted: bool, source: str) -> None:
    await conn.execute(
        """INSERT INTO consents (address_kind, address, channel, purpose, granted, source, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, now())
           ON CONFLICT (address_kind, address, channel, purpose)
           DO UPDATE SET granted = EXCLUDED.granted, source = EXCLUDED.source, updated_at = now()""",
        kind, address, channel, purpose, granted, source)


async def contact_consents(conn: asyncpg.Connection, contact_id: int) -> list[dict]:
    """What every address of a contact has agreed to, per channel and purpose (latest answer)."""
    rows = await conn.fetch(
        """SELECT c.address_kind, c.address, c.channel, c.purpose, c.granted, c.source, c.updated_at
           FROM consents c JOIN identities i ON i.kind = c.address_kind AND i.address = c.address
           WHERE i.contact_id = $1 ORDER BY c.channel, c.purpose, c.address""", contact_id)
    return [dict(r) for r in rows]


def _reason(suppressed: bool, revoked: set[str], purpose: str) -> str | None:
    if suppressed:
        return "suppressed"
    if ALL in revoked:
        return "opted_out"
    if purpose == Purpose.MARKETING.value and MARKETING in revoked:
        return "no_marketing_consent"
    return None


async def blocked_reason(conn, *, kind: str, address: str, channel: str, purpose: str,
                         compliance: bool = False) -> str | None:
    """Why a send to this address must not happen now, or None when it may (one query).

    Checked at send time by the outbox, so a STOP that arrives after a message was queued still
    stops it. `conn` may be a connection or a pool.
    """
    if compliance:
        return None
    reasons = await blocked_reasons(conn, [(kind, address, channel)], purpose)
    return reasons.get((kind, address, channel))


async def blocked_reasons(conn, targets: list[tuple[str, str, str]], purpose: str) -> dict:
    """For many (kind, address, channel) at once: {target: reason} for the blocked ones (one query)."""
    if not targets:
        return {}
    rows = await conn.fetch(
        """SELECT t.kind, t.address, t.channel,
                  EXISTS (SELECT 1 FROM suppressions WHERE address_hash = t.hash) AS suppressed,
                  coalesce((SELECT array_agg(c.purpose) FROM consents c
                            WHERE c.address_kind = t.kind AND c.address = t.address
                              AND c.channel IN (t.channel, '*') AND NOT c.granted), '{}') AS revoked
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(kind, address, channel, hash)""",
        [t[0] for t in targets], [t[1] for t in targets], [t[2] for t in targets],
        [address_hash(t[0], t[1]) for t in targets])
    out = {}
    for r in rows:
        reason = _reason(r["suppressed"], set(r["revoked"]), purpose)
        if reason:
            out[(r["kind"], r["address"], r["channel"])] = reason
    return out
