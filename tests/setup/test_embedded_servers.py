"""Embedded PostgreSQL and Redis (issue 11 item 6, issue 19's leftover servers): `gateway run`
restarts a server that dies, the next start after a SIGKILL adopts the servers it left, and the
Redis append-only file is private to the user."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import redis as redis_sync

from gateway.app.embedded import EmbeddedPostgres, EmbeddedRedis, Supervisor, _pid_alive
from gateway.devtools.testing import free_port, wait_for

pytestmark = pytest.mark.timeout(300)


def _modes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): stat.S_IMODE(p.stat().st_mode) for p in [directory, *directory.rglob("*")]
            if not p.is_socket()}


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])


def _redis_pid(data_dir: Path) -> int:
    return int((data_dir / "redis" / "redis.pid").read_text().strip())


def _wait(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout}s"
        time.sleep(0.1)


def test_redis_files_are_private_and_a_dead_redis_is_restarted_with_its_data(tmp_path):
    (tmp_path / "redis").mkdir()
    old = tmp_path / "redis" / "redis.log"
    old.write_text("from an older version\n")
    old.chmod(0o644)
    rd = EmbeddedRedis(tmp_path)
    rd.start()
    try:
        client = redis_sync.Redis.from_url(rd.url)
        client.set("kept", "yes")
        time.sleep(1.5)                            # appendfsync everysec
        modes = _modes(tmp_path / "redis")
        assert any(name.startswith("appendonly") for name in modes), modes
        assert {name: mode for name, mode in modes.items() if mode & 0o077} == {}
        first = rd.pid()
        os.kill(first, signal.SIGKILL)
        _wait(lambda: not rd.alive(), 10, "redis death noticed")
        Supervisor([rd]).check_once()
        assert rd.alive() and rd.pid() != first
        assert client.get("kept") == b"yes"        # the append-only file came back with it
        assert {n: m for n, m in _modes(tmp_path / "redis").items() if m & 0o077} == {}
        client.close()
    finally:
        rd.stop()


_LEAVE_SERVERS = """
import sys, time
from pathlib import Path
from gateway.app.embedded import EmbeddedPostgres, EmbeddedRedis
EmbeddedPostgres(Path(sys.argv[1])).start()
EmbeddedRedis(Path(sys.argv[1])).start()
print("up", flush=True)
time.sleep(600)
"""


def test_servers_left_by_a_killed_gateway_are_adopted_and_stopped_by_the_next_one(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _LEAVE_SERVERS, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        while (line := proc.stdout.readline()) and line.strip() != b"up":   # log lines come first
            pass
        assert line.strip() == b"up"
    finally:
        proc.kill()                                  # SIGKILL: no cleanup ran
        proc.wait(10)
    pg_pid, redis_pid = _postmaster_pid(tmp_path), _redis_pid(tmp_path)
    assert _pid_alive(pg_pid) and _pid_alive(redis_pid)

    pg, rd = EmbeddedPostgres(tmp_path), EmbeddedRedis(tmp_path)
    try:
        pg.start()
        rd.start()
        assert _postmaster_pid(tmp_path) == pg_pid and rd.pid() == redis_pid    # adopted, not duplicated
        assert rd.owner
        second = EmbeddedRedis(tmp_path)              # a second live gateway shares, and does not own
        second.start()
        assert not second.owner
        second.stop()
        assert _pid_alive(redis_pid)
    finally:
        pg.stop()
        rd.stop()
    _wait(lambda: not _pid_alive(pg_pid) and not _pid_alive(redis_pid), 30, "leftover servers stopped")


async def _ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "/readyz",
                                                           timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def test_gateway_run_restarts_dead_servers_and_survives_its_own_sigkill(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "TWILIO_", "WHATSAPP_"))}
    env.update(GATEWAY_DATA_DIR=str(tmp_path), GATEWAY_HTTP_PORT=str(port), GATEWAY_DEFAULT_HANDLER="agent")
    url = f"http://127.0.0.1:{port}"

    def run(name):
        log = open(tmp_path / f"{name}.log", "wb")
        return subprocess.Popen([sys.executable, "-m", "gateway", "run"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)

    gateway = run("first")
    try:
        await wait_for(lambda: _ready(url), timeout=120, interval=0.5, message="gateway never ready")
        redis_pid, pg_pid = _redis_pid(tmp_path), _postmaster_pid(tmp_path)
        os.kill(redis_pid, signal.SIGKILL)
        os.kill(pg_pid, signal.SIGKILL)
        # no person intervenes: /readyz comes back on its own, with new server processes
        await wait_for(lambda: _ready(url), timeout=120, interval=0.5, message="/readyz did not recover")
        assert _redis_pid(tmp_path) != redis_pid and _postmaster_pid(tmp_path) != pg_pid

        redis_pid, pg_pid = _redis_pid(tmp_path), _postmaster_pid(tmp_path)
        gateway.kill()
        gateway.wait(10)
        gateway = run("second")
        await wait_for(lambda: _ready(url), timeout=120, interval=0.5, message="restart after SIGKILL not ready")
        assert (_redis_pid(tmp_path), _postmaster_pid(tmp_path)) == (redis_pid, pg_pid)   # adopted
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(60) == 0
        _wait(lambda: not _pid_alive(pg_pid) and not _pid_alive(redis_pid), 30, "servers stopped on exit")
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait(10)
        for pid in (_safe(_redis_pid, tmp_path), _safe(_postmaster_pid, tmp_path)):
            if pid and _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def _safe(read, data_dir):
    try:
        return read(data_dir)
    except (FileNotFoundError, ValueError, IndexError):
        return None
