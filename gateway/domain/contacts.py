"""Contacts: references from business systems (contact id, external id, phone or email), resolved to
the contact they name, and the contact that owns an identity (created with it when new).

This module is the only Python writer of `contacts` (create, create with an identity, name if unnamed,
attribute and profile edits, merge bookkeeping, erasure) and of `identities` (which contact owns an
address: attach, move, detach, move all of a merged contact's, erase). In the database, the SQL
function `gateway_resolve_contact` (migrations/0002) creates a new sender's contact with its identity;
the batched ingest (`gateway_ingest`, one round trip per batch) calls it for every new sender, and
`resolve_contact` below does for one. tests/core/test_owners.py fails on a write anywhere else."""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.domain.identity import Address, AddressError, normalize_email, normalize_phone
from gateway.domain.inputs import ID_MAX, InputError, check_id, int_id


class ContactRefError(ValueError):
    pass


@dataclass(frozen=True)
class ContactRef:
    contact_id: int | None = None
    external_id: str | None = None
    phone: str | None = None
    email: str | None = None
    name: str | None = None

    @classmethod
    def parse(cls, data) -> "ContactRef":
        if not isinstance(data, dict):
            raise ContactRefError("contact must be an object with contact_id, external_id, phone or email")
        for key in ("phone", "email"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ContactRefError(f"contact.{key} must be a string")
        try:
            ref = cls(
                contact_id=int_id(data["contact_id"], "contact.contact_id")
                if data.get("contact_id") is not None else None,
                external_id=_opt_str(data, "external_id"),
                phone=normalize_phone(data["phone"]) if data.get("phone") else None,
                email=normalize_email(data["email"]) if data.get("email") else None,
                name=_opt_str(data, "name"),
            )
        except (AddressError, InputError) as exc:
            raise ContactRefError(str(exc)) from None
        if not (ref.contact_id or ref.external_id or ref.phone or ref.email):
            raise ContactRefError("contact needs one of contact_id, external_id, phone, email")
        return ref

    def identities(self) -> list[tuple[str, str]]:
        out = []
        if self.external_id:
            out.append(("api", self.external_id))
        if self.phone:
            out.append(("phone", self.phone))
        if self.email:
            out.append(("email", self.email))
        return out


def _opt_str(data: dict, key: str) -> str | None:
    """A string field, stripped; too long or unstorable is refused, never cut (two external ids
    sharing a prefix must stay two customers)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ContactRefError(f"contact.{key} must be a non-empty string")
    return check_id(str(value).strip(), f"contact.{key}", max_len=ID_MAX if key == "external_id" else 200)


async def resolve(conn: asyncpg.Connection, ref: ContactRef, *, create: bool = True) -> int | None:
    """The contact a reference names; created (with its identities) when unknown and `create`.

    Identities named in the reference that no other contact owns are attached to the contact.
    """
    if ref.contact_id is not None:
        found = await conn.fetchval("SELECT id FROM contacts WHERE id = $1 AND erased_at IS NULL", ref.contact_id)
        if found is None:
            raise ContactRefError(f"no contact with id {ref.contact_id}")
        contact_id = found
    else:
        contact_id = None
        for kind, address in ref.identities():
            contact_id = await conn.fetchval(
                "SELECT contact_id FROM identities WHERE kind = $1 AND address = $2", kind, address)
            if contact_id is not None:
                break
        if contact_id is None:
            if not create:
                return None
            kind, address = ref.identities()[0]
            contact_id = await resolve_contact(conn, Address(kind, address), name=ref.name)
    for kind, address in ref.identities():
        await attach_identity(conn, contact_id, kind, address, if_free=True)
    if ref.name:
        await name_if_unnamed(conn, contact_id, ref.name)
    return contact_id


async def resolve_contact(conn: asyncpg.Connection, addr: Address, *, name: str | None = None) -> int:
    """The contact owning this identity, created with it when new (race-safe)."""
    return await conn.fetchval("SELECT gateway_resolve_contact($1, $2, $3)", addr.kind, addr.value, name)


# --- contacts: the only writes --------------------------------------------------------------------
KEEP = object()
"""For `edit`: leave this field as it is."""


async def create(conn: asyncpg.Connection, *, name: str | None, attributes: dict, external_id: str | None = None,
                 locale: str | None = None, timezone: str | None = None) -> int:
    """A new contact row, without identities (attach them next); returns its id. A taken external id
    is the database's unique violation."""
    return await conn.fetchval(
        """INSERT INTO contacts (name, attributes, external_id, locale, timezone) VALUES ($1, $2, $3, $4, $5)
           RETURNING id""", name, attributes, external_id, locale, timezone)


async def create_with_identity(conn: asyncpg.Connection, kind: str, address: str, *, name: str | None,
                               verified: bool) -> int:
    """A new contact owning (kind, address), race-safe like gateway_resolve_contact: when a concurrent
    transaction gave the address to a contact first, the new contact is discarded and that one returned.
    (For identities the SQL function does not make, such as an unverified email sender's.)"""
    contact_id = await conn.fetchval("INSERT INTO contacts (name) VALUES ($1) RETURNING id", name)
    if await attach_identity(conn, contact_id, kind, address, verified=verified, if_free=True):
        return contact_id
    await conn.execute("DELETE FROM contacts WHERE id = $1", contact_id)   # unused: nothing refers to it
    return await owner_of(conn, kind, address)


async def name_if_unnamed(conn: asyncpg.Connection, contact_id: int, name: str) -> None:
    """A name from a business system fills a missing one and never replaces one (updated_at untouched)."""
    await conn.execute("UPDATE contacts SET name = coalesce(name, $2) WHERE id = $1", contact_id, name)


async def merge_attributes(conn: asyncpg.Connection, contact_id: int, attributes: dict, *,
                           locale: str | None = None, timezone: str | None = None) -> None:
    """Attributes set by a flow, a journey step or an event: the given keys replace the contact's, the
    others stay; a given locale or time zone replaces the contact's (None keeps it); updated_at now."""
    await conn.execute(
        """UPDATE contacts SET attributes = attributes || $2::jsonb, locale = coalesce($3, locale),
               timezone = coalesce($4, timezone), updated_at = now() WHERE id = $1""",
        contact_id, attributes, locale, timezone)


async def edit(conn: asyncpg.Connection, contact_id: int, *, set_attributes: dict, remove_attributes: list[str],
               name=KEEP, locale=KEEP, timezone=KEEP) -> None:
    """An agent's edit: `remove_attributes` keys go, then `set_attributes` replace or add theirs; name,
    locale and time zone are set when given (None clears; KEEP leaves them); updated_at now."""
    await conn.execute(
        """UPDATE contacts SET attributes = (attributes - $3::text[]) || $2::jsonb,
               name = CASE WHEN $4 THEN $5 ELSE name END,
               locale = CASE WHEN $6 THEN $7 ELSE locale END,
               timezone = CASE WHEN $8 THEN $9 ELSE timezone END, updated_at = now() WHERE id = $1""",
        contact_id, set_attributes, remove_attributes, name is not KEEP, None if name is KEEP else name,
        locale is not KEEP, None if locale is KEEP else locale, timezone is not KEEP,
        None if timezone is KEEP else timezone)


async def merge_into(conn: asyncpg.Connection, target: asyncpg.Record, source: asyncpg.Record) -> None:
    """A merge's bookkeeping of the two rows (both locked by the caller): the target keeps its own
    attributes and takes the source's it lacks, and its name, locale and time zone when it has none;
    the source becomes a tombstone (`merged_into` the target) and hands its external id to the target
    when the target has none (cleared first: external ids are unique). Identities move separately
    (move_all_identities)."""
    await conn.execute(
        """UPDATE contacts SET attributes = $2::jsonb || attributes, name = coalesce(name, $3),
               locale = coalesce(locale, $4), timezone = coalesce(timezone, $5), updated_at = now()
           WHERE id = $1""",
        target["id"], source["attributes"] or {}, source["name"], source["locale"], source["timezone"])
    await conn.execute(
        "UPDATE contacts SET merged_into = $1, external_id = NULL, updated_at = now() WHERE id = $2",
        target["id"], source["id"])
    if target["external_id"] is None and source["external_id"] is not None:
        await conn.execute("UPDATE contacts SET external_id = $2 WHERE id = $1", target["id"], source["external_id"])


async def erase_profiles(conn: asyncpg.Connection, contact_ids: list[int]) -> None:
    """Erasure: name, external id, attributes, locale and time zone go; the rows stay, marked erased."""
    await conn.execute(
        """UPDATE contacts SET name = NULL, external_id = NULL, attributes = '{}'::jsonb, locale = NULL,
               timezone = NULL, erased_at = now(), updated_at = now() WHERE id = ANY($1::bigint[])""", contact_ids)


# --- identities: the only writes -------------------------------------------------------------------
async def attach_identity(conn: asyncpg.Connection, contact_id: int, kind: str, address: str, *,
                          verified: bool = True, if_free: bool = False) -> bool:
    """Give (kind, address) to the contact. With `if_free`, an address another contact already owns
    is left alone (False); without it, that is the database's unique violation."""
    if if_free:
        return await conn.fetchval(
            """INSERT INTO identities (contact_id, kind, address, verified) VALUES ($1, $2, $3, $4)
               ON CONFLICT (kind, address) DO NOTHING RETURNING true""",
            contact_id, kind, address, verified) is not None
    await conn.execute("INSERT INTO identities (contact_id, kind, address, verified) VALUES ($1, $2, $3, $4)",
                       contact_id, kind, address, verified)
    return True


async def move_identity(conn: asyncpg.Connection, kind: str, address: str, contact_id: int) -> None:
    """Hand one address to another contact (a shared browser's chat visitor id, say)."""
    await conn.execute("UPDATE identities SET contact_id = $3 WHERE kind = $1 AND address = $2",
                       kind, address, contact_id)


async def move_all_identities(conn: asyncpg.Connection, source_id: int, target_id: int) -> int:
    """A merge: every identity of `source_id` now belongs to `target_id`; returns how many moved."""
    return await conn.fetchval(
        "WITH m AS (UPDATE identities SET contact_id = $1 WHERE contact_id = $2 RETURNING 1) SELECT count(*) FROM m",
        target_id, source_id)


async def detach_identity(conn: asyncpg.Connection, kind: str, address: str) -> None:
    await conn.execute("DELETE FROM identities WHERE kind = $1 AND address = $2", kind, address)


async def erase_identities(conn: asyncpg.Connection, contact_ids: list[int]) -> None:
    """Erasure: the contacts' addresses are forgotten."""
    await conn.execute("DELETE FROM identities WHERE contact_id = ANY($1::bigint[])", contact_ids)


async def owner_of(conn: asyncpg.Connection, kind: str, address: str) -> int | None:
    """The contact that owns the identity (kind, address), or None."""
    return await conn.fetchval("SELECT contact_id FROM identities WHERE kind = $1 AND address = $2", kind, address)


async def is_live(conn, contact_id: int) -> bool:
    """Whether the contact exists and was neither merged into another nor erased (`conn` may be a pool)."""
    return bool(await conn.fetchval(
        "SELECT 1 FROM contacts WHERE id = $1 AND merged_into IS NULL AND erased_at IS NULL", contact_id))
