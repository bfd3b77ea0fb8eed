"""Journey test harness: a gateway with a manual clock; timers and the outbox are driven by hand.

The runtime runs the HTTP role only, so nothing fires on its own: `fire()` fires what the manual
clock says is due, `send()` lets the outbox deliver (sandbox senders), `advance()` does both.
"""
from __future__ import annotations

import contextlib
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from gateway.devtools.testing import running_gateway
from gateway.domain.status import apply_status
from gateway.domain.timers import ManualClock
from gateway.domain.types import Effects
from gateway.journeys.engine import JourneyEngine

ADMIN = {"Authorization": "Bearer admin-test-token"}
POLICY = """
frequency_cap: 2
quiet_hours: {start: "21:00", end: "08:00"}
default_timezone: UTC
fallback_after: 15m
busy_retry: 30m
busy_max_wait: 6h
"""


class Harness:
    def __init__(self, rt, url: str, clock: ManualClock, http: aiohttp.ClientSession):
        self.rt, self.url, self.clock, self.http = rt, url, clock, http
        self.pool = rt.pool

    @property
    def engine(self) -> JourneyEngine:
        return next(h.__self__ for h in self.rt.hooks.event if isinstance(getattr(h, "__self__", None), JourneyEngine))

    async def post_event(self, name: str, contact: dict, properties: dict | None = None, *,
                         event_id: str | None = None, expect: int = 201, opt_in: bool = True) -> dict:
        """Post the event; with `opt_in` (the default) the contact's marketing opt-in on SMS and
        WhatsApp is recorded through the consent API, as a signup form would, before any step fires."""
        body = {"event_id": event_id or f"{name}-{contact}-{self.clock.now().isoformat()}", "name": name,
                "contact": contact, "properties": properties or {}}
        async with self.http.post(f"{self.url}/api/v1/events", json=body, headers=ADMIN) as resp:
            assert resp.status == expect, await resp.text()
            out = await resp.json()
        if opt_in and expect == 201 and contact.get("phone"):
            for channel in ("sms", "whatsapp"):
                await self.record_consent(out["contact_id"], channel, True)
        return out

    async def record_consent(self, contact_id: int, channel: str, granted: bool, purpose: str = "marketing"):
        answer = {"channel": channel, "purpose": purpose, "granted": granted, "source": "signup form",
                  "proof": {"text": "Send me offers by text", "ip": "192.0.2.7"}}
        async with self.http.post(f"{self.url}/api/v1/contacts/{contact_id}/consent", json=answer,
                                  headers=ADMIN) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()

    async def fire(self) -> int:
        total = 0
        while n := await self.rt.timers.fire_due():
            total += n
        return total

    async def send(self) -> int:
        total = 0
        while n := await self.rt.outbox.send_due():
            total += n
        return total

    async def advance(self, **delta) -> None:
        self.clock.advance(timedelta(**delta))
        await self.fire()
        await self.send()

    async def sends(self, journey: str | None = None):
        return await self.pool.fetch(
            """SELECT s.*, m.status AS message_status, m.body, m.content, m.recipient_address
               FROM journey_sends s JOIN messages m ON m.id = s.message_id
               WHERE $1::text IS NULL OR s.journey = $1 ORDER BY s.id""", journey)

    async def skips(self, journey: str | None = None):
        return await self.pool.fetch(
            "SELECT * FROM journey_skips WHERE $1::text IS NULL OR journey = $1 ORDER BY id", journey)

    async def enrollment(self, journey: str, contact_id: int):
        return await self.pool.fetchrow(
            "SELECT * FROM journey_enrollments WHERE journey = $1 AND contact_id = $2 ORDER BY id DESC LIMIT 1",
            journey, contact_id)

    async def report_status(self, message_id: int, status: str) -> None:
        """A provider status callback for one of our messages, through the status hook."""
        row = await self.pool.fetchrow("SELECT channel, provider_message_id FROM messages WHERE id = $1", message_id)
        effects = Effects()
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await apply_status(conn, channel=row["channel"], provider_message_id=row["provider_message_id"],
                                         status=status)
            if applied:
                await self.rt.hooks.on_status(conn, applied[0], applied[1], effects)

    async def stats(self, journey: str) -> dict:
        async with self.http.get(f"{self.url}/api/v1/journeys/{journey}/stats", headers=ADMIN) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


@pytest.fixture
def journey_env(settings, tmp_path, clean):
    """`async with journey_env(start, *journey_yaml, policy=..., copy_from=dir) as h:` -> Harness."""

    @contextlib.asynccontextmanager
    async def start(at: datetime, *journeys: str, policy: str | None = POLICY, copy_from: Path | None = None):
        directory = tmp_path / "flows" / "journeys"
        if copy_from is not None:
            shutil.copytree(copy_from, directory)
        directory.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(journeys):
            (directory / f"journey{i}.yaml").write_text(text)
        if policy is not None:
            (directory / "_policy.yaml").write_text(policy)
        clock = ManualClock(at)
        async with running_gateway(settings.with_(flows_dir=tmp_path / "flows"), roles=("http",),
                                   clock=clock) as (rt, url):
            async with aiohttp.ClientSession() as http:
                yield Harness(rt, url, clock, http)

    return start
