"""Helpers to run a gateway in-process on an ephemeral port (tests, benchmarks)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from aiohttp import web

from gateway.app.runtime import Runtime
from gateway.app.settings import Settings
from gateway.http.app import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, *, roles=("http", "worker"), port: int | None = None,
                          **runtime_kwargs):
    """Yields (runtime, base_url) with the HTTP app served on 127.0.0.1 (a free port by default)."""
    port = port or free_port()
    settings = settings.with_(http_host="127.0.0.1", http_port=port,
                              public_url=settings.public_url or f"http://127.0.0.1:{port}")
    async with Runtime(settings, roles=roles, **runtime_kwargs) as runtime:
        runner = web.AppRunner(create_app(runtime), access_log=None, shutdown_timeout=2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield runtime, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def wait_for(predicate, timeout=20.0, interval=0.05, message="condition not met in time"):
    """Poll an async predicate until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(interval)


async def wait_ready(http, base_url: str, timeout: float = 60.0, message: str = "gateway did not become ready"):
    """Wait until a gateway (e.g. a `gateway run` subprocess) answers GET /readyz with 200."""
    import aiohttp

    async def ready():
        try:
            async with http.get(f"{base_url}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False
    await wait_for(ready, timeout=timeout, interval=0.2, message=message)


async def smtp_deliver(port: int, msg) -> None:
    """Send an email.message.EmailMessage to an SMTP server on 127.0.0.1 (smtplib, in a thread)."""
    import smtplib

    def send():
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(msg)
    await asyncio.to_thread(send)


async def splice(reader, writer, up_reader, up_writer) -> None:
    """Copy bytes both ways between a client connection and an upstream one until both directions
    close (the TCP proxies of tests: an outage-able PostgreSQL, a round-robin front)."""
    async def pipe(src, dst) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def inbound(cmid: str, external_id: str, text: str) -> dict:
    """A body for POST /api/v1/inbound from the customer `external_id`."""
    return {"client_message_id": cmid, "contact": {"external_id": external_id}, "text": text}


async def post_all(http, url, bodies, concurrency=32, headers=None, retry_unavailable=False):
    """POST each body to /api/v1/inbound (as the test admin), asserting each was accepted. With
    `retry_unavailable`, a 503 is posted again after its Retry-After, as providers do."""
    headers = headers or {"Authorization": "Bearer admin-test-token"}
    sem = asyncio.Semaphore(concurrency)

    async def one(body):
        async with sem:
            for _ in range(20):
                async with http.post(f"{url}/api/v1/inbound", json=body, headers=headers) as resp:
                    if resp.status == 503 and retry_unavailable:
                        await asyncio.sleep(min(float(resp.headers.get("Retry-After", 1)), 2))
                        continue
                    assert resp.status in (200, 201), await resp.text()
                    return await resp.json()
            raise AssertionError("still 503 after 20 tries")

    return await asyncio.gather(*(one(b) for b in bodies))


async def assert_each_processed_once_in_order(pool, expected_per_conversation: int, conversations: int):
    """Every inbound processed exactly once, in seq order, each with exactly one echo reply."""
    rows = await pool.fetch(
        """SELECT conversation_id, seq, body, process_order FROM messages
           WHERE direction = 'in' ORDER BY conversation_id, seq""")
    assert len(rows) == expected_per_conversation * conversations
    by_conv: dict[int, list] = {}
    for r in rows:
        assert r["process_order"] is not None, f"message {r['seq']} of {r['conversation_id']} not processed"
        by_conv.setdefault(r["conversation_id"], []).append(r)
    assert len(by_conv) == conversations
    for cid, msgs in by_conv.items():
        orders = [m["process_order"] for m in msgs]
        assert orders == sorted(orders), f"conversation {cid} processed out of seq order"
        replies = [r["body"] for r in await pool.fetch(
            "SELECT body FROM messages WHERE conversation_id = $1 AND direction = 'out' ORDER BY seq", cid)]
        assert replies == [f"You said: {m['body']}" for m in msgs], f"conversation {cid}: replies differ"


async def kill_a_worker_mid_batch(settings: Settings, pool, spawn, tmp_path, *, conversations: int = 20,
                                  per_conversation: int = 40, kill_after: int = 50, **env) -> None:
    """The promise that a worker killed at any instant loses nothing: inbound over many
    conversations (800 over 20 by default), a `gateway worker` SIGKILLed after `kill_after` were
    processed, a second one reclaims its pending entries (XAUTOCLAIM) and finishes; each processed
    once, in order, answered once. `spawn` starts `python -m gateway` processes (the tests'
    fixture); `env`: more settings for the workers."""
    import signal

    import aiohttp

    settings = settings.with_(default_handler="echo", reclaim_idle_ms=1500)
    env = settings_env(settings, **{"GATEWAY_WORKER_CONCURRENCY": 4, **env})
    total = conversations * per_conversation
    done = "SELECT count(*) FROM messages WHERE direction = 'in' AND processed_at IS NOT NULL"
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        bodies = [inbound(f"{c}-{i}", f"cust-{c}", f"c{c} m{i}")
                  for i in range(per_conversation) for c in range(conversations)]
        async with aiohttp.ClientSession() as http:
            await post_all(http, url, bodies)
        first = spawn(["worker"], env, tmp_path / "first.log")

        async def some_done():
            return await pool.fetchval(done) >= kill_after
        await wait_for(some_done, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert await pool.fetchval(done) < total, "the worker finished before it could be killed; the test proves nothing"
        spawn(["worker"], env, tmp_path / "second.log")

        async def all_done():
            return await pool.fetchval(done) == total
        await wait_for(all_done, timeout=90)
    await assert_each_processed_once_in_order(pool, per_conversation, conversations)


def settings_env(s: Settings, **overrides) -> dict:
    """Environment for a `gateway` subprocess that uses the same database/redis/prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "TWILIO_", "WHATSAPP_"))}
    env.update({
        "GATEWAY_DATABASE_URL": s.database_url, "GATEWAY_REDIS_URL": s.redis_url,
        "GATEWAY_DATABASE_POOLER": s.database_pooler, "GATEWAY_DATABASE_DIRECT_URL": s.database_direct_url or "",
        "GATEWAY_REDIS_PREFIX": s.redis_prefix, "GATEWAY_SECRET_KEY": s.secret_key,
        "GATEWAY_DATA_DIR": str(s.data_dir), "GATEWAY_DEFAULT_HANDLER": s.default_handler,
        "GATEWAY_RECLAIM_IDLE_MS": str(s.reclaim_idle_ms), "GATEWAY_SWEEPER_INTERVAL": str(s.sweeper_interval),
        "GATEWAY_LOG_LEVEL": "warning", "GATEWAY_LOG_FORMAT": "json",
    })
    env.update({k: str(v) for k, v in overrides.items()})
    return env



class LocalServer:
    """An aiohttp app on 127.0.0.1 on a free port, as an async context manager (test doubles)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self):
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ApiChannelReceiver(LocalServer):
    """The business's end of the API channel: verifies our signature, can fail on purpose."""

    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret
        self.received: list[dict] = []
        self.idempotency_keys: list[str | None] = []
        self.rejected = 0
        self.fail_next = 0
        self.fail_status = 503

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self.handle)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        import json

        from gateway.channels.api.webhook import SIGNATURE_HEADER, verify

        raw = await request.read()
        if not verify(self.secret, raw, request.headers.get(SIGNATURE_HEADER)):
            self.rejected += 1
            return web.Response(status=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=self.fail_status, text="try later")
        self.received.append(json.loads(raw))
        self.idempotency_keys.append(request.headers.get("Idempotency-Key"))
        return web.json_response({"ok": True})


def browser_missing(browser_dir) -> str | None:
    """Why the real-Chromium tests cannot run here (None: they can). They drive Debian's `chromium`
    with playwright-core from npm, installed in `browser_dir`/node_modules (no browser download)."""
    import shutil
    from pathlib import Path

    if not shutil.which("chromium") and not os.path.exists("/usr/bin/chromium"):
        return "Debian's chromium is not installed"
    if not shutil.which("node"):
        return "node is not installed"
    if not (Path(browser_dir) / "node_modules" / "playwright-core" / "package.json").exists():
        return f"playwright-core is not installed in {browser_dir}/node_modules"
    return None


def ensure_browser(repo, browser_dir) -> str | None:
    """Run `.ci/browser` once when something is missing (unless GATEWAY_TEST_NO_INSTALL is set);
    returns the reason to skip, or None when the browser tests can run."""
    import subprocess
    from pathlib import Path

    missing = browser_missing(browser_dir)
    if missing and not os.environ.get("GATEWAY_TEST_NO_INSTALL"):
        proc = subprocess.run(["bash", str(Path(repo) / ".ci" / "browser")], capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0:
            return f"browser test: {missing}, and .ci/browser failed: {proc.stderr.strip()[-300:]}"
        missing = browser_missing(browser_dir)
    return f"browser test: {missing} (run .ci/browser to install)" if missing else None


async def drive_browser(script, *args, on_step, cwd, env: dict | None = None,
                        timeout: float = 120) -> tuple[dict | None, str]:
    """Run a node script that drives a browser: each `step <name>` line it prints is answered with
    `go <json of await on_step(name)>`; its `result <json>` line is returned with its stderr."""
    import asyncio
    import json

    node = await asyncio.create_subprocess_exec(
        "node", str(script), *map(str, args), cwd=cwd, env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    result = None
    try:
        async with asyncio.timeout(timeout):
            while line := (await node.stdout.readline()).decode():
                if line.startswith("step "):
                    answer = await on_step(line[5:].strip())
                    node.stdin.write(f"go {json.dumps(answer if answer is not None else {})}\n".encode())
                    await node.stdin.drain()
                elif line.startswith("result "):
                    result = json.loads(line[len("result "):])
            await node.wait()
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    return result, (await node.stderr.read()).decode()
