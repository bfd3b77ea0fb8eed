"""Agents signing in to the console: passwords, sessions and invites.

- Passwords: scrypt from the standard library (memory-hard: n=2**14, r=8 uses 16 MiB per hash),
  stored as `scrypt$n$r$p$salt$hash`; hashing runs in a thread so the event loop keeps serving.
  Neither a password nor its hash is ever logged or returned.
- Sessions and invites: random tokens handed out once; only their SHA-256 is stored. A session
  is live while it is not ended, not expired and its agent is active: `session_principal` is the
  one place that says so, and `gateway.http.access` calls it next to the bearer-token check.
- CSRF: the token the console echoes in `X-CSRF-Token` is an HMAC of the session token under the
  gateway's secret key (signed double-submit), so it needs no storage and dies with the session.
- Failed sign-ins are counted in Redis per account and per address (`LoginLimiter`).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import redis.asyncio as aioredis

from gateway.domain.auth import Principal
from gateway.inbox import Invalid
from gateway.pipeline.queue import Keys

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD, MAX_PASSWORD = 10, 1024
_DUMMY_SALT = b"\x00" * 16


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * r * n * p + 2**20,
                          dklen=32)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_password_rules(password) -> str:
    """The password, or Invalid naming what is wrong with it."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Invalid("weak_password", f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if "\x00" in password:
        raise Invalid("weak_password", "a password must not contain NUL characters")
    return password


async def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = await asyncio.to_thread(_scrypt, password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


async def verify_password(password: str, stored: str | None) -> bool:
    """Constant work whether or not the agent has a password (no timing oracle for emails)."""
    try:
        _, n, r, p, salt, digest = (stored or "").split("$")
        params, salt_b, want = (int(n), int(r), int(p)), _unb64(salt), _unb64(digest)
    except ValueError:
        params, salt_b, want = (SCRYPT_N, SCRYPT_R, SCRYPT_P), _DUMMY_SALT, b""
    got = await asyncio.to_thread(_scrypt, password, salt_b, *params)
    return bool(want) and hmac.compare_digest(got, want)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(secret_key: str, session_token: str) -> str:
    return hmac.new(secret_key.encode(), b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret_key: str, session_token: str, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(csrf_token(secret_key, session_token), header)


async def set_password(conn: asyncpg.Connection, agent_id: int, password: str) -> None:
    """A new password ends every session of the agent (a stolen session does not outlive it)."""
    await conn.execute("UPDATE agents SET password_hash = $2, password_set_at = now() WHERE id = $1",
                       agent_id, await hash_password(check_password_rules(password)))
    await end_sessions(conn, agent_id)


async def find_for_sign_in(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, password_hash FROM agents WHERE email = $1 AND deactivated_at IS NULL", email)


@dataclass(frozen=True)
class NewSession:
    token: str
    csrf: str
    expires_in: int


async def start_session(conn: asyncpg.Connection, agent_id: int, *, secret_key: str, ttl: timedelta,
                        user_agent: str = "", address: str = "") -> NewSession:
    token = secrets.token_urlsafe(32)
    await conn.execute(
        """INSERT INTO agent_sessions (token_hash, agent_id, expires_at, user_agent, address)
           VALUES ($1, $2, now() + $3::interval, $4, $5)""",
        token_hash(token), agent_id, ttl, user_agent[:300], address[:100])
    return NewSession(token, csrf_token(secret_key, token), int(ttl.total_seconds()))


async def session_principal(conn: asyncpg.Connection, token: str | None) -> Principal | None:
    """The agent a live session belongs to; None when it is unknown, ended, expired or the agent
    is deactivated."""
    if not token or len(token) > 200:
        return None
    row = await conn.fetchrow(
        """UPDATE agent_sessions s SET last_seen_at = now()
           FROM agents a
           WHERE s.token_hash = $1 AND a.id = s.agent_id AND s.ended_at IS NULL AND s.expires_at > now()
             AND a.deactivated_at IS NULL
           RETURNING s.id, a.id AS agent_id, a.role, a.name""", token_hash(token))
    if row is None:
        return None
    return Principal(None, row["role"], row["name"], row["agent_id"], session_id=row["id"])


async def end_session(conn: asyncpg.Connection, token: str) -> None:
    await conn.execute("UPDATE agent_sessions SET ended_at = now() WHERE token_hash = $1 AND ended_at IS NULL",
                       token_hash(token))


async def end_sessions(conn: asyncpg.Connection, agent_id: int) -> int:
    """End every session of an agent (deactivation, new password). Returns how many ended."""
    result = await conn.execute(
        "UPDATE agent_sessions SET ended_at = now() WHERE agent_id = $1 AND ended_at IS NULL", agent_id)
    return int(result.split()[-1])


async def create_invite(conn: asyncpg.Connection, agent_id: int, ttl: timedelta) -> str:
    """A one-time token for the page where the agent sets a password; earlier invites stop working."""
    token = secrets.token_urlsafe(32)
    await conn.execute("UPDATE agent_invites SET used_at = now() WHERE agent_id = $1 AND used_at IS NULL",
                       agent_id)
    await conn.execute(
        "INSERT INTO agent_invites (token_hash, agent_id, expires_at) VALUES ($1, $2, now() + $3::interval)",
        token_hash(token), agent_id, ttl)
    return token


async def accept_invite(conn: asyncpg.Connection, token: str, password: str) -> int:
    """Set the password of the invited agent (once) and return the agent id."""
    check_password_rules(password)
    agent_id = await conn.fetchval(
        """UPDATE agent_invites i SET used_at = now() FROM agents a
           WHERE i.token_hash = $1 AND i.used_at IS NULL AND i.expires_at > now()
             AND a.id = i.agent_id AND a.deactivated_at IS NULL
           RETURNING i.agent_id""", token_hash(token or ""))
    if agent_id is None:
        raise Invalid("invalid_invite", "this invite link is unknown, used or expired; ask an admin for a new one")
    await set_password(conn, agent_id, password)
    return agent_id


# one more failure; the window starts with the first (EXPIRE ... NX needs Redis 7)
_COUNT_FAILURE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class LoginLimiter:
    """Failed sign-ins per account and per address in a fixed window; a success clears the account."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, per_account: int, per_address: int, window: int):
        self.redis, self.keys = redis, keys
        self.limits = {"account": per_account, "address": per_address}
        self.window = window

    def _key(self, kind: str, value: str) -> str:
        return self.keys.login_failures(kind, hashlib.sha256(value.encode()).hexdigest()[:32])

    async def blocked_for(self, account: str, address: str) -> int:
        """Seconds until another attempt is allowed (0: allowed now)."""
        keys = [self._key("account", account), self._key("address", address)]
        counts = await self.redis.mget(keys)
        wait = 0
        for key, kind, count in zip(keys, ("account", "address"), counts):
            if count is not None and int(count) >= self.limits[kind]:
                wait = max(wait, await self.redis.ttl(key), 1)
        return wait

    async def failed(self, account: str, address: str) -> None:
        for kind, value in (("account", account), ("address", address)):
            await self.redis.eval(_COUNT_FAILURE, 1, self._key(kind, value), self.window)

    async def succeeded(self, account: str) -> None:
        await self.redis.delete(self._key("account", account))
