"""The inboxes' SQL. Functions take a connection (or the pool) so they compose in a caller's
transaction; they raise InboxRefused for the caller to map."""
from __future__ import annotations

import html as html_lib
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.app.log import get_logger
from gateway.domain.identity import AddressError
from gateway.inboxes import InboxRefused, secrets
from gateway.inboxes.model import PROVIDERS, normalize_address

log = get_logger(__name__)

COLUMNS = """id, name, channel, provider, address, is_default, flow, team_id, hours, out_of_hours_text,
             signature, credentials IS NOT NULL AS has_credentials, created_at, updated_at"""
# Fields an admin sets directly (credentials are sealed by the caller; address is normalized here).
EDITABLE = ("name", "provider", "address", "flow", "team_id", "hours", "out_of_hours_text", "signature",
            "credentials")


def _view(row) -> dict[str, Any]:
    return dict(row)


async def list_inboxes(conn, channel: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM inboxes WHERE $1::text IS NULL OR channel = $1 "
                            "ORDER BY channel, NOT is_default, id", channel)
    return [_view(r) for r in rows]


async def get_inbox(conn, inbox_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM inboxes WHERE id = $1", inbox_id)
    if row is None:
        raise InboxRefused("not_found")
    return _view(row)


def _address(channel: str, provider: str, raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return normalize_address(channel, provider, raw)
    except AddressError as exc:
        raise InboxRefused("invalid", "invalid_address", str(exc)) from None


async def _check_team(conn, team_id: int | None) -> None:
    if team_id is not None and not await conn.fetchval("SELECT 1 FROM teams WHERE id = $1", team_id):
        raise InboxRefused("invalid", "unknown_team", f"no team with id {team_id}")


async def _write(conn, sql: str, *args):
    try:
        return await conn.fetchrow(sql, *args)
    except asyncpg.UniqueViolationError as exc:
        what = "name" if "name" in (exc.constraint_name or "") else "address"
        raise InboxRefused("conflict", f"inbox_{what}_taken", f"another inbox has this {what}") from None


async def create_inbox(conn, *, name: str, channel: str, provider: str | None, address: str,
                       **fields) -> dict[str, Any]:
    provider = provider or PROVIDERS[channel][0]
    if provider not in PROVIDERS[channel]:
        raise InboxRefused("invalid", "invalid_provider", f"{channel} inboxes use {' or '.join(PROVIDERS[channel])}")
    await _check_team(conn, fields.get("team_id"))
    values = {"name": name, "channel": channel, "provider": provider,
              "address": _address(channel, provider, address), **fields}
    cols = list(values)
    row = await _write(conn, f"INSERT INTO inboxes ({', '.join(cols)}) VALUES "
                             f"({', '.join(f'${i}' for i in range(1, len(cols) + 1))}) RETURNING id",
                       *values.values())
    return await get_inbox(conn, row["id"])


async def update_inbox(conn, inbox_id: int, **fields) -> dict[str, Any]:
    """Change the given fields (None clears one, except name and provider). Setting the address of a
    default inbox detaches it from settings."""
    current = await conn.fetchrow("SELECT channel, provider, address FROM inboxes WHERE id = $1 FOR UPDATE",
                                  inbox_id)
    if current is None:
        raise InboxRefused("not_found")
    provider, channel = fields.get("provider") or current["provider"], current["channel"]
    if provider not in PROVIDERS[channel]:
        raise InboxRefused("invalid", "invalid_provider", f"{channel} inboxes use {' or '.join(PROVIDERS[channel])}")
    if "team_id" in fields:
        await _check_team(conn, fields["team_id"])
    changes = {k: v for k, v in fields.items() if k in EDITABLE}
    if "address" in changes:
        changes["address"] = _address(current["channel"], provider, changes["address"])
        changes["address_from_settings"] = False
    elif "provider" in changes and current["address"] is not None:
        changes["address"] = _address(current["channel"], provider, current["address"])
    if changes:
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(changes, 2))
        await _write(conn, f"UPDATE inboxes SET {sets}, updated_at = now() WHERE id = $1", inbox_id,
                     *changes.values())
    return await get_inbox(conn, inbox_id)


async def delete_inbox(conn, inbox_id: int) -> None:
    """Remove an inbox; its messages keep its id, new mail to its address lands in the default inbox.
    A channel's default inbox stays (it stands for the sender in settings)."""
    row = await conn.fetchrow("DELETE FROM inboxes WHERE id = $1 AND NOT is_default RETURNING id", inbox_id)
    if row is None:
        if await conn.fetchval("SELECT is_default FROM inboxes WHERE id = $1", inbox_id):
            raise InboxRefused("conflict", "default_inbox",
                               "a channel's default inbox cannot be deleted (change it instead)")
        raise InboxRefused("not_found")


# The inbox a message on a channel leaves from: the one named (when it is on that channel), else the
# inbox of the customer's last message on that channel, else the channel's default. `from_address`
# is None for a default inbox standing for settings: the channel's sender then uses its own.
SENDING = """
WITH last_in AS (
    SELECT inbox_id FROM messages WHERE conversation_id = $1 AND direction = 'in' AND channel = $2
    ORDER BY seq DESC LIMIT 1)
SELECT id, CASE WHEN address_from_settings THEN NULL ELSE address END AS from_address, signature
FROM inboxes
WHERE channel = $2 AND (id = $3 OR id = (SELECT inbox_id FROM last_in) OR is_default)
ORDER BY (id = $3) IS TRUE DESC, (id = (SELECT inbox_id FROM last_in)) IS TRUE DESC, is_default DESC
LIMIT 1"""


@dataclass(frozen=True)
class Sending:
    inbox_id: int | None = None
    from_address: str | None = None
    signature: str | None = None

    def signed(self, channel: str, text: str, html: str | None) -> tuple[str, str | None]:
        """An email's text and html with the inbox's signature below ("-- " line, RFC 3676)."""
        if channel != "email" or not self.signature:
            return text, html
        if html:
            html += f'<p>-- <br>{html_lib.escape(self.signature).replace(chr(10), "<br>")}</p>'
        return f"{text}\n\n-- \n{self.signature}", html


async def sending_inbox(conn, conversation_id: int, channel: str, named: int | None = None) -> Sending:
    """The inbox a message to this conversation on `channel` leaves from (see SENDING)."""
    row = await conn.fetchrow(SENDING, conversation_id, channel, named)
    return Sending(row["id"], row["from_address"], row["signature"]) if row else Sending()


# Every inbox, as routing reads them: read once by a batch of turns (a handful of rows), instead
# of one SENDING and one flow look-up per turn.
ROUTING_COLUMNS = "SELECT id, channel, address, address_from_settings, is_default, flow, signature FROM inboxes"


async def for_routing(conn) -> dict[int, asyncpg.Record]:
    return {r["id"]: r for r in await conn.fetch(ROUTING_COLUMNS)}


def sending_from(inboxes: dict[int, asyncpg.Record], channel: str, last_inbox: int | None,
                 named: int | None = None) -> Sending:
    """SENDING on inboxes read before (`last_inbox`: the inbox of the customer's last message on
    `channel`): the one named, else that one, else the channel's default."""
    best, best_key = None, None
    for x in inboxes.values():
        if x["channel"] != channel or not (x["id"] == named or x["id"] == last_inbox or x["is_default"]):
            continue
        key = (x["id"] == named, x["id"] == last_inbox, x["is_default"])
        if best_key is None or key > best_key:
            best, best_key = x, key
    if best is None:
        return Sending()
    return Sending(best["id"], None if best["address_from_settings"] else best["address"], best["signature"])


async def conversation_inbox(conn, conversation_id: int):
    """The inbox the customer last wrote to (its rules: flow, team and its name, hours, out-of-hours
    text), or None (no inbound yet, or that inbox was deleted)."""
    return await conn.fetchrow(
        """SELECT x.id, x.name, x.channel, x.flow, x.team_id, t.name AS team_name, x.hours, x.out_of_hours_text
           FROM inboxes x LEFT JOIN teams t ON t.id = x.team_id
           WHERE x.id = (SELECT inbox_id FROM messages WHERE conversation_id = $1 AND direction = 'in'
                         ORDER BY seq DESC LIMIT 1)""", conversation_id)


async def inbox_flow(conn, inbox_id: int | None) -> str | None:
    """The flow a new conversation starts on when it begins in this inbox (None: the channel's)."""
    if inbox_id is None:
        return None
    return await conn.fetchval("SELECT flow FROM inboxes WHERE id = $1", inbox_id)


async def usable_inbox(conn, inbox_id: int, team_ids: frozenset[int] | None) -> str:
    """The channel of an inbox an agent may send from: one without a team, or of one of `team_ids`
    (None: every inbox). Invalid otherwise, the same answer as for an inbox that does not exist."""
    row = await conn.fetchrow("SELECT channel, team_id FROM inboxes WHERE id = $1", inbox_id)
    if row is None or not (team_ids is None or row["team_id"] is None or row["team_id"] in team_ids):
        raise InboxRefused("invalid", "unknown_inbox", f"no inbox {inbox_id} you may send from")
    return row["channel"]


async def named(conn, names: tuple[str, ...], channel: str) -> int | None:
    """The first inbox of `names` on `channel` (a journey step names the inboxes it sends from);
    None, and a warning, when none of them is there (the usual inbox sends)."""
    found = await conn.fetchval(
        """SELECT x.id FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i) JOIN inboxes x ON x.name = n.name
           WHERE x.channel = $2 ORDER BY n.i LIMIT 1""", list(names), channel)
    if found is None:
        log.warning("no inbox of these names on the channel; sending from the usual inbox",
                    inboxes=list(names), channel=channel)
    return found


async def twilio_auth_token(pool, secret_key: str, account_sid: str) -> str | None:
    """The auth token of another Twilio account an inbox sends with (its webhooks are signed with
    it), or None."""
    rows = await pool.fetch("SELECT credentials FROM inboxes WHERE provider = 'twilio' AND credentials IS NOT NULL")
    for row in rows:
        creds = secrets.unseal(secret_key, row["credentials"]) or {}
        if creds.get("account_sid") == account_sid and creds.get("auth_token") and not creds.get("api_key_sid"):
            return creds["auth_token"]
    return None
