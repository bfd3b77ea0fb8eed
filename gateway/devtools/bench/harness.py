"""What every `gateway bench` scenario shares: sizes, child processes, the load generator, helpers.

Every process a scenario needs (the gateway's roles, the naive baseline, the fake provider, the load
generator) is a child of the bench, started with `Bench.start` and stopped when the scenario ends,
when the bench is interrupted (Ctrl-C, SIGTERM) and, on Linux, when the bench itself dies (each
child asks the kernel for SIGTERM when its parent goes).
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlparse, urlunparse

import asyncpg

from gateway.app.settings import Settings
from gateway.channels.twilio.adapter import compute_signature
from gateway.devtools.bench.loadgen import percentile
from gateway.devtools.testing import free_port
from gateway.infra import db

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
    # every target at the size it names (the inbox's 1M conversations / 10M messages take ~5 minutes to seed)
    "full": Sizes(5000, (16, 64, 256), 500, 20, 20_000, 1_000_000, 10_000, 1_000_000, 10_000, 500, 100_000),
    # the default (about 6 minutes): the targets' sizes for turns and timers; ingest 3,000 webhooks
    # per concurrency; outbound 10,000 messages; inbox 100,000 conversations; memory 5,000
    "standard": Sizes(3000, (16, 64, 256), 500, 20, 10_000, 1_000_000, 10_000, 100_000, 10_000, 300, 5_000),
    "quick": Sizes(1500, (16, 64), 200, 10, 4000, 100_000, 10_000, 100_000, 10_000, 300, 2_000),
    "tiny": Sizes(200, (16,), 20, 2, 200, 5000, 500, 2000, 500, 30, 200),
}
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Bench:
    settings: Settings
    sizes: Sizes
    scale: str = "full"
    dsn: str = ""
    prefix: str = ""
    procs: list = field(default_factory=list)
    databases: list = field(default_factory=list)
    analyzers: list = field(default_factory=list)
    results: dict = field(default_factory=dict)
    profile_dir: str | None = None
    scenario: str = ""
    profiles: list = field(default_factory=list)     # (name, py-spy process, output path)

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
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent)
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

        from gateway.pipeline.queue import Keys

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

    # -- profiles (--profile DIR): py-spy on the processes a scenario names ----------------------
    def profile(self, name: str, pid: int) -> None:
        """Sample `pid` with py-spy until the scenario's processes stop (with --profile only)."""
        if not self.profile_dir:
            return
        import shutil
        from pathlib import Path

        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        Path(self.profile_dir).mkdir(parents=True, exist_ok=True)
        path = Path(self.profile_dir) / f"{self.scenario}-{name}-{pid}.txt"
        proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                                 "--nonblocking", "-o", str(path)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        self.profiles.append((name, proc, path))

    def stop_profiles(self) -> None:
        import signal

        for name, proc, path in self.profiles:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if path.exists():
                self.results.setdefault("profiles", {}).setdefault(self.scenario, {})[name] = {
                    "file": str(path), "top": top_functions(path.read_text())}
        self.profiles.clear()

    def cleanup(self) -> None:
        """Stop every child and drop every throwaway database; a second Ctrl-C meanwhile is ignored."""
        import signal

        previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.stop_all()
            self.drop_databases()
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])

    def stop_all(self) -> None:
        self.stop_profiles()
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

    def on_private_redis(self, measure):
        """`measure(self)` with the gateway's processes on an embedded Redis of their own, so the
        Redis figures are this run's alone; everything started is stopped and the Redis removed after."""
        import tempfile
        from pathlib import Path

        from gateway.app.embedded import EmbeddedRedis

        private = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="gwbench-redis-")))
        shared = self.settings
        self.settings = shared.with_(redis_url=private.start())
        try:
            return measure(self)
        finally:
            self.stop_all()
            self.settings = shared
            private.stop()

    # -- databases ---------------------------------------------------------------------------
    def fresh_database(self) -> str:
        """A new, migrated throwaway database (`gwbench_*`), dropped when the bench ends. On a server
        with autovacuum off, the bench VACUUMs and ANALYZEs it as autovacuum would (see AutoVacuum)."""
        dsn = asyncio.run(_create_database(self.settings.database_url))
        self.databases.append(dsn)
        if asyncio.run(_autovacuum_off(dsn)):
            if not self.analyzers:
                print("  .. PostgreSQL runs with autovacuum off: the bench VACUUMs and ANALYZEs its database "
                      "as autovacuum would (every 2 s, a table with more than 50 + 20% of its rows dead, "
                      "50 + 10% changed)", flush=True)
            analyzer = AutoVacuum(dsn)
            analyzer.start()
            self.analyzers.append(analyzer)
        return dsn

    def drop_databases(self) -> None:
        for analyzer in self.analyzers:
            analyzer.stop()
        self.analyzers.clear()
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
    """Run the load generator in its own process (see gateway.devtools.bench.loadgen for the job)."""
    return json.loads(run_child(["gateway.devtools.bench.loadgen"], json.dumps(job).encode()))


def run_child(args: list[str], stdin: bytes | None = None) -> bytes:
    """`python -m <args>` to completion (killed if the bench is interrupted meanwhile); its stdout."""
    out = subprocess.run([sys.executable, "-m", *args], input=stdin, capture_output=True, check=True,
                         preexec_fn=die_with_parent)
    return out.stdout


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the bench dies, however it dies (Linux; elsewhere a no-op)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Progress:
    """Progress lines for a long phase: phase, count, elapsed, ETA, at most every `every` seconds."""

    def __init__(self, phase: str, total: int | None = None, every: float = 5.0):
        self.phase, self.total, self.every = phase, total, every
        self.started = self.last = time.monotonic()

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        line = f"  .. {self.phase}: {done:,}"
        if self.total:
            eta = elapsed / done * (self.total - done) if done else None
            line += f"/{self.total:,} ({done / self.total:.0%})"
            line += f", elapsed {elapsed:.0f} s, ETA {eta:.0f} s" if eta is not None else f", elapsed {elapsed:.0f} s"
        else:
            line += f", elapsed {elapsed:.0f} s"
        print(line, flush=True)

    def count(self, items, step: int = 10_000):
        """Pass `items` through, updating every `step` items (COPY record generators)."""
        n = 0
        for item in items:
            yield item
            n += 1
            if n % step == 0:
                self.update(n)
        self.update(n, force=True)


def top_functions(raw: str, n: int = 12) -> list[dict]:
    """The functions a py-spy raw profile spent its samples in: self (leaf) and total (anywhere on
    the stack) shares, the top `n` by self share."""
    self_count: dict[str, int] = {}
    total_count: dict[str, int] = {}
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        samples += k
        frames = stack.split(";")
        self_count[frames[-1]] = self_count.get(frames[-1], 0) + k
        for frame in set(frames):
            total_count[frame] = total_count.get(frame, 0) + k
    top = sorted(self_count.items(), key=lambda kv: -kv[1])[:n]
    return [{"function": f, "self": round(c / samples, 3), "total": round(total_count[f] / samples, 3)}
            for f, c in top] if samples else []


def cpu_seconds(pid: int, precise: bool = False) -> float:
    """User + system CPU seconds of a process so far, from /proc/<pid>/stat (0 when it is gone).
    `precise`: from /proc/<pid>/schedstat in nanoseconds instead of 10 ms ticks, for short-lived
    work spread over many single-threaded processes (PostgreSQL backends)."""
    if precise:
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                return int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu(dsn: str) -> tuple[float, int]:
    """(CPU seconds of this database's PostgreSQL backends, committed transactions) now. Backends
    are found in pg_stat_activity; their counters are read from /proc (same machine only)."""
    async def read():
        conn = await asyncpg.connect(dsn)
        try:
            pids = [row["pid"] for row in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
            xacts = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        finally:
            await conn.close()
        return sum(cpu_seconds(p, precise=True) for p in pids), xacts
    return asyncio.run(read())


def redis_cpu(url: str) -> tuple[float, int]:
    """(CPU seconds of the Redis server, commands processed) from its own INFO counters."""
    import redis as redis_sync

    client = redis_sync.Redis.from_url(url)
    try:
        cpu, stats = client.info("cpu"), client.info("stats")
    finally:
        client.close()
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"], stats["total_commands_processed"]


class CpuMeter:
    """CPU seconds spent by named processes, this database's PostgreSQL backends and Redis between
    `start` and `stop`, per unit of work (ms per turn, per webhook)."""

    def __init__(self, b: "Bench", pids: dict[str, int], *, postgres: bool = True, redis: bool = True):
        self.b, self.pids, self.postgres, self.redis = b, pids, postgres, redis

    def _read(self) -> dict[str, float]:
        out = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        if self.postgres:
            out["postgres"], out["postgres_xacts"] = postgres_cpu(self.b.dsn)
        if self.redis:
            out["redis"], out["redis_commands"] = redis_cpu(self.b.settings.redis_url)
        return out

    def start(self) -> None:
        self.before = self._read()

    def stop(self, units: int) -> dict:
        """{name: CPU ms per unit} plus 'total', and per unit PostgreSQL transactions / Redis commands."""
        after, units = self._read(), max(units, 1)
        delta = {k: after[k] - self.before[k] for k in after}
        ms = {k: r(v / units * 1000, 3) for k, v in delta.items() if k not in ("postgres_xacts", "redis_commands")}
        ms["total"] = r(sum(v for v in ms.values()), 3)
        extra = {}
        if self.postgres:
            extra["postgres_transactions"] = r(delta["postgres_xacts"] / units, 1)
        if self.redis:
            extra["redis_commands"] = r(delta["redis_commands"] / units, 1)
        return {"cpu_ms": ms, "per_unit": extra}


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


def verdict(ok: bool | None) -> str:
    return "INFO" if ok is None else "PASS" if ok else "MISS"


def figure(name: str, measured: str, target: str, ok: bool | None) -> dict:
    """One printed figure: what was measured, its target, PASS/MISS (INFO when there is no target)."""
    return {"name": name, "measured": measured, "target": target, "verdict": verdict(ok)}


def show_figures(figures: list[dict]) -> None:
    for f in figures:
        print(f"  [{f['verdict']}] {f['name']}: {f['measured']}  (target: {f['target']})")


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
    name = f"gwbench_{os.getpid()}_{secrets.token_hex(4)}"   # whose it is: benches may run side by side
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = urlunparse(urlparse(admin_dsn)._replace(path="/" + name))
    await db.migrate_dsn(dsn)
    return dsn


async def _autovacuum_off(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SHOW autovacuum") == "off"
    finally:
        await conn.close()


class AutoVacuum(threading.Thread):
    """What autovacuum does, for a server that runs without it (CI machines often do): every 2 s,
    VACUUM each table with more than autovacuum_vacuum_threshold (50) + scale factor (20%) of its
    rows dead, throttled as autovacuum is (vacuum_cost_delay 2 ms), and ANALYZE each table with more
    than autovacuum_analyze_threshold (50) + scale factor (10%) of its rows changed since its last
    analyze. Without it the planner keeps the estimates of empty tables while the run fills them,
    and dead rows (every claimed outbox row, every updated conversation) pile up in the tables and
    their indexes: the figures would measure that, not the gateway."""

    def __init__(self, dsn: str, every: float = 2.0):
        super().__init__(name="bench-autovacuum", daemon=True)
        self.dsn, self.every, self._halt = dsn, every, threading.Event()

    def run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("SET vacuum_cost_delay = '2ms'")
            while not self._halt.is_set():
                due = await conn.fetch(
                    """SELECT format('%I.%I', schemaname, relname) AS name,
                              n_dead_tup > 50 + 0.2 * greatest(n_live_tup, 0) AS vacuum,
                              n_mod_since_analyze > 50 + 0.1 * greatest(n_live_tup, 0) AS analyze
                       FROM pg_stat_user_tables""")
                for row in due:
                    if self._halt.is_set():
                        break
                    if row["vacuum"]:
                        await conn.execute(f"VACUUM {row['name']}")
                    if row["analyze"]:
                        await conn.execute(f"ANALYZE {row['name']}")
                await asyncio.sleep(self.every)
        except Exception:   # the database went away (dropped, server stopped): nothing left to do
            pass
        finally:
            if not conn.is_closed():
                conn.terminate()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


async def _drop_database(admin_dsn: str, dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{urlparse(dsn).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await conn.close()
