"""API tokens: shown once, stored hashed (SHA-256), revocable, with a visible prefix.

A token looks like `gw_<8-char prefix>_<secret>`; the prefix identifies the row, the whole token is
hashed. GATEWAY_ADMIN_TOKEN, when set, is accepted as an admin token (bootstrap).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import asyncpg

ROLES = ("admin", "agent", "integration", "readonly")


@dataclass(frozen=True)
class Principal:
    token_id: int | None
    role: str
    name: str
    agent_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    prefix = secrets.token_hex(4)
    return prefix, f"gw_{prefix}_{secrets.token_urlsafe(24)}"


async def create_token(conn: asyncpg.Connection, *, name: str, role: str,
                       agent_id: int | None = None) -> tuple[int, str]:
    """Returns (id, token). The token is never stored and cannot be shown again."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    prefix, token = new_token()
    token_id = await conn.fetchval(
        """INSERT INTO api_tokens (prefix, token_hash, name, role, agent_id)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""", prefix, _hash(token), name, role, agent_id)
    return token_id, token


async def revoke_token(conn: asyncpg.Connection, prefix_or_id: str) -> bool:
    column = "id" if prefix_or_id.isdigit() else "prefix"
    value = int(prefix_or_id) if column == "id" else prefix_or_id.removeprefix("gw_").split("_")[0]
    result = await conn.execute(
        f"UPDATE api_tokens SET revoked_at = now() WHERE {column} = $1 AND revoked_at IS NULL", value)
    return result.endswith(" 1")


async def list_tokens(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, prefix, name, role, agent_id, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id")


async def authenticate(conn: asyncpg.Connection, token: str | None, *,
                       admin_token: str | None) -> Principal | None:
    if not token:
        return None
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(None, "admin", "bootstrap-admin")
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != "gw":
        return None
    row = await conn.fetchrow(
        "SELECT id, token_hash, name, role, agent_id, revoked_at FROM api_tokens WHERE prefix = $1", parts[1])
    if row is None or row["revoked_at"] is not None:
        return None
    if not hmac.compare_digest(row["token_hash"], _hash(token)):
        return None
    await conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = $1 AND "
                       "(last_used_at IS NULL OR last_used_at < now() - interval '1 minute')", row["id"])
    return Principal(row["id"], row["role"], row["name"], row["agent_id"])
