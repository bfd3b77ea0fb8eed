"""Queued replies for outbox tests and `gateway bench`, and the check of what a provider got.

`seed` writes n conversations with k queued replies each (SMS unless told), bodies "c<contact>-<i>" in thread
order, in one statement; `order_report` reads what a fake provider accepted and counts, per
recipient, replies out of thread order and replies accepted more than once.
"""
from __future__ import annotations

from dataclasses import dataclass

SEED = """
WITH c AS (INSERT INTO contacts (name) SELECT 'replies-' || g FROM generate_series(1, $1) g RETURNING id),
     cv AS (INSERT INTO conversations (contact_id, last_seq, last_inbound_channel, last_message_at)
            SELECT id, $2, $5, now() FROM c RETURNING id, contact_id),
     m AS (INSERT INTO messages (conversation_id, seq, direction, channel, body, status, purpose,
                                 recipient_address, author_type, processed_at)
           SELECT cv.id, i, 'out', $5, 'c' || cv.contact_id || '-' || i, 'queued', 'reply',
                  '+1' || $4::text || lpad(cv.contact_id::text, 7, '0'), 'bot', now()
           FROM cv, generate_series(1, $2) i ORDER BY cv.id, i
           RETURNING id, conversation_id, recipient_address)
INSERT INTO outbox (message_id, conversation_id, channel, to_address, purpose, payload, max_attempts)
SELECT id, conversation_id, $5, recipient_address, 'reply', '{"kind": "phone"}'::jsonb, $3 FROM m ORDER BY id
"""


def number(contact: int, area: int = 555) -> str:
    """The recipient `seed` gives the conversation of contact `contact`."""
    return f"+1{area}" + str(contact).rjust(7, "0")


async def seed(conn, conversations: int, per_conversation: int = 3, *, max_attempts: int = 50,
               area: int = 555, channel: str = "sms") -> None:
    await conn.execute(SEED, conversations, per_conversation, max_attempts, str(area), channel)


async def unfinished(conn) -> int:
    """Outbox rows not finished yet (pending or being sent)."""
    return await conn.fetchval("SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')")


@dataclass
class OrderReport:
    recipients: int
    accepted: int
    duplicates: int              # replies accepted more than once (extra copies)
    out_of_order: int            # recipients whose replies did not arrive in thread order
    examples: dict[str, list[str]]


def order_report(accepted: list[tuple[str, str]]) -> OrderReport:
    """(recipient, body) in the order the provider accepted them -> duplicates and order violations."""
    by_to: dict[str, list[str]] = {}
    for to, body in accepted:
        by_to.setdefault(to, []).append(body)
    duplicates = out_of_order = 0
    examples: dict[str, list[str]] = {}
    for to, bodies in by_to.items():
        duplicates += len(bodies) - len(set(bodies))
        first_seen = [int(b.rsplit("-", 1)[1]) for b in dict.fromkeys(bodies)]
        if first_seen != sorted(first_seen):
            out_of_order += 1
        if (len(bodies) != len(set(bodies)) or first_seen != sorted(first_seen)) and len(examples) < 5:
            examples[to] = bodies
    return OrderReport(len(by_to), len(accepted), duplicates, out_of_order, examples)
