"""Helpers for the inbox tests: an API client with tokens per role, and fast seeding in SQL."""
from __future__ import annotations

from datetime import datetime

import aiohttp
import asyncpg

from gateway.devtools.testing import ApiChannelReceiver
from gateway.domain import auth, thread

ADMIN_TOKEN = "admin-test-token"
INBOX_TABLES = "agents, canned_responses, send_idempotency"


class Api:
    def __init__(self, http: aiohttp.ClientSession, url: str, pool: asyncpg.Pool):
        self.http, self.url, self.pool = http, url, pool

    async def call(self, method: str, path: str, token: str | None = ADMIN_TOKEN, json=None,
                   headers: dict | None = None, params: dict | None = None):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.url + path, json=json, headers=h, params=params) as resp:
            ctype = resp.headers.get("Content-Type", "")
            data = await resp.json() if "json" in ctype else await resp.text()
            return resp.status, data

    async def ok(self, method: str, path: str, token: str | None = ADMIN_TOKEN, *, expect=(200, 201), **kw):
        status, data = await self.call(method, path, token, **kw)
        assert status in (expect if isinstance(expect, tuple) else (expect,)), (method, path, status, data)
        return data

    async def team(self, name: str) -> int:
        return (await self.ok("POST", "/api/v1/teams", json={"name": name}))["id"]

    async def agent(self, name: str, team_ids=(), capacity: int = 5) -> tuple[int, str]:
        agent = await self.ok("POST", "/api/v1/agents", json={"name": name, "email": f"{name}@example.com",
                                                              "capacity": capacity, "team_ids": list(team_ids)})
        token = await self.ok("POST", f"/api/v1/agents/{agent['id']}/tokens", json={})
        return agent["id"], token["token"]

    async def token(self, role: str) -> str:
        async with self.pool.acquire() as conn:
            return (await auth.create_token(conn, name=f"{role} token", role=role))[1]


async def seed_conversation(pool: asyncpg.Pool, external_id: str, *, team_id: int | None = None,
                            mode: str = "agent", status: str = "open", name: str | None = None,
                            waiting_since: datetime | None = None, text: str = "hello",
                            channel: str = "api", messages: int = 1) -> dict:
    """A contact with an API identity and one conversation in agent mode (escalated), in SQL."""
    async with pool.acquire() as conn, conn.transaction():
        contact = await conn.fetchval("INSERT INTO contacts (name, external_id) VALUES ($1, $2) RETURNING id",
                                      name or external_id, external_id)
        await conn.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'api', $2)",
                           contact, external_id)
        conv = await conn.fetchval(
            """INSERT INTO conversations (contact_id, status, mode, team_id, waiting_since, last_inbound_channel,
                   last_inbound_at) VALUES ($1, $2, $3, $4, coalesce($5, now()), $6, now()) RETURNING id""",
            contact, status, mode, team_id, waiting_since, channel)
        episode = await conn.fetchval(
            """INSERT INTO episodes (conversation_id, channel, escalated_at)
               VALUES ($1, $2, CASE WHEN $3 = 'agent' THEN now() END) RETURNING id""", conv, channel, mode)
        await conn.execute("UPDATE conversations SET current_episode_id = $2 WHERE id = $1", conv, episode)
        for i in range(messages):
            await thread.append(conn, conv, direction="in", channel=channel, body=text if i == 0 else f"{text} {i}",
                                author_type="customer", sender_address=external_id, processed=True)
    return {"contact_id": contact, "conversation_id": conv, "episode_id": episode}


# The business's endpoint for the API channel: verifies our signature, records deliveries.
BusinessWebhook = ApiChannelReceiver
