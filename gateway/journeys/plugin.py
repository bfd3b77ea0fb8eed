"""Runtime plugin: load and validate the journeys, register their timer kinds and hooks.

Called in every process (api and worker) before workers start. An invalid journey definition
stops the process with a message naming the file and the problem.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.journeys.engine import STEP_TIMER, JourneyEngine
from gateway.journeys.registry import deployed_registry, load_registry
from gateway.journeys.sending import FALLBACK_TIMER

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime


async def setup(runtime: Runtime) -> JourneyEngine:
    registry = load_registry(runtime.settings)
    async with runtime.pool.acquire() as conn:
        await registry.store_versions(conn)
    engine = JourneyEngine(runtime, registry)
    runtime.journeys = engine
    runtime.timer_handlers[STEP_TIMER] = engine.fire_step
    runtime.timer_handlers[FALLBACK_TIMER] = engine.fire_fallback
    runtime.hooks.event.append(engine.on_event)
    runtime.hooks.status.append(engine.on_status)
    runtime.hooks.inbound.append(engine.on_inbound)

    async def reload(conn, manifest: dict) -> None:   # a deployment: new enrollments take its versions
        engine.registry = await deployed_registry(conn, manifest)

    runtime.hooks.deployed.append(reload)
    return engine
