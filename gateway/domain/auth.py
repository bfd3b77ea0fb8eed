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
# Extra rights a token may carry beyond its role. `events:read`: an integration token may read
# business events back (by default it only posts them).
SCOPES = ("events:read",)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token (token_id), the bootstrap admin (no token_id) or, for the console,
    a signed-in agent's session. Whether it is *still* allowed is `gateway.http.access.still_allowed`."""
    token_id: int | None
    role: str
    name: str
    agent_id: int | None = None
    scopes: frozenset[str] = frozenset()
    session_id: int | None = None       # set when the caller signed in to the console (cookie)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    prefix = secrets.token_hex(4)
    return prefix, f"gw_{prefix}_{secrets.token_urlsafe(24)}"


async def create_token(conn: asyncpg.Connection, *, name: str, role: str, agent_id: int | None = None,
                       scopes: tuple[str, ...] = ()) -> tuple[int, str]:
    """Returns (id, token). The token is never stored and cannot be shown again."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope {sorted(unknown)[0]!r}; scopes are {', '.join(SCOPES)}")
    prefix, token = new_token()
    token_id = await conn.fetchval(
        """INSERT INTO api_tokens (prefix, token_hash, name, role, agent_id, scopes)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
        prefix, _hash(token), name, role, agent_id, sorted(set(scopes)))
    return token_id, token


async def revoke_token(conn: asyncpg.Connection, prefix_or_id: str) -> dict | None:
    """Revoke one active token by id or prefix: its {id, agent_id}, or None when there was none."""
    column = "id" if prefix_or_id.isdigit() else "prefix"
    value = int(prefix_or_id) if column == "id" else prefix_or_id.removeprefix("gw_").split("_")[0]
    if column == "id" and not 0 < value < 2**63:
        return None
    row = await conn.fetchrow(
        f"""UPDATE api_tokens SET revoked_at = now() WHERE {column} = $1 AND revoked_at IS NULL
            RETURNING id, agent_id""", value)
    return dict(row) if row else None


async def revoke_agent_tokens(conn: asyncpg.Connection, agent_id: int) -> list[int]:
    """Revoke every active token of an agent (deactivation); the ids revoked."""
    rows = await conn.fetch(
        "UPDATE api_tokens SET revoked_at = now() WHERE agent_id = $1 AND revoked_at IS NULL RETURNING id",
        agent_id)
    return [r["id"] for r in rows]


TOKEN_COLUMNS = "id, prefix, name, role, agent_id, scopes, created_at, last_used_at, revoked_at"


async def list_tokens(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every token, newest last; never the secret or its hash."""
    return await conn.fetch(f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id")


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
        "SELECT id, token_hash, name, role, agent_id, scopes, revoked_at FROM api_tokens WHERE prefix = $1",
        parts[1])
    if row is None or row["revoked_at"] is not None:
        return None
    if not hmac.compare_digest(row["token_hash"], _hash(token)):
        return None
    await conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = $1 AND "
                       "(last_used_at IS NULL OR last_used_at < now() - interval '1 minute')", row["id"])
    return Principal(row["id"], row["role"], row["name"], row["agent_id"], frozenset(row["scopes"]))


async def still_valid(conn: asyncpg.Connection, *, token_id: int | None, agent_id: int | None,
                      session_id: int | None, role: str) -> bool:
    """Whether the credentials a request was admitted with still hold: the token (if any) is not
    revoked, the agent (if any) is active, and the console session (if any) has not ended or expired
    and its agent still has `role`."""
    return bool(await conn.fetchval(
        """SELECT ($1::bigint IS NULL OR EXISTS (SELECT 1 FROM api_tokens t
                                                  WHERE t.id = $1 AND t.revoked_at IS NULL))
              AND ($2::bigint IS NULL OR EXISTS (SELECT 1 FROM agents a
                                                  WHERE a.id = $2 AND a.deactivated_at IS NULL))
              AND ($3::bigint IS NULL OR EXISTS (SELECT 1 FROM agent_sessions s JOIN agents a ON a.id = s.agent_id
                                                  WHERE s.id = $3 AND s.ended_at IS NULL
                                                    AND s.expires_at > now() AND a.role = $4))""",
        token_id, agent_id, session_id, role))
