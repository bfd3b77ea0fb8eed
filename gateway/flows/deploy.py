"""Live deploys: validate a flows directory (flows, journeys, routing file) and make it current in
every running process, without a restart.

`deploy()` refuses a bad directory with the file and the problem (nothing changes, the running
versions keep working); otherwise it stores every definition's text in `flow_versions`, records a
row in `deployments` (the manifest: flow and journey name -> version, the routing file, the
journeys' policy) and announces its id over Redis pub/sub. Each process's `DeployListener` applies
the newest deployment: the subsystems' reloaders (`hooks.deployed`) make those versions current for
conversations and enrollments that start from now on; those in progress stay on the version they
started with (stored, so always loadable). A process that missed the announcement (Redis restarted)
finds the deployment on its periodic check.
"""
from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from gateway.app.log import get_logger

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)

CHECK_EVERY = 10.0      # seconds between checks of the deployments table (missed announcements)


class DeployError(ValueError):
    """The directory does not validate; the message names the file and the problem."""


@dataclass(frozen=True)
class Bundle:
    flows: dict[str, tuple[str, str]]          # name -> (version, text)
    journeys: dict[str, tuple[str, str]]       # name -> (version, self-contained text)
    routing: str                               # the routing file's text ("" when none)
    policy: str                                # journeys/_policy.yaml's text ("" when none)

    def manifest(self) -> dict:
        return {"flows": {n: v for n, (v, _) in sorted(self.flows.items())},
                "journeys": {n: v for n, (v, _) in sorted(self.journeys.items())},
                "routing": self.routing, "policy": self.policy}


def validate(directory: str | Path) -> Bundle:
    """Load and check everything a deploy would make current. DeployError names file and problem."""
    from gateway.flows.loader import FlowRegistry
    from gateway.flows.model import FlowError
    from gateway.inbox.team_routing import ROUTING_FILE, RoutingError, load_routing
    from gateway.journeys.model import JourneyError
    from gateway.journeys.registry import JourneyRegistry

    directory = Path(directory)
    try:
        flows = FlowRegistry.from_directory(directory)
        load_routing(directory)
        journeys = JourneyRegistry.load(directory / "journeys")
    except FlowError as exc:
        raise DeployError(_with_line(exc)) from None
    except RoutingError as exc:
        raise DeployError(str(exc)) from None
    except JourneyError as exc:
        raise DeployError(f"{directory / 'journeys'}/{exc}") from None
    routing = directory / ROUTING_FILE
    policy = directory / "journeys" / "_policy.yaml"
    return Bundle({f.name: (f.version, f.text) for f in flows.current_versions()},
                  {j.name: (j.version, j.source) for j in journeys.journeys.values()},
                  routing.read_text(encoding="utf-8") if routing.exists() else "",
                  policy.read_text(encoding="utf-8") if policy.exists() else "")


def _with_line(exc) -> str:
    """A flow error with the line of the state it names ("flows/support.yaml:42: state 'menu': ...")."""
    if not (exc.file and exc.state) or not Path(exc.file).exists():
        return str(exc)
    key = re.compile(rf"^\s+['\"]?{re.escape(exc.state)}['\"]?\s*:")
    for number, line in enumerate(Path(exc.file).read_text(encoding="utf-8").splitlines(), 1):
        if key.match(line):
            return f"{exc.file}:{number}: state '{exc.state}': {exc.problem}"
    return str(exc)


async def record(conn: asyncpg.Connection, bundle: Bundle) -> int:
    """Store the texts and the deployment (one transaction); its id."""
    from gateway.journeys.registry import VERSION_PREFIX

    async with conn.transaction():
        for prefix, items in (("", bundle.flows), (VERSION_PREFIX, bundle.journeys)):
            for name, (version, text) in items.items():
                await conn.execute(
                    """INSERT INTO flow_versions (name, version, definition) VALUES ($1, $2, $3)
                       ON CONFLICT (name, version) DO NOTHING""", prefix + name, version, text)
        return await conn.fetchval("INSERT INTO deployments (manifest) VALUES ($1::jsonb) RETURNING id",
                                   json.dumps(bundle.manifest()))


async def announce(redis, keys, deployment_id: int) -> None:
    """Tell every running process (a lost message is caught by their periodic check)."""
    try:
        await redis.publish(keys.deploys_channel(), json.dumps({"deployment_id": deployment_id}))
    except Exception as exc:   # Redis down: the processes' periodic check still finds it
        log.warning("deploy announcement not sent", deployment_id=deployment_id, error=str(exc))


async def deploy(pool: asyncpg.Pool, redis, keys, directory: str | Path) -> dict:
    """Validate, record and announce. Raises DeployError (nothing changed) for a bad directory."""
    bundle = validate(directory)
    async with pool.acquire() as conn:
        deployment_id = await record(conn, bundle)
    await announce(redis, keys, deployment_id)
    log.info("flows deployed", deployment_id=deployment_id, flows=bundle.manifest()["flows"],
             journeys=bundle.manifest()["journeys"])
    manifest = bundle.manifest()
    return {"deployment_id": deployment_id, "flows": manifest["flows"], "journeys": manifest["journeys"]}


class DeployListener:
    """In every process: applies the newest deployment through the runtime's reloaders."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.applied: int | None = None
        self._lock = asyncio.Lock()

    async def start_from_latest(self) -> None:
        """At start-up the files were just loaded: a deployment made before counts as applied."""
        self.applied = await self.rt.pool.fetchval("SELECT coalesce(max(id), 0) FROM deployments")

    async def apply_latest(self) -> int | None:
        """Apply the newest deployment if it is newer than what runs here; its id, else None."""
        async with self._lock:
            row = await self.rt.pool.fetchrow(
                "SELECT id, manifest FROM deployments WHERE id > $1 ORDER BY id DESC LIMIT 1", self.applied or 0)
            if row is None:
                return None
            manifest = row["manifest"] if isinstance(row["manifest"], dict) else json.loads(row["manifest"])
            async with self.rt.pool.acquire() as conn:
                for reload in self.rt.hooks.deployed:
                    await reload(conn, manifest)
            self.applied = row["id"]
            log.info("deployment applied", deployment_id=row["id"])
            return row["id"]

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            pubsub = None
            try:
                pubsub = self.rt.redis.pubsub()
                await pubsub.subscribe(self.rt.keys.deploys_channel())
                await self.apply_latest()
                checked = loop.time()
                while not stop.is_set():
                    message = await _next_message(pubsub, stop)
                    if message is not None or loop.time() - checked >= CHECK_EVERY:
                        await self.apply_latest()
                        checked = loop.time()
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # Redis or PostgreSQL away: try again shortly
                log.warning("deploy listener error", error=str(exc))
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
            finally:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                    except Exception:
                        pass


async def _next_message(pubsub, stop: asyncio.Event, timeout: float = 1.0):
    """The next announcement on `pubsub`, or None after `timeout` seconds or as soon as `stop` is set
    (a stopping process does not sit out the rest of the wait)."""
    if stop.is_set():
        return None
    getter = asyncio.ensure_future(pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((getter, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not getter.done():
            getter.cancel()
            await asyncio.wait((getter,))   # the read has let go of the connection before it is closed
    return None if getter.cancelled() else getter.result()
