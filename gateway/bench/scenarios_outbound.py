"""Scenario 3, outbound: sends/s through the outbox to the fake Twilio, per-sender rate limits off.

N queued replies (each in a conversation of its own, written in one SQL statement) are sent first
by one `gateway worker` process (claim with SKIP LOCKED and a lease, consent check at send time,
provider call, status recorded), then a fresh batch by the naive loop (one provider call and one
UPDATE per message, in sequence) in its own process. Throughput is counted from the fake's receive
times: first to last message accepted.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import asyncpg

from gateway.bench.harness import BENCH_SID, BENCH_TOKEN, Bench, get_json, r, verdict

TARGET_PER_S = 1000

SEED = """
WITH c AS (INSERT INTO contacts (name) SELECT 'bench-out-' || g FROM generate_series(1, $1) g RETURNING id),
     cv AS (INSERT INTO conversations (contact_id, last_seq, last_inbound_channel, last_message_at)
            SELECT id, 1, 'sms', now() FROM c RETURNING id, contact_id),
     m AS (INSERT INTO messages (conversation_id, seq, direction, channel, body, status, purpose,
                                 recipient_address, author_type, processed_at)
           SELECT id, 1, 'out', 'sms', 'Your order XY-' || contact_id || ' has shipped.', 'queued', 'reply',
                  '+1' || $2::text || lpad(contact_id::text, 7, '0'), 'bot', now() FROM cv
           RETURNING id, conversation_id, recipient_address)
INSERT INTO outbox (message_id, conversation_id, channel, to_address, purpose, payload)
SELECT id, conversation_id, 'sms', recipient_address, 'reply', '{"kind": "phone"}'::jsonb FROM m
"""


async def _sql(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def _seed(b: Bench, n: int, area: int) -> None:
    asyncio.run(_sql(b.dsn, SEED, n, str(area)))


def _pending(b: Bench) -> int:
    return asyncio.run(_sql(b.dsn, "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')"))


def _rate(fake: str, since: int, n: int) -> tuple[float | None, int]:
    received = get_json(f"{fake}/_stats?since={since}")["received"]
    times = [t for t, _, _ in received]
    if len(times) < 2:
        return None, len(times)
    return (len(times) - 1) / (max(times) - min(times)), len(times)


def run(b: Bench) -> dict:
    fake = b.start_fake_twilio()
    n = b.sizes.outbound_messages
    # the gateway: one worker process, default outbox settings, no rate limit configured
    _seed(b, n, 212)
    before = get_json(f"{fake}/_stats?limit=0")["count"]
    started = time.monotonic()
    b.start_gateway("worker", GATEWAY_TWILIO_API_BASE=fake, GATEWAY_DEFAULT_HANDLER="agent")
    while _pending(b) and time.monotonic() - started < 600:
        time.sleep(0.5)
    gateway_rate, gateway_sent = _rate(fake, before, n)
    b.stop_all()
    # the naive loop, same fake (restarted), same number of messages
    fake = b.start_fake_twilio()
    _seed(b, n, 213)
    out = subprocess.run([sys.executable, "-m", "gateway.bench.naive_outbound", "--dsn", b.dsn, "--api-base", fake,
                          "--sid", BENCH_SID, "--token", BENCH_TOKEN], capture_output=True, check=True)
    naive = json.loads(out.stdout)
    naive_rate, naive_sent = _rate(fake, 0, n)
    b.stop_all()
    ratio = round(gateway_rate / naive_rate, 2) if gateway_rate and naive_rate else None
    return {"messages": n, "gateway": {"sent": gateway_sent, "per_s": r(gateway_rate, 1)},
            "naive": {"sent": naive_sent, "per_s": r(naive_rate, 1), "failed": naive["failed"]},
            "ratio": ratio, "processes": "gateway: 1 `gateway worker`; naive: 1 process; fake Twilio: 1 process",
            "summary": {"measured": f"{r(gateway_rate, 1)} sends/s with 1 worker process "
                                    f"(naive loop {r(naive_rate, 1)}/s); {gateway_sent}/{n} sent",
                        "target": f">= {TARGET_PER_S} sends/s per worker process", "ratio": ratio,
                        "verdict": verdict(gateway_sent == n and bool(gateway_rate)
                                           and gateway_rate >= TARGET_PER_S)}}


def show(res: dict) -> None:
    print("\n== Outbound: outbox -> fake Twilio, rate limits off")
    print(f"{'sender':<9}{'sent':>8}{'per s':>10}")
    print(f"{'gateway':<9}{res['gateway']['sent']:>8}{res['gateway']['per_s']:>10}")
    print(f"{'naive':<9}{res['naive']['sent']:>8}{res['naive']['per_s']:>10}")
    print(f"gateway / naive = {res['ratio']}x; target >= {TARGET_PER_S} sends/s per worker process")
