"""`gateway bench` stops everything it started when it is interrupted (Ctrl-C, SIGTERM): no gateway
role, fake provider, naive baseline or load generator outlives it, and its throwaway databases go."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest


def _bench_env(infra, tmp_path) -> dict:
    admin_dsn, redis_url = infra
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "TWILIO_", "WHATSAPP_"))}
    env.update(GATEWAY_DATABASE_URL=admin_dsn, GATEWAY_REDIS_URL=redis_url, GATEWAY_LOG_LEVEL="warning",
               GATEWAY_DATA_DIR=str(tmp_path / "data"))
    return env


def _bench_databases(admin_dsn: str, pid: int | None = None) -> set[str]:
    """The bench databases on the server; with `pid`, only those the bench process `pid` created
    (another session's bench on the same server must not fail this test)."""
    pattern = f"gwbench_{pid}_%" if pid is not None else "gwbench_%"
    import asyncio

    import asyncpg

    async def names():
        conn = await asyncpg.connect(admin_dsn)
        try:
            return {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", pattern)}
        finally:
            await conn.close()
    return asyncio.run(names())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_bench_leaves_no_child_process_and_no_database(infra, tmp_path, signum):
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "bench", "--scale", "tiny", "--scenarios", "turns,outbound",
         "--out", str(tmp_path / "bench.json")], env=_bench_env(infra, tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    bench = psutil.Process(proc.pid)
    children: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 90
    # wait until the scenario runs its processes (api, worker, fake Twilio, load generator)
    while time.monotonic() < deadline and proc.poll() is None:
        for child in bench.children(recursive=True):
            children.setdefault(child.pid, child)
        if len([c for c in bench.children(recursive=True)]) >= 3:
            time.sleep(1.0)
            children.update({c.pid: c for c in bench.children(recursive=True)})
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()
    assert len(children) >= 3, "the bench started no processes to stop"
    assert _bench_databases(infra[0], proc.pid), "the bench made no database of its own (named by its pid)"
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted: stopping everything the bench started" in out
    time.sleep(0.5)
    alive = [c for c in children.values() if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [(c.pid, c.cmdline()) for c in alive]
    assert _bench_databases(infra[0], proc.pid) == set()
