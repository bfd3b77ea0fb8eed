"""Background passes (gateway.infra.periodic.every): a failed pass is logged and the next one runs;
a stop ends the wait at once."""
from __future__ import annotations

import asyncio
import time

import structlog

from gateway.infra import periodic


async def test_a_failed_pass_is_logged_and_the_next_one_runs():
    stop, passes = asyncio.Event(), []

    async def step():
        passes.append(1)
        if len(passes) == 1:
            raise OSError("storage away")
        stop.set()

    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(periodic.every(0.01, stop, step, log=structlog.get_logger("test"),
                                              failed="pass failed"), 5)
    assert len(passes) == 2
    assert [(e["event"], e["error"]) for e in logs] == [("pass failed", "storage away")]


async def test_a_stop_ends_the_wait_at_once():
    stop, passes = asyncio.Event(), []

    async def step():
        passes.append(1)

    loop = asyncio.create_task(periodic.every(30.0, stop, step, log=structlog.get_logger("test"), failed="x"))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(loop, 5)
    assert passes == [1] and time.monotonic() - started < 1.0


async def test_errors_it_is_not_told_to_survive_end_the_loop():
    async def step():
        raise ValueError("a bug")
    try:
        await periodic.every(0.01, asyncio.Event(), step, log=structlog.get_logger("test"), failed="x",
                             errors=(OSError,))
    except ValueError:
        return
    raise AssertionError("the ValueError was swallowed")
