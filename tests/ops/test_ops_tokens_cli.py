"""`gateway tokens`: a scoped token from the command line, and a revocation that open sockets hear."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from gateway.devtools.testing import settings_env


def _cli(settings, *args) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", "tokens", *args], env=settings_env(settings),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


async def test_cli_creates_a_scoped_token_and_announces_its_revocation(settings, pool, clean, redis_client):
    out = await asyncio.to_thread(_cli, settings, "create", "--name", "bi", "--role", "integration",
                                  "--scope", "events:read")
    token_id = int(out.split()[1])
    assert await pool.fetchval("SELECT scopes FROM api_tokens WHERE id = $1", token_id) == ["events:read"]
    assert "events:read" in await asyncio.to_thread(_cli, settings, "list")

    pubsub = redis_client.pubsub()
    await pubsub.subscribe(f"{settings.redis_prefix}:rights")
    try:
        await asyncio.to_thread(_cli, settings, "revoke", str(token_id))
        message = None
        for _ in range(100):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message:
                break
        assert message and json.loads(message["data"])["token_ids"] == [token_id]
    finally:
        await pubsub.aclose()
    assert await pool.fetchval("SELECT revoked_at IS NOT NULL FROM api_tokens WHERE id = $1", token_id)
