"""Which event loop a process serves on (GATEWAY_EVENT_LOOP): uvloop's where it is installed, else asyncio's.

The serving roles use it (`gateway run`, `api`, `worker`), and so do the bench's own processes (the
naive baselines, the load generator, the fake provider), so a comparison runs both sides on one loop.
"""
from __future__ import annotations

import asyncio
import os
from typing import Callable

from gateway.app.log import get_logger

log = get_logger(__name__)


def loop_factory(name: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory for `name` "uvloop" (default: GATEWAY_EVENT_LOOP, else "uvloop"), None for
    asyncio's own loop (or when uvloop is not installed: logged)."""
    name = name or os.environ.get("GATEWAY_EVENT_LOOP") or "uvloop"
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; serving on asyncio's event loop", setting="GATEWAY_EVENT_LOOP")
        return None
    return uvloop.new_event_loop


def runner(name: str | None = None) -> asyncio.Runner:
    """An asyncio.Runner on that loop."""
    return asyncio.Runner(loop_factory=loop_factory(name))


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
