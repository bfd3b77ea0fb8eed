"""Real engines started by the scale-out tests from Debian's binaries: PgBouncer in transaction mode
in front of the machine's PostgreSQL, and a 3-master Redis Cluster. Each lives in a temporary
directory on free 127.0.0.1 ports and is stopped at the end."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from gateway.devtools.testing import free_port, splice

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)


def pgbouncer_missing() -> str | None:
    """Why the PgBouncer tests cannot run here (None: they can)."""
    if not PGBOUNCER:
        return "Debian's pgbouncer is not installed (run .ci/pgbouncer)"
    return None


def _wait_port(port: int, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class PgBouncer:
    """pgbouncer (pool_mode=transaction) on a free port, forwarding every database to `target`.

    The server pool is small on purpose: client connections share few server connections, so
    anything kept per session (a cached prepared statement) shows up on another client's turn.
    """

    def __init__(self, target_dsn: str, *, pool_size: int = 4):
        parsed = urlparse(target_dsn)
        if not parsed.hostname or parsed.hostname.startswith("/"):
            raise ValueError("PgBouncer tests need a TCP PostgreSQL (GATEWAY_TEST_DATABASE_URL)")
        self.target = parsed
        self.pool_size = pool_size
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gw-pgbouncer-"))
        self.proc: subprocess.Popen | None = None

    def dsn_for(self, dsn: str) -> str:
        """`dsn` (same server) reached through the pooler."""
        parsed = urlparse(dsn)
        netloc = f"{parsed.username or 'postgres'}@127.0.0.1:{self.port}"
        return urlunparse(parsed._replace(netloc=netloc))

    def start(self) -> "PgBouncer":
        user = self.target.username or "postgres"
        (self.dir / "users.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(f"""[databases]
* = host={self.target.hostname} port={self.target.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir / 'users.txt'}
pool_mode = transaction
default_pool_size = {self.pool_size}
min_pool_size = 0
max_client_conn = 400
max_db_connections = {self.pool_size * 2}
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {self.dir / 'pgbouncer.log'}
""")
        args = [PGBOUNCER, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            for path in self.dir.iterdir():
                os.chown(path, account.pw_uid, account.pw_gid)
            args[1:1] = ["-u", "postgres"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            _wait_port(self.port)
        except OSError:
            self.stop()
            raise RuntimeError(f"pgbouncer did not start: {self.log()[-500:]}") from None
        return self

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def redis_cluster_missing() -> str | None:
    """Why the Redis Cluster tests cannot run here (None: they can)."""
    if not REDIS_SERVER or not REDIS_CLI:
        return "redis-server/redis-cli are not installed (Debian's redis-server package)"
    return None


def _bindable(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus ports (port + 10000) are free too."""
    import random

    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 40000)
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


class RedisClusterServers:
    """Three redis-server masters in cluster mode on free 127.0.0.1 ports, joined with
    `redis-cli --cluster create`, in a temporary directory."""

    def __init__(self, masters: int = 3):
        self.ports = _cluster_ports(masters)
        self.dir = Path(tempfile.mkdtemp(prefix="gw-redis-cluster-"))
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> "RedisClusterServers":
        for port in self.ports:
            node_dir = self.dir / str(port)
            node_dir.mkdir()
            self.procs.append(subprocess.Popen(
                [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(node_dir / "nodes.conf"), "--dir", str(node_dir),
                 "--save", "", "--appendonly", "no", "--cluster-node-timeout", "5000",
                 "--logfile", str(node_dir / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        try:
            for port in self.ports:
                _wait_port(port)
            created = subprocess.run(
                [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=60)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-400:]}{created.stderr[-400:]}")
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = [subprocess.run([REDIS_CLI, "-p", str(p), "cluster", "info"], capture_output=True,
                                     text=True, timeout=10).stdout for p in self.ports]
            if all("cluster_state:ok" in s for s in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not become ok: {states}")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class RoundRobinFront:
    """The load balancer of the many-processes test (nginx's round robin in docker/compose.yml): each
    new TCP connection goes to the next upstream; an upstream that refuses is skipped."""

    def __init__(self, upstreams: list[int]):
        self.upstreams = upstreams
        self.port = free_port()
        self._next = 0
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> "RoundRobinFront":
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()

    async def _handle(self, reader, writer) -> None:
        import asyncio

        upstream = None
        for _ in range(len(self.upstreams)):
            port = self.upstreams[self._next % len(self.upstreams)]
            self._next += 1
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        if upstream is None:
            writer.close()
            return
        await splice(reader, writer, *upstream)
