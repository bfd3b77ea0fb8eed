"""Timers across worker processes: a worker SIGKILLed while firing loses nothing and doubles
nothing; and the timer benchmark (small sizes here; `gateway bench` runs the million)."""
from __future__ import annotations

import asyncio
import os
import signal

import aiohttp

ADMIN = {"Authorization": "Bearer admin-test-token"}

from gateway.devtools.testing import running_gateway, settings_env, wait_for
from gateway.journeys.bench import format_result, timer_bench

BULK = """
name: bulk
quiet_hours: false
entry: {event: bulk_signup}
steps:
  - {id: hello, send: {template: t, channels: [api]}}
  - {id: wait_1d, wait: {duration: 1d}}
  - {id: bye, send: {template: t, channels: [api]}}
templates:
  t: {text: "hello from the bulk journey"}
"""
N = 1000


async def test_worker_killed_while_firing_timers_each_step_runs_once(settings, pool, clean, tmp_path, spawn):
    flows = tmp_path / "flows"
    (flows / "journeys").mkdir(parents=True)
    (flows / "journeys" / "bulk.yaml").write_text(BULK)
    (flows / "journeys" / "_policy.yaml").write_text("frequency_cap: false\n")
    s = settings.with_(flows_dir=flows)
    async with running_gateway(s, roles=("http",)) as (_, url):   # API only: nothing fires here
        async with aiohttp.ClientSession() as http:
            for start in range(0, N, 500):
                batch = [{"event_id": f"bulk-{i}", "name": "bulk_signup", "contact": {"external_id": f"bulk-{i}"}}
                         for i in range(start, start + 500)]
                async with http.post(f"{url}/api/v1/events", json={"events": batch}, headers=ADMIN) as resp:
                    assert resp.status == 200, await resp.text()
    assert await pool.fetchval("SELECT count(*) FROM timers WHERE kind = 'journey_step' AND state = 'pending'") == N

    env = settings_env(s, GATEWAY_FLOWS_DIR=str(flows))
    victim = spawn(["worker"], env, tmp_path / "victim.log")
    spawn(["worker"], env, tmp_path / "survivor.log")

    async def some_sent():
        return await pool.fetchval("SELECT count(*) FROM journey_sends")
    await wait_for(some_sent, timeout=60, interval=0.01)
    os.kill(victim.pid, signal.SIGKILL)
    at_kill = await pool.fetchval("SELECT count(*) FROM journey_sends")
    assert at_kill < N, "the victim should be killed mid-way"

    async def all_sent():
        return await pool.fetchval("SELECT count(*) FROM journey_sends") >= N
    await wait_for(all_sent, timeout=120, interval=0.2)
    await asyncio.sleep(1.0)   # anything doubled would show up by now
    assert await pool.fetchval("SELECT count(*) FROM journey_sends") == N
    assert await pool.fetchval("SELECT count(DISTINCT enrollment_id) FROM journey_sends WHERE step = 'hello'") == N
    assert await pool.fetchval(
        "SELECT count(*) FROM messages WHERE direction = 'out' AND author_type = 'journey'") == N
    assert await pool.fetchval(
        """SELECT count(*) FROM timers WHERE kind = 'journey_step' AND state = 'pending'
           AND payload->>'step' = 'bye'""") == N   # every enrollment moved on to its next wait, once


async def test_timer_bench_fires_exactly_the_due_timers(pool):
    result = await timer_bench(pool, n_scheduled=5_000, n_due=700, batch=200)
    assert result["fired"] == 700 and result["scheduled"] == 5_000
    assert {"fire_seconds", "claim_ms_with_index", "claim_ms_without_index", "uses_partial_index",
            "plan"} <= set(result)
    assert "timers" in format_result(result)
    assert await pool.fetchval("SELECT count(*) FROM timers WHERE kind = 'bench_noop'") == 0
