"""Scenario 3, outbound: sends/s through the outbox to the fake Twilio, per-sender rate limits off.

N queued replies (each in a conversation of its own, written in one SQL statement) are sent first
by one `gateway worker` process (claim with SKIP LOCKED and a lease, consent check at send time,
provider call, status recorded), then a fresh batch by the naive loop (one provider call and one
UPDATE per message, in sequence) in its own process. Throughput is counted from the fake's receive
times: first to last message accepted.

Then the outbox on a bad provider day: (a) two `gateway worker` processes against a fake failing
30% of create calls (HTTP 500, connections dropped before or after the message is stored), N/3
conversations of 3 replies each: sends/s, replies out of thread order and replies accepted twice
(both must be 0); (b) one worker against a fake that takes 1 s to answer every call (sends in flight adapt).
"""
from __future__ import annotations

import asyncio
import json
import time

import asyncpg

from gateway.devtools.bench.harness import (BENCH_SID, BENCH_TOKEN, Bench, Progress, figure, get_json, r, run_child,
                                            verdict)
from gateway.devtools.bench.loadgen import timeline
from gateway.devtools.fakes.replies import order_report, seed

TARGET_PER_S = 1000
TARGET_RATIO = 1.5
FAIL_RATE = 0.3
SLOW_SECONDS = 1.0
SLOW_MESSAGES = 1500

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


def _rate(fake: str, since: int, n: int) -> tuple[float | None, int, list[int]]:
    """(sends/s from first to last accepted, how many, accepted per 0.5 s) at the fake."""
    received = get_json(f"{fake}/_stats?since={since}")["received"]
    times = [t for t, _, _ in received]
    if len(times) < 2:
        return None, len(times), []
    return (len(times) - 1) / (max(times) - min(times)), len(times), timeline([t - min(times) for t in times], 0.5)


async def _seed_replies(dsn: str, conversations: int, area: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await seed(conn, conversations, 3, max_attempts=8, area=area)
    finally:
        await conn.close()


def _drain(b: Bench, limit: float = 600) -> None:
    started = time.monotonic()
    total = _pending(b)
    progress = Progress("outbox rows sent", total)
    while (left := _pending(b)) and time.monotonic() - started < limit:
        progress.update(total - left)
        time.sleep(0.5)


def _bad_day(b: Bench, n: int) -> dict:
    """Two workers, 30% of calls failing: throughput, order violations and duplicates."""
    fake = b.start_fake_twilio("--fail-rate", str(FAIL_RATE), "--seed", "19")
    conversations = max(n // 3, 1)
    asyncio.run(_seed_replies(b.dsn, conversations, 214))
    env = dict(GATEWAY_TWILIO_API_BASE=fake, GATEWAY_DEFAULT_HANDLER="agent", GATEWAY_TWILIO_TIMEOUT=5,
               GATEWAY_OUTBOX_BASE_DELAY=0.5, GATEWAY_OUTBOX_MAX_DELAY=5)
    for _ in range(2):
        b.start_gateway("worker", **env)
    _drain(b)
    stats = get_json(f"{fake}/_stats")
    received = stats["received"]
    report = order_report([(to, body) for _, to, body in received])
    times = [t for t, _, _ in received]
    per_s = (len(times) - 1) / (max(times) - min(times)) if len(times) > 1 else None
    b.stop_all()
    return {"replies": conversations * 3, "accepted": report.accepted, "per_s": r(per_s, 1),
            "out_of_order": report.out_of_order, "duplicates": report.duplicates, "examples": report.examples,
            "calls": stats["fates"], "processes": 2}


def _slow_provider(b: Bench, n: int) -> dict:
    """One worker, every provider call answered after 1 s."""
    fake = b.start_fake_twilio("--latency", str(SLOW_SECONDS))
    _seed(b, n, 215)
    before = get_json(f"{fake}/_stats?limit=0")["count"]
    b.start_gateway("worker", GATEWAY_TWILIO_API_BASE=fake, GATEWAY_DEFAULT_HANDLER="agent")
    _drain(b)
    rate, sent, _ = _rate(fake, before, n)
    b.stop_all()
    return {"messages": n, "sent": sent, "per_s": r(rate, 1), "latency_s": SLOW_SECONDS,
            "concurrency": f"{b.settings.outbox_concurrency}..{b.settings.outbox_max_concurrency} (adaptive)"}


def run(b: Bench) -> dict:
    fake = b.start_fake_twilio()
    n = b.sizes.outbound_messages
    # the gateway: one worker process, default outbox settings, no rate limit configured
    _seed(b, n, 212)
    before = get_json(f"{fake}/_stats?limit=0")["count"]
    worker, _ = b.start_gateway("worker", GATEWAY_TWILIO_API_BASE=fake, GATEWAY_DEFAULT_HANDLER="agent")
    b.profile("worker", worker.pid)
    _drain(b)
    gateway_rate, gateway_sent, gateway_timeline = _rate(fake, before, n)
    b.stop_all()
    # the naive loop, same fake (restarted), same number of messages
    fake = b.start_fake_twilio()
    _seed(b, n, 213)
    naive = json.loads(run_child(["gateway.devtools.bench.naive_outbound", "--dsn", b.dsn, "--api-base", fake,
                                  "--sid", BENCH_SID, "--token", BENCH_TOKEN]))
    naive_rate, naive_sent, naive_timeline = _rate(fake, 0, n)
    b.stop_all()
    ratio = round(gateway_rate / naive_rate, 2) if gateway_rate and naive_rate else None
    bad_day = _bad_day(b, min(max(n // 3, 30), 3000))
    slow = _slow_provider(b, min(max(n // 8, 25), SLOW_MESSAGES))
    per_s_ok = gateway_sent == n and bool(gateway_rate) and gateway_rate >= TARGET_PER_S
    ratio_ok = ratio is not None and ratio >= TARGET_RATIO
    figures = [
        figure("outbound sends/s, 1 worker process", f"{r(gateway_rate, 1)}/s ({gateway_sent}/{n} sent)",
               f">= {TARGET_PER_S}/s per worker process", per_s_ok),
        figure("outbound vs the naive loop (same run)", f"{ratio}x (naive {r(naive_rate, 1)}/s)",
               f">= {TARGET_RATIO}x", ratio_ok),
        figure(f"outbound with {int(FAIL_RATE * 100)}% of provider calls failing, 2 workers",
               f"{bad_day['accepted']}/{bad_day['replies']} accepted, {bad_day['out_of_order']} out of thread order, "
               f"{bad_day['duplicates']} accepted twice ({bad_day['per_s']}/s)", "all accepted, 0 out of order, 0 twice",
               bad_day["accepted"] == bad_day["replies"] and bad_day["out_of_order"] == 0
               and bad_day["duplicates"] == 0),
        figure(f"outbound with a {SLOW_SECONDS:g} s provider, 1 worker", f"{slow['per_s']}/s ({slow['sent']}/{slow['messages']})",
               "every message sent; sends in flight adapt (no fixed target)", slow["sent"] == slow["messages"]),
    ]
    return {"messages": n, "gateway": {"sent": gateway_sent, "per_s": r(gateway_rate, 1)}, "figures": figures,
            "charts": [{"title": "sends accepted by the fake Twilio per second", "kind": "timeline", "unit": "sends/s",
                        "bucket_s": 0.5, "series": {"gateway (1 worker)": gateway_timeline,
                                                    "naive loop": naive_timeline}}],
            "failures": bad_day, "slow_provider": slow,
            "naive": {"sent": naive_sent, "per_s": r(naive_rate, 1), "failed": naive["failed"]},
            "ratio": ratio, "processes": "gateway: 1 `gateway worker`; naive: 1 process; fake Twilio: 1 process",
            "summary": {"measured": f"{r(gateway_rate, 1)} sends/s with 1 worker process "
                                    f"(naive loop {r(naive_rate, 1)}/s); {gateway_sent}/{n} sent; "
                                    f"30% failing: {bad_day['per_s']}/s, {bad_day['out_of_order']} out of order, "
                                    f"{bad_day['duplicates']} twice; 1 s provider: {slow['per_s']}/s",
                        "target": f">= {TARGET_PER_S} sends/s per worker process and >= {TARGET_RATIO}x the naive "
                                  "loop; 0 out of order, 0 twice",
                        "ratio": ratio,
                        "verdict": verdict(all(f["verdict"] == "PASS" for f in figures))}}


def show(res: dict) -> None:
    print("\n== Outbound: outbox -> fake Twilio, rate limits off")
    print(f"{'sender':<9}{'sent':>8}{'per s':>10}")
    print(f"{'gateway':<9}{res['gateway']['sent']:>8}{res['gateway']['per_s']:>10}")
    print(f"{'naive':<9}{res['naive']['sent']:>8}{res['naive']['per_s']:>10}")
    print(f"gateway / naive = {res['ratio']}x (target >= {TARGET_RATIO}x); target >= {TARGET_PER_S} sends/s per "
          "worker process")
    f = res["failures"]
    print(f"\n== Outbound, {int(FAIL_RATE * 100)}% of provider calls failing (500, dropped before/after storing), "
          f"{f['processes']} worker processes")
    print(f"{f['accepted']}/{f['replies']} replies accepted, {f['per_s']} sends/s, "
          f"out of thread order: {f['out_of_order']} (must be 0), accepted twice: {f['duplicates']} (must be 0)")
    print(f"provider calls: {f['calls']}")
    s = res["slow_provider"]
    print(f"\n== Outbound, every provider answer takes {s['latency_s']} s, 1 worker, "
          f"sends in flight {s['concurrency']}")
    print(f"{s['sent']}/{s['messages']} sent, {s['per_s']} sends/s")
