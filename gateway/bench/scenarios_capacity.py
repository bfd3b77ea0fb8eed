"""Scenario: what one turn costs each component, for sizing (README, Scale-out).

One `gateway api` and one `gateway worker` (the support flow, replies to the fake Twilio) take
first turns from distinct customers at a fixed rate well below saturation; the CPU seconds each
process, the database's PostgreSQL backends and the Redis server spent are divided by the turns
done, with Redis commands and PostgreSQL transactions per turn. Per 1,000 turns/s, the cores each
component needs follow directly. The run has a Redis of its own, so its figures are this run's.
"""
from __future__ import annotations

import os

import asyncpg
import redis as redis_sync

from gateway.bench.harness import Bench, r
from gateway.bench.scenarios_turns import _drive

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _postgres(dsn: str) -> tuple[float, int]:
    """(CPU seconds of this database's backends, committed transactions) now."""
    import asyncio

    async def read():
        conn = await asyncpg.connect(dsn)
        try:
            pids = [row["pid"] for row in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
            xacts = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        finally:
            await conn.close()
        return sum(cpu_seconds(p) for p in pids), xacts
    return asyncio.run(read())


def _redis(url: str) -> tuple[float, int]:
    client = redis_sync.Redis.from_url(url)
    try:
        cpu, stats = client.info("cpu"), client.info("stats")
    finally:
        client.close()
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"], stats["total_commands_processed"]


def run(b: Bench) -> dict:
    """On a Redis of its own (embedded), so the Redis figures are this run's alone."""
    import tempfile
    from pathlib import Path

    from gateway.embedded import EmbeddedRedis

    private = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="gwbench-redis-")))
    shared = b.settings
    b.settings = shared.with_(redis_url=private.start())
    try:
        return _measure(b)
    finally:
        b.stop_all()
        b.settings = shared
        private.stop()


def _measure(b: Bench) -> dict:
    fake = b.start_fake_twilio()
    common = {"GATEWAY_DEFAULT_HANDLER": "flow", "GATEWAY_TWILIO_API_BASE": fake}
    api, api_port = b.start_gateway("api", **common)
    worker, _ = b.start_gateway("worker", **common)
    url = f"http://127.0.0.1:{api_port}/webhooks/twilio/inbound"
    rate = min(b.sizes.turns_rate, 60.0)
    _drive(fake, url, block=660, n=max(20, int(rate)), rate=rate)   # flows loaded, pools warm
    before = cpu_seconds(api.pid), cpu_seconds(worker.pid), _postgres(b.dsn), _redis(b.settings.redis_url)
    res = _drive(fake, url, block=670, n=int(rate * b.sizes.turns_seconds), rate=rate)
    # backends opened during the run count in full; those closed during it are missed (the pools keep theirs)
    after = cpu_seconds(api.pid), cpu_seconds(worker.pid), _postgres(b.dsn), _redis(b.settings.redis_url)
    b.stop_all()
    turns = max(res["replied"], 1)
    ms = {"api": (after[0] - before[0]) / turns * 1000, "worker": (after[1] - before[1]) / turns * 1000,
          "postgres": (after[2][0] - before[2][0]) / turns * 1000, "redis": (after[3][0] - before[3][0]) / turns * 1000}
    cores = {k: r(v, 2) for k, v in ms.items()}     # ms of CPU per turn = cores per 1,000 turns/s
    first = max(ms, key=ms.get)
    return {"turns": res["replied"], "rate": rate, "cpu_ms_per_turn": {k: r(v, 3) for k, v in ms.items()},
            "cores_per_1000_turns_s": cores, "saturates_first": first,
            "per_turn": {"redis_commands": r((after[3][1] - before[3][1]) / turns, 1),
                         "postgres_transactions": r((after[2][1] - before[2][1]) / turns, 1)},
            "summary": {"measured": f"CPU ms per turn: api {cores['api']}, worker {cores['worker']}, PostgreSQL "
                                    f"{cores['postgres']}, Redis {cores['redis']} ({res['replied']} turns at {rate:g}/s)",
                        "target": "figures for sizing (no target)", "ratio": None, "verdict": "pass"}}


def show(res: dict) -> None:
    print(f"\n== Capacity: {res['turns']} first turns at {res['rate']:g}/s, 1 api + 1 worker (support flow)")
    print(f"{'component':<12}{'CPU ms/turn':>12}{'cores per 1,000 turns/s':>26}")
    for name, value in res["cpu_ms_per_turn"].items():
        print(f"{name:<12}{value:>12}{res['cores_per_1000_turns_s'][name]:>26}")
    print(f"per turn: {res['per_turn']['redis_commands']} Redis commands, "
          f"{res['per_turn']['postgres_transactions']} PostgreSQL transactions; most CPU per turn: "
          f"{res['saturates_first']}")
