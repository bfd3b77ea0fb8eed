"""Contacts in the API: create, list (search, keyset paging), and add or remove identities.

An identity (kind, address) belongs to one contact (UNIQUE in the schema). Adding one that another
contact owns is refused naming that contact, or, when asked, merges that contact into this one
through the one merge operation (gateway.inbox.merge).
"""
from __future__ import annotations

import asyncpg

from gateway.domain import contacts, thread
from gateway.inbox import Conflict, Invalid, NotFound
from gateway.inbox.merge import merge_contacts
from gateway.inbox.scope import Scope
from gateway.inbox.search import contact_matches


def _taken(kind: str, address: str, owner: int) -> Conflict:
    return Conflict("identity_taken", f"{kind} {address} belongs to contact {owner}", contact_id=owner)


async def create_contact(conn: asyncpg.Connection, *, name: str | None, attributes: dict,
                         identities: list[tuple[str, str]], locale: str | None = None,
                         timezone: str | None = None) -> int:
    """A new contact with its identities; an identity another contact owns is a Conflict naming it."""
    for kind, address in identities:
        owner = await contacts.owner_of(conn, kind, address)
        if owner is not None:
            raise _taken(kind, address, owner)
    external = next((a for k, a in identities if k == "api"), None)
    contact_id = await contacts.create(conn, name=name, attributes=attributes, external_id=external,
                                       locale=locale, timezone=timezone)
    for kind, address in identities:
        await contacts.attach_identity(conn, contact_id, kind, address)
    return contact_id


async def add_identity(conn: asyncpg.Connection, contact_id: int, kind: str, address: str, *, merge: bool,
                       effects: thread.Effects) -> dict:
    """Attach (kind, address) to the contact. {"added": bool, "merged": merge result or None}."""
    owner = await contacts.owner_of(conn, kind, address)
    if owner == contact_id:
        return {"added": False, "merged": None}
    if owner is not None:
        if not merge:
            raise _taken(kind, address, owner)
        return {"added": False, "merged": await merge_contacts(conn, contact_id, owner, effects)}
    await contacts.attach_identity(conn, contact_id, kind, address)
    return {"added": True, "merged": None}


async def remove_identity(conn: asyncpg.Connection, contact_id: int, kind: str, address: str) -> None:
    """Detach one of the contact's identities (NotFound when it is not the contact's; its last one
    stays: a contact nobody can reach or recognize again is erased instead)."""
    owner = await contacts.owner_of(conn, kind, address)
    if owner != contact_id:
        raise NotFound(f"identity {kind} {address} of contact {contact_id}")
    left = await conn.fetchval("SELECT count(*) FROM identities WHERE contact_id = $1", contact_id)
    if left <= 1:
        raise Invalid("last_identity", "a contact keeps at least one identity (erase the contact instead)")
    await contacts.detach_identity(conn, kind, address)


async def list_contacts(conn: asyncpg.Connection, scope: Scope, *, q: str | None, before_id: int | None,
                        limit: int) -> list[dict]:
    """Newest first, `limit` of them below `before_id` (keyset), matching `q` (name, external id,
    string attributes, or an address prefix) when given."""
    args: list = [limit, before_id, q, (q or "").strip().lower()]
    rows = await conn.fetch(
        f"""SELECT ct.id, ct.name, ct.external_id, ct.attributes, ct.locale, ct.timezone, ct.created_at,
                   c.id AS conversation_id,
                   coalesce((SELECT json_agg(json_build_object('id', i.id, 'kind', i.kind, 'address', i.address,
                                                               'verified', i.verified, 'created_at', i.created_at)
                                             ORDER BY i.id)
                             FROM identities i WHERE i.contact_id = ct.id), '[]'::json) AS identities
            FROM contacts ct LEFT JOIN conversations c ON c.contact_id = ct.id
            WHERE ct.merged_into IS NULL AND ct.erased_at IS NULL
              AND ($2::bigint IS NULL OR ct.id < $2)
              AND ($3::text IS NULL OR {contact_matches("$3", "$4")})
              AND (c.id IS NULL AND {str(scope.everything).upper()} OR c.id IS NOT NULL AND {scope.sql('c', args)})
            ORDER BY ct.id DESC LIMIT $1""", *args)
    return [dict(r) for r in rows]
