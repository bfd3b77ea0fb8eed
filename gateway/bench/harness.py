"""What every `gateway bench` scenario shares: sizes, child processes, the load generator, helpers.

Every process a scenario needs (the gateway's roles, the naive baseline, the fake provider, the load
generator) is a child of the bench, started with `Bench.start` and stopped when the scenario ends.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlparse, urlunparse

import asyncpg

from gateway import db
from gateway.bench.loadgen import percentile
from gateway.channels.twilio.adapter import compute_signature
from gateway.settings import Settings
from gateway.devtools.testing import free_port

BENCH_TOKEN = "bench-auth-token-0123456789abcdef"
BENCH_SID = "AC" + "0" * 32
OUR_NUMBER = "+15550001000"


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is: `full` is what README reports, `quick` a fast look, `tiny` the smoke test."""

    ingest_requests: int
    ingest_concurrency: tuple[int, ...]
    turns_rate: float
    turns_seconds: float
    outbound_messages: int
    timers_scheduled: int
    timers_due: int
    inbox_conversations: int
    inbox_big_conversation: int
    inbox_samples: int
    memory_conversations: int


SCALES = {
    "full": Sizes(5000, (16, 64, 256), 500, 20, 20_000, 1_000_000, 10_000, 1_000_000, 10_000, 500, 100_000),
    "quick": Sizes(1500, (16, 64), 200, 10, 4000, 100_000, 10_000, 100_000, 10_000, 300, 10_000),
    "tiny": Sizes(200, (16,), 20, 2, 200, 5000, 500, 2000, 500, 30, 200),
}


@dataclass
class Bench:
    settings: Settings
    sizes: Sizes
    scale: str = "full"
    dsn: str = ""
    prefix: str = ""
    procs: list = field(default_factory=list)
    databases: list = field(default_factory=list)
    results: dict = field(default_factory=dict)

    # -- processes ---------------------------------------------------------------------------
    def env(self, **extra) -> dict:
        """The environment of a gateway child process: this run's database, Redis prefix, Twilio creds."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "TWILIO_", "WHATSAPP_"))}
        env.update({"GATEWAY_DATABASE_URL": self.dsn, "GATEWAY_REDIS_URL": self.settings.redis_url,
                    "GATEWAY_REDIS_PREFIX": self.prefix, "GATEWAY_SECRET_KEY": "bench-secret",
                    "GATEWAY_LOG_LEVEL": "warning", "GATEWAY_LOG_FORMAT": "json",
                    "GATEWAY_DATA_DIR": str(self.settings.data_dir),
                    "TWILIO_ACCOUNT_SID": BENCH_SID, "TWILIO_AUTH_TOKEN": BENCH_TOKEN,
                    "TWILIO_FROM_NUMBER": OUR_NUMBER})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start(self, args: list[str], env: dict | None = None, ready_url: str | None = None) -> subprocess.Popen:
        """`python -m <args>` as a child; waits until `ready_url` answers when given."""
        proc = subprocess.Popen([sys.executable, "-m", *args], env=env or self.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        if ready_url is not None:
            wait_http(ready_url, proc)
        return proc

    def start_gateway(self, role: str, **extra) -> tuple[subprocess.Popen, int | None]:
        """`gateway api` (answers on a free port, returned) or `gateway worker` (port None)."""
        if role == "api":
            port = free_port()
            proc = self.start(["gateway", "api"], self.env(GATEWAY_HTTP_PORT=port,
                                                           GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{port}", **extra),
                              f"http://127.0.0.1:{port}/healthz")
            return proc, port
        proc = self.start(["gateway", "worker"], self.env(**extra))
        self.wait_worker(proc)
        return proc, None

    def start_fake_twilio(self, *options: str) -> str:
        """The fake Twilio REST API in its own process (`options`: its misbehaviour); returns its base URL."""
        port = free_port()
        self.start(["gateway.devtools.fakes.twilio", "--port", str(port), "--account-sid", BENCH_SID,
                    "--auth-token", BENCH_TOKEN, *options], self.env(), f"http://127.0.0.1:{port}/_stats")
        return f"http://127.0.0.1:{port}"

    def wait_worker(self, proc: subprocess.Popen, timeout: float = 60) -> None:
        """Until a `gateway worker` child has written its heartbeat (its consumer loop runs)."""
        import redis as redis_sync

        from gateway.queue import Keys

        client = redis_sync.Redis.from_url(self.settings.redis_url)
        key = Keys(self.prefix).heartbeat("worker", socket.gethostname())
        client.delete(key)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited: {proc.stderr.read().decode()[-2000:]}")
                if client.exists(key):
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError("worker heartbeat not seen in time")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    # -- databases ---------------------------------------------------------------------------
    def fresh_database(self) -> str:
        """A new, migrated throwaway database (`gwbench_*`), dropped when the bench ends."""
        dsn = asyncio.run(_create_database(self.settings.database_url))
        self.databases.append(dsn)
        return dsn

    def drop_databases(self) -> None:
        for dsn in self.databases:
            asyncio.run(_drop_database(self.settings.database_url, dsn))
        self.databases.clear()


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not up in time")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def load(job: dict) -> dict:
    """Run the load generator in its own process (see gateway.bench.loadgen for the job)."""
    out = subprocess.run([sys.executable, "-m", "gateway.bench.loadgen"], input=json.dumps(job).encode(),
                         capture_output=True, check=True)
    return json.loads(out.stdout)


def signed_sms(url: str, *, sid: str, sender: str, body: str) -> list:
    """One [headers, form body] Twilio inbound webhook signed with the bench token."""
    params = [("MessageSid", sid), ("AccountSid", BENCH_SID), ("From", sender), ("To", OUR_NUMBER),
              ("Body", body), ("NumMedia", "0")]
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": compute_signature(url, params, BENCH_TOKEN)}
    return [headers, urlencode(params)]


def message_sid(run_id: str, i: int) -> str:
    return f"SM{run_id}{i:012d}".ljust(34, "0")[:34]


def phone(block: int, i: int) -> str:
    """A distinct valid-looking US number per (block, i): +1 415 555 xxxx style ranges."""
    return f"+1{block}{i:07d}"


def pcts(values: list[float]) -> dict:
    return {f"p{q}_ms": r(percentile(values, q)) for q in (50, 95, 99)}


def r(v, digits: int = 2):
    return None if v is None else round(v, digits)


def verdict(ok: bool) -> str:
    return "pass" if ok else "miss"


def rss_bytes(pid: int) -> int:
    try:
        import psutil
    except ImportError:  # psutil ships with the test extras; /proc is enough on Linux
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS") from None
    return psutil.Process(pid).memory_info().rss


def new_run_id() -> str:
    return secrets.token_hex(4)


async def connect_pool(dsn: str, **kwargs) -> asyncpg.Pool:
    return await db.create_pool(dsn, min_size=1, max_size=kwargs.pop("max_size", 4), **kwargs)


async def _create_database(admin_dsn: str) -> str:
    name = f"gwbench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = urlunparse(urlparse(admin_dsn)._replace(path="/" + name))
    await db.migrate_dsn(dsn)
    return dsn


async def _drop_database(admin_dsn: str, dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{urlparse(dsn).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await conn.close()
